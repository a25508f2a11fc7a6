# seed003 — seed 003's host: firewalld beside dockerd, bridge "docker1", radius UDP 1812, masquerade in the docker zone, proxy OFF
# seed 003 (CentOS, firewalld with nftables): a user bridge named by com.docker.network.bridge.name
# (docker1, 172.20.0.0/24), freeRADIUS published on 1812/udp, the userland proxy OFF, and
# masquerade on firewalld's docker zone, so requests reach the container from 172.20.0.1.
#   radius 172.20.0.4 : UDP echo on :1812, -p 1812:1812/udp
#   client 172.20.0.10: idle
USERLAND_PROXY=false
FIREWALLD=1
scenario_up() {
  bridge_net docker1 172.20.0.0/24 docker1 -o com.docker.network.bridge.enable_ip_masquerade=true
  idle radius --network docker1 --ip 172.20.0.4 -p 1812:1812/udp
  idle client --network docker1 --ip 172.20.0.10
  udp_echo radius 1812
  DBUS_SYSTEM_BUS_ADDRESS="unix:path=$DIR/bus.sock" nsx "$NS_HOST" firewall-cmd --zone=docker --add-masquerade >/dev/null
}
