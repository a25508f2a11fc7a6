# internal — an --internal network (br-isolated) beside docker0
# an --internal network "isolated" (172.21.0.0/24, bridge br-isolated) next to docker0;
# internal containers reach each other but never the outside.
#   iweb    172.21.0.2 : httpd on :80 (internal)
#   iclient 172.21.0.3 : idle (internal)
#   web     docker0    : httpd, -p 8000:80 (for contrast)
USERLAND_PROXY=true
scenario_up() {
  bridge_net isolated 172.21.0.0/24 br-isolated --internal
  web iweb --network isolated --ip 172.21.0.2
  idle iclient --network isolated --ip 172.21.0.3
  web web -p 8000:80
}
