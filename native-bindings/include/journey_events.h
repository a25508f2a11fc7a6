/*
 * journey kernel events: the ONE definition of every record the native addon hands to
 * JavaScript. Included by the BPF program (bpf/journey.bpf.c, with vmlinux.h) and by the
 * addon (src/ C files, with <linux/types.h>). Mirrored field by field in src/native/layout.ts;
 * test/unit/native-layout.test.ts checks sizes and offsets exported by the addon against it.
 *
 * Rules: natural alignment, explicit padding, no bitfields, sizes multiple of 8.
 * Multi-byte integers are host order (little endian on x86) EXCEPT addresses (network order
 * bytes, IPv4 in the first 4 bytes). Ports are host order.
 */
#ifndef JOURNEY_EVENTS_H
#define JOURNEY_EVENTS_H

#ifndef __VMLINUX_H__
#include <linux/types.h>
#endif

#define JN_EV_DROP 1u /* tp_btf/kfree_skb */
#define JN_EV_HOOK 2u /* BPF_PROG_TYPE_NETFILTER program at one hook and priority */

#define JN_CT_NEW 1u
#define JN_CT_UPDATE 2u
#define JN_CT_DESTROY 3u
#define JN_CT_DUMP 4u /* an entry of the initial dump */

#define JN_NF_PROGS 4    /* netfilter programs: each links at most once per (pf, hook) */
#define JN_MAX_SLOTS 32  /* netfilter attach points (links) of one session */
#define JN_TCP_STATE_NONE 0xffu

/* The layer-3/4 identity of a packet or of one direction of a conntrack entry. 40 bytes. */
struct jn_tuple {
	__u8 saddr[16];
	__u8 daddr[16];
	__u16 sport; /* host order; ICMP echo: the id */
	__u16 dport; /* host order; ICMP echo: the id */
	__u8 family; /* 4, 6, or 0 when unknown */
	__u8 proto;  /* IP protocol number */
	__u8 icmp_type;
	__u8 icmp_code;
};

/* A drop (kind JN_EV_DROP) or a packet seen at a netfilter hook (kind JN_EV_HOOK). 192 bytes. */
struct jn_event {
	__u64 ts_ns;     /* CLOCK_MONOTONIC (bpf_ktime_get_ns) */
	__u64 location;  /* drop: kernel address that freed the skb; hook: 0 */
	__u32 kind;      /* JN_EV_* */
	__u32 netns;     /* inode of the packet's network namespace (0 unknown) */
	__u32 ifindex;   /* skb->dev (drop), in or out device (hook) */
	__u32 reason;    /* drop: enum skb_drop_reason value; hook: 0 */
	__u32 ct_status; /* nf_conn->status (IPS_* bits) when has_ct */
	__u32 ct_mark;
	__s32 priority;  /* hook: the priority the program was attached at */
	__u32 pkt_len;   /* skb->len */
	__u16 ct_zone;
	__u8 hook;       /* NF_INET_* (0 prerouting, 1 input, 2 forward, 3 output, 4 postrouting) */
	__u8 pf;         /* NFPROTO_IPV4 2, NFPROTO_IPV6 10 */
	__u8 ctinfo;     /* enum ip_conntrack_info (skb->_nfct & 7) */
	__u8 has_ct;     /* 1 when the skb carries a conntrack entry (not the untracked template) */
	__u8 slot;       /* hook: which of the JN_NF_PROGS programs saw it */
	__u8 _pad0;
	char ifname[16];
	struct jn_tuple pkt;      /* the packet as it is at this point */
	struct jn_tuple ct_orig;  /* conntrack's original tuple (has_ct) */
	struct jn_tuple ct_reply; /* conntrack's reply tuple: where NAT is visible (has_ct) */
};

/* One conntrack netlink message (new/update/destroy) or dump entry. 120 bytes. */
struct jn_ct_event {
	__u64 time_ns;  /* CLOCK_REALTIME when the addon read it */
	__u32 type;     /* JN_CT_* */
	__u32 id;       /* kernel conntrack id (CTA_ID) */
	__u32 status;   /* IPS_* bits */
	__u32 mark;
	__u32 timeout;  /* seconds left */
	__u16 zone;
	__u8 tcp_state; /* enum tcp_conntrack, JN_TCP_STATE_NONE when not tcp */
	__u8 _pad0;
	__u64 packets;  /* orig+reply packets when accounting is on, else 0 */
	struct jn_tuple orig;
	struct jn_tuple reply;
};

/* The kernel-side filter of one session (BPF config map, key 0). 260 bytes. */
struct jn_filter {
	__u32 netns;     /* drops: only this netns inode (0 = any) */
	__u32 drops;     /* 1 = report drops */
	__u8 addr[16];   /* with has_addr: src or dst of the packet or of either ct tuple */
	__u8 has_addr;   /* 0 none, 4 or 6 */
	__u8 proto;      /* 0 = any */
	__u16 port;      /* 0 = any, else sport or dport */
	__u32 min_reason; /* drops with reason < this are ignored (SKB_CONSUMED and below) */
	/* priority each program was linked at, by [program][pf: 0 ipv4, 1 ipv6][hook] */
	__s32 prio[JN_NF_PROGS][2][5];
	/* 1 = a hook point reports a connection's packet only when it is the first one there in its
	 * direction or the conntrack status changed (enough for the NAT proof, far fewer events) */
	__u32 hook_once;
	/* drops whose reason's bit is set here are not reported (reasons 0..511) */
	__u32 ignore[16];
};

#endif
