/* The packet's tuple from its network header (IPv4, IPv6 with its extension headers), for
 * journey.bpf.c's programs. Included once, by journey.bpf.c, after its includes and constants. */
#ifndef JOURNEY_READ_PACKET_H
#define JOURNEY_READ_PACKET_H

static __always_inline int l4_has_ports(__u8 p)
{
	return p == IPPROTO_TCP_ || p == IPPROTO_UDP_ || p == IPPROTO_SCTP_;
}

#define IPPROTO_HOPOPTS_ 0
#define IPPROTO_ROUTING_ 43
#define IPPROTO_FRAGMENT_ 44
#define IPPROTO_DSTOPTS_ 60
#define JN_V6_EXT_MAX 6

/* Walks IPv6 extension headers (hop-by-hop, routing, fragment, destination options) from *off to
 * the transport header: *proto and *off end on it. A bounded loop (JN_V6_EXT_MAX headers) so the
 * verifier sees its end; more headers than that leave the last extension header as the protocol.
 * 0 for a fragment that is not the first (its transport header is in the first one) or an
 * unreadable header. */
static __always_inline int walk_v6_ext(unsigned char *head, __u8 *proto, __u32 *off)
{
#pragma unroll
	for (int i = 0; i < JN_V6_EXT_MAX; i++) {
		__u8 nx = *proto;
		__u8 eh[4];
		if (nx != IPPROTO_HOPOPTS_ && nx != IPPROTO_ROUTING_ && nx != IPPROTO_FRAGMENT_ &&
		    nx != IPPROTO_DSTOPTS_)
			return 1;
		if (bpf_probe_read_kernel(eh, sizeof(eh), head + *off))
			return 0;
		*proto = eh[0];
		if (nx == IPPROTO_FRAGMENT_) {
			/* fragment header: 8 bytes; offset in the high 13 bits of bytes 2-3 */
			if (((eh[2] << 8) | eh[3]) & 0xfff8)
				return 0;
			*off += 8;
		} else {
			*off += ((__u32)eh[1] + 1) * 8;
		}
	}
	return 1;
}

/* The packet's tuple from its network header. 0 when it is not IPv4/IPv6 or unreadable.
 * skb is a BTF pointer in both program types: its fields are plain (CO-RE) loads; the header bytes
 * take one bpf_probe_read_kernel (40 bytes cover IPv4 and IPv6) and one for the ports. */
static __always_inline int read_pkt_tuple(struct sk_buff *skb, struct jn_tuple *t)
{
	unsigned char *head = skb->head;
	__u16 nh = skb->network_header;
	__u16 proto = bpf_ntohs(skb->protocol);
	union {
		struct iphdr v4;
		struct ipv6hdr v6;
		__u8 first;
	} h;
	__u32 l4off;
	__u8 version;

	if (!head || nh == (__u16)~0U)
		return 0;
	if (bpf_probe_read_kernel(&h, sizeof(h), head + nh))
		return 0;
	version = h.first >> 4;
	if (version == 4 && (proto == ETH_P_IP || proto == 0)) {
		t->family = 4;
		t->proto = h.v4.protocol;
		__builtin_memcpy(t->saddr, &h.v4.saddr, 4);
		__builtin_memcpy(t->daddr, &h.v4.daddr, 4);
		l4off = nh + (h.v4.ihl & 0xf) * 4;
		if (bpf_ntohs(h.v4.frag_off) & 0x1fff)
			return 1; /* not the first fragment: no L4 header */
	} else if (version == 6 && (proto == ETH_P_IPV6 || proto == 0)) {
		t->family = 6;
		t->proto = h.v6.nexthdr;
		__builtin_memcpy(t->saddr, &h.v6.saddr, 16);
		__builtin_memcpy(t->daddr, &h.v6.daddr, 16);
		l4off = nh + sizeof(struct ipv6hdr);
		if (!walk_v6_ext(head, &t->proto, &l4off))
			return 1; /* a later fragment or an unreadable header: no L4 header */
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

#endif
