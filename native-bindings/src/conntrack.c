/*
 * Conntrack over netlink (libmnl + libnetfilter_conntrack): a dump, and NEW/UPDATE/DESTROY
 * events read through uv_poll on a non-blocking socket opened inside the target namespace (a
 * netlink socket stays bound to the namespace it was created in). Each message becomes a
 * struct jn_ct_event; batches go to JS. Buffer overruns (ENOBUFS) are counted and reported.
 */
#define _GNU_SOURCE
#include <arpa/inet.h>
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>
#include <libmnl/libmnl.h>
#include <linux/netfilter/nfnetlink.h>
#include <linux/netfilter/nfnetlink_conntrack.h>
#include <linux/netfilter/nfnetlink_compat.h>
#include <libnetfilter_conntrack/libnetfilter_conntrack.h>
#include "jn.h"

#define JN_CT_BATCH_MAX 1024
/* netlink dumps fill messages up to the reader's buffer size: a small buffer truncates them */
#define JN_DUMP_BUF (256 * 1024)

struct jn_ct {
	napi_env env;
	napi_ref cb;
	napi_async_context actx;
	struct mnl_socket *nl;
	uv_poll_t poll;
	int polling;
	int closed;
	double overruns;
	double reported_overruns;
	double delivered;
	uint32_t count;
	struct nf_conntrack *scratch;
	struct jn_ct_event batch[JN_CT_BATCH_MAX];
	char buf[1 << 16];
};

static uint64_t now_ns(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_REALTIME, &ts);
	return (uint64_t)ts.tv_sec * 1000000000ull + (uint64_t)ts.tv_nsec;
}

static void fill_tuple(const struct nf_conntrack *ct, int reply, struct jn_tuple *t)
{
	uint8_t l3 = nfct_get_attr_u8(ct, reply ? ATTR_REPL_L3PROTO : ATTR_ORIG_L3PROTO);
	uint8_t l4 = nfct_get_attr_u8(ct, reply ? ATTR_REPL_L4PROTO : ATTR_ORIG_L4PROTO);
	memset(t, 0, sizeof(*t));
	t->proto = l4;
	if (l3 == AF_INET) {
		uint32_t s = nfct_get_attr_u32(ct, reply ? ATTR_REPL_IPV4_SRC : ATTR_ORIG_IPV4_SRC);
		uint32_t d = nfct_get_attr_u32(ct, reply ? ATTR_REPL_IPV4_DST : ATTR_ORIG_IPV4_DST);
		t->family = 4;
		memcpy(t->saddr, &s, 4);
		memcpy(t->daddr, &d, 4);
	} else if (l3 == AF_INET6) {
		const void *s = nfct_get_attr(ct, reply ? ATTR_REPL_IPV6_SRC : ATTR_ORIG_IPV6_SRC);
		const void *d = nfct_get_attr(ct, reply ? ATTR_REPL_IPV6_DST : ATTR_ORIG_IPV6_DST);
		t->family = 6;
		if (s)
			memcpy(t->saddr, s, 16);
		if (d)
			memcpy(t->daddr, d, 16);
	}
	if (l4 == IPPROTO_TCP || l4 == IPPROTO_UDP || l4 == IPPROTO_SCTP || l4 == IPPROTO_UDPLITE ||
	    l4 == IPPROTO_DCCP) {
		t->sport = ntohs(nfct_get_attr_u16(ct, reply ? ATTR_REPL_PORT_SRC : ATTR_ORIG_PORT_SRC));
		t->dport = ntohs(nfct_get_attr_u16(ct, reply ? ATTR_REPL_PORT_DST : ATTR_ORIG_PORT_DST));
	} else if (l4 == IPPROTO_ICMP || l4 == IPPROTO_ICMPV6) {
		/* the library keeps the original direction's icmp attributes */
		uint16_t id = ntohs(nfct_get_attr_u16(ct, ATTR_ICMP_ID));
		t->sport = id;
		t->dport = id;
		if (!reply) {
			t->icmp_type = nfct_get_attr_u8(ct, ATTR_ICMP_TYPE);
			t->icmp_code = nfct_get_attr_u8(ct, ATTR_ICMP_CODE);
		}
	}
}

