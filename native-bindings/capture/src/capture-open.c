/* journey_capture: open() a device and openOffline() a file into a handle; its release when closed
 * or collected. */
#include "capture.h"

void jc_cap_release(cap_t *c) {
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
  jc_cap_release(c);
  free(c->times);
  free(c->lens);
  free(c->wires);
  free(c->first);
  free(c->pkts);
  free(c->aux);
  free(c->fold_tab);
  free(c->fold_fifo);
  free(c->data);
  free(c);
}

/* wraps an activated pcap_t in a handle object {handle, linkType, dlt, linkName, warning} */
static napi_value wrap_pcap(napi_env env, pcap_t *p, int64_t msgtype, const char *warning, int offline, int fold) {
  int fd = pcap_get_selectable_fd(p);
  int wakefd = eventfd(0, EFD_NONBLOCK | EFD_CLOEXEC);
  if (fd < 0 || wakefd < 0) {
    if (wakefd >= 0) close(wakefd);
    pcap_close(p);
    return jc_throw_code(env, "EPCAP", fd < 0 ? "no selectable file descriptor for this device" : "eventfd failed");
  }

  cap_t *c = calloc(1, sizeof *c);
  if (!c) {
    close(wakefd);
    pcap_close(p);
    return jc_throw_code(env, "ENOMEM", "out of memory");
  }
  c->p = p;
  c->fd = fd;
  c->wakefd = wakefd;
  c->msg_type = (uint8_t)msgtype;
  c->offline = offline;
  c->write_fd = -1;
  c->dlt = pcap_datalink(p);
  c->run = -1;
  c->fold = fold;
  if (fold && !jc_fold_init(c)) {
    cap_finalize(env, c, NULL);
    return jc_throw_code(env, "ENOMEM", "out of memory");
  }

  napi_value handle, out;
  if (napi_create_external(env, c, cap_finalize, NULL, &handle) != napi_ok) {
    cap_finalize(env, c, NULL);
    return jc_throw_code(env, "EINVAL", "napi_create_external failed");
  }
  CHECK(napi_create_object(env, &out));
  napi_set_named_property(env, out, "handle", handle);
  int dlt = pcap_datalink(p);
  /* LINKTYPE_* (what pcap files carry) equals DLT_* except for the platform-specific few */
  int linktype = dlt;
#ifdef DLT_RAW
  if (dlt == DLT_RAW) linktype = 101;
#endif
  jc_set_num(env, out, "linkType", linktype);
  jc_set_num(env, out, "dlt", dlt);
  jc_set_str(env, out, "linkName", pcap_datalink_val_to_name(dlt));
  jc_set_str(env, out, "warning", warning);
  return out;
}

