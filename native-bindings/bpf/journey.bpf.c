// SPDX-License-Identifier: GPL-2.0
/*
 * journey's kernel programs (CO-RE, compiled at build time against the running kernel's BTF):
 *  - tp_btf/kfree_skb: every dropped skb with the kernel's drop reason, filtered here by
 *    network namespace and by the user's filter so host-wide noise never reaches user space;
 *  - netfilter (BPF_PROG_TYPE_NETFILTER) programs, one per attach slot, linked by user space
 *    at a hook and priority inside the target namespace: the packet's tuple and its conntrack
 *    entry (status, both tuples) before and after NAT.
 * Every record is a struct jn_event (include/journey_events.h) in one ring buffer.
 */
#include "vmlinux.h"
#include <bpf/bpf_helpers.h>
#include <bpf/bpf_core_read.h>
#include <bpf/bpf_tracing.h>
#include <bpf/bpf_endian.h>
#include "journey_events.h"

char LICENSE[] SEC("license") = "GPL";

#define ETH_P_IP 0x0800
#define ETH_P_IPV6 0x86DD
#define NFCT_INFOMASK 7UL
#define IPPROTO_ICMP_ 1
#define IPPROTO_TCP_ 6
#define IPPROTO_UDP_ 17
#define IPPROTO_SCTP_ 132
#define IPPROTO_ICMPV6_ 58

struct {
	__uint(type, BPF_MAP_TYPE_RINGBUF);
	__uint(max_entries, 1 << 22);
} jn_events SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_ARRAY);
	__uint(max_entries, 1);
	__type(key, __u32);
	__type(value, struct jn_filter);
} jn_config SEC(".maps");

/* Events the ring buffer had no room for: reported to the user, never silently lost. */
struct {
	__uint(type, BPF_MAP_TYPE_PERCPU_ARRAY);
	__uint(max_entries, 1);
	__type(key, __u32);
	__type(value, __u64);
} jn_lost SEC(".maps");

/* Drops in the watched namespace whose reason the user left out (ignoreReasons): counted, never sent. */
struct {
	__uint(type, BPF_MAP_TYPE_PERCPU_ARRAY);
	__uint(max_entries, 1);
	__type(key, __u32);
	__type(value, __u64);
} jn_ignored SEC(".maps");

/* hook_once: last status reported per (connection, hook point, direction). LRU: old flows age out. */
struct jn_once_key {
	__u64 ct;      /* nf_conn address */
	__u32 ports;   /* orig tuple's src/dst port words (ICMP: id, type/code), as stored: a reused
	                * address is another connection */
	__u16 point;   /* program << 8 | pf-index << 4 | hook */
	__u16 dir;     /* 0 original, 1 reply */
};

struct {
	__uint(type, BPF_MAP_TYPE_LRU_HASH);
	__uint(max_entries, 65536);
	__type(key, struct jn_once_key);
	__type(value, __u32);
} jn_once SEC(".maps");

/* A per-CPU, direct-mapped cache in front of jn_once: the last (connection, point, direction) and
 * status seen in each of JN_SEEN_SLOTS slots. A hit is the same answer as a jn_once hit without
 * the hash (a per-CPU array lookup is inlined by the verifier); a miss asks jn_once. An entry is
 * written only after jn_once said "already reported", so it never hides a first report. */
#define JN_SEEN_SLOTS 256
struct jn_seen_ent {
	__u64 ct;     /* 0 = empty or being written */
	__u64 id;     /* ports << 32 | point << 16 | dir */
	__u64 status;
};
struct jn_seen {
	struct jn_seen_ent e[JN_SEEN_SLOTS];
};

struct {
	__uint(type, BPF_MAP_TYPE_PERCPU_ARRAY);
	__uint(max_entries, 1);
	__type(key, __u32);
	__type(value, struct jn_seen);
} jn_seen SEC(".maps");

static __always_inline void count_lost(void)
{
	__u32 k = 0;
	__u64 *v = bpf_map_lookup_elem(&jn_lost, &k);
	if (v)
		*v += 1;
}

#include "read-packet.h"
#include "read-conntrack.h"

/* Source or destination equals the filter address. Branch-free word compares keep the verifier's
 * state count low (IPv4 addresses are zero-padded on both sides). */
static __always_inline int tuple_has_addr(const struct jn_tuple *t, const struct jn_filter *f)
{
	__u32 sa[4], da[4], fa[4];
	__u32 ds, dd;
	__builtin_memcpy(sa, t->saddr, 16);
	__builtin_memcpy(da, t->daddr, 16);
	__builtin_memcpy(fa, f->addr, 16);
	ds = (sa[0] ^ fa[0]) | (sa[1] ^ fa[1]) | (sa[2] ^ fa[2]) | (sa[3] ^ fa[3]);
	dd = (da[0] ^ fa[0]) | (da[1] ^ fa[1]) | (da[2] ^ fa[2]) | (da[3] ^ fa[3]);
	return t->family == f->has_addr && (!ds || !dd);
}