static void fill_event(const struct nf_conntrack *ct, uint32_t type, struct jn_ct_event *e)
{
	memset(e, 0, sizeof(*e));
	e->time_ns = now_ns();
	e->type = type;
	e->id = nfct_attr_is_set(ct, ATTR_ID) > 0 ? nfct_get_attr_u32(ct, ATTR_ID) : 0;
	e->status = nfct_attr_is_set(ct, ATTR_STATUS) > 0 ? nfct_get_attr_u32(ct, ATTR_STATUS) : 0;
	e->mark = nfct_attr_is_set(ct, ATTR_MARK) > 0 ? nfct_get_attr_u32(ct, ATTR_MARK) : 0;
	e->timeout = nfct_attr_is_set(ct, ATTR_TIMEOUT) > 0 ? nfct_get_attr_u32(ct, ATTR_TIMEOUT) : 0;
	e->zone = nfct_attr_is_set(ct, ATTR_ZONE) > 0 ? nfct_get_attr_u16(ct, ATTR_ZONE) : 0;
	e->tcp_state = nfct_attr_is_set(ct, ATTR_TCP_STATE) > 0 ? nfct_get_attr_u8(ct, ATTR_TCP_STATE)
								: JN_TCP_STATE_NONE;
	if (nfct_attr_is_set(ct, ATTR_ORIG_COUNTER_PACKETS) > 0)
		e->packets = nfct_get_attr_u64(ct, ATTR_ORIG_COUNTER_PACKETS) +
			     nfct_get_attr_u64(ct, ATTR_REPL_COUNTER_PACKETS);
	fill_tuple(ct, 0, &e->orig);
	fill_tuple(ct, 1, &e->reply);
}

static uint32_t msg_type(const struct nlmsghdr *nlh)
{
	switch (NFNL_MSG_TYPE(nlh->nlmsg_type)) {
	case IPCTNL_MSG_CT_NEW:
		return (nlh->nlmsg_flags & (NLM_F_CREATE | NLM_F_EXCL)) ? JN_CT_NEW : JN_CT_UPDATE;
	case IPCTNL_MSG_CT_DELETE:
		return JN_CT_DESTROY;
	default:
		return 0;
	}
}

static void ct_flush(struct jn_ct *c)
{
	/* an overrun with no event to carry it is still reported (an empty batch) */
	if (!c->count && c->overruns == c->reported_overruns)
		return;
	c->delivered += c->count;
	c->reported_overruns = c->overruns;
	jn_deliver(c->env, c->cb, c->actx, c->batch, c->count * sizeof(struct jn_ct_event), c->count, c->overruns);
	c->count = 0;
}

static int event_cb(const struct nlmsghdr *nlh, void *data)
{
	struct jn_ct *c = data;
	uint32_t type = msg_type(nlh);
	if (!type)
		return MNL_CB_OK;
	nfct_destroy(c->scratch);
	c->scratch = nfct_new();
	if (!c->scratch)
		return MNL_CB_ERROR;
	if (nfct_nlmsg_parse(nlh, c->scratch) < 0)
		return MNL_CB_OK;
	fill_event(c->scratch, type, &c->batch[c->count++]);
	if (c->count >= JN_CT_BATCH_MAX)
		ct_flush(c);
	return MNL_CB_OK;
}

/* Reads what the socket has queued (at most 256 messages: a flood waits for the next call) and
 * hands it to JavaScript. */
static void ct_read(struct jn_ct *c)
{
	for (int guard = 0; guard < 256 && !c->closed; guard++) {
		ssize_t n = mnl_socket_recvfrom(c->nl, c->buf, sizeof(c->buf));
		if (n < 0) {
			if (errno == ENOBUFS) {
				c->overruns += 1; /* the kernel dropped events for us: say so */
				continue;
			}
			break; /* EAGAIN */
		}
		mnl_cb_run(c->buf, (size_t)n, 0, 0, event_cb, c);
	}
	if (!c->closed)
		ct_flush(c);
}

static void ct_readable(uv_poll_t *h, int status, int events)
{
	struct jn_ct *c = h->data;
	(void)events;
	if (c->closed)
		return;
	if (status < 0) {
		/* libuv stops a poll handle on POLLERR: that is how an overrun (ENOBUFS, sk_err) shows.
		 * Start it again; the reads below collect the error and the queued messages. */
		uv_poll_start(&c->poll, UV_READABLE, ct_readable);
	}
	ct_read(c);
}

static void ct_free(struct jn_ct *c)
{
	if (c->scratch)
		nfct_destroy(c->scratch);
	free(c);
}

static void ct_poll_closed(uv_handle_t *h)
{
	ct_free(h->data);
}

static void ct_release(struct jn_ct *c, int teardown)
{
	if (c->closed)
		return;
	c->closed = 1;
	if (c->polling)
		uv_poll_stop(&c->poll);
	if (c->nl) {
		mnl_socket_close(c->nl);
		c->nl = NULL;
	}
	if (!teardown) {
		napi_delete_reference(c->env, c->cb);
		napi_async_destroy(c->env, c->actx);
	}
}

