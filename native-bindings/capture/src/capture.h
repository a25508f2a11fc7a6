/*
 * What the parts of journey_capture share: the handle (one pcap_t and the scratch columns of one
 * nextBatch), the N-API argument helpers (napi-args.c), and the functions the module exports
 * (capture-open.c, capture-batch.c, capture.c). The API is described in capture.c.
 */
#ifndef JOURNEY_CAPTURE_H
#define JOURNEY_CAPTURE_H

#define _GNU_SOURCE
#define NAPI_VERSION 8
#include <node_api.h>

#include <errno.h>
#include <fcntl.h>
#include <pcap/pcap.h>
#include <poll.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/eventfd.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#define HDR_BYTES 13 /* u32 length + u8 type + u32 count + u32 dataLen */
#define FOLD_POLL_MS 10 /* with runs open, a call waits at most this long for the ring */
#define FOLD_MAX_FRAMES 16 /* a batch takes at most this many packets per entry it may hold */
#define FOLD_VOUCHED 0x100 /* aux column: the entry's packets are not copies (capture-fold.c) */

/* An IPv4 TCP/UDP packet's 5-tuple and the fields a copy of it repeats (capture-fold.c). */
typedef struct {
  uint32_t src, dst, ports;
  uint8_t proto, ttl, flags;
  uint16_t len, id, ipsum, l4sum;
  uint32_t seq, ack;
} jc_pkt_t;

typedef struct {
  pcap_t *p;
  int fd;     /* pcap_get_selectable_fd */
  int wakefd; /* eventfd: wake() / close() interrupt a wait */
  int busy;   /* a nextBatch is in flight */
  volatile int close_pending; /* set on the JS thread, read by the pool thread */
  int closed;
  uint8_t msg_type;
  int write_fd; /* nextBatchSync: write the message to this fd itself (-1: no) */
  int offline; /* a savefile (openOffline): end of file ends a call, no waiting */
  int dlt;     /* pcap_datalink */
  int fold;    /* fold runs of one tuple's packets (capture-fold.c) */
  void *fold_tab;  /* per tuple: copy-check fields and its open run */
  void *fold_fifo; /* open runs in the order they were opened */
  uint32_t fifo_head, fifo_len;
  uint32_t fold_open;    /* runs not handed over yet */
  double fold_now;       /* the latest packet's time (a file's clock) */
  volatile int fold_flush; /* hand every open run over at the end of the next call (stop) */

  /* scratch columns, reused */
  double *times;
  uint32_t *lens;
  uint32_t *wires;
  double *first; /* folded: the first packet's time, the number of packets, TCP flags | FOLD_VOUCHED */
  uint32_t *pkts;
  uint32_t *aux;
  uint32_t frames_cap;
  uint8_t *data;
  size_t data_cap;

  /* one call */
  uint32_t count; /* entries */
  uint32_t frames; /* packets taken from libpcap (more than entries when runs were folded) */
  int32_t run;     /* the entry a run is folded into, or -1 */
  jc_pkt_t run_key;
  size_t used;
  uint32_t max_frames;
  size_t max_bytes;
  int wait_ms;
  int oom;
  char err[PCAP_ERRBUF_SIZE + 64];
  int have_stats;
  struct pcap_stat st;

  uint8_t *out;      /* caller's buffer for the message (reused by the caller), or NULL */
  size_t out_len;
  napi_ref out_ref;  /* keeps it alive while the call is in flight */

  napi_async_work work;
  napi_deferred deferred;
  napi_ref self; /* keeps the external alive while a call is in flight */
} cap_t;

#define CHECK(call)                                                          \
  do {                                                                       \
    if ((call) != napi_ok) return jc_throw_code(env, "EINVAL", #call " failed"); \
  } while (0)

/* napi-args.c: errors thrown with a `code`, options read, results set */
napi_value jc_throw_code(napi_env env, const char *code, const char *msg);
int jc_get_prop(napi_env env, napi_value obj, const char *name, napi_value *out);
int jc_get_int(napi_env env, napi_value obj, const char *name, int64_t def, int64_t *out);
int jc_get_bool(napi_env env, napi_value obj, const char *name, int def);
char *jc_get_str(napi_env env, napi_value obj, const char *name, int *bad);
void jc_set_num(napi_env env, napi_value obj, const char *name, double v);
void jc_set_str(napi_env env, napi_value obj, const char *name, const char *s);
cap_t *jc_get_cap(napi_env env, napi_value v);

/* capture-open.c */
void jc_cap_release(cap_t *c);
napi_value jc_open(napi_env env, napi_callback_info info);
napi_value jc_open_offline(napi_env env, napi_callback_info info);

/* capture-fold.c */
int jc_fold_init(cap_t *c);
int jc_fold_parse(int dlt, const u_char *b, uint32_t caplen, jc_pkt_t *k);
int jc_fold_packet(cap_t *c, const u_char *bytes, uint32_t caplen, uint32_t wire, double t, uint32_t *aux, int *run_head);
void jc_fold_expire(cap_t *c, double now_us, int all);

/* capture-batch.c */
int jc_append(cap_t *c, const u_char *bytes, uint32_t caplen, double t, double first, uint32_t wire, uint32_t pkts, uint32_t aux);
napi_value jc_next_batch(napi_env env, napi_callback_info info);
napi_value jc_next_batch_sync(napi_env env, napi_callback_info info);

#endif
