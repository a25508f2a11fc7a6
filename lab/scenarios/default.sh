# default — docker0, web -p 8000:80 + client, userland proxy ON (seeds 000-002)
# seeds 000–002: the default bridge docker0 (172.17.0.0/16), userland proxy ON.
#   web    : busybox httpd on :80, published -p 8000:80
#   client : an idle container on docker0 (hairpin, outside)
USERLAND_PROXY=true
scenario_up() {
  web web -p 8000:80
  idle client
}
