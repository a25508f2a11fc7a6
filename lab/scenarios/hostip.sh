# hostip — -p 10.0.10.26:81:80, pings to the host and the outside (seed 004)
# seed 004: a port published on one host address, -p 10.0.10.26:81:80, userland proxy ON;
# the client pings the host and the outside.
USERLAND_PROXY=true
scenario_up() {
  web web -p 10.0.10.26:81:80
  idle client
}