static __always_inline int tuple_matches(const struct jn_tuple *t, const struct jn_filter *f)
{
	if (!t->family)
		return 0;
	if (f->proto && t->proto != f->proto)
		return 0;
	if (f->port && t->sport != f->port && t->dport != f->port)
		return 0;
	if (f->has_addr && !tuple_has_addr(t, f))
		return 0;
	return 1;
}

/* The user's filter matches the packet, or either tuple of its conntrack entry (so a filter
 * on a published port still sees the packet after DNAT rewrote it). */
static __always_inline int filter_matches(const struct jn_event *e, const struct jn_filter *f)
{
	if (!f->proto && !f->port && !f->has_addr)
		return 1;
	if (tuple_matches(&e->pkt, f))
		return 1;
	if (e->has_ct && (tuple_matches(&e->ct_orig, f) || tuple_matches(&e->ct_reply, f)))
		return 1;
	return 0;
}

static __always_inline void read_dev(struct net_device *dev, struct jn_event *e)
{
	if (!dev)
		return;
	e->ifindex = dev->ifindex;
	__builtin_memcpy(e->ifname, dev->name, sizeof(e->ifname));
}

static __always_inline __u32 skb_netns(struct sk_buff *skb)
{
	struct net_device *dev = skb->dev;
	struct sock *sk;
	if (dev)
		return dev->nd_net.net->ns.inum;
	sk = skb->sk;
	if (sk)
		return sk->__sk_common.skc_net.net->ns.inum;
	return 0;
}

/* Events are built on the stack and copied with bpf_ringbuf_output only when they pass the
 * filter: a reserved-then-discarded record would sit at the consumer position and suppress the
 * ring buffer's wake-up of user space (adaptive notification) until something else woke it. */
static __always_inline void emit(struct jn_event *e)
{
	if (bpf_ringbuf_output(&jn_events, e, sizeof(*e), 0))
		count_lost();
}

SEC("tp_btf/kfree_skb")
int BPF_PROG(jn_kfree_skb, struct sk_buff *skb, void *location, enum skb_drop_reason reason)
{
	__u32 k = 0;
	struct jn_filter *f = bpf_map_lookup_elem(&jn_config, &k);
	struct jn_event e;
	__u32 ns;

	if (!f || !f->drops || (__u32)reason < f->min_reason)
		return 0;
	ns = skb_netns(skb);
	if (f->netns && ns != f->netns)
		return 0;
	{
		__u32 r = (__u32)reason, idx = r >> 5;
		barrier_var(idx); /* keep the bound check on the index the load uses */
		if (idx < 16 && (f->ignore[idx] >> (r & 31)) & 1) {
			__u32 z = 0;
			__u64 *v = bpf_map_lookup_elem(&jn_ignored, &z);
			if (v)
				*v += 1;
			return 0;
		}
	}
	__builtin_memset(&e, 0, sizeof(e));
	e.ts_ns = bpf_ktime_get_ns();
	e.location = (__u64)location;
	e.kind = JN_EV_DROP;
	e.netns = ns;
	e.reason = (__u32)reason;
	e.pkt_len = skb->len;
	read_pkt_tuple(skb, &e.pkt);
	read_ct(skb, &e);
	if (!filter_matches(&e, f))
		return 0;
	read_dev(skb->dev, &e);
	emit(&e);
	return 0;
}

/* The hook_once key of a packet at a hook point: which connection (its nf_conn address and the
 * original tuple's port words), which point (program, family, hook) and which direction. */
static __always_inline void once_key(struct jn_once_key *key, const struct nf_conn *ct, unsigned long nfct,
				     const struct nf_hook_state *st, __u32 slot)
{
	key->ct = nfct & ~NFCT_INFOMASK; /* the address as a number (ct is a BTF pointer) */
	key->ports = ((__u32)ct->tuplehash[0].tuple.src.u.all << 16) | ct->tuplehash[0].tuple.dst.u.all;
	key->point = (__u16)((slot << 8) | ((st->pf == 10 ? 1 : 0) << 4) | (st->hook & 0xf));
	key->dir = (nfct & NFCT_INFOMASK) >= 3 ? 1 : 0;
}

static __always_inline __u64 once_id(const struct jn_once_key *key)
{
	return ((__u64)key->ports << 32) | ((__u32)key->point << 16) | key->dir;
}

/* The cache slot: a hash of the connection's address XOR its point and direction packed into 7
 * distinct bits (program 0-3, family, hook 0-4, direction), so the points one connection's
 * packets pass never share a slot. */
static __always_inline __u32 seen_slot(const struct jn_once_key *key)
{
	__u32 h = ((__u32)(key->ct >> 6) * 0x9e3779b1u) >> 24;
	__u32 p = ((((__u32)key->point >> 8) & 3) << 5) | (((__u32)key->point >> 4) & 1) << 4 | (key->point & 7) << 1 | key->dir;
	return (h ^ p) & (JN_SEEN_SLOTS - 1);
}

/* jn_once value of a connection the user's filter left out at a point (with that status): its
 * packets there are skipped like reported ones (IPS_* bits stay far below bit 31). */
#define JN_ONCE_FILTERED (1u << 31)

/* ctinfo IP_CT_RELATED / IP_CT_RELATED_REPLY: an ICMP error about the connection, whose own
 * tuple may pass a filter the connection does not: never skipped or remembered as filtered. */