static void ct_env_cleanup(void *arg)
{
	struct jn_ct *c = arg;
	int polling = c->polling;
	ct_release(c, 1);
	if (polling)
		uv_close((uv_handle_t *)&c->poll, ct_poll_closed);
	else
		ct_free(c);
}

static napi_value ct_close(napi_env env, napi_callback_info info)
{
	struct jn_ct *c;
	size_t argc = 0;
	napi_get_cb_info(env, info, &argc, NULL, NULL, (void **)&c);
	if (!c || c->closed)
		return NULL;
	ct_flush(c);
	napi_remove_env_cleanup_hook(env, ct_env_cleanup, c);
	ct_release(c, 0);
	uv_close((uv_handle_t *)&c->poll, ct_poll_closed);
	return NULL;
}

/* readNow(): the events already queued, delivered before it returns (the callback runs on this
 * stack): a caller about to handle packets first learns the entries made before they were seen. */
static napi_value ct_read_now(napi_env env, napi_callback_info info)
{
	struct jn_ct *c;
	size_t argc = 0;
	napi_get_cb_info(env, info, &argc, NULL, NULL, (void **)&c);
	if (c && !c->closed)
		ct_read(c);
	return NULL;
}

static napi_value ct_stats(napi_env env, napi_callback_info info)
{
	struct jn_ct *c;
	size_t argc = 0;
	napi_value o, v;
	napi_get_cb_info(env, info, &argc, NULL, NULL, (void **)&c);
	napi_create_object(env, &o);
	jn_set_bool(env, o, "closed", !c || c->closed);
	if (!c || c->closed)
		return o;
	napi_create_double(env, c->delivered, &v);
	napi_set_named_property(env, o, "delivered", v);
	napi_create_double(env, c->overruns, &v);
	napi_set_named_property(env, o, "overruns", v);
	return o;
}

static int open_in_netns(napi_env env, napi_value opts, int nonblock, struct mnl_socket **out, unsigned groups)
{
	char nspath[512];
	int nsfd = -1, saved = -1, err;
	struct mnl_socket *nl;
	*out = NULL;
	jn_get_string(env, opts, "netns", nspath, sizeof(nspath));
	if (nspath[0]) {
		nsfd = jn_netns_open(nspath);
		if (nsfd < 0)
			return nsfd;
	}
	err = jn_netns_enter(nsfd, &saved);
	if (nsfd >= 0)
		close(nsfd);
	if (err)
		return err;
	nl = mnl_socket_open2(NETLINK_NETFILTER, SOCK_CLOEXEC | (nonblock ? SOCK_NONBLOCK : 0));
	if (!nl) {
		err = -errno;
	} else if (mnl_socket_bind(nl, groups, MNL_SOCKET_AUTOPID) < 0) {
		err = -errno;
		mnl_socket_close(nl);
		nl = NULL;
	}
	jn_netns_leave(saved);
	if (nl && groups) {
		int sz = 8 << 20;
		/* as root, past rmem_max: a burst of connections must not overrun us */
		if (setsockopt(mnl_socket_get_fd(nl), SOL_SOCKET, SO_RCVBUFFORCE, &sz, sizeof(sz)) < 0)
			setsockopt(mnl_socket_get_fd(nl), SOL_SOCKET, SO_RCVBUF, &sz, sizeof(sz));
	}
	*out = nl;
	return err;
}

/* conntrackOpen({ netns }, onEvents(buffer, count, overruns)) -> { close(), stats() } */
napi_value jn_ct_open(napi_env env, napi_callback_info info)
{
	size_t argc = 2;
	napi_value argv[2], result, rname;
	napi_valuetype t;
	struct jn_ct *c;
	int err;
	uv_loop_t *loop;

	napi_get_cb_info(env, info, &argc, argv, NULL, NULL);
	if (argc < 2 || napi_typeof(env, argv[0], &t) != napi_ok || t != napi_object)
		return jn_throw_errno(env, EINVAL, "conntrackOpen(options, onEvents)");
	if (napi_typeof(env, argv[1], &t) != napi_ok || t != napi_function)
		return jn_throw_errno(env, EINVAL, "conntrackOpen: onEvents must be a function");
	c = calloc(1, sizeof(*c));
	if (!c)
		return jn_throw_errno(env, ENOMEM, "conntrackOpen");
	c->env = env;
	c->scratch = nfct_new();
	err = open_in_netns(env, argv[0], 1, &c->nl,
			    NF_NETLINK_CONNTRACK_NEW | NF_NETLINK_CONNTRACK_UPDATE | NF_NETLINK_CONNTRACK_DESTROY);
	if (err || !c->scratch) {
		ct_free(c);
		return jn_throw_errno(env, err ? err : -ENOMEM, "conntrack netlink socket");
	}
	napi_create_reference(env, argv[1], 1, &c->cb);
	napi_create_string_utf8(env, "journey.conntrackEvents", NAPI_AUTO_LENGTH, &rname);
	napi_async_init(env, NULL, rname, &c->actx);
	napi_get_uv_event_loop(env, &loop);
	uv_poll_init(loop, &c->poll, mnl_socket_get_fd(c->nl));
	c->poll.data = c;
	uv_poll_start(&c->poll, UV_READABLE, ct_readable);
	c->polling = 1;
	napi_add_env_cleanup_hook(env, ct_env_cleanup, c);

	napi_create_object(env, &result);
	jn_make_method(env, result, "close", ct_close, c);
	jn_make_method(env, result, "stats", ct_stats, c);
	jn_make_method(env, result, "readNow", ct_read_now, c);
	return result;
}

