/* The eBPF session's loading: the skeleton's programs loaded (with or without the drop program,
 * with as many netfilter programs as hook points), netfilter links made with raw BPF_LINK_CREATE,
 * and libbpf's messages kept for the error the user sees (verifier refusals). */
#include "kernel.h"

/* ---- libbpf messages: kept for the error the user sees (verifier refusals) ---- */
char jk_log[2048];
size_t jk_log_len;

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
	if (jk_log_len + (size_t)n >= sizeof(jk_log)) {
		/* keep the tail: the verifier's verdict comes last */
		size_t keep = sizeof(jk_log) / 2;
		memmove(jk_log, jk_log + jk_log_len - keep, keep);
		jk_log_len = keep;
	}
	memcpy(jk_log + jk_log_len, line, (size_t)n);
	jk_log_len += (size_t)n;
	jk_log[jk_log_len] = 0;
	return 0;
}

void jk_log_reset(void)
{
	jk_log_len = 0;
	jk_log[0] = 0;
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
int jk_try_load(int want_drops, int nprogs, struct journey_bpf **out)
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

int jk_nf_link(int prog_fd, int pf, int hook, int priority)
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
