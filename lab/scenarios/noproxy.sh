# noproxy — as default with --userland-proxy=false: hairpin NAT instead of docker-proxy
# as default, with --userland-proxy=false: hairpin NAT instead of docker-proxy
# (-o docker0 --src-type LOCAL MASQUERADE, hairpin_mode on the bridge ports).
USERLAND_PROXY=false
scenario_up() {
  web web -p 8000:80
  idle client
}
