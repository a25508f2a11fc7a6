# localhost-publish — `-p 127.0.0.1:8080:80` with the userland proxy off, and a LAN neighbour that
# routes 127.0.0.0/8 to the host: jl-…-ext2 gives up its own loopback network, sends 127.0.0.0/8
# via 10.0.10.26 and accepts answers from 127.0.0.1 (route_localnet). Docker 20.10 DNATs such a
# packet in PREROUTING and forwards it to the container: the "localhost only" port is reachable.
USERLAND_PROXY=false
scenario_up() {
  web web -p 127.0.0.1:8080:80
  idle client
  ip -n "$NS_EXT2" route del local 127.0.0.0/8 dev lo table local 2>/dev/null || true
  ip -n "$NS_EXT2" route del local 127.0.0.1 dev lo table local 2>/dev/null || true
  ip -n "$NS_EXT2" route add 127.0.0.0/8 via 10.0.10.26 dev eth0
  ip netns exec "$NS_EXT2" sysctl -qw net.ipv4.conf.all.route_localnet=1 net.ipv4.conf.eth0.route_localnet=1
}
