/*
 * journey_native: N-API entry point. Exports
 *   layout()                     sizes and field offsets of the records (include/journey_events.h)
 *   clockOffsetNs()              CLOCK_REALTIME - CLOCK_MONOTONIC, to place BPF timestamps
 *   dropReasons()                [{value, name}] of the running kernel's enum skb_drop_reason (BTF)
 *   kernelOpen(opts, onEvents)   eBPF session: drops and netfilter hook programs (kernel.c)
 *   conntrackOpen(opts, onEvents) conntrack netlink events (conntrack.c)
 *   conntrackDump(opts)          conntrack netlink dump (conntrack.c)
 */
#define _GNU_SOURCE
#include <errno.h>
#include <stdio.h>
#include <string.h>
#include <time.h>
#include "jn.h"

const char *jn_errno_name(int err)
{
	switch (err) {
	case EPERM: return "EPERM";
	case EACCES: return "EACCES";
	case ENOENT: return "ENOENT";
	case EINVAL: return "EINVAL";
	case ENOMEM: return "ENOMEM";
	case EBUSY: return "EBUSY";
	case EEXIST: return "EEXIST";
	case ENOTSUP: return "ENOTSUP";
	case ENOSYS: return "ENOSYS";
	case E2BIG: return "E2BIG";
	case ESRCH: return "ESRCH";
	case EBADF: return "EBADF";
	case ENOBUFS: return "ENOBUFS";
	case EPROTONOSUPPORT: return "EPROTONOSUPPORT";
	case EAFNOSUPPORT: return "EAFNOSUPPORT";
	default: return "EUNKNOWN";
	}
}

napi_value jn_throw_errno(napi_env env, int err, const char *what)
{
	char msg[512];
	napi_value m, code, e;
	if (err < 0)
		err = -err;
	snprintf(msg, sizeof(msg), "%s: %s (%s)", what, strerror(err), jn_errno_name(err));
	napi_create_string_utf8(env, msg, NAPI_AUTO_LENGTH, &m);
	napi_create_string_utf8(env, jn_errno_name(err), NAPI_AUTO_LENGTH, &code);
	napi_create_error(env, code, m, &e);
	napi_throw(env, e);
	return NULL;
}

static int get_prop(napi_env env, napi_value obj, const char *key, napi_value *out, napi_valuetype want)
{
	bool has = false;
	napi_valuetype t;
	if (napi_has_named_property(env, obj, key, &has) != napi_ok || !has)
		return 0;
	if (napi_get_named_property(env, obj, key, out) != napi_ok)
		return 0;
	if (napi_typeof(env, *out, &t) != napi_ok || t != want)
		return 0;
	return 1;
}

int jn_get_string(napi_env env, napi_value obj, const char *key, char *buf, size_t len)
{
	napi_value v;
	size_t n = 0;
	buf[0] = 0;
	if (!get_prop(env, obj, key, &v, napi_string))
		return 0;
	return napi_get_value_string_utf8(env, v, buf, len, &n) == napi_ok;
}

int jn_get_int(napi_env env, napi_value obj, const char *key, int64_t *out)
{
	napi_value v;
	if (!get_prop(env, obj, key, &v, napi_number))
		return 0;
	return napi_get_value_int64(env, v, out) == napi_ok;
}

int jn_get_bool(napi_env env, napi_value obj, const char *key, int *out)
{
	napi_value v;
	bool b;
	if (!get_prop(env, obj, key, &v, napi_boolean))
		return 0;
	if (napi_get_value_bool(env, v, &b) != napi_ok)
		return 0;
	*out = b;
	return 1;
}

napi_value jn_make_method(napi_env env, napi_value obj, const char *name, napi_callback cb, void *data)
{
	napi_value fn;
	napi_create_function(env, name, NAPI_AUTO_LENGTH, cb, data, &fn);
	napi_set_named_property(env, obj, name, fn);
	return fn;
}

void jn_set_int(napi_env env, napi_value obj, const char *key, int64_t v)
{
	napi_value n;
	napi_create_int64(env, v, &n);
	napi_set_named_property(env, obj, key, n);
}

void jn_set_str(napi_env env, napi_value obj, const char *key, const char *v)
{
	napi_value s;
	napi_create_string_utf8(env, v, NAPI_AUTO_LENGTH, &s);
	napi_set_named_property(env, obj, key, s);
}

void jn_set_bool(napi_env env, napi_value obj, const char *key, int v)
{
	napi_value b;
	napi_get_boolean(env, v != 0, &b);
	napi_set_named_property(env, obj, key, b);
}

void jn_deliver(napi_env env, napi_ref cbref, napi_async_context actx, const void *data, size_t bytes,
		uint32_t count, double extra)
{
	napi_handle_scope scope;
	napi_value cb, recv, argv[3], result;
	void *copy;
	napi_status st;

	if (napi_open_handle_scope(env, &scope) != napi_ok)
		return;
	if (napi_get_reference_value(env, cbref, &cb) == napi_ok && cb) {
		napi_get_global(env, &recv);
		napi_create_buffer_copy(env, bytes, data, &copy, &argv[0]);
		napi_create_uint32(env, count, &argv[1]);
		napi_create_double(env, extra, &argv[2]);
		st = napi_make_callback(env, actx, recv, cb, 3, argv, &result);
		if (st == napi_pending_exception) {
			napi_value exc;
			napi_get_and_clear_last_exception(env, &exc);
			napi_fatal_exception(env, exc);
		}
	}
	napi_close_handle_scope(env, scope);
}

