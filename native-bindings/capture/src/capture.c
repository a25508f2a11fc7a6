/*
 * journey_capture: libpcap for journey's capture workers, handing JavaScript whole batches.
 *
 * One handle = one pcap_t (TPACKET_V3 on Linux: a ring of blocks, each retired to user space
 * when full or after the buffer timeout). nextBatch() runs in the libuv thread pool: it waits
 * (poll on the pcap fd and a wake eventfd, at most waitMs) until a block is ready, drains the
 * ring with pcap_dispatch (non-blocking) into C scratch columns, and resolves with ONE Buffer
 * that is already a complete BATCH message of the worker pipe protocol (src/capture/protocol.ts):
 *
 *   u32 LE length of what follows, u8 type, u32 count, u32 dataLen,
 *   f64 timesUs[count], u32 capLens[count], u32 wireLens[count], frames back to back
 *
 * so the worker writes it to its pipe as is: no JavaScript per packet. Kernel statistics
 * (pcap_stats) are taken on the same thread after each drain and returned with the batch.
 *
 * Context-aware (NAPI_MODULE_INIT, no static JavaScript state): loadable in several
 * worker_threads. A handle is used by one nextBatch at a time; close() while one is in flight
 * wakes it and closes when it returns.
 *
 * API (all errors are thrown as Error with a `code` property: EINVAL, EBUSY, ECLOSED, EPCAP):
 *   open(device, {snaplen, bufferSize, timeoutMs, promisc, immediate, filter, msgType})
 *       -> {handle, linkType, linkName, warning}
 *   openOffline(path, {filter, msgType}) -> the same, reading a pcap/pcapng file (tests)
 *   nextBatch(handle, maxFrames, maxBytes, waitMs[, out: Buffer])
 *       -> Promise<{data: Buffer|null, length, count, bytes, psRecv, psDrop, psIfdrop, error: string|null}>
 *       With `out`, the message is written into it (data null, `length` bytes) when it fits, so a
 *       caller recycling a few buffers allocates nothing per batch; else `data` is a new Buffer.
 *   nextBatchSync(...same[, fd]) -> the same object, on the calling thread (blocks it <= waitMs);
 *       with `out` and `fd`, the message is also written to fd (non-blocking) and `written` says
 *       how much went (the caller queues the rest)
 *   nextBatchSync(h, maxFrames, maxBytes, waitMs, out, fd, info: Float64Array(8)) -> Buffer|null:
 *       the hot path: no result object; info = [count, length, written, psRecv, psDrop, psIfdrop,
 *       bytes, failed]; the Buffer only when the message did not fit `out`; lastError(h) the text
 *   setPipeSize(fd, bytes) -> new capacity or -errno (F_SETPIPE_SZ, or SO_SNDBUF on a socketpair)
 *   lastError(handle) -> the last call's error text or null
 *   socketPair() -> [parentFd, childFd] (close-on-exec): the worker pipe, read into one buffer
 *   stats(handle) -> {psRecv, psDrop, psIfdrop} | null (null while a nextBatch is in flight)
 *   wake(handle), close(handle), libVersion()
 */
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

  /* scratch columns, reused */
  double *times;
  uint32_t *lens;
  uint32_t *wires;
  uint32_t frames_cap;
  uint8_t *data;
  size_t data_cap;

  /* one call */
  uint32_t count;
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

/* ---------------------------------------------------------------- helpers */

static napi_value throw_code(napi_env env, const char *code, const char *msg) {
  napi_throw_error(env, code, msg);
  return NULL;
}