napi_value jc_open(napi_env env, napi_callback_info info) {
  size_t argc = 2;
  napi_value argv[2];
  CHECK(napi_get_cb_info(env, info, &argc, argv, NULL, NULL));
  if (argc < 1) return jc_throw_code(env, "EINVAL", "open(device, options)");
  char dev[256];
  size_t dlen = 0;
  if (napi_get_value_string_utf8(env, argv[0], dev, sizeof dev, &dlen) != napi_ok || dlen == 0 || dlen >= sizeof dev - 1)
    return jc_throw_code(env, "EINVAL", "open: device must be a non-empty string");
  napi_value o;
  if (argc >= 2) {
    napi_valuetype t;
    napi_typeof(env, argv[1], &t);
    if (t != napi_object) return jc_throw_code(env, "EINVAL", "open: options must be an object");
    o = argv[1];
  } else {
    CHECK(napi_create_object(env, &o));
  }
  int64_t snaplen, bufsize, timeout, msgtype;
  if (!jc_get_int(env, o, "snaplen", 262144, &snaplen) || snaplen < 1 || snaplen > 262144)
    return jc_throw_code(env, "EINVAL", "open: snaplen must be 1..262144");
  if (!jc_get_int(env, o, "bufferSize", 8 << 20, &bufsize) || bufsize < 0 || bufsize > (1LL << 31) - 1)
    return jc_throw_code(env, "EINVAL", "open: bufferSize must be 0..2^31-1 bytes");
  if (!jc_get_int(env, o, "timeoutMs", 50, &timeout) || timeout < 0 || timeout > 60000)
    return jc_throw_code(env, "EINVAL", "open: timeoutMs must be 0..60000");
  if (!jc_get_int(env, o, "msgType", 2, &msgtype) || msgtype < 0 || msgtype > 255)
    return jc_throw_code(env, "EINVAL", "open: msgType must be 0..255");
  int promisc = jc_get_bool(env, o, "promisc", 0);
  int fold = jc_get_bool(env, o, "fold", 0);
  int immediate = jc_get_bool(env, o, "immediate", 0);
  int bad = 0;
  char *filter = jc_get_str(env, o, "filter", &bad);
  if (bad) return jc_throw_code(env, "EINVAL", "open: filter must be a string");

  char errbuf[PCAP_ERRBUF_SIZE];
  char msg[PCAP_ERRBUF_SIZE + 300];
  errbuf[0] = 0;
  pcap_t *p = pcap_create(dev, errbuf);
  if (!p) {
    snprintf(msg, sizeof msg, "%s", errbuf);
    free(filter);
    return jc_throw_code(env, "EPCAP", msg);
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
    return jc_throw_code(env, "EPCAP", msg);
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
      return jc_throw_code(env, "EPCAP", msg);
    }
    if (pcap_setfilter(p, &prog) < 0) {
      snprintf(msg, sizeof msg, "%s", pcap_geterr(p));
      pcap_freecode(&prog);
      pcap_close(p);
      free(filter);
      return jc_throw_code(env, "EPCAP", msg);
    }
    pcap_freecode(&prog);
  }
  free(filter);
  if (pcap_setnonblock(p, 1, errbuf) < 0) {
    snprintf(msg, sizeof msg, "%s", errbuf);
    pcap_close(p);
    return jc_throw_code(env, "EPCAP", msg);
  }
  return wrap_pcap(env, p, msgtype, warning, 0, fold);
}


/* openOffline(path, {filter, msgType}): a pcap/pcapng file through the same batching (tests, replays) */
napi_value jc_open_offline(napi_env env, napi_callback_info info) {
  size_t argc = 2;
  napi_value argv[2];
  CHECK(napi_get_cb_info(env, info, &argc, argv, NULL, NULL));
  char path[4096];
  size_t plen = 0;
  if (argc < 1 || napi_get_value_string_utf8(env, argv[0], path, sizeof path, &plen) != napi_ok || plen == 0 || plen >= sizeof path - 1)
    return jc_throw_code(env, "EINVAL", "openOffline: path must be a non-empty string");
  napi_value o;
  if (argc >= 2) {
    napi_valuetype t;
    napi_typeof(env, argv[1], &t);
    if (t != napi_object) return jc_throw_code(env, "EINVAL", "openOffline: options must be an object");
    o = argv[1];
  } else {
    CHECK(napi_create_object(env, &o));
  }
  int64_t msgtype;
  if (!jc_get_int(env, o, "msgType", 2, &msgtype) || msgtype < 0 || msgtype > 255)
    return jc_throw_code(env, "EINVAL", "openOffline: msgType must be 0..255");
  int fold = jc_get_bool(env, o, "fold", 0);
  int bad = 0;
  char *filter = jc_get_str(env, o, "filter", &bad);
  if (bad) return jc_throw_code(env, "EINVAL", "openOffline: filter must be a string");
  char errbuf[PCAP_ERRBUF_SIZE];
  char msg[PCAP_ERRBUF_SIZE + 64];
  pcap_t *p = pcap_open_offline_with_tstamp_precision(path, PCAP_TSTAMP_PRECISION_MICRO, errbuf);
  if (!p) {
    free(filter);
    snprintf(msg, sizeof msg, "%s", errbuf);
    return jc_throw_code(env, "EPCAP", msg);
  }
  if (filter && *filter) {
    struct bpf_program prog;
    if (pcap_compile(p, &prog, filter, 1, PCAP_NETMASK_UNKNOWN) < 0 || pcap_setfilter(p, &prog) < 0) {
      snprintf(msg, sizeof msg, "%s", pcap_geterr(p));
      pcap_close(p);
      free(filter);
      return jc_throw_code(env, "EPCAP", msg);
    }
    pcap_freecode(&prog);
  }
  free(filter);
  return wrap_pcap(env, p, msgtype, NULL, 1, fold);
}
