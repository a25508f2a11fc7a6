# seed002noproxy — seed 002's host with --userland-proxy=false: -p 8799:1337 by hairpin NAT
# seed 002 with the userland proxy OFF: the same app, reached by NAT only.
#   app    docker0 : httpd on :1337, -p 8799:1337
#   client docker0 : idle
USERLAND_PROXY=false
scenario_up() {
  web app -e PORT=1337 -p 8799:1337
  idle client
}
