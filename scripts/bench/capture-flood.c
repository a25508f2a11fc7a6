/*
 * UDP flood for scripts/bench/capture.mjs: sends small UDP datagrams to DST:PORT at RATE
 * packets/s for SECONDS, in sendmmsg bursts, paced by CLOCK_MONOTONIC. Prints the number sent.
 * Usage: capture-flood DST PORT RATE SECONDS [PAYLOAD_BYTES] [FLOWS] [SPREAD] [NEW_PER_SECOND]
 * With FLOWS > 1 the bursts go round FLOWS sockets (distinct source ports: FLOWS 5-tuples), and
 * every 8th burst one of them is replaced by a new socket (a new source port: new connections
 * all the time). A burst goes to one socket, so one tuple's packets come in runs.
 * With SPREAD > 1 the packets are interleaved instead: FLOWS / SPREAD sockets, each sending to
 * SPREAD destination ports (PORT .. PORT+SPREAD-1), each packet to the next port (round the ports
 * across bursts): no two packets in a row share a 5-tuple. A socket is replaced every 8 × SPREAD bursts (SPREAD new
 * tuples), the same number of new connections per burst.
 * With NEW_PER_SECOND > 0 sockets are replaced on a clock instead: NEW_PER_SECOND new tuples a
 * second whatever the packet rate and burst sizes.
 */
#define _GNU_SOURCE
#include <arpa/inet.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#define BURST 32

/* A UDP socket connected to sa: one 5-tuple (the kernel picks the source port). */
static int open_flow(const struct sockaddr_in *sa) {
  int fd = socket(AF_INET, SOCK_DGRAM, 0);
  if (fd < 0) { perror("socket"); return -1; }
  int sndbuf = 4 << 20;
  setsockopt(fd, SOL_SOCKET, SO_SNDBUF, &sndbuf, sizeof sndbuf);
  /* unconnected (sa NULL): each message names its destination, the source port is bound at once */
  struct sockaddr_in any = {.sin_family = AF_INET};
  if (!sa && bind(fd, (const struct sockaddr *)&any, sizeof any) < 0) { perror("bind"); close(fd); return -1; }
  if (sa && connect(fd, (const struct sockaddr *)sa, sizeof *sa) < 0) { perror("connect"); close(fd); return -1; }
  return fd;
}

static double now(void) {
  struct timespec ts;
  clock_gettime(CLOCK_MONOTONIC, &ts);
  return ts.tv_sec + ts.tv_nsec / 1e9;
}

int main(int argc, char **argv) {
  if (argc < 5) {
    fprintf(stderr, "usage: %s DST PORT RATE SECONDS [PAYLOAD]\n", argv[0]);
    return 2;
  }
  const char *dst = argv[1];
  int port = atoi(argv[2]);
  double rate = atof(argv[3]);
  double secs = atof(argv[4]);
  int payload = argc > 5 ? atoi(argv[5]) : 18; /* 18 bytes: a 60-byte frame */
  int nflows = argc > 6 ? atoi(argv[6]) : 1;
  int spread = argc > 7 ? atoi(argv[7]) : 1;
  if (spread < 1) spread = 1;
  if (spread > BURST) spread = BURST;
  double new_ps = argc > 8 ? atof(argv[8]) : 0;
  nflows = nflows / spread;
  if (nflows < 1) nflows = 1;
  struct sockaddr_in sa = {0};
  sa.sin_family = AF_INET;
  sa.sin_port = htons(port);
  inet_pton(AF_INET, dst, &sa.sin_addr);
  static struct sockaddr_in dsts[BURST];
  for (int i = 0; i < spread; i++) {
    dsts[i] = sa;
    dsts[i].sin_port = htons(port + i);
  }
  int *fds = calloc(nflows, sizeof(int));
  for (int i = 0; i < nflows; i++) {
    fds[i] = open_flow(spread > 1 ? NULL : &sa);
    if (fds[i] < 0) return 1;
  }
  unsigned long long bursts = 0;
  static char buf[BURST][2048];
  struct mmsghdr msgs[BURST];
  struct iovec iov[BURST];
  memset(msgs, 0, sizeof msgs);
  for (int i = 0; i < BURST; i++) {
    memset(buf[i], 'j', payload);
    iov[i].iov_base = buf[i];
    iov[i].iov_len = payload;
    msgs[i].msg_hdr.msg_iov = &iov[i];
    msgs[i].msg_hdr.msg_iovlen = 1;
    if (spread > 1) {
      msgs[i].msg_hdr.msg_name = &dsts[i % spread];
      msgs[i].msg_hdr.msg_namelen = sizeof dsts[0];
    }
  }
  unsigned long long sent = 0, seq = 0;
  double t0 = now(), end = t0 + secs;
  double next_new = t0;
  for (;;) {
    double t = now();
    if (t >= end) break;
    double due = (t - t0) * rate;
    if (rate > 0 && sent >= due) {
      /* ahead of schedule: wait a little */
      double wait = (sent - due) / rate;
      if (wait > 0.0002) {
        struct timespec ts = {0, (long)(wait * 1e9 / 2)};
        nanosleep(&ts, NULL);
      }
      continue;
    }
    int n = BURST;
    if (rate > 0 && due - sent < n) n = (int)(due - sent) + 1;
    for (int i = 0; i < n; i++) memcpy(buf[i], &seq, sizeof seq), seq++;
    /* interleaved: the ports go on from where the last burst left them (small bursts reach them all) */
    if (spread > 1)
      for (int i = 0; i < n; i++) msgs[i].msg_hdr.msg_name = &dsts[(sent + (unsigned long long)i) % (unsigned)spread];
    int k = (int)(bursts % (unsigned long long)nflows);
    int renew = new_ps > 0 ? t >= next_new : bursts % (8ULL * (unsigned)spread) == 8ULL * (unsigned)spread - 1;
    if (new_ps > 0 && renew) next_new += spread / new_ps;
    if (nflows > 1 && renew) {
      /* a new connection (SPREAD new tuples) in place of an old one */
      int nfd = open_flow(spread > 1 ? NULL : &sa);
      if (nfd >= 0) { close(fds[k]); fds[k] = nfd; }
    }
    bursts++;
    int r = sendmmsg(fds[k], msgs, n, 0);
    if (r > 0) sent += r;
    else seq -= n;
  }
  double el = now() - t0;
  printf("%llu %.3f\n", sent, el);
  return 0;
}
