/*
 * eBPF session: loads bpf/journey.bpf.c (embedded skeleton), attaches tp_btf/kfree_skb (global,
 * filtered in the kernel by netns inode and the user's filter) and netfilter programs linked with
 * raw BPF_LINK_CREATE inside the target namespace. Links are owned by fds: they die with the
 * process, nothing is pinned. Events reach JS in batches through uv_poll on the ring buffer.
 */
#define _GNU_SOURCE
#include <errno.h>
#include <stdarg.h>
#include <stdint.h>
#include <time.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/syscall.h>
#include <unistd.h>
#include <linux/bpf.h>
#include <bpf/bpf.h>
#include <bpf/btf.h>
#include <bpf/libbpf.h>
#include "jn.h"
#include "journey.skel.h"

/* Not in the bookworm uapi headers (added in Linux 6.4). */
#define JN_BPF_PROG_TYPE_NETFILTER 32
#define JN_BPF_NETFILTER 45
#define JN_BATCH_MAX 1024

struct jn_link_create_nf {
	__u32 prog_fd;
	__u32 target_fd;
	__u32 attach_type;
	__u32 flags;
	__u32 pf;
	__u32 hooknum;
	__s32 priority;
	__u32 nf_flags;
};

struct jn_slot {
	int pf, hook, priority, prog;
	int step, max_shift; /* on EBUSY (priority taken in this netns): move by step, up to max_shift times */
	int link_fd;
	int err; /* 0 ok, else positive errno */
};

struct jn_kernel {
	napi_env env;
	napi_ref cb;
	napi_async_context actx;
	struct journey_bpf *skel;
	struct ring_buffer *rb;
	struct bpf_link *drop_link;
	uv_poll_t poll;
	int polling;
	int closed;
	int nslots;
	int nprogs;
	struct jn_slot slots[JN_MAX_SLOTS];
	uint32_t count;
	struct jn_event batch[JN_BATCH_MAX];
	double delivered;
	double batches;
	double lost_cached;   /* jn_lost as last read, and when (lost_recent) */
	int64_t lost_read_ms;
};

/* ---- libbpf messages: kept for the error the user sees (verifier refusals) ---- */
static char jn_log[2048];
static size_t jn_log_len;

static int jn_print(enum libbpf_print_level level, const char *fmt, va_list ap)
{
	char line[512];
	int n;
	if (level == LIBBPF_DEBUG)
		return 0;
	n = vsnprintf(line, sizeof(line), fmt, ap);
	if (n <= 0)
		return 0;
	if ((size_t)n >= sizeof(line))
		n = sizeof(line) - 1;
	if (jn_log_len + (size_t)n >= sizeof(jn_log)) {
		/* keep the tail: the verifier's verdict comes last */
		size_t keep = sizeof(jn_log) / 2;
		memmove(jn_log, jn_log + jn_log_len - keep, keep);
		jn_log_len = keep;
	}
	memcpy(jn_log + jn_log_len, line, (size_t)n);
	jn_log_len += (size_t)n;
	jn_log[jn_log_len] = 0;
	return 0;
}

static void log_reset(void)
{
	jn_log_len = 0;
	jn_log[0] = 0;
	libbpf_set_print(jn_print);
}

/* BTF id of struct nf_conn in the running kernel (0 when unknown: hook events then carry no
 * conntrack view). Looked up once. */
static __u32 nf_conn_btf_id(void)
{
	static int done;
	static __u32 id;
	if (!done) {
		struct btf *btf = btf__load_vmlinux_btf();
		done = 1;
		if (btf) {
			__s32 r = btf__find_by_name_kind(btf, "nf_conn", BTF_KIND_STRUCT);
			id = r > 0 ? (__u32)r : 0;
			btf__free(btf);
		}
	}
	return id;
}

