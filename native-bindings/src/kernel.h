/*
 * What the parts of the eBPF session share: the session (its skeleton, ring buffer, links and
 * the batch on its way to JavaScript) and the functions one part calls in another:
 * kernel-load.c (loading the programs, linking them at netfilter hooks, libbpf's messages),
 * kernel-ring.c (events to JavaScript, statistics, closing), kernel.c (kernelOpen).
 */
#ifndef JOURNEY_KERNEL_H
#define JOURNEY_KERNEL_H

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

/* kernel-load.c */
extern char jk_log[2048];
extern size_t jk_log_len;
void jk_log_reset(void);
int jk_try_load(int want_drops, int nprogs, struct journey_bpf **out);
int jk_nf_link(int prog_fd, int pf, int hook, int priority);

/* kernel-ring.c */
int jk_on_sample(void *ctx, void *data, size_t size);
void jk_on_readable(uv_poll_t *h, int status, int events);
void jk_release(struct jn_kernel *k, int from_env_teardown);
void jk_env_cleanup(void *arg);
napi_value jk_close(napi_env env, napi_callback_info info);
napi_value jk_stats(napi_env env, napi_callback_info info);

#endif
