/* Sends N small UDP datagrams to 127.0.0.1:PORT from a socket in the current namespace and prints
 * the nanoseconds per send. Each send takes the packet through output, postrouting, (lo) prerouting
 * and input: one pass through netfilter. Used by scripts/bench/explain.mjs. */
#include <arpa/inet.h>
#include <netinet/in.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

int main(int argc, char **argv) {
  long n = argc > 1 ? atol(argv[1]) : 100000;
  int port = argc > 2 ? atoi(argv[2]) : 9;
  int rx = socket(AF_INET, SOCK_DGRAM, 0), tx = socket(AF_INET, SOCK_DGRAM, 0);
  struct sockaddr_in a = {0};
  a.sin_family = AF_INET;
  a.sin_port = htons(port);
  a.sin_addr.s_addr = htonl(0x7f000001);
  if (bind(rx, (struct sockaddr *)&a, sizeof a) != 0) { perror("bind"); return 1; }
  int small = 4096;
  setsockopt(rx, SOL_SOCKET, SO_RCVBUF, &small, sizeof small);
  char buf[16] = "journey";
  struct timespec t0, t1;
  for (long i = 0; i < 1000; i++) sendto(tx, buf, sizeof buf, 0, (struct sockaddr *)&a, sizeof a);
  clock_gettime(CLOCK_MONOTONIC, &t0);
  for (long i = 0; i < n; i++) sendto(tx, buf, sizeof buf, 0, (struct sockaddr *)&a, sizeof a);
  clock_gettime(CLOCK_MONOTONIC, &t1);
  double ns = (t1.tv_sec - t0.tv_sec) * 1e9 + (t1.tv_nsec - t0.tv_nsec);
  printf("%.1f\n", ns / n);
  return 0;
}
