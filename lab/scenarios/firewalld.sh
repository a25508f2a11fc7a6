# firewalld — firewalld (inet firewalld) beside dockerd on a private D-Bus bus, proxy OFF (seed 003)
# seed 003's CentOS host: firewalld (nftables backend, table inet firewalld) runs in the
# host namespace on a private D-Bus system bus, dockerd talks to it (docker zone, passthrough).
# Userland proxy OFF, as in the seed.
USERLAND_PROXY=false
FIREWALLD=1
scenario_up() {
  web web -p 8000:80
  idle client
}