struct dump_ctx {
	struct nf_conntrack *ct;
	struct jn_ct_event *ev;
	size_t n, cap;
	int err;
};

static int dump_cb(const struct nlmsghdr *nlh, void *data)
{
	struct dump_ctx *d = data;
	nfct_destroy(d->ct);
	d->ct = nfct_new();
	if (!d->ct) {
		d->err = -ENOMEM;
		return MNL_CB_ERROR;
	}
	if (nfct_nlmsg_parse(nlh, d->ct) < 0)
		return MNL_CB_OK;
	if (d->n == d->cap) {
		size_t cap = d->cap ? d->cap * 2 : 256;
		struct jn_ct_event *p = realloc(d->ev, cap * sizeof(*p));
		if (!p) {
			d->err = -ENOMEM;
			return MNL_CB_ERROR;
		}
		d->ev = p;
		d->cap = cap;
	}
	fill_event(d->ct, JN_CT_DUMP, &d->ev[d->n++]);
	return MNL_CB_OK;
}

/* conntrackDump({ netns }) -> Buffer of jn_ct_event records (type JN_CT_DUMP) */
napi_value jn_ct_dump(napi_env env, napi_callback_info info)
{
	size_t argc = 1;
	napi_value argv[1], out;
	napi_valuetype t;
	struct mnl_socket *nl;
	struct dump_ctx d = { 0 };
	char *buf;
	struct nlmsghdr *nlh;
	struct nfgenmsg *nfh;
	unsigned seq = (unsigned)time(NULL), portid;
	int err, ret;
	void *copy;

	napi_get_cb_info(env, info, &argc, argv, NULL, NULL);
	if (argc < 1 || napi_typeof(env, argv[0], &t) != napi_ok || t != napi_object)
		return jn_throw_errno(env, EINVAL, "conntrackDump(options)");
	err = open_in_netns(env, argv[0], 0, &nl, 0);
	if (err)
		return jn_throw_errno(env, err, "conntrack netlink socket");
	buf = malloc(JN_DUMP_BUF);
	d.ct = nfct_new();
	if (!buf || !d.ct) {
		free(buf);
		if (d.ct)
			nfct_destroy(d.ct);
		mnl_socket_close(nl);
		return jn_throw_errno(env, ENOMEM, "conntrackDump");
	}
	portid = mnl_socket_get_portid(nl);
	nlh = mnl_nlmsg_put_header(buf);
	nlh->nlmsg_type = (NFNL_SUBSYS_CTNETLINK << 8) | IPCTNL_MSG_CT_GET;
	nlh->nlmsg_flags = NLM_F_REQUEST | NLM_F_DUMP;
	nlh->nlmsg_seq = seq;
	nfh = mnl_nlmsg_put_extra_header(nlh, sizeof(struct nfgenmsg));
	nfh->nfgen_family = AF_UNSPEC;
	nfh->version = NFNETLINK_V0;
	nfh->res_id = 0;
	if (mnl_socket_sendto(nl, nlh, nlh->nlmsg_len) < 0) {
		err = -errno;
	} else {
		for (;;) {
			ret = (int)mnl_socket_recvfrom(nl, buf, JN_DUMP_BUF);
			if (ret < 0) {
				err = -errno;
				break;
			}
			ret = mnl_cb_run(buf, (size_t)ret, seq, portid, dump_cb, &d);
			if (ret <= MNL_CB_STOP) {
				if (ret < 0)
					err = d.err ? d.err : -errno;
				break;
			}
		}
	}
	free(buf);
	nfct_destroy(d.ct);
	mnl_socket_close(nl);
	if (err) {
		free(d.ev);
		return jn_throw_errno(env, err, "conntrack dump");
	}
	napi_create_buffer_copy(env, d.n * sizeof(struct jn_ct_event), d.ev ? (void *)d.ev : (void *)"", &copy, &out);
	free(d.ev);
	return out;
}
