# ipv6proxy — dual-stack uplink, dockerd without IPv6 rules: docker-proxy carries [::]:8000 to web's IPv4 address
# The uplink carries fd00:10::/64 beside 10.0.10.0/24, the engine has no IPv6 (no ip6tables
# rules, IPv4-only containers) and the userland proxy on: a client reaching [fd00:10::26]:8000
# talks to docker-proxy listening on [::]:8000, which opens a second IPv4 connection from the
# gateway 172.17.0.1 to web:80. The container never sees the client's address.
USERLAND_PROXY=true
DUALSTACK=1
scenario_up() {
  web web -p 8000:80
  idle client
}
