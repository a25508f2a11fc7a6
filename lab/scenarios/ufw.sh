# ufw — Debian's ufw enabled in the Docker host's namespace (default deny incoming) with a port it
# denies (8000, the published web port) and one it allows (22): the published port stays reachable,
# because the DNAT'd packet crosses FORWARD, where Docker's rules come first, never INPUT. ufw runs
# in a private mount namespace over copies of /etc/ufw and /etc/default/ufw (the machine's own ufw
# files are untouched).
USERLAND_PROXY=false
scenario_up() {
  web web -p 8000:80
  idle client
  local d="$DIR/ufw"
  mkdir -p "$d"
  cp -a /etc/ufw "$d/etc-ufw"
  cp /etc/default/ufw "$d/default-ufw"
  sed -i 's/^DEFAULT_INPUT_POLICY=.*/DEFAULT_INPUT_POLICY="DROP"/' "$d/default-ufw"
  unshare -m sh -c "mount --bind '$d/etc-ufw' /etc/ufw && mount --bind '$d/default-ufw' /etc/default/ufw && \
    ip netns exec '$NS_HOST' ufw --force enable >/dev/null && ip netns exec '$NS_HOST' ufw allow 22/tcp >/dev/null && \
    ip netns exec '$NS_HOST' ufw deny 8000/tcp >/dev/null"
}
