/* journey_capture: folding a connection's packets into one batch entry.
 *
 * With `fold` on, packets of one IPv4 TCP/UDP 5-tuple become one entry: the latest packet's bytes
 * and time, the number of packets, the sum of their wire lengths, the first packet's time and the
 * OR of their TCP flags. The main process then decodes, looks up and counts them once
 * (src/pipeline/frame-intake.ts) instead of once a packet. Two ways:
 *   - a small packet (up to FOLD_SNAP bytes captured) joins its tuple's open run, kept in the
 *     tuple's slot across batches; the run is handed over FOLD_WINDOW_US after its first packet,
 *     before any packet of its tuple that goes alone, when another tuple takes its slot, at the end
 *     of a file and when asked (stop): interleaved packets of thousands of connections fold too;
 *   - a larger one joins the batch's last entry when that is a run of the same tuple (a bulk
 *     transfer's consecutive segments).
 * A tuple's packets are handed over in their order; packets of different tuples may be reordered
 * (the correlator counts each tuple's packets on its own leg, so nothing it shows depends on that).
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
 * anything else; an IPv4 TCP/UDP packet that cannot be read whole (a fragment, a cut header) may
 * still be counted on an open run's leg, so every open run is handed over before it.
 */
#include "capture.h"

#define FOLD_SLOTS 8192 /* a power of two */
#define FOLD_SNAP 160 /* a packet kept in a run across batches is at most this long */
#define FOLD_WINDOW_US 50000.0 /* a run is handed over this long after its first packet */
#define FOLD_IDLE_US 1000000.0 /* a tuple quiet this long: its next packet goes alone (it may open a new connection) */
#define TCP_OPEN_CLOSE 0x07 /* FIN SYN RST */

typedef struct {
  /* the tuple and its latest packet's copy-check fields (as a leg keeps them) */
  uint32_t src, dst, ports;
  uint8_t proto, used, ttl, open;
  uint16_t len, id, ipsum, l4sum;
  uint32_t seq, ack;
  double t;
  /* the open run: packets not handed over yet, its latest frame */
  uint32_t pkts, wire, caplen, flags;
  double first, last;
  uint8_t frame[FOLD_SNAP];
} fold_slot_t;

/* open runs in the order they were opened (slot, first time): a stale one (handed over early) is skipped */
typedef struct {
  uint32_t slot;
  double first;
} fold_fifo_t;

#define FIFO_CAP (2 * FOLD_SLOTS)

