# ipv6 — dual-stack: dockerd with IPv6 and ip6tables (experimental on 20.10), web -p 8000:80, client; proxy OFF; ip6 DOCKER-USER drops ext2
# The uplink carries fd00:10::/64 beside 10.0.10.0/24 (the outside is also 2001:db8:ff::10);
# docker0 gets fd00:17::/64 (fixed-cidr-v6), so each container has an IPv6 address next to its
# IPv4 one. ip6tables=true makes dockerd write the same DNAT/MASQUERADE/FORWARD rules for IPv6
# (NAT66); the userland proxy is off so every published IPv6 packet goes through those rules.
USERLAND_PROXY=false
IPV6=1
IP6TABLES=true
FIXED_CIDR_V6=fd00:17::/64
scenario_up() {
  web web -p 8000:80
  idle client
  # Docker 20.10 makes no DOCKER-USER chain for IPv6: made here as a user would, first in FORWARD,
  # with one rule of the user's own: ext2 (fd00:10::6) may not reach the containers over IPv6
  nsx "$NS_HOST" ip6tables -N DOCKER-USER
  nsx "$NS_HOST" ip6tables -A DOCKER-USER -s fd00:10::6/128 -j DROP
  nsx "$NS_HOST" ip6tables -A DOCKER-USER -j RETURN
  nsx "$NS_HOST" ip6tables -I FORWARD 1 -j DOCKER-USER
}
