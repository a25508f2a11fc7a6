/*
 * New-connection burst for scripts/bench/native-conntrack.mjs: sends one UDP datagram from each of
 * COUNT distinct source ports (raw socket, IP_HDRINCL) from SRC to DST:PORT, as fast as it can,
 * so the receiving namespace's conntrack creates COUNT entries. Prints the number sent.
 * Usage: native-flows SRC DST PORT COUNT
 */
#include <arpa/inet.h>
#include <netinet/ip.h>
#include <netinet/udp.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

int main(int argc, char **argv) {
  if (argc < 5) {
    fprintf(stderr, "usage: %s SRC DST PORT COUNT\n", argv[0]);
    return 2;
  }
  int count = atoi(argv[4]);
  int fd = socket(AF_INET, SOCK_RAW, IPPROTO_RAW);
  if (fd < 0) { perror("socket"); return 1; }
  struct sockaddr_in to = {0};
  to.sin_family = AF_INET;
  inet_pton(AF_INET, argv[2], &to.sin_addr);
  unsigned char pkt[sizeof(struct iphdr) + sizeof(struct udphdr) + 4];
  memset(pkt, 0, sizeof pkt);
  struct iphdr *ip = (struct iphdr *)pkt;
  struct udphdr *udp = (struct udphdr *)(pkt + sizeof(struct iphdr));
  ip->version = 4;
  ip->ihl = 5;
  ip->ttl = 64;
  ip->protocol = IPPROTO_UDP;
  ip->tot_len = htons(sizeof pkt);
  inet_pton(AF_INET, argv[1], &ip->saddr);
  ip->daddr = to.sin_addr.s_addr;
  udp->dest = htons(atoi(argv[3]));
  udp->len = htons(sizeof(struct udphdr) + 4);
  int sent = 0;
  for (int i = 0; i < count; i++) {
    /* source ports 1024.. then wrap onto a second source address byte to stay unique */
    udp->source = htons(1024 + (i % 60000));
    ip->id = htons(i);
    if (i >= 60000) ((unsigned char *)&ip->saddr)[3] = (unsigned char)(1 + i / 60000);
    if (sendto(fd, pkt, sizeof pkt, 0, (struct sockaddr *)&to, sizeof to) == (ssize_t)sizeof pkt) sent++;
  }
  printf("%d\n", sent);
  return 0;
}
