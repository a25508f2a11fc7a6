#!/usr/bin/env bash
# journey lab: a Docker host in network namespaces, with a real containerd + dockerd.
#
#   lab/lab.sh up   [--id ID] [--scenario NAME]   build namespaces, start the engine, run the scenario
#   lab/lab.sh down [--id ID] | --all              remove everything a lab made (idempotent, crash-safe)
#   lab/lab.sh topology [--id ID]                  only the namespaces and the uplink (used by replay mode)
#   lab/lab.sh paths [--id ID]                     print the names this lab uses (shell variables)
#
# Every name the lab makes starts with "jl-": namespaces jl-<ID>-host / -ext / -ext2 (jl-host,
# jl-ext, jl-ext2 without an id), the lab directory /tmp/jl-<ID>-lab (/tmp/jl-lab), the cgroup
# parent jl-<ID>. Nothing is created in, or changed in, the default network namespace: veths are
# created directly inside the lab namespaces.
#
# Topology (see lab/README.md):
#   jl-ext  : bridge "lan0" 10.0.10.5/24 (+ 198.51.100.10/32 on lo = "the internet"), httpd :80
#             and a UDP echo on :53 for the outside probes; routes to Docker subnets via the host
#   jl-ext2 : eth0 10.0.10.6/24 (a second external client), port of lan0
#   jl-host : eth0 10.0.10.26/24, default via 10.0.10.5; containerd + dockerd (+ firewalld)
set -euo pipefail
LAB_SRC="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
NODE="${JOURNEY_NODE:-$(command -v node || echo node)}"   # the driver passes its own node binary

log() { printf 'lab: %s\n' "$*" >&2; }
die() { printf 'lab: error: %s\n' "$*" >&2; exit 1; }

ID="${JOURNEY_LAB_ID:-}"
SCENARIO=default
ALL=0
ARGS=()
CMD="${1:-}"; [ $# -gt 0 ] && shift
while [ $# -gt 0 ]; do
  case "$1" in
    --id) ID="$2"; shift 2 ;;
    --id=*) ID="${1#--id=}"; shift ;;
    --scenario) SCENARIO="$2"; shift 2 ;;
    --scenario=*) SCENARIO="${1#--scenario=}"; shift ;;
    --all) ALL=1; shift ;;
    -*) die "unknown option: $1" ;;
    *) ARGS+=("$1"); shift ;;
  esac
done

set_names() { # id
  local id="$1"
  if [ -n "$id" ]; then
    [[ "$id" =~ ^[a-z0-9][a-z0-9_]{0,11}$ ]] || die "lab id must be [a-z0-9_], at most 12 characters: $id"
    P="jl-$id-"; DIR="/tmp/jl-$id-lab"; CGPARENT="jl-$id"
  else
    P="jl-"; DIR="/tmp/jl-lab"; CGPARENT="jl-lab"
  fi
  NS_HOST="${P}host"; NS_EXT="${P}ext"; NS_EXT2="${P}ext2"
  DOCKER_SOCK="$DIR/docker.sock"
  CTR_SOCK="$DIR/containerd/containerd.sock"
}

require_root() {
  [ "$(id -u)" -eq 0 ] || die "the lab needs root (network namespaces, a real dockerd): run as root"
  ip netns list >/dev/null 2>&1 || die "network namespaces are not available here (ip netns list failed)"
}

nsx() { local ns="$1"; shift; nsenter --net="/var/run/netns/$ns" -- "$@"; }

