# seed002 — seed 002's host: a node app -p 8799:1337 on docker0, userland proxy ON
# seed 002: `docker run -d -p 8799:1337 ... nodejs /app/app.js`, userland proxy ON.
#   app    docker0 : httpd on :1337, -p 8799:1337
#   client docker0 : idle
USERLAND_PROXY=true
scenario_up() {
  web app -e PORT=1337 -p 8799:1337
  idle client
}
