/* journey_capture: folding a run of one connection's packets into one batch entry.
 *
 * With `fold` on, consecutive packets of one IPv4 TCP/UDP 5-tuple in a batch become one entry:
 * the latest packet's bytes and time, the number of packets, the sum of their wire lengths, the
 * first packet's time and the OR of their TCP flags. The main process then decodes, looks up and
 * counts the run once (src/pipeline/frame-intake.ts) instead of once a packet.
 *
 * What the main process would have decided per packet must not change. It leaves out a true copy
 * of a frame (seen twice on one interface: same fingerprint fields, less than 1 ms after the frame
 * its leg counted last, src/correlate/legs.ts). So each handle keeps, per 5-tuple (a direct-mapped
 * table), the fingerprint fields and time of the latest packet of that tuple that was not a
 * possible copy, updated exactly as a leg's are. A packet is *vouched* when the table has its
 * tuple and it is not a possible copy of that packet: only vouched packets are folded, and an
 * entry made of vouched packets is counted without the copy check. A packet of a tuple the table
 * does not hold (first seen, or its slot taken by another tuple) or a possible copy goes as an
 * entry of its own, judged by the main process as before. SYN, FIN and RST go alone (they open and
 * close connections: conntrack's view may change between two of them), as do fragments, IPv6 and
 * anything else.
 */
#include "capture.h"

#define FOLD_SLOTS 16384 /* a power of two */
#define TCP_OPEN_CLOSE 0x07 /* FIN SYN RST */

typedef struct {
  uint32_t src, dst, ports;
  uint8_t proto, used, ttl, pad;
  uint16_t len, id, ipsum, l4sum;
  uint32_t seq, ack;
  double t;
} fold_slot_t;

int jc_fold_init(cap_t *c) {
  if (c->fold_tab) return 1;
  c->fold_tab = calloc(FOLD_SLOTS, sizeof(fold_slot_t));
  return c->fold_tab != NULL;
}

static uint16_t be16(const u_char *p) { return (uint16_t)((p[0] << 8) | p[1]); }
static uint32_t be32(const u_char *p) { return ((uint32_t)p[0] << 24) | ((uint32_t)p[1] << 16) | ((uint32_t)p[2] << 8) | p[3]; }

/* Where the IPv4 header starts for this link type, or -1 (not IPv4, or a link type not read here). */
static int l3_offset(int dlt, const u_char *b, uint32_t caplen) {
  uint32_t o;
  uint16_t et;
  if (dlt == DLT_EN10MB) {
    if (caplen < 14) return -1;
    et = be16(b + 12);
    o = 14;
    if (et == 0x8100 || et == 0x88a8) { /* one VLAN tag */
      if (caplen < 18) return -1;
      et = be16(b + 16);
      o = 18;
    }
    return et == 0x0800 ? (int)o : -1;
  }
  if (dlt == DLT_LINUX_SLL) {
    if (caplen < 16) return -1;
    return be16(b + 14) == 0x0800 ? 16 : -1;
  }
#ifdef DLT_RAW
  if (dlt == DLT_RAW) return 0;
#endif
  return -1;
}

/* Reads an IPv4 TCP/UDP packet (not a fragment, whole transport header captured); 0 when it is not one. */
int jc_fold_parse(int dlt, const u_char *b, uint32_t caplen, jc_pkt_t *k) {
  int l3 = l3_offset(dlt, b, caplen);
  if (l3 < 0 || caplen < (uint32_t)l3 + 20) return 0;
  const u_char *ip = b + l3;
  uint32_t ihl = (uint32_t)(ip[0] & 0x0f) * 4;
  if ((ip[0] >> 4) != 4 || ihl < 20) return 0;
  if (be16(ip + 6) & 0x3fff) return 0; /* MF or an offset: a fragment */
  uint8_t proto = ip[9];
  uint32_t l4len = proto == 6 ? 20 : proto == 17 ? 8 : 0;
  if (l4len == 0 || caplen < (uint32_t)l3 + ihl + l4len) return 0;
  const u_char *l4 = ip + ihl;
  uint16_t total = be16(ip + 2);
  if (proto == 6) {
    uint32_t doff = (uint32_t)(l4[12] >> 4) * 4;
    if (doff < 20 || total < ihl + doff) return 0;
  } else if (total < ihl + 8) {
    return 0;
  }
  k->proto = proto;
  k->src = be32(ip + 12);
  k->dst = be32(ip + 16);
  k->ports = be32(l4);
  k->len = total;
  k->id = be16(ip + 4);
  k->ttl = ip[8];
  k->ipsum = be16(ip + 10);
  k->l4sum = be16(l4 + (proto == 6 ? 16 : 6));
  k->seq = proto == 6 ? be32(l4 + 4) : 0;
  k->ack = proto == 6 ? be32(l4 + 8) : 0;
  k->flags = proto == 6 ? l4[13] : 0;
  return 1;
}

static uint32_t slot_of(const jc_pkt_t *k) {
  uint32_t h = k->src * 0x9e3779b1u ^ k->dst * 0x85ebca6bu ^ k->ports * 0xc2b2ae35u ^ k->proto;
  return (h ^ (h >> 15)) & (FOLD_SLOTS - 1);
}

/*
 * Whether `k` at time `t` is vouched (its tuple is in the table and it is not a possible copy of
 * the tuple's latest packet there), updating the table as a leg is updated: a possible copy
 * changes nothing; another packet becomes the tuple's latest when it is not older.
 */
int jc_fold_vouch(cap_t *c, const jc_pkt_t *k, double t) {
  fold_slot_t *s = (fold_slot_t *)c->fold_tab + slot_of(k);
  int same = s->used && s->src == k->src && s->dst == k->dst && s->ports == k->ports && s->proto == k->proto;
  if (same) {
    double dt = t - s->t;
    int copy = s->len == k->len && s->id == k->id && s->ttl == k->ttl && s->ipsum == k->ipsum && s->l4sum == k->l4sum &&
               s->seq == k->seq && s->ack == k->ack && dt >= 0 && dt < 1000;
    if (copy) return 0;
    if (t < s->t) return 1;
  }
  s->used = 1;
  s->src = k->src;
  s->dst = k->dst;
  s->ports = k->ports;
  s->proto = k->proto;
  s->len = k->len;
  s->id = k->id;
  s->ttl = k->ttl;
  s->ipsum = k->ipsum;
  s->l4sum = k->l4sum;
  s->seq = k->seq;
  s->ack = k->ack;
  s->t = t;
  return same;
}

/* Whether a vouched packet `k` may join the batch's open run: the last entry, same tuple, not older, counts not overflowing. */
int jc_fold_joins(const cap_t *c, const jc_pkt_t *k, double t, uint32_t wire) {
  if (c->run < 0 || (uint32_t)c->run + 1 != c->count) return 0;
  const jc_pkt_t *r = &c->run_key;
  if (r->src != k->src || r->dst != k->dst || r->ports != k->ports || r->proto != k->proto) return 0;
  uint32_t i = (uint32_t)c->run;
  return t >= c->times[i] && c->pkts[i] < UINT32_MAX && c->wires[i] <= UINT32_MAX - wire;
}

int jc_fold_may(const jc_pkt_t *k) {
  return !(k->proto == 6 && (k->flags & TCP_OPEN_CLOSE));
}
