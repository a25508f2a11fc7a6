# multi — docker0 + br-neta + br-netb: cross-network isolation drops, proxy OFF
# several bridges at once: docker0 plus user bridges "neta" (172.22.0.0/24, br-neta) and
# "netb" (172.23.0.0/24, br-netb); traffic between them is dropped by DOCKER-ISOLATION-STAGE-2.
#   web   docker0  : httpd, -p 8000:80
#   aweb  neta .2  : httpd, -p 8001:80
#   bcli  netb .2  : idle (cross-network client)
#   client docker0 : idle
USERLAND_PROXY=false
scenario_up() {
  bridge_net neta 172.22.0.0/24 br-neta
  bridge_net netb 172.23.0.0/24 br-netb
  web web -p 8000:80
  web aweb --network neta --ip 172.22.0.2 -p 8001:80
  idle bcli --network netb --ip 172.23.0.2
  idle client
}
