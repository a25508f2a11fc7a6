# noicc — daemon icc=false: no container-to-container traffic on docker0
# the daemon with icc=false: containers on docker0 cannot talk to each other
# (filter FORWARD -i docker0 -o docker0 -j DROP), published ports still work.
USERLAND_PROXY=true
ICC=false
scenario_up() {
  web web -p 8000:80
  idle client
}
