/* The conntrack entry of a packet and its two tuples, for journey.bpf.c's programs: through a BTF
 * pointer in netfilter programs (plain loads), through CO-RE reads in the drop program. Included
 * once, by journey.bpf.c, after read-packet.h. */
#ifndef JOURNEY_READ_CONNTRACK_H
#define JOURNEY_READ_CONNTRACK_H

/* Conntrack tuple through a BTF pointer (netfilter programs, after bpf_rdonly_cast): plain loads. */
static __always_inline void ct_tuple_direct(const struct nf_conntrack_tuple *tp, struct jn_tuple *t, __u8 family)
{
	t->family = family;
	t->proto = tp->dst.protonum;
	if (family == 4) {
		__u32 sa = tp->src.u3.ip, da = tp->dst.u3.ip;
		__builtin_memcpy(t->saddr, &sa, 4);
		__builtin_memcpy(t->daddr, &da, 4);
	} else {
		__u32 w;
#pragma unroll
		for (int i = 0; i < 4; i++) {
			w = tp->src.u3.all[i];
			__builtin_memcpy(t->saddr + 4 * i, &w, 4);
			w = tp->dst.u3.all[i];
			__builtin_memcpy(t->daddr + 4 * i, &w, 4);
		}
	}
	if (l4_has_ports(t->proto)) {
		t->sport = bpf_ntohs(tp->src.u.all);
		t->dport = bpf_ntohs(tp->dst.u.all);
	} else if (t->proto == IPPROTO_ICMP_ || t->proto == IPPROTO_ICMPV6_) {
		t->sport = bpf_ntohs(tp->src.u.icmp.id);
		t->dport = t->sport;
		t->icmp_type = tp->dst.u.icmp.type;
		t->icmp_code = tp->dst.u.icmp.code;
	}
}

extern void *bpf_rdonly_cast(const void *obj__ign, __u32 btf_id__k) __ksym;

/* BTF id of struct nf_conn in the running kernel, set by the loader before load (read-only data:
 * a known constant to the verifier). Not a CO-RE type-id relocation: some kernels' BTF carries
 * struct nf_conn twice, which libbpf rejects as ambiguous. */
const volatile __u32 jn_nf_conn_btf_id = 0;

/* The conntrack entry of a packet seen by a netfilter program: skb->_nfct cast back to a BTF
 * pointer (bpf_rdonly_cast, Linux 6.2+, like netfilter programs themselves: 6.4+). */
static __always_inline void read_ct_direct(struct sk_buff *skb, struct jn_event *e)
{
	unsigned long nfct = skb->_nfct;
	struct nf_conn *ct;
	__u8 family;

	e->ctinfo = nfct & NFCT_INFOMASK;
	if (!(nfct & ~NFCT_INFOMASK))
		return;
	if (!jn_nf_conn_btf_id)
		return;
	ct = bpf_rdonly_cast((void *)(nfct & ~NFCT_INFOMASK), jn_nf_conn_btf_id);
	e->ct_status = (__u32)ct->status;
	if (e->ct_status & (1u << 11)) /* IPS_TEMPLATE (raw-table CT target): no real entry */
		return;
	e->has_ct = 1;
	if (bpf_core_field_exists(ct->mark))
		e->ct_mark = ct->mark;
	if (bpf_core_field_exists(ct->zone))
		e->ct_zone = ct->zone.id;
	family = ct->tuplehash[0].tuple.src.l3num == 10 ? 6 : 4;
	ct_tuple_direct(&ct->tuplehash[0].tuple, &e->ct_orig, family);
	ct_tuple_direct(&ct->tuplehash[1].tuple, &e->ct_reply, family);
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

#endif
