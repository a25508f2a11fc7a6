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
 * With `fold` (open's option), runs of one IPv4 TCP/UDP tuple's packets are folded into one entry
 * (capture-fold.c: a run may be held across calls, up to 50 ms) and the message carries three
 * more columns, in this order:
 *
 *   f64 timesUs[count], f64 firstUs[count], u32 capLens[count], u32 wireLens[count],
 *   u32 packets[count], u32 aux[count] (TCP flags seen | 0x100 when the entry's packets are vouched
 *   not to be copies), frames back to back
 *
 * (an entry's frame and time are its latest packet's, wireLens the sum of its packets' lengths),
 * so the worker writes it to its pipe as is: no JavaScript per packet. Kernel statistics
 * (pcap_stats) are taken on the same thread after each drain and returned with the batch.
 *
 * Context-aware (NAPI_MODULE_INIT, no static JavaScript state): loadable in several
 * worker_threads. A handle is used by one nextBatch at a time; close() while one is in flight
 * wakes it and closes when it returns.
 *
 * API (all errors are thrown as Error with a `code` property: EINVAL, EBUSY, ECLOSED, EPCAP):
 *   open(device, {snaplen, bufferSize, timeoutMs, promisc, immediate, filter, msgType, fold})
 *       -> {handle, linkType, linkName, warning}
 *   openOffline(path, {filter, msgType, fold}) -> the same, reading a pcap/pcapng file (tests)
 *   nextBatch(handle, maxFrames, maxBytes, waitMs[, out: Buffer])
 *       -> Promise<{data: Buffer|null, length, count, entries, open, bytes, psRecv, psDrop, psIfdrop, error: string|null}>
 *       (count: packets taken from libpcap; entries: the message's entries, fewer when folded;
 *       open: runs still held, their packets counted in an earlier `count`)
 *       With `out`, the message is written into it (data null, `length` bytes) when it fits, so a
 *       caller recycling a few buffers allocates nothing per batch; else `data` is a new Buffer.
 *   nextBatchSync(...same[, fd]) -> the same object, on the calling thread (blocks it <= waitMs);
 *       with `out` and `fd`, the message is also written to fd (non-blocking) and `written` says
 *       how much went (the caller queues the rest)
 *   nextBatchSync(h, maxFrames, maxBytes, waitMs, out, fd, info: Float64Array(8 to 10)) -> Buffer|null:
 *       the hot path: no result object; info = [count, length, written, psRecv, psDrop, psIfdrop,
 *       bytes, failed(, entries(, open runs))]; the Buffer only when the message did not fit `out`;
 *       lastError(h) the text
 *   foldFlush(handle): the next call hands every open run over (before a worker stops)
 *   setPipeSize(fd, bytes) -> new capacity or -errno (F_SETPIPE_SZ, or SO_SNDBUF on a socketpair)
 *   lastError(handle) -> the last call's error text or null
 *   socketPair() -> [parentFd, childFd] (close-on-exec): the worker pipe, read into one buffer
 *   stats(handle) -> {psRecv, psDrop, psIfdrop} | null (null while a nextBatch is in flight)
 *   wake(handle), close(handle), libVersion()
 */
#include "capture.h"

/* ---------------------------------------------------------------- stats, wake, close */

/* the handle a call was given as its one argument (NULL when it is not one) */
static cap_t *only_handle(napi_env env, napi_callback_info info) {
  size_t argc = 1;
  napi_value argv[1];
  if (napi_get_cb_info(env, info, &argc, argv, NULL, NULL) != napi_ok || argc < 1) return NULL;
  return jc_get_cap(env, argv[0]);
}

static napi_value js_stats(napi_env env, napi_callback_info info) {
  size_t argc = 1;
  napi_value argv[1], out;
  CHECK(napi_get_cb_info(env, info, &argc, argv, NULL, NULL));
  cap_t *c = argc ? jc_get_cap(env, argv[0]) : NULL;
  if (!c) return jc_throw_code(env, "EINVAL", "stats: not a capture handle");
  if (c->closed) return jc_throw_code(env, "ECLOSED", "stats: the capture is closed");
  if (c->busy) {
    napi_get_null(env, &out);
    return out;
  }
  struct pcap_stat st;
  if (pcap_stats(c->p, &st) < 0) return jc_throw_code(env, "EPCAP", pcap_geterr(c->p));
  napi_create_object(env, &out);
  jc_set_num(env, out, "psRecv", st.ps_recv);
  jc_set_num(env, out, "psDrop", st.ps_drop);
  jc_set_num(env, out, "psIfdrop", st.ps_ifdrop);
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
  cap_t *c = only_handle(env, info);
  if (!c) return jc_throw_code(env, "EINVAL", "wake: not a capture handle");
  if (!c->closed) wake(c);
  return NULL;
}

/* foldFlush(h): the next call hands every open run over (a worker about to stop) */
static napi_value js_fold_flush(napi_env env, napi_callback_info info) {
  cap_t *c = only_handle(env, info);
  if (!c) return jc_throw_code(env, "EINVAL", "foldFlush: not a capture handle");
  c->fold_flush = 1;
  if (!c->closed) wake(c);
  return NULL;
}

static napi_value js_close(napi_env env, napi_callback_info info) {
  cap_t *c = only_handle(env, info);
  if (!c) return jc_throw_code(env, "EINVAL", "close: not a capture handle");
  if (c->closed) return NULL;
  if (c->busy) {
    c->close_pending = 1; /* the call in flight returns at once and closes */
    wake(c);
  } else {
    jc_cap_release(c);
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
    return jc_throw_code(env, "EINVAL", "setPipeSize(fd, bytes)");
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
  if (socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, sv) < 0) return jc_throw_code(env, "EPCAP", strerror(errno));
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
  cap_t *c = argc ? jc_get_cap(env, argv[0]) : NULL;
  if (!c) return jc_throw_code(env, "EINVAL", "lastError: not a capture handle");
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
      {"open", NULL, jc_open, NULL, NULL, NULL, napi_enumerable, NULL},
      {"openOffline", NULL, jc_open_offline, NULL, NULL, NULL, napi_enumerable, NULL},
      {"nextBatch", NULL, jc_next_batch, NULL, NULL, NULL, napi_enumerable, NULL},
      {"nextBatchSync", NULL, jc_next_batch_sync, NULL, NULL, NULL, napi_enumerable, NULL},
      {"stats", NULL, js_stats, NULL, NULL, NULL, napi_enumerable, NULL},
      {"wake", NULL, js_wake, NULL, NULL, NULL, napi_enumerable, NULL},
      {"foldFlush", NULL, js_fold_flush, NULL, NULL, NULL, napi_enumerable, NULL},
      {"close", NULL, js_close, NULL, NULL, NULL, napi_enumerable, NULL},
      {"setPipeSize", NULL, js_set_pipe_size, NULL, NULL, NULL, napi_enumerable, NULL},
      {"socketPair", NULL, js_socket_pair, NULL, NULL, NULL, napi_enumerable, NULL},
      {"lastError", NULL, js_last_error, NULL, NULL, NULL, napi_enumerable, NULL},
      {"libVersion", NULL, js_lib_version, NULL, NULL, NULL, napi_enumerable, NULL},
  };
  napi_define_properties(env, exports, sizeof props / sizeof props[0], props);
  return exports;
}