#define CHECK(call)                                                          \
  do {                                                                       \
    if ((call) != napi_ok) return throw_code(env, "EINVAL", #call " failed"); \
  } while (0)

static int get_prop(napi_env env, napi_value obj, const char *name, napi_value *out) {
  bool has = false;
  if (napi_has_named_property(env, obj, name, &has) != napi_ok || !has) return 0;
  if (napi_get_named_property(env, obj, name, out) != napi_ok) return 0;
  napi_valuetype t;
  napi_typeof(env, *out, &t);
  return t != napi_undefined && t != napi_null;
}

static int get_int(napi_env env, napi_value obj, const char *name, int64_t def, int64_t *out) {
  napi_value v;
  *out = def;
  if (!get_prop(env, obj, name, &v)) return 1;
  double d;
  if (napi_get_value_double(env, v, &d) != napi_ok || d != d) return 0;
  *out = (int64_t)d;
  return 1;
}

static int get_bool(napi_env env, napi_value obj, const char *name, int def) {
  napi_value v;
  if (!get_prop(env, obj, name, &v)) return def;
  bool b = false;
  if (napi_get_value_bool(env, v, &b) != napi_ok) return def;
  return b ? 1 : 0;
}

/* a string property, malloc'ed (NULL when absent; *bad set when not a string) */
static char *get_str(napi_env env, napi_value obj, const char *name, int *bad) {
  napi_value v;
  if (!get_prop(env, obj, name, &v)) return NULL;
  size_t len = 0;
  if (napi_get_value_string_utf8(env, v, NULL, 0, &len) != napi_ok) {
    *bad = 1;
    return NULL;
  }
  char *s = malloc(len + 1);
  if (!s) return NULL;
  napi_get_value_string_utf8(env, v, s, len + 1, &len);
  return s;
}

static void set_num(napi_env env, napi_value obj, const char *name, double v) {
  napi_value n;
  napi_create_double(env, v, &n);
  napi_set_named_property(env, obj, name, n);
}

static void set_str(napi_env env, napi_value obj, const char *name, const char *s) {
  napi_value v;
  if (s) napi_create_string_utf8(env, s, NAPI_AUTO_LENGTH, &v);
  else napi_get_null(env, &v);
  napi_set_named_property(env, obj, name, v);
}

static void cap_release(cap_t *c) {
  if (c->p) {
    pcap_close(c->p);
    c->p = NULL;
  }
  if (c->wakefd >= 0) {
    close(c->wakefd);
    c->wakefd = -1;
  }
  c->closed = 1;
}

static void cap_finalize(napi_env env, void *data, void *hint) {
  cap_t *c = data;
  if (c->busy) {
    /* environment teardown with a call in flight: stop it, leave the memory to it */
    c->close_pending = 1;
    if (c->wakefd >= 0) {
      uint64_t one = 1;
      if (write(c->wakefd, &one, sizeof one) < 0) { /* already awake */
      }
    }
    return;
  }
  cap_release(c);
  free(c->times);
  free(c->lens);
  free(c->wires);
  free(c->data);
  free(c);
}

static cap_t *get_cap(napi_env env, napi_value v) {
  napi_valuetype t;
  if (napi_typeof(env, v, &t) != napi_ok || t != napi_external) return NULL;
  void *p = NULL;
  if (napi_get_value_external(env, v, &p) != napi_ok) return NULL;
  return p;
}

/* ---------------------------------------------------------------- open */

/* wraps an activated pcap_t in a handle object {handle, linkType, dlt, linkName, warning} */
static napi_value wrap_pcap(napi_env env, pcap_t *p, int64_t msgtype, const char *warning, int offline) {
  int fd = pcap_get_selectable_fd(p);
  int wakefd = eventfd(0, EFD_NONBLOCK | EFD_CLOEXEC);
  if (fd < 0 || wakefd < 0) {
    if (wakefd >= 0) close(wakefd);
    pcap_close(p);
    return throw_code(env, "EPCAP", fd < 0 ? "no selectable file descriptor for this device" : "eventfd failed");
  }

  cap_t *c = calloc(1, sizeof *c);
  if (!c) {
    close(wakefd);
    pcap_close(p);
    return throw_code(env, "ENOMEM", "out of memory");
  }
  c->p = p;
  c->fd = fd;
  c->wakefd = wakefd;
  c->msg_type = (uint8_t)msgtype;
  c->offline = offline;
  c->write_fd = -1;

  napi_value handle, out;
  if (napi_create_external(env, c, cap_finalize, NULL, &handle) != napi_ok) {
    cap_finalize(env, c, NULL);
    return throw_code(env, "EINVAL", "napi_create_external failed");
  }
  CHECK(napi_create_object(env, &out));
  napi_set_named_property(env, out, "handle", handle);
  int dlt = pcap_datalink(p);
  /* LINKTYPE_* (what pcap files carry) equals DLT_* except for the platform-specific few */
  int linktype = dlt;
#ifdef DLT_RAW
  if (dlt == DLT_RAW) linktype = 101;
#endif
  set_num(env, out, "linkType", linktype);
  set_num(env, out, "dlt", dlt);
  set_str(env, out, "linkName", pcap_datalink_val_to_name(dlt));
  set_str(env, out, "warning", warning);
  return out;
}

static napi_value js_open(napi_env env, napi_callback_info info) {
  size_t argc = 2;
  napi_value argv[2];
  CHECK(napi_get_cb_info(env, info, &argc, argv, NULL, NULL));
  if (argc < 1) return throw_code(env, "EINVAL", "open(device, options)");
  char dev[256];
  size_t dlen = 0;
  if (napi_get_value_string_utf8(env, argv[0], dev, sizeof dev, &dlen) != napi_ok || dlen == 0 || dlen >= sizeof dev - 1)
    return throw_code(env, "EINVAL", "open: device must be a non-empty string");
  napi_value o;
  if (argc >= 2) {
    napi_valuetype t;
    napi_typeof(env, argv[1], &t);
    if (t != napi_object) return throw_code(env, "EINVAL", "open: options must be an object");
    o = argv[1];
  } else {
    CHECK(napi_create_object(env, &o));
  }
  int64_t snaplen, bufsize, timeout, msgtype;
  if (!get_int(env, o, "snaplen", 262144, &snaplen) || snaplen < 1 || snaplen > 262144)
    return throw_code(env, "EINVAL", "open: snaplen must be 1..262144");
  if (!get_int(env, o, "bufferSize", 8 << 20, &bufsize) || bufsize < 0 || bufsize > (1LL << 31) - 1)
    return throw_code(env, "EINVAL", "open: bufferSize must be 0..2^31-1 bytes");
  if (!get_int(env, o, "timeoutMs", 50, &timeout) || timeout < 0 || timeout > 60000)
    return throw_code(env, "EINVAL", "open: timeoutMs must be 0..60000");
  if (!get_int(env, o, "msgType", 2, &msgtype) || msgtype < 0 || msgtype > 255)
    return throw_code(env, "EINVAL", "open: msgType must be 0..255");
  int promisc = get_bool(env, o, "promisc", 0);
  int immediate = get_bool(env, o, "immediate", 0);
  int bad = 0;
  char *filter = get_str(env, o, "filter", &bad);
  if (bad) return throw_code(env, "EINVAL", "open: filter must be a string");

  char errbuf[PCAP_ERRBUF_SIZE];
  char msg[PCAP_ERRBUF_SIZE + 300];
  errbuf[0] = 0;
  pcap_t *p = pcap_create(dev, errbuf);
  if (!p) {
    snprintf(msg, sizeof msg, "%s", errbuf);
    free(filter);
    return throw_code(env, "EPCAP", msg);
  }
  pcap_set_snaplen(p, (int)snaplen);
  pcap_set_promisc(p, promisc);
  pcap_set_timeout(p, (int)timeout);
  if (bufsize > 0) pcap_set_buffer_size(p, (int)bufsize);
  if (immediate) pcap_set_immediate_mode(p, 1);
  pcap_set_tstamp_precision(p, PCAP_TSTAMP_PRECISION_MICRO);
  int r = pcap_activate(p);
  const char *warning = NULL;
  char warnbuf[PCAP_ERRBUF_SIZE + 64];
  if (r < 0) {
    const char *why = pcap_geterr(p);
    if (r == PCAP_ERROR_NO_SUCH_DEVICE || r == PCAP_ERROR_PERM_DENIED || r == PCAP_ERROR_IFACE_NOT_UP || (why && !*why))
      snprintf(msg, sizeof msg, "%s: %s%s%s", dev, pcap_statustostr(r), why && *why ? ": " : "", why ? why : "");
    else
      snprintf(msg, sizeof msg, "%s", why);
    pcap_close(p);
    free(filter);
    return throw_code(env, "EPCAP", msg);
  }
  if (r > 0) {
    snprintf(warnbuf, sizeof warnbuf, "%s: %s", pcap_statustostr(r), pcap_geterr(p));
    warning = warnbuf;
  }
  if (filter && *filter) {
    bpf_u_int32 net = 0, mask = PCAP_NETMASK_UNKNOWN;
    if (pcap_lookupnet(dev, &net, &mask, errbuf) < 0) mask = PCAP_NETMASK_UNKNOWN;
    struct bpf_program prog;
    if (pcap_compile(p, &prog, filter, 1, mask) < 0) {
      snprintf(msg, sizeof msg, "%s", pcap_geterr(p));
      pcap_close(p);
      free(filter);
      return throw_code(env, "EPCAP", msg);
    }
    if (pcap_setfilter(p, &prog) < 0) {
      snprintf(msg, sizeof msg, "%s", pcap_geterr(p));
      pcap_freecode(&prog);
      pcap_close(p);
      free(filter);
      return throw_code(env, "EPCAP", msg);
    }
    pcap_freecode(&prog);
  }
  free(filter);
  if (pcap_setnonblock(p, 1, errbuf) < 0) {
    snprintf(msg, sizeof msg, "%s", errbuf);
    pcap_close(p);
    return throw_code(env, "EPCAP", msg);
  }
  return wrap_pcap(env, p, msgtype, warning, 0);
}


/* openOffline(path, {filter, msgType}): a pcap/pcapng file through the same batching (tests, replays) */
static napi_value js_open_offline(napi_env env, napi_callback_info info) {
  size_t argc = 2;
  napi_value argv[2];
  CHECK(napi_get_cb_info(env, info, &argc, argv, NULL, NULL));
  char path[4096];
  size_t plen = 0;
  if (argc < 1 || napi_get_value_string_utf8(env, argv[0], path, sizeof path, &plen) != napi_ok || plen == 0 || plen >= sizeof path - 1)
    return throw_code(env, "EINVAL", "openOffline: path must be a non-empty string");
  napi_value o;
  if (argc >= 2) {
    napi_valuetype t;
    napi_typeof(env, argv[1], &t);
    if (t != napi_object) return throw_code(env, "EINVAL", "openOffline: options must be an object");
    o = argv[1];
  } else {
    CHECK(napi_create_object(env, &o));
  }
  int64_t msgtype;
  if (!get_int(env, o, "msgType", 2, &msgtype) || msgtype < 0 || msgtype > 255)
    return throw_code(env, "EINVAL", "openOffline: msgType must be 0..255");
  int bad = 0;
  char *filter = get_str(env, o, "filter", &bad);
  if (bad) return throw_code(env, "EINVAL", "openOffline: filter must be a string");
  char errbuf[PCAP_ERRBUF_SIZE];
  char msg[PCAP_ERRBUF_SIZE + 64];
  pcap_t *p = pcap_open_offline_with_tstamp_precision(path, PCAP_TSTAMP_PRECISION_MICRO, errbuf);
  if (!p) {
    free(filter);
    snprintf(msg, sizeof msg, "%s", errbuf);
    return throw_code(env, "EPCAP", msg);
  }
  if (filter && *filter) {
    struct bpf_program prog;
    if (pcap_compile(p, &prog, filter, 1, PCAP_NETMASK_UNKNOWN) < 0 || pcap_setfilter(p, &prog) < 0) {
      snprintf(msg, sizeof msg, "%s", pcap_geterr(p));
      pcap_close(p);
      free(filter);
      return throw_code(env, "EPCAP", msg);
    }
    pcap_freecode(&prog);
  }
  free(filter);
  return wrap_pcap(env, p, msgtype, NULL, 1);
}

/* ---------------------------------------------------------------- nextBatch */

static int grow(cap_t *c, uint32_t frames, size_t bytes) {
  if (frames > c->frames_cap) {
    uint32_t n = c->frames_cap ? c->frames_cap : 1024;
    while (n < frames) n *= 2;
    double *t = realloc(c->times, n * sizeof *t);
    if (t) c->times = t;
    uint32_t *l = realloc(c->lens, n * sizeof *l);
    if (l) c->lens = l;
    uint32_t *w = realloc(c->wires, n * sizeof *w);
    if (w) c->wires = w;
    if (!t || !l || !w) return 0;
    c->frames_cap = n;
  }
  if (bytes > c->data_cap) {
    size_t n = c->data_cap ? c->data_cap : (1u << 20);
    while (n < bytes) n *= 2;
    uint8_t *d = realloc(c->data, n);
    if (!d) return 0;
    c->data = d;
    c->data_cap = n;
  }
  return 1;
}

static void on_packet(u_char *user, const struct pcap_pkthdr *h, const u_char *bytes) {
  cap_t *c = (cap_t *)user;
  uint32_t caplen = h->caplen;
  if (c->count >= c->frames_cap || c->used + caplen > c->data_cap) {
    if (c->oom || !grow(c, c->count + 1, c->used + caplen)) {
      c->oom = 1;
      pcap_breakloop(c->p);
      return;
    }
  }
  memcpy(c->data + c->used, bytes, caplen);
  c->times[c->count] = (double)h->ts.tv_sec * 1e6 + (double)h->ts.tv_usec;
  c->lens[c->count] = caplen;
  c->wires[c->count] = h->len;
  c->used += caplen;
  c->count++;
  /* a full batch: stop after this ring block's chunk (frames already taken are kept) */
  if (c->used >= c->max_bytes) pcap_breakloop(c->p);
}

static int64_t now_ms(void) {
  struct timespec ts;
  clock_gettime(CLOCK_MONOTONIC, &ts);
  return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

static void work_execute(napi_env env, void *data) {
  cap_t *c = data;
  c->count = 0;
  c->used = 0;
  c->oom = 0;
  c->err[0] = 0;
  c->have_stats = 0;
  if (!grow(c, c->max_frames, c->max_bytes + 65536)) {
    snprintf(c->err, sizeof c->err, "out of memory for a batch of %u frames / %zu bytes", c->max_frames, c->max_bytes);
    return;
  }
  int64_t deadline = now_ms() + c->wait_ms;
  for (;;) {
    if (c->close_pending) break;
    uint32_t room = c->max_frames - c->count;
    int r = room > 0 ? pcap_dispatch(c->p, (int)room, on_packet, (u_char *)c) : 0;
    if (r == PCAP_ERROR) {
      snprintf(c->err, sizeof c->err, "%s", pcap_geterr(c->p));
      break;
    }
    if (c->oom) {
      snprintf(c->err, sizeof c->err, "out of memory while copying frames");
      break;
    }
    /* a savefile keeps the break flag when it returns frames: the next call sees it alone */
    if (r == PCAP_ERROR_BREAK && c->count == 0) continue;
    if (r == PCAP_ERROR_BREAK || c->count >= c->max_frames || c->used >= c->max_bytes) break; /* full */
    if (c->offline && r > 0) continue; /* keep reading the file until full or its end */
    if (c->offline) break;       /* a file: what it had (0 = end of file) */
    if (r > 0) continue;         /* more may be ready */
    if (c->count > 0) break;     /* the ring is drained: hand over what we have */
    int64_t left = deadline - now_ms();
    if (left <= 0) break;
    struct pollfd pf[2] = {{.fd = c->fd, .events = POLLIN}, {.fd = c->wakefd, .events = POLLIN}};
    int n = poll(pf, 2, (int)left);
    if (n < 0 && errno != EINTR) {
      snprintf(c->err, sizeof c->err, "poll: %s", strerror(errno));
      break;
    }
    if (n > 0 && (pf[1].revents & POLLIN)) {
      uint64_t v;
      if (read(c->wakefd, &v, sizeof v) < 0) { /* already reset */
      }
      break; /* woken: return now (stop, close) */
    }
    /* POLLIN: a block retired; POLLERR/POLLHUP: the next dispatch reports the error */
  }
  if (c->p && !c->offline && pcap_stats(c->p, &c->st) == 0) c->have_stats = 1;
}

/* the call's result object (JS thread); resets the per-call state */
static napi_value make_result(napi_env env, cap_t *c, double *info) {
  napi_value res = NULL, buf;
  size_t length = 0, written = 0;
  if (c->count > 0) {
    size_t n = c->count;
    size_t total = HDR_BYTES + 16 * n + c->used;
    void *mem = NULL;
    int into_out = c->out != NULL && total <= c->out_len;
    if (into_out) {
      mem = c->out; /* the caller's reused buffer: no allocation, pages already mapped */
      napi_get_null(env, &buf);
    }
    if (into_out || napi_create_buffer(env, total, &mem, &buf) == napi_ok) {
      uint8_t *b = mem;
      length = total;
      uint32_t len = (uint32_t)(total - 4), cnt = (uint32_t)n, dlen = (uint32_t)c->used;
      memcpy(b, &len, 4); /* little-endian host (x86_64, aarch64) */
      b[4] = c->msg_type;
      memcpy(b + 5, &cnt, 4);
      memcpy(b + 9, &dlen, 4);
      uint8_t *o = b + HDR_BYTES;
      memcpy(o, c->times, 8 * n);
      o += 8 * n;
      memcpy(o, c->lens, 4 * n);
      o += 4 * n;
      memcpy(o, c->wires, 4 * n);
      o += 4 * n;
      memcpy(o, c->data, c->used);
      if (into_out && c->write_fd >= 0) {
        /* straight to the pipe (the caller has nothing queued on it): no JS stream per batch */
        while (written < total) {
          ssize_t w = write(c->write_fd, b + written, total - written);
          if (w > 0) written += (size_t)w;
          else if (w < 0 && errno == EINTR) continue;
          else break; /* EAGAIN (the reader is behind: the caller queues the rest), EPIPE... */
        }
      }
    } else {
      napi_get_null(env, &buf);
      snprintf(c->err, sizeof c->err, "cannot allocate a %zu-byte batch", total);
      c->count = 0;
    }
  } else {
    napi_get_null(env, &buf);
  }
  if (info) {
    /* the caller's Float64Array: no object, no property lookups per batch */
    info[0] = c->count;
    info[1] = (double)length;
    info[2] = (double)written;
    info[3] = c->have_stats ? (double)c->st.ps_recv : -1.0;
    info[4] = c->have_stats ? (double)c->st.ps_drop : -1.0;
    info[5] = c->have_stats ? (double)c->st.ps_ifdrop : -1.0;
    info[6] = (double)c->used;
    info[7] = c->err[0] ? 1 : 0;
    res = buf;
  } else {
    napi_create_object(env, &res);
    napi_set_named_property(env, res, "data", buf);
    set_num(env, res, "length", (double)length);
    set_num(env, res, "written", (double)written);
    set_num(env, res, "count", c->count);
    set_num(env, res, "bytes", (double)c->used);
    set_num(env, res, "psRecv", c->have_stats ? (double)c->st.ps_recv : -1.0);
    set_num(env, res, "psDrop", c->have_stats ? (double)c->st.ps_drop : -1.0);
    set_num(env, res, "psIfdrop", c->have_stats ? (double)c->st.ps_ifdrop : -1.0);
    set_str(env, res, "error", c->err[0] ? c->err : NULL);
  }
  c->count = 0;
  c->used = 0;
  return res;
}

static void work_complete(napi_env env, napi_status status, void *data) {
  cap_t *c = data;
  napi_value res = make_result(env, c, NULL);
  napi_deferred d = c->deferred;
  c->deferred = NULL;
  napi_delete_async_work(env, c->work);
  c->work = NULL;
  c->busy = 0;
  if (c->close_pending) cap_release(c);
  napi_ref self = c->self;
  c->self = NULL;
  if (c->out_ref) napi_delete_reference(env, c->out_ref);
  c->out_ref = NULL;
  c->out = NULL;
  c->out_len = 0;
  if (status == napi_cancelled) {
    napi_value e;
    napi_value m;
    napi_create_string_utf8(env, "nextBatch cancelled", NAPI_AUTO_LENGTH, &m);
    napi_create_error(env, NULL, m, &e);
    napi_reject_deferred(env, d, e);
  } else {
    napi_resolve_deferred(env, d, res);
  }
  if (self) napi_delete_reference(env, self); /* last: may let the handle be collected */
}

static napi_value next_batch(napi_env env, napi_callback_info info, int sync) {
  size_t argc = 7;
  napi_value argv[7];
  CHECK(napi_get_cb_info(env, info, &argc, argv, NULL, NULL));
  if (argc < 4) return throw_code(env, "EINVAL", "nextBatch(handle, maxFrames, maxBytes, waitMs[, out[, fd]])");
  cap_t *c = get_cap(env, argv[0]);
  if (!c) return throw_code(env, "EINVAL", "nextBatch: not a capture handle");
  if (c->closed || c->close_pending) return throw_code(env, "ECLOSED", "nextBatch: the capture is closed");
  if (c->busy) return throw_code(env, "EBUSY", "nextBatch: a call is already in flight on this handle");
  double mf, mb, wm;
  if (napi_get_value_double(env, argv[1], &mf) != napi_ok || !(mf >= 1 && mf <= 1 << 20))
    return throw_code(env, "EINVAL", "nextBatch: maxFrames must be 1..1048576");
  if (napi_get_value_double(env, argv[2], &mb) != napi_ok || !(mb >= 1024 && mb <= 1 << 28))
    return throw_code(env, "EINVAL", "nextBatch: maxBytes must be 1024..2^28");
  if (napi_get_value_double(env, argv[3], &wm) != napi_ok || !(wm >= 0 && wm <= 60000))
    return throw_code(env, "EINVAL", "nextBatch: waitMs must be 0..60000");
  void *outp = NULL;
  size_t outlen = 0;
  if (argc >= 5) {
    napi_valuetype t;
    napi_typeof(env, argv[4], &t);
    if (t != napi_undefined && t != napi_null) {
      bool isbuf = false;
      napi_is_buffer(env, argv[4], &isbuf);
      if (!isbuf || napi_get_buffer_info(env, argv[4], &outp, &outlen) != napi_ok)
        return throw_code(env, "EINVAL", "nextBatch: out must be a Buffer");
    }
  }
  c->max_frames = (uint32_t)mf;
  c->max_bytes = (size_t)mb;
  c->wait_ms = (int)wm;
  int32_t wfd = -1;
  if (argc >= 6) {
    napi_valuetype t;
    napi_typeof(env, argv[5], &t);
    if (t != napi_undefined && t != napi_null) {
      if (!sync || !outp || napi_get_value_int32(env, argv[5], &wfd) != napi_ok || wfd < 0)
        return throw_code(env, "EINVAL", "nextBatchSync: fd must be a file descriptor, with an out buffer");
    }
  }
  double *infop = NULL;
  if (argc >= 7) {
    napi_typedarray_type tt;
    size_t tlen = 0;
    void *tdata = NULL;
    bool ista = false;
    napi_is_typedarray(env, argv[6], &ista);
    if (!sync || !ista || napi_get_typedarray_info(env, argv[6], &tt, &tlen, &tdata, NULL, NULL) != napi_ok || tt != napi_float64_array || tlen < 8)
      return throw_code(env, "EINVAL", "nextBatchSync: info must be a Float64Array of 8");
    infop = tdata;
  }
  if (sync) {
    /* on the calling thread: blocks it for at most waitMs (a worker process's own loop) */
    c->write_fd = wfd;
    c->busy = 1;
    c->out = outp;
    c->out_len = outlen;
    work_execute(env, c);
    c->busy = 0;
    napi_value res = make_result(env, c, infop);
    c->write_fd = -1;
    c->out = NULL;
    c->out_len = 0;
    if (c->close_pending) cap_release(c);
    return res;
  }

  napi_value promise, name;
  CHECK(napi_create_promise(env, &c->deferred, &promise));
  CHECK(napi_create_string_utf8(env, "journey.capture.nextBatch", NAPI_AUTO_LENGTH, &name));
  CHECK(napi_create_reference(env, argv[0], 1, &c->self));
  if (outp) {
    CHECK(napi_create_reference(env, argv[4], 1, &c->out_ref));
    c->out = outp;
    c->out_len = outlen;
  }
  CHECK(napi_create_async_work(env, NULL, name, work_execute, work_complete, c, &c->work));
  if (napi_queue_async_work(env, c->work) != napi_ok) {
    napi_delete_async_work(env, c->work);
    c->work = NULL;
    napi_delete_reference(env, c->self);
    c->self = NULL;
    if (c->out_ref) napi_delete_reference(env, c->out_ref);
    c->out_ref = NULL;
    c->out = NULL;
    return throw_code(env, "EINVAL", "napi_queue_async_work failed");
  }
  c->busy = 1;
  return promise;
}

static napi_value js_next_batch(napi_env env, napi_callback_info info) {
  return next_batch(env, info, 0);
}

static napi_value js_next_batch_sync(napi_env env, napi_callback_info info) {
  return next_batch(env, info, 1);
}

/* ---------------------------------------------------------------- stats, wake, close */

static napi_value js_stats(napi_env env, napi_callback_info info) {
  size_t argc = 1;
  napi_value argv[1], out;
  CHECK(napi_get_cb_info(env, info, &argc, argv, NULL, NULL));
  cap_t *c = argc ? get_cap(env, argv[0]) : NULL;
  if (!c) return throw_code(env, "EINVAL", "stats: not a capture handle");
  if (c->closed) return throw_code(env, "ECLOSED", "stats: the capture is closed");
  if (c->busy) {
    napi_get_null(env, &out);
    return out;
  }
  struct pcap_stat st;
  if (pcap_stats(c->p, &st) < 0) return throw_code(env, "EPCAP", pcap_geterr(c->p));
  napi_create_object(env, &out);
  set_num(env, out, "psRecv", st.ps_recv);
  set_num(env, out, "psDrop", st.ps_drop);
  set_num(env, out, "psIfdrop", st.ps_ifdrop);
  return out;
}

static void wake(cap_t *c) {
  if (c->wakefd >= 0) {
    uint64_t one = 1;
    if (write(c->wakefd, &one, sizeof one) < 0) { /* counter saturated: already awake */
    }
  }
}

static napi_value js_wake(napi_env env, napi_callback_info info) {
  size_t argc = 1;
  napi_value argv[1];
  CHECK(napi_get_cb_info(env, info, &argc, argv, NULL, NULL));
  cap_t *c = argc ? get_cap(env, argv[0]) : NULL;
  if (!c) return throw_code(env, "EINVAL", "wake: not a capture handle");
  if (!c->closed) wake(c);
  return NULL;
}

static napi_value js_close(napi_env env, napi_callback_info info) {
  size_t argc = 1;
  napi_value argv[1];
  CHECK(napi_get_cb_info(env, info, &argc, argv, NULL, NULL));
  cap_t *c = argc ? get_cap(env, argv[0]) : NULL;
  if (!c) return throw_code(env, "EINVAL", "close: not a capture handle");
  if (c->closed) return NULL;
  if (c->busy) {
    c->close_pending = 1; /* the call in flight returns at once and closes */
    wake(c);
  } else {
    cap_release(c);
  }
  return NULL;
}

/* setPipeSize(fd, bytes) -> the pipe's new capacity (F_SETPIPE_SZ), or -errno */
static napi_value js_set_pipe_size(napi_env env, napi_callback_info info) {
  size_t argc = 2;
  napi_value argv[2], v;
  CHECK(napi_get_cb_info(env, info, &argc, argv, NULL, NULL));
  int32_t fd = -1, bytes = 0;
  if (argc < 2 || napi_get_value_int32(env, argv[0], &fd) != napi_ok || napi_get_value_int32(env, argv[1], &bytes) != napi_ok || fd < 0 || bytes <= 0)
    return throw_code(env, "EINVAL", "setPipeSize(fd, bytes)");
  int r = fcntl(fd, F_SETPIPE_SZ, bytes);
  if (r < 0 && errno == EBADF) {
    napi_create_int32(env, -EBADF, &v);
    return v;
  }
  if (r < 0) {
    /* node's stdio 'pipe' is a socketpair: its send buffer instead (SO_SNDBUFFORCE as root) */
    int b = bytes;
    if (setsockopt(fd, SOL_SOCKET, SO_SNDBUFFORCE, &b, sizeof b) < 0 && setsockopt(fd, SOL_SOCKET, SO_SNDBUF, &b, sizeof b) < 0) {
      napi_create_int32(env, -errno, &v);
      return v;
    }
    socklen_t sl = sizeof b;
    r = getsockopt(fd, SOL_SOCKET, SO_SNDBUF, &b, &sl) == 0 ? b : -errno;
  }
  napi_create_int32(env, r, &v);
  return v;
}

/* socketPair() -> [parentFd, childFd]: a SOCK_STREAM pair, close-on-exec (spawn dup2s the child's
 * end into the child, which clears it there), so that the parent can read its end into one
 * reused buffer (net.Socket onread) instead of a fresh 64 KiB chunk per read */
static napi_value js_socket_pair(napi_env env, napi_callback_info info) {
  int sv[2];
  if (socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, sv) < 0) return throw_code(env, "EPCAP", strerror(errno));
  napi_value arr, a, b;
  napi_create_array_with_length(env, 2, &arr);
  napi_create_int32(env, sv[0], &a);
  napi_create_int32(env, sv[1], &b);
  napi_set_element(env, arr, 0, a);
  napi_set_element(env, arr, 1, b);
  return arr;
}

/* lastError(handle) -> the last call's error text, or null */
static napi_value js_last_error(napi_env env, napi_callback_info info) {
  size_t argc = 1;
  napi_value argv[1], v;
  CHECK(napi_get_cb_info(env, info, &argc, argv, NULL, NULL));
  cap_t *c = argc ? get_cap(env, argv[0]) : NULL;
  if (!c) return throw_code(env, "EINVAL", "lastError: not a capture handle");
  if (c->err[0]) napi_create_string_utf8(env, c->err, NAPI_AUTO_LENGTH, &v);
  else napi_get_null(env, &v);
  return v;
}

static napi_value js_lib_version(napi_env env, napi_callback_info info) {
  napi_value v;
  napi_create_string_utf8(env, pcap_lib_version(), NAPI_AUTO_LENGTH, &v);
  return v;
}

NAPI_MODULE_INIT() {
  napi_property_descriptor props[] = {
      {"open", NULL, js_open, NULL, NULL, NULL, napi_enumerable, NULL},
      {"openOffline", NULL, js_open_offline, NULL, NULL, NULL, napi_enumerable, NULL},
      {"nextBatch", NULL, js_next_batch, NULL, NULL, NULL, napi_enumerable, NULL},
      {"nextBatchSync", NULL, js_next_batch_sync, NULL, NULL, NULL, napi_enumerable, NULL},
      {"stats", NULL, js_stats, NULL, NULL, NULL, napi_enumerable, NULL},
      {"wake", NULL, js_wake, NULL, NULL, NULL, napi_enumerable, NULL},
      {"close", NULL, js_close, NULL, NULL, NULL, napi_enumerable, NULL},
      {"setPipeSize", NULL, js_set_pipe_size, NULL, NULL, NULL, napi_enumerable, NULL},
      {"socketPair", NULL, js_socket_pair, NULL, NULL, NULL, napi_enumerable, NULL},
      {"lastError", NULL, js_last_error, NULL, NULL, NULL, napi_enumerable, NULL},
      {"libVersion", NULL, js_lib_version, NULL, NULL, NULL, napi_enumerable, NULL},
  };
  napi_define_properties(env, exports, sizeof props / sizeof props[0], props);
  return exports;
}
