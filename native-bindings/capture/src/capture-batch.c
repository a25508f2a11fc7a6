/* journey_capture: nextBatch and nextBatchSync, draining the ring into one BATCH message of the
 * worker pipe protocol (the message's layout is described in capture.c), runs of one tuple folded
 * into one entry when the handle folds (capture-fold.c). */
#include "capture.h"

/* one column to n elements (kept as it was when realloc fails) */
static int grow_col(void **col, uint32_t n, size_t elem) {
  void *p = realloc(*col, (size_t)n * elem);
  if (p) *col = p;
  return p != NULL;
}

static int grow(cap_t *c, uint32_t frames, size_t bytes) {
  if (frames > c->frames_cap) {
    uint32_t n = c->frames_cap ? c->frames_cap : 1024;
    while (n < frames) n *= 2;
    int ok = grow_col((void **)&c->times, n, sizeof *c->times);
    ok &= grow_col((void **)&c->lens, n, sizeof *c->lens);
    ok &= grow_col((void **)&c->wires, n, sizeof *c->wires);
    ok &= grow_col((void **)&c->first, n, sizeof *c->first);
    ok &= grow_col((void **)&c->pkts, n, sizeof *c->pkts);
    ok &= grow_col((void **)&c->aux, n, sizeof *c->aux);
    if (!ok) return 0;
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

/* One entry at the end of the batch (its columns and its frame's bytes); 0 when out of memory. */
int jc_append(cap_t *c, const u_char *bytes, uint32_t caplen, double t, double first, uint32_t wire, uint32_t pkts, uint32_t aux) {
  if (c->count >= c->frames_cap || c->used + caplen > c->data_cap) {
    if (c->oom || !grow(c, c->count + 1, c->used + caplen)) {
      c->oom = 1;
      return 0;
    }
  }
  uint32_t i = c->count++;
  memcpy(c->data + c->used, bytes, caplen);
  c->times[i] = t;
  c->lens[i] = caplen;
  c->wires[i] = wire;
  c->first[i] = first;
  c->pkts[i] = pkts;
  c->aux[i] = aux;
  c->used += caplen;
  c->run = -1;
  return 1;
}

static void on_packet(u_char *user, const struct pcap_pkthdr *h, const u_char *bytes) {
  cap_t *c = (cap_t *)user;
  double t = (double)h->ts.tv_sec * 1e6 + (double)h->ts.tv_usec;
  uint32_t aux = 0;
  int head = 0;
  c->frames++;
  if (!(c->fold && jc_fold_packet(c, bytes, h->caplen, h->len, t, &aux, &head))) {
    if (c->oom || !jc_append(c, bytes, h->caplen, t, t, h->len, 1, aux)) {
      pcap_breakloop(c->p);
      return;
    }
    if (head) c->run = (int32_t)(c->count - 1);
  }
  if (c->oom) pcap_breakloop(c->p);
  /* a full batch: stop after this ring block's chunk (frames already taken are kept) */
  if (c->used >= c->max_bytes || c->frames >= FOLD_MAX_FRAMES * c->max_frames) pcap_breakloop(c->p);
}

static int64_t now_ms(void) {
  struct timespec ts;
  clock_gettime(CLOCK_MONOTONIC, &ts);
  return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

/* the packets' clock (libpcap stamps them with the wall clock), µs */
static double wall_us(void) {
  struct timespec ts;
  clock_gettime(CLOCK_REALTIME, &ts);
  return (double)ts.tv_sec * 1e6 + (double)(ts.tv_nsec / 1000);
}

static void work_execute(napi_env env, void *data) {
  cap_t *c = data;
  c->count = 0;
  c->frames = 0;
  c->run = -1;
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
    if (r == PCAP_ERROR_BREAK || c->count >= c->max_frames || c->used >= c->max_bytes || c->frames >= FOLD_MAX_FRAMES * c->max_frames)
      break; /* full */
    if (c->offline && r > 0) continue; /* keep reading the file until full or its end */
    if (c->offline) {            /* a file: what it had (0 = end of file: its open runs too) */
      if (r == 0 && c->fold) c->fold_flush = 1;
      break;
    }
    if (r > 0) continue;         /* more may be ready */
    if (c->count > 0) break;     /* the ring is drained: hand over what we have */
    int64_t left = deadline - now_ms();
    if (left <= 0) break;
    /* open runs: wake up in time to hand them over */
    if (c->fold_open > 0 && left > FOLD_POLL_MS) left = FOLD_POLL_MS;
    struct pollfd pf[2] = {{.fd = c->fd, .events = POLLIN}, {.fd = c->wakefd, .events = POLLIN}};
    int n = poll(pf, 2, (int)left);
    if (n < 0 && errno != EINTR) {
      snprintf(c->err, sizeof c->err, "poll: %s", strerror(errno));
      break;
    }
    if (n == 0 && c->fold_open > 0) break; /* time to look at the open runs */
    if (n > 0 && (pf[1].revents & POLLIN)) {
      uint64_t v;
      if (read(c->wakefd, &v, sizeof v) < 0) { /* already reset */
      }
      break; /* woken: return now (stop, close) */
    }
    /* POLLIN: a block retired; POLLERR/POLLHUP: the next dispatch reports the error */
  }
  if (c->fold && !c->oom) {
    int all = c->fold_flush;
    jc_fold_expire(c, c->offline ? c->fold_now : wall_us(), all);
    if (all && c->fold_open == 0) c->fold_flush = 0;
  }
  if (c->p && !c->offline && pcap_stats(c->p, &c->st) == 0) c->have_stats = 1;
}

/* the call's result object (JS thread); resets the per-call state */
static napi_value make_result(napi_env env, cap_t *c, double *info, size_t info_len) {
  napi_value res = NULL, buf;
  size_t length = 0, written = 0;
  if (c->count > 0) {
    size_t n = c->count;
    size_t cols = c->fold ? 32 : 16; /* bytes of columns per entry */
    size_t total = HDR_BYTES + cols * n + c->used;
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
      if (c->fold) {
        memcpy(o, c->first, 8 * n);
        o += 8 * n;
      }
      memcpy(o, c->lens, 4 * n);
      o += 4 * n;
      memcpy(o, c->wires, 4 * n);
      o += 4 * n;
      if (c->fold) {
        memcpy(o, c->pkts, 4 * n);
        o += 4 * n;
        memcpy(o, c->aux, 4 * n);
        o += 4 * n;
      }
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
      c->frames = 0;
    }
  } else {
    napi_get_null(env, &buf);
  }
  if (info) {
    /* the caller's Float64Array: no object, no property lookups per batch */
    info[0] = c->frames;
    info[1] = (double)length;
    info[2] = (double)written;
    info[3] = c->have_stats ? (double)c->st.ps_recv : -1.0;
    info[4] = c->have_stats ? (double)c->st.ps_drop : -1.0;
    info[5] = c->have_stats ? (double)c->st.ps_ifdrop : -1.0;
    info[6] = (double)c->used;
    info[7] = c->err[0] ? 1 : 0;
    if (info_len >= 9) info[8] = c->count;
    if (info_len >= 10) info[9] = c->fold_open;
    res = buf;
  } else {
    napi_create_object(env, &res);
    napi_set_named_property(env, res, "data", buf);
    jc_set_num(env, res, "length", (double)length);
    jc_set_num(env, res, "written", (double)written);
    jc_set_num(env, res, "count", c->frames);
    jc_set_num(env, res, "entries", c->count);
    jc_set_num(env, res, "open", c->fold_open);
    jc_set_num(env, res, "bytes", (double)c->used);
    jc_set_num(env, res, "psRecv", c->have_stats ? (double)c->st.ps_recv : -1.0);
    jc_set_num(env, res, "psDrop", c->have_stats ? (double)c->st.ps_drop : -1.0);
    jc_set_num(env, res, "psIfdrop", c->have_stats ? (double)c->st.ps_ifdrop : -1.0);
    jc_set_str(env, res, "error", c->err[0] ? c->err : NULL);
  }
  c->count = 0;
  c->frames = 0;
  c->used = 0;
  return res;
}

static void work_complete(napi_env env, napi_status status, void *data) {
  cap_t *c = data;
  napi_value res = make_result(env, c, NULL, 0);
  napi_deferred d = c->deferred;
  c->deferred = NULL;
  napi_delete_async_work(env, c->work);
  c->work = NULL;
  c->busy = 0;
  if (c->close_pending) jc_cap_release(c);
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
  if (argc < 4) return jc_throw_code(env, "EINVAL", "nextBatch(handle, maxFrames, maxBytes, waitMs[, out[, fd]])");
  cap_t *c = jc_get_cap(env, argv[0]);
  if (!c) return jc_throw_code(env, "EINVAL", "nextBatch: not a capture handle");
  if (c->closed || c->close_pending) return jc_throw_code(env, "ECLOSED", "nextBatch: the capture is closed");
  if (c->busy) return jc_throw_code(env, "EBUSY", "nextBatch: a call is already in flight on this handle");
  double mf, mb, wm;
  if (napi_get_value_double(env, argv[1], &mf) != napi_ok || !(mf >= 1 && mf <= 1 << 20))
    return jc_throw_code(env, "EINVAL", "nextBatch: maxFrames must be 1..1048576");
  if (napi_get_value_double(env, argv[2], &mb) != napi_ok || !(mb >= 1024 && mb <= 1 << 28))
    return jc_throw_code(env, "EINVAL", "nextBatch: maxBytes must be 1024..2^28");
  if (napi_get_value_double(env, argv[3], &wm) != napi_ok || !(wm >= 0 && wm <= 60000))
    return jc_throw_code(env, "EINVAL", "nextBatch: waitMs must be 0..60000");
  void *outp = NULL;
  size_t outlen = 0;
  if (argc >= 5) {
    napi_valuetype t;
    napi_typeof(env, argv[4], &t);
    if (t != napi_undefined && t != napi_null) {
      bool isbuf = false;
      napi_is_buffer(env, argv[4], &isbuf);
      if (!isbuf || napi_get_buffer_info(env, argv[4], &outp, &outlen) != napi_ok)
        return jc_throw_code(env, "EINVAL", "nextBatch: out must be a Buffer");
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
        return jc_throw_code(env, "EINVAL", "nextBatchSync: fd must be a file descriptor, with an out buffer");
    }
  }
  double *infop = NULL;
  size_t infolen = 0;
  if (argc >= 7) {
    napi_typedarray_type tt;
    size_t tlen = 0;
    void *tdata = NULL;
    bool ista = false;
    napi_is_typedarray(env, argv[6], &ista);
    if (!sync || !ista || napi_get_typedarray_info(env, argv[6], &tt, &tlen, &tdata, NULL, NULL) != napi_ok || tt != napi_float64_array || tlen < 8)
      return jc_throw_code(env, "EINVAL", "nextBatchSync: info must be a Float64Array of 8");
    infop = tdata;
    infolen = tlen;
  }
  if (sync) {
    /* on the calling thread: blocks it for at most waitMs (a worker process's own loop) */
    c->write_fd = wfd;
    c->busy = 1;
    c->out = outp;
    c->out_len = outlen;
    work_execute(env, c);
    c->busy = 0;
    napi_value res = make_result(env, c, infop, infolen);
    c->write_fd = -1;
    c->out = NULL;
    c->out_len = 0;
    if (c->close_pending) jc_cap_release(c);
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
    return jc_throw_code(env, "EINVAL", "napi_queue_async_work failed");
  }
  c->busy = 1;
  return promise;
}

napi_value jc_next_batch(napi_env env, napi_callback_info info) {
  return next_batch(env, info, 0);
}

napi_value jc_next_batch_sync(napi_env env, napi_callback_info info) {
  return next_batch(env, info, 1);
}