/* ---- layout: the offsets the TypeScript reader must agree with ---- */

#define FIELD(obj, type, f) jn_set_int(env, obj, #f, (int64_t)offsetof(type, f))

static napi_value layout(napi_env env, napi_callback_info info)
{
	napi_value root, ev, evf, ct, ctf, tp, tpf, flt, fltf;
	(void)info;
	napi_create_object(env, &root);

	napi_create_object(env, &tp);
	napi_create_object(env, &tpf);
	jn_set_int(env, tp, "size", sizeof(struct jn_tuple));
	FIELD(tpf, struct jn_tuple, saddr);
	FIELD(tpf, struct jn_tuple, daddr);
	FIELD(tpf, struct jn_tuple, sport);
	FIELD(tpf, struct jn_tuple, dport);
	FIELD(tpf, struct jn_tuple, family);
	FIELD(tpf, struct jn_tuple, proto);
	FIELD(tpf, struct jn_tuple, icmp_type);
	FIELD(tpf, struct jn_tuple, icmp_code);
	napi_set_named_property(env, tp, "fields", tpf);
	napi_set_named_property(env, root, "tuple", tp);

	napi_create_object(env, &ev);
	napi_create_object(env, &evf);
	jn_set_int(env, ev, "size", sizeof(struct jn_event));
	FIELD(evf, struct jn_event, ts_ns);
	FIELD(evf, struct jn_event, location);
	FIELD(evf, struct jn_event, kind);
	FIELD(evf, struct jn_event, netns);
	FIELD(evf, struct jn_event, ifindex);
	FIELD(evf, struct jn_event, reason);
	FIELD(evf, struct jn_event, ct_status);
	FIELD(evf, struct jn_event, ct_mark);
	FIELD(evf, struct jn_event, priority);
	FIELD(evf, struct jn_event, pkt_len);
	FIELD(evf, struct jn_event, ct_zone);
	FIELD(evf, struct jn_event, hook);
	FIELD(evf, struct jn_event, pf);
	FIELD(evf, struct jn_event, ctinfo);
	FIELD(evf, struct jn_event, has_ct);
	FIELD(evf, struct jn_event, slot);
	FIELD(evf, struct jn_event, ifname);
	FIELD(evf, struct jn_event, pkt);
	FIELD(evf, struct jn_event, ct_orig);
	FIELD(evf, struct jn_event, ct_reply);
	napi_set_named_property(env, ev, "fields", evf);
	napi_set_named_property(env, root, "event", ev);

	napi_create_object(env, &ct);
	napi_create_object(env, &ctf);
	jn_set_int(env, ct, "size", sizeof(struct jn_ct_event));
	FIELD(ctf, struct jn_ct_event, time_ns);
	FIELD(ctf, struct jn_ct_event, type);
	FIELD(ctf, struct jn_ct_event, id);
	FIELD(ctf, struct jn_ct_event, status);
	FIELD(ctf, struct jn_ct_event, mark);
	FIELD(ctf, struct jn_ct_event, timeout);
	FIELD(ctf, struct jn_ct_event, zone);
	FIELD(ctf, struct jn_ct_event, tcp_state);
	FIELD(ctf, struct jn_ct_event, packets);
	FIELD(ctf, struct jn_ct_event, orig);
	FIELD(ctf, struct jn_ct_event, reply);
	napi_set_named_property(env, ct, "fields", ctf);
	napi_set_named_property(env, root, "ctEvent", ct);

	napi_create_object(env, &flt);
	napi_create_object(env, &fltf);
	jn_set_int(env, flt, "size", sizeof(struct jn_filter));
	FIELD(fltf, struct jn_filter, netns);
	FIELD(fltf, struct jn_filter, drops);
	FIELD(fltf, struct jn_filter, addr);
	FIELD(fltf, struct jn_filter, has_addr);
	FIELD(fltf, struct jn_filter, proto);
	FIELD(fltf, struct jn_filter, port);
	FIELD(fltf, struct jn_filter, min_reason);
	FIELD(fltf, struct jn_filter, prio);
	FIELD(fltf, struct jn_filter, hook_once);
	FIELD(fltf, struct jn_filter, ignore);
	napi_set_named_property(env, flt, "fields", fltf);
	napi_set_named_property(env, root, "filter", flt);

	jn_set_int(env, root, "maxSlots", JN_MAX_SLOTS);
	jn_set_int(env, root, "nfPrograms", JN_NF_PROGS);
	return root;
}

static napi_value clock_offset(napi_env env, napi_callback_info info)
{
	struct timespec r, m;
	napi_value v;
	(void)info;
	clock_gettime(CLOCK_MONOTONIC, &m);
	clock_gettime(CLOCK_REALTIME, &r);
	napi_create_double(env,
			   ((double)r.tv_sec - (double)m.tv_sec) * 1e9 + ((double)r.tv_nsec - (double)m.tv_nsec),
			   &v);
	return v;
}

static napi_value init(napi_env env, napi_value exports)
{
	jn_make_method(env, exports, "layout", layout, NULL);
	jn_make_method(env, exports, "clockOffsetNs", clock_offset, NULL);
	jn_make_method(env, exports, "dropReasons", jn_drop_reasons, NULL);
	jn_make_method(env, exports, "kernelOpen", jn_kernel_open, NULL);
	jn_make_method(env, exports, "conntrackOpen", jn_ct_open, NULL);
	jn_make_method(env, exports, "conntrackDump", jn_ct_dump, NULL);
	return exports;
}

NAPI_MODULE(NODE_GYP_MODULE_NAME, init)