static __always_inline int ctinfo_related(unsigned long nfct)
{
	return (nfct & NFCT_INFOMASK) == 1 || (nfct & NFCT_INFOMASK) == 4;
}

/* hook_once fast path, before anything is read from the packet: a packet of a connection already
 * reported (or left out by the filter) at this point and direction with the same conntrack status
 * costs a few loads and, in the common case, one per-CPU cache compare (else one hash lookup). An
 * entry exists only for a connection the full path reported or filtered out with that status, so
 * skipping on it gives the same answer the full path would. 1 = skip the packet. */
static __always_inline int once_seen(struct sk_buff *skb, const struct nf_hook_state *st, __u32 slot)
{
	unsigned long nfct = skb->_nfct;
	struct jn_once_key key;
	struct jn_seen_ent *ent;
	struct jn_seen *seen;
	struct nf_conn *ct;
	__u32 *last, k = 0;
	__u64 id, status;

	if (!(nfct & ~NFCT_INFOMASK) || !jn_nf_conn_btf_id || ctinfo_related(nfct))
		return 0;
	ct = bpf_rdonly_cast((void *)(nfct & ~NFCT_INFOMASK), jn_nf_conn_btf_id);
	status = (__u32)ct->status;
	if (status & (1u << 11)) /* IPS_TEMPLATE: no real entry */
		return 0;
	__builtin_memset(&key, 0, sizeof(key));
	once_key(&key, ct, nfct, st, slot);
	id = once_id(&key);
	seen = bpf_map_lookup_elem(&jn_seen, &k);
	if (!seen)
		return 0;
	ent = &seen->e[seen_slot(&key)];
	/* ct read before and after the rest: a program nested on this CPU (an interrupt) that rewrote
	 * the entry meanwhile makes the two differ or leaves 0 (written first) */
	{
		__u64 c1, c2, eid, est;
		c1 = ent->ct;
		barrier();
		eid = ent->id;
		est = ent->status;
		barrier();
		c2 = ent->ct;
		if (c1 == key.ct && c2 == key.ct && eid == id && (est & ~(__u64)JN_ONCE_FILTERED) == status)
			return 1;
	}
	last = bpf_map_lookup_elem(&jn_once, &key);
	if (!last || (*last & ~JN_ONCE_FILTERED) != status)
		return 0;
	ent->ct = 0;
	barrier();
	ent->id = id;
	ent->status = status;
	barrier();
	ent->ct = key.ct;
	return 1;
}

static __always_inline int nf_common(struct bpf_nf_ctx *ctx, __u32 slot)
{
	__u32 k = 0;
	struct jn_filter *f = bpf_map_lookup_elem(&jn_config, &k);
	struct sk_buff *skb = ctx->skb;
	const struct nf_hook_state *st = ctx->state;
	struct net_device *in, *out;
	struct jn_event e;

	if (!f || slot >= JN_NF_PROGS)
		return 1;
	if (f->hook_once && once_seen(skb, st, slot))
		return 1;
	__builtin_memset(&e, 0, sizeof(e));
	e.ts_ns = bpf_ktime_get_ns();
	e.kind = JN_EV_HOOK;
	e.slot = slot;
	e.hook = st->hook;
	e.pf = st->pf;
	if (e.hook < 5)
		e.priority = f->prio[slot & (JN_NF_PROGS - 1)][e.pf == 10 ? 1 : 0][e.hook];
	e.netns = st->net->ns.inum;
	e.pkt_len = skb->len;
	read_pkt_tuple(skb, &e.pkt);
	read_ct_direct(skb, &e);
	if (f->hook_once && e.has_ct) {
		unsigned long nfct = skb->_nfct;
		struct nf_conn *ct = bpf_rdonly_cast((void *)(nfct & ~NFCT_INFOMASK), jn_nf_conn_btf_id);
		struct jn_once_key key;
		__u32 *last, v;
		__builtin_memset(&key, 0, sizeof(key));
		once_key(&key, ct, nfct, st, slot);
		if (!filter_matches(&e, f)) {
			/* remembered so the connection's next packets here skip the parsing */
			v = e.ct_status | JN_ONCE_FILTERED;
			if (!ctinfo_related(nfct))
				bpf_map_update_elem(&jn_once, &key, &v, BPF_ANY);
			return 1;
		}
		last = bpf_map_lookup_elem(&jn_once, &key);
		if (last && *last == e.ct_status)
			return 1;
		bpf_map_update_elem(&jn_once, &key, &e.ct_status, BPF_ANY);
	} else if (!filter_matches(&e, f)) {
		return 1;
	}
	in = st->in;
	out = st->out;
	read_dev(in ? in : out, &e);
	emit(&e);
	return 1; /* NF_ACCEPT: journey only observes */
}

#define JN_NF_PROG(n) \
	SEC("netfilter") int jn_nf_##n(struct bpf_nf_ctx *ctx) { return nf_common(ctx, n); }

JN_NF_PROG(0)
JN_NF_PROG(1)
JN_NF_PROG(2)
JN_NF_PROG(3)
