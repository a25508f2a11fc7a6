# seed000 — seed 000's host: docker0 web exposing 8000 (-p 8000:8000) + a client, and a second bridge, proxy ON
# seed 000 (kien): a web server on docker0 published on the same port (-p 8000:8000), a client on
# docker0 (container -> host:8000) and one on a second user bridge (container -> host:8000 from
# another network). Userland proxy ON (Docker 20.10's default).
#   web    docker0 : httpd on :8000, -p 8000:8000
#   client docker0 : idle
#   other  otherbr (br-<id>, 172.24.0.0/24): idle
USERLAND_PROXY=true
scenario_up() {
  dk network create --driver bridge --subnet 172.24.0.0/24 otherbr >/dev/null
  web web -e PORT=8000 -p 8000:8000
  idle client
  idle other --network otherbr --ip 172.24.0.2
}
