# docker1 — user bridge docker1 172.20.0.0/24, TCP 8080 + UDP 1812/514 published, proxy OFF (seed 003)
# seed 003: a user-defined bridge "docker1" on 172.20.0.0/24, userland proxy OFF.
#   proxy  172.20.0.2 : httpd on :8080, -p 8080:8080/tcp   (squid in the seed)
#   syslog 172.20.0.3 : UDP echo on :514, -p 514:514/udp   (rsyslog)
#   radius 172.20.0.4 : UDP echo on :1812, -p 1812:1812/udp (freeRADIUS)
#   client 172.20.0.10: idle
USERLAND_PROXY=false
scenario_up() {
  bridge_net docker1 172.20.0.0/24 docker1
  web proxy --network docker1 --ip 172.20.0.2 -e PORT=8080 -p 8080:8080/tcp
  idle syslog --network docker1 --ip 172.20.0.3 -p 514:514/udp
  idle radius --network docker1 --ip 172.20.0.4 -p 1812:1812/udp
  idle client --network docker1 --ip 172.20.0.10
  udp_echo syslog 514
  udp_echo radius 1812
}