# ---------------------------------------------------------------- the lab directory
# The lab directory is in /tmp, where anyone may create a name first. root's dockerd and
# containerd read their configuration from it and `down` acts on its pid files, so it must be one
# this user made: created here with mkdir -m 0700 (which fails on anything already there, a
# symbolic link included), never followed through a link, owned by this user with no access for
# anyone else, and marked. In a sticky /tmp nobody else can then rename or replace it.
LAB_MARK=.journey-lab
dir_is_ours() { # true when $DIR is a real directory of this user, mode 0700 or stricter
  [ ! -L "$DIR" ] && [ -d "$DIR" ] || return 1
  local uid mode
  uid="$(stat -c %u "$DIR")"; mode="$(stat -c %a "$DIR")"
  [ "$uid" = "$(id -u)" ] && [ $(( 8#$mode & 8#077 )) -eq 0 ]
}
lab_is_ours() { dir_is_ours && [ -f "$DIR/$LAB_MARK" ] && [ ! -L "$DIR/$LAB_MARK" ]; }
claim_dir() {
  if [ -L "$DIR" ]; then die "$DIR is a symbolic link, which this lab did not make: refusing it (remove it, then try again)"; fi
  if [ -e "$DIR" ]; then
    dir_is_ours || die "$DIR exists but was not made by this lab (owner uid $(stat -c %u "$DIR"), mode $(stat -c %a "$DIR"), need uid $(id -u) and 0700): refusing it (remove it, then try again)"
    [ -n "$(ls -A "$DIR" 2>/dev/null)" ] && die "$DIR exists: run 'lab down${ID:+ --id $ID}' first"
  else
    mkdir -m 0700 "$DIR" || die "cannot create $DIR"
  fi
  dir_is_ours || die "$DIR changed while it was being made: refusing it"
  id -u > "$DIR/$LAB_MARK"
}

# A process's start time (clock ticks after boot, field 22 of /proc/PID/stat): with the pid it
# names one process for good, so a pid file can never make `down` kill a process it did not start.
proc_start() { local s; s="$(cat "/proc/$1/stat" 2>/dev/null)" || return 0; s="${s##*) }"; set -- $s; echo "${20:-}"; }
remember_pid() { # name pid
  echo "$2" > "$DIR/pids/$1.pid"
  proc_start "$2" > "$DIR/pids/$1.start"
}
DOCKER_BIN="$(command -v /usr/bin/docker || command -v docker || true)"
dk() { DOCKER_HOST="unix://$DOCKER_SOCK" "$DOCKER_BIN" "$@"; }

# ---------------------------------------------------------------- topology
topology() {
  lab_is_ours || die "$DIR is not this lab's directory"
  mkdir -p "$DIR/pids" "$DIR/logs"
  for ns in "$NS_HOST" "$NS_EXT" "$NS_EXT2"; do
    ip netns list | awk '{print $1}' | grep -qx "$ns" && die "namespace $ns already exists: run 'lab down${ID:+ --id $ID}' first"
  done
  for ns in "$NS_HOST" "$NS_EXT" "$NS_EXT2"; do
    ip netns add "$ns"
    ip -n "$ns" link set lo up
  done
  # the external side: a small switch (bridge lan0) in jl-ext joins the host and ext2
  ip -n "$NS_EXT" link add lan0 type bridge
  ip -n "$NS_HOST" link add eth0 type veth peer name h0 netns "$NS_EXT"
  ip -n "$NS_EXT2" link add eth0 type veth peer name e2 netns "$NS_EXT"
  ip -n "$NS_EXT" link set h0 master lan0
  ip -n "$NS_EXT" link set e2 master lan0
  for l in lan0 h0 e2; do ip -n "$NS_EXT" link set "$l" up; done
  # the switch must not run bridged frames through iptables of jl-ext
  nsx "$NS_EXT" sh -c 'for f in /proc/sys/net/bridge/bridge-nf-call-*; do [ -w "$f" ] && echo 0 > "$f"; done; true'
  ip -n "$NS_EXT" addr add 10.0.10.5/24 dev lan0
  ip -n "$NS_EXT" addr add 198.51.100.10/32 dev lo
  ip -n "$NS_EXT2" addr add 10.0.10.6/24 dev eth0
  ip -n "$NS_EXT2" link set eth0 up
  ip -n "$NS_EXT2" route add default via 10.0.10.5
  ip -n "$NS_HOST" addr add 10.0.10.26/24 dev eth0
  ip -n "$NS_HOST" link set eth0 up
  ip -n "$NS_HOST" route add default via 10.0.10.5
  # "direct access" probes: the outside knows the way to the Docker subnets through the host
  for net in 172.16.0.0/12 192.168.0.0/16; do ip -n "$NS_EXT" route add "$net" via 10.0.10.26; done
  # listeners on the outside: an HTTP server and a UDP echo, answering with their own name
  mkdir -p "$DIR/www-ext"; echo "ext" > "$DIR/www-ext/index.html"
  start_bg ext-httpd "$NS_EXT" busybox httpd -f -p 80 -h "$DIR/www-ext"
  start_bg ext-udp "$NS_EXT" "$NODE" "$LAB_SRC/probe-tool.mjs" serve ext 53,514,1812 10.0.10.5,198.51.100.10
  echo "${ID}" > "$DIR/id"
}

# IPv6 on the same topology (replay of ip6 rulesets, the dual-stack scenarios): fd00:10::/64 on the uplink, the outside
# 2001:db8:ff::10 on jl-ext's lo, fd00::/8 routed back through the host (no DAD: usable at once)
topology6() {
  ip -n "$NS_EXT" addr add fd00:10::5/64 dev lan0 nodad
  ip -n "$NS_EXT" addr add 2001:db8:ff::10/128 dev lo nodad
  ip -n "$NS_EXT2" addr add fd00:10::6/64 dev eth0 nodad
  ip -n "$NS_EXT2" -6 route add default via fd00:10::5
  ip -n "$NS_HOST" addr add fd00:10::26/64 dev eth0 nodad
  ip -n "$NS_HOST" -6 route add default via fd00:10::5
  ip -n "$NS_EXT" -6 route add fd00::/8 via fd00:10::26
  nsx "$NS_HOST" sysctl -qw net.ipv6.conf.all.forwarding=1
  # the outside answers UDP over IPv6 too (the IPv4 echo is bound to its IPv4 addresses)
  [ -d "$DIR/pids" ] && start_bg ext-udp6 "$NS_EXT" "$NODE" "$LAB_SRC/probe-tool.mjs" serve ext 53 fd00:10::5,2001:db8:ff::10
  return 0
}

# start_bg NAME NETNS ARGV...: a detached process inside a namespace, remembered by pid file
start_bg() {
  local name="$1" ns="$2"; shift 2
  local target
  if [[ "$ns" =~ ^[0-9]+$ ]]; then target="/proc/$ns/ns/net"; else target="/var/run/netns/$ns"; fi
  setsid nsenter --net="$target" -- "$@" </dev/null >>"$DIR/logs/$name.log" 2>&1 &
  remember_pid "$name" $!
}

# ---------------------------------------------------------------- engine
build_image() {
  local cache=/var/cache/journey tar
  tar="$cache/busybox-rootfs.tar"
  mkdir -p "$cache"
  if [ ! -s "$tar" ] || [ /bin/busybox -nt "$tar" ]; then
    local root; root="$(mktemp -d "$DIR/rootfs.XXXX")"
    mkdir -p "$root/bin" "$root/www" "$root/tmp" "$root/etc" "$root/proc" "$root/sys" "$root/dev"
    cp /bin/busybox "$root/bin/busybox"
    for a in $(/bin/busybox --list); do [ "$a" = busybox ] || ln -sf busybox "$root/bin/$a"; done
    echo "root:x:0:0:root:/:/bin/sh" > "$root/etc/passwd"
    echo "root:x:0:" > "$root/etc/group"
    echo "journey lab" > "$root/www/index.html"
    # several labs may build it at once: write a private file, then rename it into place
    local tmp; tmp="$(mktemp "$cache/busybox-rootfs.XXXXXX")"
    tar -C "$root" -cf "$tmp" . && mv -f "$tmp" "$tar"
    rm -rf "$root"
  fi
  dk import "$tar" lab/busybox:1 >/dev/null
}

engine_up() { # userland_proxy icc [dbus_address]
  local proxy="$1" icc="$2" bus="${3:-}" v6=""
  mkdir -p "$DIR/containerd" "$DIR/docker" "$DIR/exec"
  cat > "$DIR/containerd.toml" <<EOF
version = 2
root = "$DIR/containerd/root"
state = "$DIR/containerd/state"
disabled_plugins = ["io.containerd.grpc.v1.cri"]
[grpc]
  address = "$CTR_SOCK"
[ttrpc]
  address = "$CTR_SOCK.ttrpc"
[debug]
  address = ""
[metrics]
  address = ""
EOF
  start_bg containerd "$NS_HOST" containerd --config "$DIR/containerd.toml"
  wait_for 30 "containerd socket" test -S "$CTR_SOCK"
  # IPv6 (a recipe's IPV6=1): Docker 20.10 manages ip6tables rules only as an experimental feature
  if [ "${IPV6:-0}" = 1 ]; then
    v6="\"ipv6\": true, \"fixed-cidr-v6\": \"$FIXED_CIDR_V6\", \"experimental\": $IP6TABLES, \"ip6tables\": $IP6TABLES,"
  fi
  cat > "$DIR/daemon.json" <<EOF
{
  $v6
  "data-root": "$DIR/docker",
  "exec-root": "$DIR/exec",
  "pidfile": "$DIR/dockerd.pid",
  "hosts": ["unix://$DOCKER_SOCK"],
  "containerd": "$CTR_SOCK",
  "cgroup-parent": "/$CGPARENT",
  "userland-proxy": $proxy,
  "icc": $icc,
  "iptables": true,
  "ip-forward": true,
  "log-level": "warn"
}
EOF
  if [ -n "$bus" ]; then
    DBUS_SYSTEM_BUS_ADDRESS="$bus" start_bg dockerd "$NS_HOST" dockerd --config-file "$DIR/daemon.json"
  else
    start_bg dockerd "$NS_HOST" dockerd --config-file "$DIR/daemon.json"
  fi
  wait_for 60 "dockerd" dk version
  build_image
}

firewalld_up() {
  # a private D-Bus system bus in the lab dir; firewalld in the host namespace, config copied
  # into the lab dir (--system-config) so the machine's /etc/firewalld is never written
  cat > "$DIR/dbus.conf" <<EOF
<!DOCTYPE busconfig PUBLIC "-//freedesktop//DTD D-Bus Bus Configuration 1.0//EN"
 "http://www.freedesktop.org/standards/dbus/1.0/busconfig.dtd">
<busconfig>
  <type>system</type>
  <listen>unix:path=$DIR/bus.sock</listen>
  <auth>EXTERNAL</auth>
  <policy context="default">
    <allow user="*"/>
    <allow own="*"/>
    <allow send_type="method_call"/>
    <allow send_destination="*"/>
    <allow receive_sender="*"/>
  </policy>
  <includedir>/usr/share/dbus-1/system.d</includedir>
</busconfig>
EOF
  start_bg dbus "$NS_HOST" dbus-daemon --config-file="$DIR/dbus.conf" --nofork --nopidfile
  wait_for 15 "private system bus" test -S "$DIR/bus.sock"
  rm -rf "$DIR/firewalld-etc"; cp -a /etc/firewalld "$DIR/firewalld-etc"
  DBUS_SYSTEM_BUS_ADDRESS="unix:path=$DIR/bus.sock" start_bg firewalld "$NS_HOST" \
    firewalld --nofork --nopid --system-config "$DIR/firewalld-etc" --log-target file --log-file "$DIR/logs/firewalld-own.log"
  wait_for 60 "firewalld's table" sh -c "nsenter --net=/var/run/netns/$NS_HOST -- nft list tables | grep -q 'inet firewalld'"
  # and for it to answer on the bus (dockerd asks it at start)
  wait_for 30 "firewalld on the bus" sh -c "DBUS_SYSTEM_BUS_ADDRESS=unix:path=$DIR/bus.sock nsenter --net=/var/run/netns/$NS_HOST -- firewall-cmd --state >/dev/null 2>&1"
}

wait_for() { # seconds what cmd...
  local t="$1" what="$2"; shift 2
  local i
  for ((i = 0; i < t * 5; i++)); do
    if "$@" >/dev/null 2>&1; then return 0; fi
    sleep 0.2
  done
  tail -n 20 "$DIR"/logs/*.log >&2 2>/dev/null || true
  die "$what did not come up in ${t}s (logs in $DIR/logs)"
}

# helpers the scenario recipes use ----------------------------------------
# web NAME [docker run options...]: busybox httpd on :80 answering with the container's name
web() { local n="$1"; shift; dk run -d --name "$n" "$@" lab/busybox:1 sh -c "echo $n > /www/index.html; exec httpd -f -p \${PORT:-80} -h /www" >/dev/null; }
# idle NAME [docker run options...]: a client container
idle() { local n="$1"; shift; dk run -d --name "$n" "$@" lab/busybox:1 sleep 1000000 >/dev/null; }
# udp_echo CONTAINER PORT...: a UDP echo in the container's network namespace
udp_echo() {
  local c="$1"; shift
  local pid; pid="$(dk inspect -f '{{.State.Pid}}' "$c")"
  start_bg "udp-$c" "$pid" "$NODE" "$LAB_SRC/probe-tool.mjs" serve "$c" "$(IFS=,; echo "$*")"
}
# bridge_net NAME SUBNET BRIDGE [more options]
bridge_net() {
  local n="$1" subnet="$2" br="$3"; shift 3
  dk network create --driver bridge --subnet "$subnet" -o "com.docker.network.bridge.name=$br" "$@" "$n" >/dev/null
}

up() {
  require_root
  local recipe="$LAB_SRC/scenarios/$SCENARIO.sh"
  # a recipe of your own: --scenario ./path/to/recipe.sh (same variables and helpers)
  if [[ "$SCENARIO" == */* ]]; then recipe="$(cd "$(dirname "$SCENARIO")" && pwd)/$(basename "$SCENARIO")"; fi
  [ -f "$recipe" ] || die "no such scenario: $SCENARIO (see lab/scenarios/)"
  command -v dockerd >/dev/null || die "dockerd is not installed (run scripts/setup)"
  claim_dir
  USERLAND_PROXY=true ICC=true FIREWALLD=0
  # IPv6: DUALSTACK=1 adds the uplink's IPv6 layer (topology6); IPV6=1 also gives dockerd IPv6
  DUALSTACK=0 IPV6=0 IP6TABLES=false FIXED_CIDR_V6=""
  # shellcheck source=/dev/null
  . "$recipe"
  topology
  if [ "$DUALSTACK" = 1 ] || [ "$IPV6" = 1 ]; then topology6; fi
  echo "$SCENARIO" > "$DIR/scenario"
  local bus=""
  if [ "$FIREWALLD" = 1 ]; then firewalld_up; bus="unix:path=$DIR/bus.sock"; fi
  engine_up "$USERLAND_PROXY" "$ICC" "$bus"
  scenario_up
  # an IPv6 address in duplicate address detection (tentative) is not used yet: wait until none is left
  if [ "$IPV6" = 1 ]; then wait_for 30 "IPv6 addresses (DAD)" no_tentative; fi
  log "lab ${ID:-(no id)} is up: scenario $SCENARIO, docker at unix://$DOCKER_SOCK"
}

no_tentative() { # true when no IPv6 address of the host or of a container is still tentative
  [ -z "$(ip -n "$NS_HOST" -6 addr show tentative)" ] || return 1
  local c pid
  for c in $(dk ps -q); do
    pid="$(dk inspect -f '{{.State.Pid}}' "$c")"
    [ -z "$(nsenter -t "$pid" -n ip -6 addr show tentative)" ] || return 1
  done
}

# ---------------------------------------------------------------- replay (no dockerd; see lab/replay.ts)
replay_bridge() { # BRIDGE GW/PREFIX
  ip -n "$NS_HOST" link add "$1" type bridge
  if [[ "$2" == *:* ]]; then ip -n "$NS_HOST" addr add "$2" dev "$1" nodad; else ip -n "$NS_HOST" addr add "$2" dev "$1"; fi
  ip -n "$NS_HOST" link set "$1" up
}

# a "container": a process holding a fresh network namespace, a veth jl-NAME on the bridge,
# busybox httpd on each TCP port and a UDP echo on the UDP ports
replay_container() { # NAME BRIDGE IP/PREFIX GW TCPPORTS|none UDPPORTS|none HAIRPIN(0|1)
  local name="$1" br="$2" addr="$3" gw="$4" tcp="$5" udp="$6" hp="$7" pid i mine
  [[ "$name" =~ ^[a-z0-9]{1,10}$ ]] || die "bad container name: $name"
  mkdir -p "$DIR/ct/$name/www" "$DIR/pids" "$DIR/logs"
  echo "$name" > "$DIR/ct/$name/www/index.html"
  : > "$DIR/ct/$name/holder"
  setsid unshare --net -- tail -f "$DIR/ct/$name/holder" </dev/null >/dev/null 2>&1 &
  pid=$!
  remember_pid "ct-$name" "$pid"
  # never touch the process before it has its own namespace (else the veth would land in ours)
  mine="$(readlink /proc/self/ns/net)"
  for ((i = 0; i < 100; i++)); do
    [ "$(readlink "/proc/$pid/ns/net" 2>/dev/null)" != "$mine" ] && [ "$(cat "/proc/$pid/comm" 2>/dev/null)" = tail ] && break
    sleep 0.05
  done
  [ "$(readlink "/proc/$pid/ns/net" 2>/dev/null)" != "$mine" ] || die "container $name: no namespace of its own"
  ip -n "$NS_HOST" link add "jl-$name" type veth peer name eth0 netns "$pid"
  ip -n "$NS_HOST" link set "jl-$name" master "$br"
  ip -n "$NS_HOST" link set "jl-$name" up
  [ "$hp" = 1 ] && ip -n "$NS_HOST" link set "jl-$name" type bridge_slave hairpin on
  if [[ "$addr" == *:* ]]; then
    nsenter --net="/proc/$pid/ns/net" -- sh -c "ip link set lo up && ip addr add $addr dev eth0 nodad && ip link set eth0 up && ip -6 route add default via $gw"
  else
    nsenter --net="/proc/$pid/ns/net" -- sh -c "ip link set lo up && ip addr add $addr dev eth0 && ip link set eth0 up && ip route add default via $gw"
  fi
  local p
  if [ "$tcp" != none ]; then
    for p in ${tcp//,/ }; do start_bg "ct-$name-httpd-$p" "$pid" busybox httpd -f -p "$p" -h "$DIR/ct/$name/www"; done
  fi
  if [ "$udp" != none ]; then start_bg "ct-$name-udp" "$pid" "$NODE" "$LAB_SRC/probe-tool.mjs" serve "$name" "$udp" "$([[ "$addr" == *:* ]] && echo :: || echo 0.0.0.0)"; fi
}

replay_proxy() { # PROTO HOSTIP HOSTPORT CONTAINERIP CONTAINERPORT: the userland proxy, as dockerd runs it
  # docker-proxy reports readiness on fd 3 (a pipe from dockerd) and closes it: give it one
  local name="proxy-$1-$3"
  setsid nsenter --net="/var/run/netns/$NS_HOST" -- docker-proxy -proto "$1" -host-ip "$2" -host-port "$3" \
    -container-ip "$4" -container-port "$5" </dev/null >>"$DIR/logs/$name.log" 2>&1 3>>"$DIR/logs/$name.ready" &
  remember_pid "$name" $!
}

# ---------------------------------------------------------------- teardown
ns_inode() { stat -L -c %i "/var/run/netns/$1" 2>/dev/null || true; }

# in_lab_ns PID: the process lives in one of the namespaces in LAB_INODES
in_lab_ns() {
  local ino; ino="$(stat -L -c %i "/proc/$1/ns/net" 2>/dev/null || true)"
  [ -n "$ino" ] && [[ " ${LAB_INODES:-} " == *" $ino "* ]]
}
# pid_of_lab FILE: the pid in a pid file, when it is a process this lab started: this user's, with
# the start time recorded beside it (FILE's .start), or, for dockerd's own pid file, inside a lab
# namespace. Anything else is named and left alone.
pid_of_lab() {
  local f="$1" pid st
  [ -f "$f" ] && [ ! -L "$f" ] || return 1
  pid="$(cat "$f" 2>/dev/null || true)"
  [[ "$pid" =~ ^[0-9]+$ ]] && [ -d "/proc/$pid" ] || return 1
  if [ "$(stat -c %u "/proc/$pid" 2>/dev/null)" != "$(id -u)" ]; then log "not killing pid $pid from $f: another user's process"; return 1; fi
  st="${f%.pid}.start"
  if [ -f "$st" ]; then
    [ "$(cat "$st")" = "$(proc_start "$pid")" ] && { echo "$pid"; return 0; }
    log "not killing pid $pid from $f: not the process the lab started (start time differs)"; return 1
  fi
  in_lab_ns "$pid" && { echo "$pid"; return 0; }
  log "not killing pid $pid from $f: not a process of this lab"; return 1
}
kill_pidfile() { # file [signal]
  local pid
  pid="$(pid_of_lab "$1")" || return 0
  kill "-${2:-TERM}" "$pid" 2>/dev/null || true
}

wait_gone() { # seconds pid...
  local t="$1"; shift
  local i p alive
  for ((i = 0; i < t * 10; i++)); do
    alive=0
    for p in "$@"; do kill -0 "$p" 2>/dev/null && alive=1; done
    [ $alive = 0 ] && return 0
    sleep 0.1
  done
  return 1
}

# pids of every process whose network namespace is one of the inodes given, or whose command
# line names the lab directory (containerd shims, docker-proxy, helpers)
lab_pids() {
  local inodes=" $* " me ino p f
  me="$(id -u)"
  # one stat and one grep over /proc (a process per pid made down take a minute on a busy host)
  while read -r ino p; do
    p="${p#/proc/}"; p="${p%/ns/net}"
    [ "$p" = $$ ] && continue
    [[ "$inodes" == *" $ino "* ]] && echo "$p"
  done < <(stat -L -c '%i %n' /proc/[0-9]*/ns/net 2>/dev/null || true)
  while read -r f; do
    p="${f#/proc/}"; p="${p%/cmdline}"
    [ "$p" = $$ ] && continue
    # a command line is anyone's to choose: only this user's processes count by it
    [ "$(stat -c %u "/proc/$p" 2>/dev/null)" = "$me" ] && echo "$p"
  done < <(grep -lF -- "$DIR/" /proc/[0-9]*/cmdline 2>/dev/null || true)
  return 0
}

down_one() {
  log "down: ${ID:-(no id)} ($DIR, ${P}*)"
  local mine=1
  if [ -e "$DIR" ] || [ -L "$DIR" ]; then
    lab_is_ours || { mine=0; log "$DIR was not made by this lab (or not by this user): its pid files, mounts and files are left alone"; }
  fi
  LAB_INODES=""
  local ns0 ino0
  for ns0 in "$NS_HOST" "$NS_EXT" "$NS_EXT2"; do ino0="$(ns_inode "$ns0")"; [ -n "$ino0" ] && LAB_INODES+=" $ino0"; done
  # 1. containers first (dockerd alone waits ~10 s per container that ignores SIGTERM)
  if [ $mine = 1 ] && [ -S "$DOCKER_SOCK" ] && [ -n "$DOCKER_BIN" ]; then
    local ids; ids="$(timeout 10 env DOCKER_HOST="unix://$DOCKER_SOCK" "$DOCKER_BIN" ps -aq 2>/dev/null || true)"
    [ -n "$ids" ] && timeout 30 env DOCKER_HOST="unix://$DOCKER_SOCK" "$DOCKER_BIN" rm -f $ids >/dev/null 2>&1 || true
  fi
  # 2. daemons by pid file, dockerd first
  local pids=() f pid
  if [ $mine = 1 ]; then
    for f in "$DIR/pids/dockerd.pid" "$DIR/dockerd.pid"; do kill_pidfile "$f"; done
    for f in "$DIR"/pids/*.pid; do
      pid="$(pid_of_lab "$f" 2>/dev/null)" && pids+=("$pid")
    done
    for f in "$DIR"/pids/*.pid; do [ "$(basename "$f")" = dockerd.pid ] || kill_pidfile "$f"; done
    [ ${#pids[@]} -gt 0 ] && { wait_gone 20 "${pids[@]}" || for p in "${pids[@]}"; do kill -KILL "$p" 2>/dev/null || true; done; }
  fi
  # 3. anything still living in the lab's namespaces, or started from the lab dir
  local inodes=() ns ino
  for ns in "$NS_HOST" "$NS_EXT" "$NS_EXT2"; do ino="$(ns_inode "$ns")"; [ -n "$ino" ] && inodes+=("$ino"); done
  # container namespaces made by dockerd (bind-mounted under the exec root)
  if [ $mine = 1 ] && [ -d "$DIR/exec/netns" ]; then
    for f in "$DIR"/exec/netns/*; do [ -e "$f" ] && { ino="$(stat -L -c %i "$f" 2>/dev/null || true)"; [ -n "$ino" ] && inodes+=("$ino"); }; done
  fi
  local rest; rest="$(lab_pids "${inodes[@]}" | tr '\n' ' ')"
  [ $mine = 1 ] || rest="$(LAB_INODES=" ${inodes[*]} "; for p in $rest; do in_lab_ns "$p" && echo "$p"; done | tr '\n' ' ')"
  if [ -n "${rest// /}" ]; then
    kill -TERM $rest 2>/dev/null || true
    wait_gone 5 $rest || kill -KILL $rest 2>/dev/null || true
  fi
  # 4. mounts under the lab dir (data root, container netns files, overlay layers), deepest first
  if [ $mine = 1 ]; then
    local m
    for m in $(awk -v d="$DIR" '$2 == d || index($2, d "/") == 1 {print $2}' /proc/mounts | sort -r); do
      umount "$m" 2>/dev/null || umount -l "$m" 2>/dev/null || true
    done
  fi
  # 5. namespaces (their veths go with them)
  for ns in "$NS_HOST" "$NS_EXT" "$NS_EXT2"; do
    if [ -e "/var/run/netns/$ns" ]; then ip netns delete "$ns" 2>/dev/null || { umount -l "/var/run/netns/$ns" 2>/dev/null; rm -f "/var/run/netns/$ns"; }; fi
  done
  # 6. cgroups dockerd made under our parent, then the lab dir
  local cg
  for cg in /sys/fs/cgroup/*/"$CGPARENT" /sys/fs/cgroup/"$CGPARENT"; do
    [ -d "$cg" ] && find "$cg" -depth -type d -exec rmdir {} \; 2>/dev/null || true
  done
  [ $mine = 1 ] && rm -rf "$DIR"
  return 0
}

all_ids() { # prints one id per line ("" for the id-less lab)
  {
    ip netns list 2>/dev/null | awk '{print $1}' | sed -nE 's/^jl-(.+)-(host|ext|ext2)$/\1/p; s/^jl-(host|ext|ext2)$/-/p'
    # only lab directories this user provably made (its own, 0700, marked); namespaces only root can make
    for d in /tmp/jl-*-lab /tmp/jl-lab; do
      [ -d "$d" ] || continue
      DIR="$d" lab_is_ours || continue
      if [ "$d" = /tmp/jl-lab ]; then echo -; else d="${d#/tmp/jl-}"; echo "${d%-lab}"; fi
    done
  } | sort -u
}

down() {
  [ "$(id -u)" -eq 0 ] || die "the lab needs root: run as root"
  if [ "$ALL" = 1 ]; then
    local i
    for i in $(all_ids); do
      if [ "$i" = - ]; then set_names ""; else ID="$i"; set_names "$i" 2>/dev/null || continue; fi
      down_one
    done
  else
    down_one
  fi
}

set_names "$ID"
case "$CMD" in
  up) up ;;
  down) down ;;
  topology) require_root; claim_dir
            topology; echo replay > "$DIR/scenario" ;;
  topology6) require_root; topology6 ;;
  replay-bridge) require_root; lab_is_ours || die "$DIR is not this lab's directory"; replay_bridge "${ARGS[@]}" ;;
  replay-container) require_root; lab_is_ours || die "$DIR is not this lab's directory"; replay_container "${ARGS[@]}" ;;
  replay-proxy) require_root; lab_is_ours || die "$DIR is not this lab's directory"; replay_proxy "${ARGS[@]}" ;;
  paths) printf 'NS_HOST=%s\nNS_EXT=%s\nNS_EXT2=%s\nDIR=%s\nDOCKER_SOCK=%s\nCGPARENT=%s\n' \
           "$NS_HOST" "$NS_EXT" "$NS_EXT2" "$DIR" "$DOCKER_SOCK" "$CGPARENT" ;;
  ids) all_ids ;;
  *) die "usage: lab.sh up|down|topology|paths|ids [--id ID] [--scenario NAME] [--all]" ;;
esac