/* Opens and loads the object with only the wanted programs. Returns 0 or -errno. */
static int try_load(int want_drops, int nprogs, struct journey_bpf **out)
{
	struct journey_bpf *skel;
	struct bpf_program *prog;
	char name[32];
	int err;

	*out = NULL;
	skel = journey_bpf__open();
	if (!skel)
		return errno ? -errno : -EINVAL;
	skel->rodata->jn_nf_conn_btf_id = nf_conn_btf_id();
	bpf_program__set_autoload(skel->progs.jn_kfree_skb, want_drops);
	for (int i = 0; i < JN_NF_PROGS; i++) {
		snprintf(name, sizeof(name), "jn_nf_%d", i);
		prog = bpf_object__find_program_by_name(skel->obj, name);
		if (!prog)
			continue;
		/* libbpf 1.1 does not know SEC("netfilter"): give the type by number */
		bpf_program__set_type(prog, JN_BPF_PROG_TYPE_NETFILTER);
		bpf_program__set_expected_attach_type(prog, JN_BPF_NETFILTER);
		bpf_program__set_autoload(prog, i < nprogs);
	}
	err = journey_bpf__load(skel);
	if (err) {
		journey_bpf__destroy(skel);
		return err < 0 ? err : -err;
	}
	*out = skel;
	return 0;
}

static int nf_link(int prog_fd, int pf, int hook, int priority)
{
	union {
		struct jn_link_create_nf a;
		union bpf_attr pad;
	} attr;
	int fd;
	memset(&attr, 0, sizeof(attr));
	attr.a.prog_fd = prog_fd;
	attr.a.attach_type = JN_BPF_NETFILTER;
	attr.a.pf = pf;
	attr.a.hooknum = hook;
	attr.a.priority = priority;
	fd = syscall(__NR_bpf, BPF_LINK_CREATE, &attr, sizeof(attr));
	return fd < 0 ? -errno : fd;
}

static int on_sample(void *ctx, void *data, size_t size)
{
	struct jn_kernel *k = ctx;
	if (size < sizeof(struct jn_event))
		return 0;
	memcpy(&k->batch[k->count++], data, sizeof(struct jn_event));
	/* batch full: stop this pass (the sample is consumed), deliver, then go on */
	return k->count >= JN_BATCH_MAX ? -E2BIG : 0;
}

/* The sum over CPUs of a one-slot per-CPU counter map. */
static double percpu_total(struct jn_kernel *k, int fd)
{
	int ncpu = libbpf_num_possible_cpus();
	__u32 key = 0;
	__u64 *vals;
	double sum = 0;
	if (!k->skel || ncpu <= 0)
		return 0;
	vals = calloc((size_t)ncpu, sizeof(__u64));
	if (!vals)
		return 0;
	if (bpf_map_lookup_elem(fd, &key, vals) == 0)
		for (int i = 0; i < ncpu; i++)
			sum += (double)vals[i];
	free(vals);
	return sum;
}

static double lost_total(struct jn_kernel *k)
{
	return k->skel ? percpu_total(k, bpf_map__fd(k->skel->maps.jn_lost)) : 0;
}

