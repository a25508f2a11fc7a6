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

static __always_inline void count_lost(void)
{
	__u32 k = 0;
	__u64 *v = bpf_map_lookup_elem(&jn_lost, &k);
	if (v)
		*v += 1;
}

static __always_inline int l4_has_ports(__u8 p)
{
	return p == IPPROTO_TCP_ || p == IPPROTO_UDP_ || p == IPPROTO_SCTP_;
}

/* The packet's tuple from its network header. 0 when it is not IPv4/IPv6 or unreadable. */
static __always_inline int read_pkt_tuple(struct sk_buff *skb, struct jn_tuple *t)
{
	unsigned char *head = BPF_CORE_READ(skb, head);
	__u16 nh = BPF_CORE_READ(skb, network_header);
	__u16 proto = bpf_ntohs(BPF_CORE_READ(skb, protocol));
	__u8 first;
	__u32 l4off;

	if (!head || nh == (__u16)~0U)
		return 0;
	if (bpf_probe_read_kernel(&first, 1, head + nh))
		return 0;
	if ((first >> 4) == 4 && (proto == ETH_P_IP || proto == 0)) {
		struct iphdr ip;
		if (bpf_probe_read_kernel(&ip, sizeof(ip), head + nh))
			return 0;
		t->family = 4;
		t->proto = ip.protocol;
		__builtin_memcpy(t->saddr, &ip.saddr, 4);
		__builtin_memcpy(t->daddr, &ip.daddr, 4);
		l4off = nh + (ip.ihl & 0xf) * 4;
		if (bpf_ntohs(ip.frag_off) & 0x1fff)
			return 1; /* not the first fragment: no L4 header */
	} else if ((first >> 4) == 6 && (proto == ETH_P_IPV6 || proto == 0)) {
		struct ipv6hdr ip6;
		if (bpf_probe_read_kernel(&ip6, sizeof(ip6), head + nh))
			return 0;
		t->family = 6;
		t->proto = ip6.nexthdr;
		bpf_probe_read_kernel(t->saddr, 16, &ip6.saddr);
		bpf_probe_read_kernel(t->daddr, 16, &ip6.daddr);
		l4off = nh + sizeof(struct ipv6hdr);
	} else {
		return 0;
	}
	if (l4_has_ports(t->proto)) {
		__be16 ports[2];
		if (!bpf_probe_read_kernel(ports, sizeof(ports), head + l4off)) {
			t->sport = bpf_ntohs(ports[0]);
			t->dport = bpf_ntohs(ports[1]);
		}
	} else if (t->proto == IPPROTO_ICMP_ || t->proto == IPPROTO_ICMPV6_) {
		struct icmphdr ic;
		if (!bpf_probe_read_kernel(&ic, sizeof(ic), head + l4off)) {
			t->icmp_type = ic.type;
			t->icmp_code = ic.code;
			/* echo request/reply (v4 8/0, v6 128/129): conntrack keys on the id */
			if (ic.type == 8 || ic.type == 0 || ic.type == 128 || ic.type == 129) {
				t->sport = bpf_ntohs(ic.un.echo.id);
				t->dport = t->sport;
			}
		}
	}
	return 1;
}

static __always_inline void read_ct_tuple(struct nf_conntrack_tuple *src, struct jn_tuple *t, __u8 family)
{
	struct nf_conntrack_tuple tp;
	if (bpf_probe_read_kernel(&tp, sizeof(tp), src))
		return;
	t->family = family;
	t->proto = tp.dst.protonum;
	if (family == 4) {
		__builtin_memcpy(t->saddr, &tp.src.u3.ip, 4);
		__builtin_memcpy(t->daddr, &tp.dst.u3.ip, 4);
	} else {
		__builtin_memcpy(t->saddr, &tp.src.u3.ip6, 16);
		__builtin_memcpy(t->daddr, &tp.dst.u3.ip6, 16);
	}
	if (l4_has_ports(t->proto)) {
		t->sport = bpf_ntohs(tp.src.u.all);
		t->dport = bpf_ntohs(tp.dst.u.all);
	} else if (t->proto == IPPROTO_ICMP_ || t->proto == IPPROTO_ICMPV6_) {
		t->sport = bpf_ntohs(tp.src.u.icmp.id);
		t->dport = t->sport;
		t->icmp_type = tp.dst.u.icmp.type;
		t->icmp_code = tp.dst.u.icmp.code;
	}
}

