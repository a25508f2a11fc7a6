/*
 * eBPF session: loads bpf/journey.bpf.c (embedded skeleton), attaches tp_btf/kfree_skb (global,
 * filtered in the kernel by netns inode and the user's filter) and netfilter programs linked with
 * raw BPF_LINK_CREATE inside the target namespace. Links are owned by fds: they die with the
 * process, nothing is pinned. Events reach JS in batches through uv_poll on the ring buffer.
 */
#include "kernel.h"

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
	jk_log_reset();
	err = jk_try_load(want_drops, k->nprogs, &k->skel);
	if (err && want_drops && k->nslots) {
		load_err = err;
		if (jk_try_load(1, 0, &k->skel) == 0) {
			hooks_load_err = err;
		} else if (jk_try_load(0, k->nprogs, &k->skel) == 0) {
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
		snprintf(what, sizeof(what), "eBPF unavailable%s%s", jk_log_len ? ": " : "",
			 jk_log_len ? jk_log + (jk_log_len > 600 ? jk_log_len - 600 : 0) : "");
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
					fd = jk_nf_link(bpf_program__fd(prog), k->slots[i].pf, k->slots[i].hook, prio);
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

	k->rb = ring_buffer__new(bpf_map__fd(k->skel->maps.jn_events), jk_on_sample, k, NULL);
	if (!k->rb) {
		int e = errno ? errno : EINVAL;
		k->closed = 0;
		jk_release(k, 1);
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
	uv_poll_start(&k->poll, UV_READABLE, jk_on_readable);
	k->polling = 1;
	napi_add_env_cleanup_hook(env, jk_env_cleanup, k);

	napi_create_object(env, &result);
	jn_make_method(env, result, "close", jk_close, k);
	jn_make_method(env, result, "stats", jk_stats, k);
	napi_create_object(env, &status);
	napi_set_named_property(env, status, "load", status_obj(env, load_err, load_err ? jk_log : NULL));
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
