#!/usr/bin/env bash
# Builds journey's native addon, offline, from Debian packages only:
#   1. vmlinux.h dumped from the RUNNING kernel's BTF (bpftool),
#   2. the CO-RE BPF object (clang -target bpf) and its libbpf skeleton (bpftool gen skeleton),
#   3. the N-API addon (node-gyp against /usr/include/node, never downloading headers).
# Everything it makes stays under native-bindings/build/ (gitignored). Idempotent: a second run
# with nothing changed (sources, kernel) does nothing. FORCE=1 rebuilds.
set -euo pipefail
here="$(cd "$(dirname "$0")" && pwd)"
cd "$here"
log() { printf 'native-bindings: %s\n' "$*" >&2; }

out=build/bpf
addon=build/Release/journey_native.node
stamp=build/.journey-stamp
btf=/sys/kernel/btf/vmlinux

for tool in clang bpftool pkg-config; do
  command -v "$tool" >/dev/null || { log "missing $tool (scripts/setup installs it)"; exit 1; }
done
[ -r "$btf" ] || { log "no kernel BTF at $btf: CO-RE programs cannot be built"; exit 1; }
pkg-config --exists libbpf libmnl libnetfilter_conntrack || { log "missing libbpf/libmnl/libnetfilter_conntrack dev packages"; exit 1; }

# what the build depends on: our sources, the kernel, the node headers
want="$(uname -r) $(stat -c %s "$btf") $(node -p process.version) $(cat binding.gyp build.sh include/*.h bpf/*.c bpf/*.h src/*.c src/*.h | sha256sum | cut -d' ' -f1)"
if [ "${FORCE:-0}" != 1 ] && [ -f "$addon" ] && [ -f "$stamp" ] && [ "$(cat "$stamp")" = "$want" ]; then
  log "up to date"
  exit 0
fi

# node-gyp rebuild = clean + configure + build; the clean would delete the BPF step's output,
# so clean first, then the BPF step, then configure + build.
rm -rf build
mkdir -p "$out"
log "vmlinux.h from $btf ($(uname -r))"
bpftool btf dump file "$btf" format c > "$out/vmlinux.h"
log "clang: bpf/journey.bpf.c (CO-RE)"
clang -g -O2 -Wall -Wno-unused-function -target bpf -D__TARGET_ARCH_x86 \
  -I"$out" -Iinclude -c bpf/journey.bpf.c -o "$out/journey.bpf.o"
log "bpftool gen skeleton"
bpftool gen skeleton "$out/journey.bpf.o" name journey_bpf > "$out/journey.skel.h"

gyp="$here/../node_modules/node-gyp/bin/node-gyp.js"
[ -f "$gyp" ] || { log "node-gyp not in node_modules (run npm ci)"; exit 1; }
log "node-gyp configure + build (--nodedir=/usr, offline)"
node "$gyp" configure --nodedir=/usr >&2
node "$gyp" build --nodedir=/usr >&2
[ -f "$addon" ] || { log "no $addon after the build"; exit 1; }
echo "$want" > "$stamp"
log "built $addon"