int jc_fold_init(cap_t *c) {
  if (c->fold_tab) return 1;
  c->fold_tab = calloc(FOLD_SLOTS, sizeof(fold_slot_t));
  c->fold_fifo = calloc(FIFO_CAP, sizeof(fold_fifo_t));
  return c->fold_tab != NULL && c->fold_fifo != NULL;
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

/*
 * Reads an IPv4 TCP/UDP packet (not a fragment, whole transport header captured): 1. 0 when the
 * frame is not IPv4 TCP/UDP; -1 when it is but cannot be read so (a fragment, a cut header): the
 * main process may still count it on the leg of a tuple whose run is open.
 */
int jc_fold_parse(int dlt, const u_char *b, uint32_t caplen, jc_pkt_t *k) {
  int l3 = l3_offset(dlt, b, caplen);
  if (l3 < 0 || caplen < (uint32_t)l3 + 20) return 0;
  const u_char *ip = b + l3;
  uint32_t ihl = (uint32_t)(ip[0] & 0x0f) * 4;
  uint8_t proto = ip[9];
  if ((ip[0] >> 4) != 4 || (proto != 6 && proto != 17)) return 0;
  if (ihl < 20) return -1;
  if (be16(ip + 6) & 0x3fff) return -1; /* MF or an offset: a fragment */
  uint32_t l4len = proto == 6 ? 20 : 8;
  if (caplen < (uint32_t)l3 + ihl + l4len) return -1;
  const u_char *l4 = ip + ihl;
  uint16_t total = be16(ip + 2);
  if (proto == 6) {
    uint32_t doff = (uint32_t)(l4[12] >> 4) * 4;
    if (doff < 20 || total < ihl + doff) return -1;
  } else if (total < ihl + 8) {
    return -1;
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

static int same_tuple(const fold_slot_t *s, const jc_pkt_t *k) {
  return s->used && s->src == k->src && s->dst == k->dst && s->ports == k->ports && s->proto == k->proto;
}

/* hands the slot's open run over as an entry of the batch */
static int emit_run(cap_t *c, fold_slot_t *s) {
  if (!jc_append(c, s->frame, s->caplen, s->last, s->first, s->wire, s->pkts, FOLD_VOUCHED | s->flags)) return 0;
  s->open = 0;
  c->fold_open--;
  return 1;
}

/*
 * Whether `k` at time `t` is vouched (its tuple is in the table and it is not a possible copy of
 * the tuple's latest packet there), updating the table as a leg is updated: a possible copy
 * changes nothing; another packet becomes the tuple's latest when it is not older. The first
 * packet after the tuple was quiet for FOLD_IDLE_US is not vouched: it goes alone, at once, as
 * the first packet of a connection that reuses the tuple would (its flow.start never waits for a
 * run to be handed over).
 */
static int vouch(fold_slot_t *s, const jc_pkt_t *k, double t) {
  int same = same_tuple(s, k);
  if (same && t - s->t >= FOLD_IDLE_US) same = 0;
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

/* Whether a vouched packet may join the batch's last entry: a run of the same tuple, not older, counts not overflowing. */
static int joins_last(const cap_t *c, const jc_pkt_t *k, double t, uint32_t wire) {
  if (c->run < 0 || (uint32_t)c->run + 1 != c->count) return 0;
  const jc_pkt_t *r = &c->run_key;
  if (r->src != k->src || r->dst != k->dst || r->ports != k->ports || r->proto != k->proto) return 0;
  uint32_t i = (uint32_t)c->run;
  return t >= c->times[i] && c->pkts[i] < UINT32_MAX && c->wires[i] <= UINT32_MAX - wire;
}

/* the batch's last entry takes this packet's place: its bytes and time, one packet more */
static void join_last(cap_t *c, const u_char *bytes, uint32_t caplen, uint32_t wire, double t, uint8_t flags) {
  uint32_t i = (uint32_t)c->run;
  size_t start = c->used - c->lens[i];
  memcpy(c->data + start, bytes, caplen);
  c->used = start + caplen;
  c->lens[i] = caplen;
  c->times[i] = t;
  c->wires[i] += wire;
  c->pkts[i]++;
  c->aux[i] |= flags;
}

static void fifo_push(cap_t *c, uint32_t slot, double first) {
  fold_fifo_t *q = c->fold_fifo;
  if (c->fifo_len == FIFO_CAP) {
    /* full (runs handed over early left stale entries): the oldest run goes now */
    fold_fifo_t h = q[c->fifo_head];
    c->fifo_head = (c->fifo_head + 1) % FIFO_CAP;
    c->fifo_len--;
    fold_slot_t *s = (fold_slot_t *)c->fold_tab + h.slot;
    if (s->open && s->first == h.first) emit_run(c, s);
  }
  q[(c->fifo_head + c->fifo_len) % FIFO_CAP] = (fold_fifo_t){slot, first};
  c->fifo_len++;
}

/*
 * One packet with folding on: 1 when it was taken (into its tuple's open run, or the batch's last
 * entry), 0 when it goes as an entry of its own (its tuple's open run handed over before it), with
 * *aux its FOLD_VOUCHED | flags and *run_head whether later packets may join it.
 */
int jc_fold_packet(cap_t *c, const u_char *bytes, uint32_t caplen, uint32_t wire, double t, uint32_t *aux, int *run_head) {
  jc_pkt_t k;
  *aux = 0;
  *run_head = 0;
  if (t > c->fold_now) c->fold_now = t;
  int parsed = jc_fold_parse(c->dlt, bytes, caplen, &k);
  if (parsed < 0) jc_fold_expire(c, 0, 1); /* a packet that may belong to any open run: they all go first */
  if (parsed <= 0) return 0;
  uint32_t slot = slot_of(&k);
  fold_slot_t *s = (fold_slot_t *)c->fold_tab + slot;
  /* another tuple takes the slot: its open run goes first */
  if (s->open && !same_tuple(s, &k) && !emit_run(c, s)) return 0;
  int vouched = vouch(s, &k, t);
  int foldable = vouched && !(k.proto == 6 && (k.flags & TCP_OPEN_CLOSE));
  if (foldable && caplen <= FOLD_SNAP) {
    if (!s->open) {
      s->open = 1;
      c->fold_open++;
      s->pkts = 0;
      s->wire = 0;
      s->flags = 0;
      s->first = t;
      s->last = t;
      fifo_push(c, slot, t);
    }
    if (s->wire <= UINT32_MAX - wire && s->pkts < UINT32_MAX && t >= s->last) {
      memcpy(s->frame, bytes, caplen);
      s->caplen = caplen;
      s->last = t;
      s->pkts++;
      s->wire += wire;
      s->flags |= k.flags;
      return 1;
    }
  }
  /* the packet goes alone or joins the batch's last entry: its tuple's earlier packets first */
  if (s->open && same_tuple(s, &k) && !emit_run(c, s)) return 0;
  if (foldable && joins_last(c, &k, t, wire)) {
    join_last(c, bytes, caplen, wire, t, k.flags);
    return 1;
  }
  if (vouched) *aux = FOLD_VOUCHED | k.flags;
  if (foldable) {
    *run_head = 1;
    c->run_key = k;
  }
  return 0;
}

/* Hands over the runs opened FOLD_WINDOW_US or more before `now_us` (all of them with `all`). */
void jc_fold_expire(cap_t *c, double now_us, int all) {
  fold_fifo_t *q = c->fold_fifo;
  while (c->fifo_len > 0) {
    fold_fifo_t h = q[c->fifo_head];
    fold_slot_t *s = (fold_slot_t *)c->fold_tab + h.slot;
    int live = s->open && s->first == h.first;
    if (live && !all && now_us - h.first < FOLD_WINDOW_US) break;
    if (live && !emit_run(c, s)) break; /* out of memory: left for the next call */
    c->fifo_head = (c->fifo_head + 1) % FIFO_CAP;
    c->fifo_len--;
  }
}
