# seed001 — seed 001's host: nginx-like web -p 80:80 on docker0, FORWARD policy DROP, proxy ON
# seed 001: `docker run --name nginx -p 80:80`, Docker 20.10 (filter FORWARD policy DROP), userland
# proxy ON (docker-proxy listens on 0.0.0.0:80). A client container makes outbound HTTP (port 80
# too): it is not the published port.
#   nginx  docker0 : httpd on :80, -p 80:80
#   client docker0 : idle
USERLAND_PROXY=true
scenario_up() {
  web nginx -p 80:80
  idle client
}