/* lost_total for a delivery: the map is read (a system call) at most every 50 ms, not per batch */
static double lost_recent(struct jn_kernel *k)
{
	struct timespec ts;
	clock_gettime(CLOCK_MONOTONIC, &ts);
	int64_t now = (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
	if (now - k->lost_read_ms >= 50) {
		k->lost_cached = lost_total(k);
		k->lost_read_ms = now;
	}
	return k->lost_cached;
}

static void flush(struct jn_kernel *k)
{
	if (!k->count)
		return;
	k->delivered += k->count;
	k->batches += 1;
	jn_deliver(k->env, k->cb, k->actx, k->batch, k->count * sizeof(struct jn_event), k->count, lost_recent(k));
	k->count = 0;
}

static void on_readable(uv_poll_t *h, int status, int events)
{
	struct jn_kernel *k = h->data;
	int n;
	(void)events;
	if (k->closed)
		return;
	if (status < 0) /* libuv stopped the handle on POLLERR: keep reading */
		uv_poll_start(&k->poll, UV_READABLE, on_readable);
	for (int guard = 0; guard < 64 && !k->closed; guard++) {
		n = ring_buffer__consume(k->rb);
		if (n == -E2BIG) {
			flush(k);
			continue;
		}
		break;
	}
	if (!k->closed)
		flush(k);
}

static void free_kernel(struct jn_kernel *k)
{
	free(k);
}

static void on_poll_closed(uv_handle_t *h)
{
	free_kernel(h->data);
}

static void release(struct jn_kernel *k, int from_env_teardown)
{
	if (k->closed)
		return;
	k->closed = 1;
	for (int i = 0; i < k->nslots; i++)
		if (k->slots[i].link_fd >= 0) {
			close(k->slots[i].link_fd);
			k->slots[i].link_fd = -1;
		}
	if (k->drop_link) {
		bpf_link__destroy(k->drop_link);
		k->drop_link = NULL;
	}
	if (k->polling)
		uv_poll_stop(&k->poll);
	if (k->rb) {
		ring_buffer__free(k->rb);
		k->rb = NULL;
	}
	if (k->skel) {
		journey_bpf__destroy(k->skel);
		k->skel = NULL;
	}
	if (!from_env_teardown) {
		napi_delete_reference(k->env, k->cb);
		napi_async_destroy(k->env, k->actx);
	}
}

static void env_cleanup(void *arg)
{
	struct jn_kernel *k = arg;
	int polling = k->polling;
	release(k, 1);
	if (polling)
		uv_close((uv_handle_t *)&k->poll, on_poll_closed);
	else
		free_kernel(k);
}

static napi_value k_close(napi_env env, napi_callback_info info)
{
	struct jn_kernel *k;
	size_t argc = 0;
	napi_get_cb_info(env, info, &argc, NULL, NULL, (void **)&k);
	if (!k || k->closed)
		return NULL;
	k->lost_read_ms = INT64_MIN / 2; /* the last delivery reads the counter afresh */
	flush(k);
	napi_remove_env_cleanup_hook(env, env_cleanup, k);
	release(k, 0);
	if (k->polling)
		uv_close((uv_handle_t *)&k->poll, on_poll_closed);
	/* when not polling the struct is freed by env teardown never reached: free now */
	else
		free_kernel(k);
	return NULL;
}

static napi_value k_stats(napi_env env, napi_callback_info info)
{
	struct jn_kernel *k;
	size_t argc = 0;
	napi_value o;
	napi_get_cb_info(env, info, &argc, NULL, NULL, (void **)&k);
	napi_create_object(env, &o);
	if (!k || k->closed) {
		jn_set_bool(env, o, "closed", 1);
		return o;
	}
	jn_set_bool(env, o, "closed", 0);
	napi_value v;
	napi_create_double(env, k->delivered, &v);
	napi_set_named_property(env, o, "delivered", v);
	napi_create_double(env, k->batches, &v);
	napi_set_named_property(env, o, "batches", v);
	napi_create_double(env, lost_total(k), &v);
	napi_set_named_property(env, o, "lost", v);
	napi_create_double(env, k->skel ? percpu_total(k, bpf_map__fd(k->skel->maps.jn_ignored)) : 0, &v);
	napi_set_named_property(env, o, "ignored", v);
	return o;
}

/* Re-reads the filter (same shape as kernelOpen's) and updates the config map in place. */
static int read_filter(napi_env env, napi_value opts, struct jn_filter *f)
{
	napi_value fl, addr;
	int64_t v;
	if (jn_get_int(env, opts, "netnsInode", &v))
		f->netns = (__u32)v;
	{
		napi_value ign;
		bool isarr = false;
		uint32_t n = 0;
		if (napi_get_named_property(env, opts, "ignoreReasons", &ign) == napi_ok &&
		    napi_is_array(env, ign, &isarr) == napi_ok && isarr && napi_get_array_length(env, ign, &n) == napi_ok) {
			for (uint32_t i = 0; i < n; i++) {
				napi_value x;
				uint32_t r;
				if (napi_get_element(env, ign, i, &x) == napi_ok && napi_get_value_uint32(env, x, &r) == napi_ok && r < 512)
					f->ignore[r >> 5] |= 1u << (r & 31);
			}
		}
	}
	if (jn_get_int(env, opts, "minReason", &v))
		f->min_reason = (__u32)v;
	else
		f->min_reason = 2; /* skip SKB_NOT_DROPPED_YET and SKB_CONSUMED */
	bool has = false;
	napi_valuetype t;
	if (napi_has_named_property(env, opts, "filter", &has) != napi_ok || !has)
		return 0;
	napi_get_named_property(env, opts, "filter", &fl);
	if (napi_typeof(env, fl, &t) != napi_ok || t != napi_object)
		return 0;
	if (jn_get_int(env, fl, "proto", &v))
		f->proto = (__u8)v;
	if (jn_get_int(env, fl, "port", &v))
		f->port = (__u16)v;
	if (napi_has_named_property(env, fl, "addr", &has) == napi_ok && has) {
		bool isbuf = false;
		napi_get_named_property(env, fl, "addr", &addr);
		if (napi_is_buffer(env, addr, &isbuf) == napi_ok && isbuf) {
			void *data;
			size_t len;
			napi_get_buffer_info(env, addr, &data, &len);
			if (len == 4 || len == 16) {
				memcpy(f->addr, data, len);
				f->has_addr = len == 4 ? 4 : 6;
			} else {
				return -EINVAL;
			}
		}
	}
	return 0;
}

static napi_value status_obj(napi_env env, int err, const char *detail)
{
	napi_value o;
	napi_create_object(env, &o);
	jn_set_bool(env, o, "ok", err == 0);
	if (err) {
		jn_set_str(env, o, "code", jn_errno_name(err < 0 ? -err : err));
		jn_set_str(env, o, "error", strerror(err < 0 ? -err : err));
		if (detail && *detail)
			jn_set_str(env, o, "detail", detail);
	}
	return o;
}

/*
 * kernelOpen({ netns, netnsInode, drops, hooks: [{pf, hook, priority}], filter: {proto, port, addr},
 *              minReason }, onEvents(buffer, count, lostTotal))
 * -> { close(), stats(), status: { load, drops, hooks: [...] } }
 * Throws only when nothing at all could be loaded.
 */
napi_value jn_kernel_open(napi_env env, napi_callback_info info)
{
	size_t argc = 2;
	napi_value argv[2], hooks, result, status, hstat, fn;
	struct jn_kernel *k;
	struct jn_filter filter;
	char nspath[512];
	int want_drops = 0, nsfd = -1, saved, err, load_err = 0, drops_err = 0, hooks_load_err = 0;
	uint32_t nh = 0;
	bool isarr = false;
	napi_valuetype t;

	napi_get_cb_info(env, info, &argc, argv, NULL, NULL);
	if (argc < 2 || napi_typeof(env, argv[0], &t) != napi_ok || t != napi_object)
		return jn_throw_errno(env, EINVAL, "kernelOpen(options, onEvents)");
	if (napi_typeof(env, argv[1], &t) != napi_ok || t != napi_function)
		return jn_throw_errno(env, EINVAL, "kernelOpen: onEvents must be a function");

	k = calloc(1, sizeof(*k));
	if (!k)
		return jn_throw_errno(env, ENOMEM, "kernelOpen");
	k->env = env;
	for (int i = 0; i < JN_MAX_SLOTS; i++)
		k->slots[i].link_fd = -1;

	memset(&filter, 0, sizeof(filter));
	jn_get_bool(env, argv[0], "drops", &want_drops);
	if (read_filter(env, argv[0], &filter) < 0) {
		free(k);
		return jn_throw_errno(env, EINVAL, "kernelOpen: filter.addr must be a 4 or 16 byte Buffer");
	}
	filter.drops = want_drops ? 1 : 0;
	{
		int once = 0;
		jn_get_bool(env, argv[0], "hookOnce", &once);
		filter.hook_once = once ? 1 : 0;
	}
	if (napi_get_named_property(env, argv[0], "hooks", &hooks) == napi_ok &&
	    napi_is_array(env, hooks, &isarr) == napi_ok && isarr)
		napi_get_array_length(env, hooks, &nh);
	if (nh > JN_MAX_SLOTS) {
		free(k);
		return jn_throw_errno(env, E2BIG, "kernelOpen: too many hooks");
	}
	for (uint32_t i = 0; i < nh; i++) {
		napi_value h;
		int64_t pf = 2, hook = 0, prio = 0, step = 1, max_shift = 0;
		napi_get_element(env, hooks, i, &h);
		jn_get_int(env, h, "pf", &pf);
		jn_get_int(env, h, "hook", &hook);
		jn_get_int(env, h, "priority", &prio);
		jn_get_int(env, h, "step", &step);
		jn_get_int(env, h, "maxShift", &max_shift);
		k->slots[i].step = step < 0 ? -1 : 1;
		k->slots[i].max_shift = max_shift < 0 ? 0 : max_shift > 64 ? 64 : (int)max_shift;
		if ((pf != 2 && pf != 10) || hook < 0 || hook > 4) {
			free(k);
			return jn_throw_errno(env, EINVAL, "kernelOpen: hooks need pf 2|10 and hook 0..4");
		}
		k->slots[i].pf = (int)pf;
		k->slots[i].hook = (int)hook;
		k->slots[i].priority = (int)prio;
		/* the lowest program not yet linked at this (pf, hook): it can name the priority */
		int prog = 0;
		for (uint32_t j = 0; j < i; j++)
			if (k->slots[j].pf == pf && k->slots[j].hook == hook && k->slots[j].prog >= prog)
				prog = k->slots[j].prog + 1;
		if (prog >= JN_NF_PROGS) {
			free(k);
			return jn_throw_errno(env, E2BIG, "kernelOpen: more than 4 links at one hook");
		}
		k->slots[i].prog = prog;
		filter.prio[prog][pf == 10 ? 1 : 0][hook] = (int)prio;
		if (prog + 1 > k->nprogs)
			k->nprogs = prog + 1;
	}
	k->nslots = (int)nh;

	jn_get_string(env, argv[0], "netns", nspath, sizeof(nspath));
	if (nspath[0]) {
		nsfd = jn_netns_open(nspath);
		if (nsfd < 0) {
			free(k);
			return jn_throw_errno(env, nsfd, nspath);
		}
	}

	/* Load what the kernel accepts: all, else each part alone, to name what was refused. */
	log_reset();
	err = try_load(want_drops, k->nprogs, &k->skel);
	if (err && want_drops && k->nslots) {
		load_err = err;
		if (try_load(1, 0, &k->skel) == 0) {
			hooks_load_err = err;
		} else if (try_load(0, k->nprogs, &k->skel) == 0) {
			drops_err = err;
		}
	} else if (err) {
		load_err = err;
		if (want_drops)
			drops_err = err;
		else
			hooks_load_err = err;
	}
	if (!k->skel) {
		char what[2300];
		if (nsfd >= 0)
			close(nsfd);
		snprintf(what, sizeof(what), "eBPF unavailable%s%s", jn_log_len ? ": " : "",
			 jn_log_len ? jn_log + (jn_log_len > 600 ? jn_log_len - 600 : 0) : "");
		free(k);
		return jn_throw_errno(env, load_err, what);
	}
	bpf_map_update_elem(bpf_map__fd(k->skel->maps.jn_config), &(__u32){ 0 }, &filter, BPF_ANY);

	if (want_drops && !drops_err) {
		k->drop_link = bpf_program__attach(k->skel->progs.jn_kfree_skb);
		if (!k->drop_link)
			drops_err = errno ? -errno : -EINVAL;
	}

	if (k->nslots) {
		if (hooks_load_err) {
			for (int i = 0; i < k->nslots; i++)
				k->slots[i].err = -hooks_load_err;
		} else {
			err = jn_netns_enter(nsfd, &saved);
			for (int i = 0; i < k->nslots; i++) {
				char name[32];
				struct bpf_program *prog;
				if (err) {
					k->slots[i].err = -err;
					continue;
				}
				snprintf(name, sizeof(name), "jn_nf_%d", k->slots[i].prog);
				prog = bpf_object__find_program_by_name(k->skel->obj, name);
				int fd = -ENOENT;
				/* one link per (pf, hook, priority) and netns: another observer may hold it */
				for (int shift = 0; prog && shift <= k->slots[i].max_shift; shift++) {
					int prio = k->slots[i].priority + shift * k->slots[i].step;
					fd = nf_link(bpf_program__fd(prog), k->slots[i].pf, k->slots[i].hook, prio);
					if (fd != -EBUSY) {
						if (fd >= 0)
							k->slots[i].priority = prio;
						break;
					}
				}
				if (fd < 0)
					k->slots[i].err = -fd;
				else
					k->slots[i].link_fd = fd;
			}
			if (!err)
				jn_netns_leave(saved);
			/* the priorities actually linked, for the events */
			for (int i = 0; i < k->nslots; i++)
				filter.prio[k->slots[i].prog][k->slots[i].pf == 10 ? 1 : 0][k->slots[i].hook] =
					k->slots[i].priority;
			bpf_map_update_elem(bpf_map__fd(k->skel->maps.jn_config), &(__u32){ 0 }, &filter, BPF_ANY);
		}
	}
	if (nsfd >= 0)
		close(nsfd);

	k->rb = ring_buffer__new(bpf_map__fd(k->skel->maps.jn_events), on_sample, k, NULL);
	if (!k->rb) {
		int e = errno ? errno : EINVAL;
		k->closed = 0;
		release(k, 1);
		free(k);
		return jn_throw_errno(env, e, "ring buffer");
	}

	napi_create_reference(env, argv[1], 1, &k->cb);
	{
		napi_value rname;
		napi_create_string_utf8(env, "journey.kernelEvents", NAPI_AUTO_LENGTH, &rname);
		napi_async_init(env, NULL, rname, &k->actx);
	}
	uv_loop_t *loop;
	napi_get_uv_event_loop(env, &loop);
	uv_poll_init(loop, &k->poll, ring_buffer__epoll_fd(k->rb));
	k->poll.data = k;
	uv_poll_start(&k->poll, UV_READABLE, on_readable);
	k->polling = 1;
	napi_add_env_cleanup_hook(env, env_cleanup, k);

	napi_create_object(env, &result);
	jn_make_method(env, result, "close", k_close, k);
	jn_make_method(env, result, "stats", k_stats, k);
	napi_create_object(env, &status);
	napi_set_named_property(env, status, "load", status_obj(env, load_err, load_err ? jn_log : NULL));
	if (want_drops)
		napi_set_named_property(env, status, "drops", status_obj(env, drops_err, NULL));
	napi_create_array_with_length(env, (size_t)k->nslots, &hstat);
	for (int i = 0; i < k->nslots; i++) {
		napi_value s = status_obj(env, k->slots[i].err, NULL);
		jn_set_int(env, s, "pf", k->slots[i].pf);
		jn_set_int(env, s, "hook", k->slots[i].hook);
		jn_set_int(env, s, "priority", k->slots[i].priority);
		jn_set_int(env, s, "program", k->slots[i].prog);
		napi_set_element(env, hstat, (uint32_t)i, s);
	}
	napi_set_named_property(env, status, "hooks", hstat);
	napi_set_named_property(env, result, "status", status);
	(void)fn;
	return result;
}

/* The running kernel's enum skb_drop_reason, from its BTF: [{ value, name }]. */
napi_value jn_drop_reasons(napi_env env, napi_callback_info info)
{
	struct btf *btf;
	const struct btf_type *t;
	napi_value arr;
	__s32 id;
	(void)info;
	btf = btf__load_vmlinux_btf();
	if (!btf)
		return jn_throw_errno(env, errno ? errno : ENOENT, "kernel BTF (/sys/kernel/btf/vmlinux)");
	id = btf__find_by_name_kind(btf, "skb_drop_reason", BTF_KIND_ENUM);
	if (id < 0) {
		btf__free(btf);
		return jn_throw_errno(env, ENOENT, "enum skb_drop_reason not in kernel BTF");
	}
	t = btf__type_by_id(btf, (__u32)id);
	const struct btf_enum *e = btf_enum(t);
	__u16 n = btf_vlen(t);
	napi_create_array_with_length(env, n, &arr);
	for (__u16 i = 0; i < n; i++) {
		napi_value o;
		napi_create_object(env, &o);
		jn_set_int(env, o, "value", (int64_t)(__u32)e[i].val);
		jn_set_str(env, o, "name", btf__name_by_offset(btf, e[i].name_off));
		napi_set_element(env, arr, i, o);
	}
	btf__free(btf);
	return arr;
}
