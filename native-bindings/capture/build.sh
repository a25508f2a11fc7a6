#!/usr/bin/env bash
# Builds journey's native capture addon (libpcap → whole batches for JavaScript), offline:
# node-gyp against /usr/include/node (--nodedir=/usr, never downloading headers), linked with
# the system libpcap (libpcap-dev). Output: native-bindings/capture/build/Release/journey_capture.node
# (gitignored). Idempotent: nothing changed (sources, node version, libpcap) = nothing done. FORCE=1 rebuilds.
set -euo pipefail
here="$(cd "$(dirname "$0")" && pwd)"
cd "$here"
log() { printf 'native-bindings/capture: %s\n' "$*" >&2; }

addon=build/Release/journey_capture.node
stamp=build/.journey-stamp
gyp="$here/../../node_modules/.bin/node-gyp"

[ -x "$gyp" ] || { log "node-gyp not in node_modules (run npm ci)"; exit 1; }
[ -f /usr/include/pcap/pcap.h ] || { log "missing libpcap headers (apt-get install libpcap-dev)"; exit 1; }
[ -f /usr/include/node/node_api.h ] || { log "missing node headers in /usr/include/node"; exit 1; }

pcapver="$( (pkg-config --modversion libpcap 2>/dev/null || ls -l /usr/lib/*/libpcap.so* 2>/dev/null) | sha256sum | cut -d' ' -f1)"
want="$(node -p process.version) $pcapver $(cat binding.gyp build.sh src/*.c src/*.h | sha256sum | cut -d' ' -f1)"
if [ "${FORCE:-0}" != 1 ] && [ -f "$addon" ] && [ -f "$stamp" ] && [ "$(cat "$stamp")" = "$want" ]; then
  log "up to date"
  exit 0
fi
log "node-gyp rebuild (--nodedir=/usr, offline)"
"$gyp" rebuild --nodedir=/usr >&2
[ -f "$addon" ] || { log "no $addon after the build"; exit 1; }
echo "$want" > "$stamp"
log "built $addon"