/* Conntrack entry attached to the skb: status, mark, zone and both tuples. */
static __always_inline void read_ct(struct sk_buff *skb, struct jn_event *e)
{
	unsigned long nfct = BPF_CORE_READ(skb, _nfct);
	struct nf_conn *ct = (struct nf_conn *)(nfct & ~NFCT_INFOMASK);
	__u8 family;

	e->ctinfo = nfct & NFCT_INFOMASK;
	if (!ct)
		return;
	e->ct_status = (__u32)BPF_CORE_READ(ct, status);
	if (e->ct_status & (1u << 11)) /* IPS_TEMPLATE (raw-table CT target): no real entry */
		return;
	e->has_ct = 1;
	if (bpf_core_field_exists(ct->mark))
		e->ct_mark = BPF_CORE_READ(ct, mark);
	if (bpf_core_field_exists(ct->zone))
		e->ct_zone = BPF_CORE_READ(ct, zone.id);
	family = BPF_CORE_READ(ct, tuplehash[0].tuple.src.l3num) == 10 ? 6 : 4;
	read_ct_tuple(&ct->tuplehash[0].tuple, &e->ct_orig, family);
	read_ct_tuple(&ct->tuplehash[1].tuple, &e->ct_reply, family);
}

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
	e->ifindex = BPF_CORE_READ(dev, ifindex);
	bpf_probe_read_kernel_str(e->ifname, sizeof(e->ifname), &dev->name);
}

static __always_inline __u32 skb_netns(struct sk_buff *skb)
{
	struct net_device *dev = BPF_CORE_READ(skb, dev);
	struct sock *sk;
	if (dev)
		return BPF_CORE_READ(dev, nd_net.net, ns.inum);
	sk = BPF_CORE_READ(skb, sk);
	if (sk)
		return BPF_CORE_READ(sk, __sk_common.skc_net.net, ns.inum);
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
	__builtin_memset(&e, 0, sizeof(e));
	e.ts_ns = bpf_ktime_get_ns();
	e.location = (__u64)location;
	e.kind = JN_EV_DROP;
	e.netns = ns;
	e.reason = (__u32)reason;
	e.pkt_len = BPF_CORE_READ(skb, len);
	read_dev(BPF_CORE_READ(skb, dev), &e);
	read_pkt_tuple(skb, &e.pkt);
	read_ct(skb, &e);
	if (filter_matches(&e, f))
		emit(&e);
	return 0;
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
	__builtin_memset(&e, 0, sizeof(e));
	e.ts_ns = bpf_ktime_get_ns();
	e.kind = JN_EV_HOOK;
	e.slot = slot;
	e.hook = BPF_CORE_READ(st, hook);
	e.pf = BPF_CORE_READ(st, pf);
	if (e.hook < 5)
		e.priority = f->prio[slot & (JN_NF_PROGS - 1)][e.pf == 10 ? 1 : 0][e.hook];
	e.netns = BPF_CORE_READ(st, net, ns.inum);
	e.pkt_len = BPF_CORE_READ(skb, len);
	in = BPF_CORE_READ(st, in);
	out = BPF_CORE_READ(st, out);
	read_dev(in ? in : out, &e);
	read_pkt_tuple(skb, &e.pkt);
	read_ct(skb, &e);
	if (filter_matches(&e, f))
		emit(&e);
	return 1; /* NF_ACCEPT: journey only observes */
}

#define JN_NF_PROG(n) \
	SEC("netfilter") int jn_nf_##n(struct bpf_nf_ctx *ctx) { return nf_common(ctx, n); }

JN_NF_PROG(0)
JN_NF_PROG(1)
JN_NF_PROG(2)
JN_NF_PROG(3)
