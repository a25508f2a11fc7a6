/* The eBPF session's events on their way to JavaScript: the ring buffer read when its fd is
 * readable (uv_poll), events gathered in batches, lost events counted; statistics and closing. */
#include "kernel.h"

int jk_on_sample(void *ctx, void *data, size_t size)
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

void jk_on_readable(uv_poll_t *h, int status, int events)
{
	struct jn_kernel *k = h->data;
	int n;
	(void)events;
	if (k->closed)
		return;
	if (status < 0) /* libuv stopped the handle on POLLERR: keep reading */
		uv_poll_start(&k->poll, UV_READABLE, jk_on_readable);
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

void jk_release(struct jn_kernel *k, int from_env_teardown)
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

void jk_env_cleanup(void *arg)
{
	struct jn_kernel *k = arg;
	int polling = k->polling;
	jk_release(k, 1);
	if (polling)
		uv_close((uv_handle_t *)&k->poll, on_poll_closed);
	else
		free_kernel(k);
}

napi_value jk_close(napi_env env, napi_callback_info info)
{
	struct jn_kernel *k;
	size_t argc = 0;
	napi_get_cb_info(env, info, &argc, NULL, NULL, (void **)&k);
	if (!k || k->closed)
		return NULL;
	k->lost_read_ms = INT64_MIN / 2; /* the last delivery reads the counter afresh */
	flush(k);
	napi_remove_env_cleanup_hook(env, jk_env_cleanup, k);
	jk_release(k, 0);
	if (k->polling)
		uv_close((uv_handle_t *)&k->poll, on_poll_closed);
	/* when not polling the struct is freed by env teardown never reached: free now */
	else
		free_kernel(k);
	return NULL;
}

napi_value jk_stats(napi_env env, napi_callback_info info)
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
