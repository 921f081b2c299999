//go:build ignore

// SPDX-License-Identifier: (GPL-2.0-only OR BSD-2-Clause)
/*
 * DNS capture for the correlator: cgroup_skb on the cgroup v2 root sees every
 * socket's packets on the host, containers and other network namespaces
 * included. Answers are taken on ingress, queries on egress, over UDP and
 * TCP, IPv4 and IPv6; each goes into the shared ring with a bounded copy of
 * its payload. Both programs always let the packet pass.
 *
 * Which packets are DNS: those of a socket the application pointed at port
 * 53, whatever their ports after NAT, and, for sockets made before the
 * programs were attached, those with port 53 on the wire (destination on
 * egress, source on ingress). cgroup_skb egress runs after netfilter's
 * OUTPUT and POSTROUTING hooks, so a DNAT'd query (Docker's 127.0.0.11:53
 * sent to another port, a service IP sent to its backend) leaves with
 * rewritten addresses; the cgroup connect4/6 and sendmsg4/6 hooks run on the
 * address the application gave, before any rewrite, and mark the socket (in
 * its own storage, dns_socks) when its port is 53.
 *
 * Every packet on the host runs the cgroup_skb programs, so a packet that is
 * not DNS must cost little: its IP and L4 headers are read for the ports
 * and, when neither is 53 where it counts, the socket's storage is looked up
 * (no create); the addresses are read only for a packet that goes to the
 * ring.
 */
#include <linux/bpf.h>
#include "kernel.h"
#include <bpf/bpf_helpers.h>
#include <bpf/bpf_core_read.h>
#include <bpf/bpf_endian.h>

#include "common.bpf.h"

char LICENSE[] SEC("license") = "Dual BSD/GPL";

/* Puts the record type into BTF (bpf2go -type); lives in .rodata, never read. */
const struct tc_dns_event *const tc_dns_event_btf = 0;

#define ETH_P_IP 0x0800
#define ETH_P_IPV6 0x86DD
#define DNS_PORT 53
#define SOCK_DGRAM 2

/*
 * Sockets the application pointed at port 53 (connect or sendmsg): 1 in the
 * socket's own storage, which goes away with the socket; 0 once a UDP socket
 * is connected elsewhere.
 */
struct {
	__uint(type, BPF_MAP_TYPE_SK_STORAGE);
	__uint(map_flags, BPF_F_NO_PREALLOC);
	__type(key, int);
	__type(value, __u8);
} dns_socks SEC(".maps");

/* Whether skb's socket was marked as a DNS socket (dns_socks). */
static __always_inline int tc_dns_marked(struct __sk_buff *skb)
{
	struct bpf_sock *sk = skb->sk;
	__u8 *mark;

	if (!sk)
		return 0;
	sk = bpf_sk_fullsock(sk);
	if (!sk)
		return 0;
	mark = bpf_sk_storage_get(&dns_socks, sk, 0, 0);
	return mark && *mark;
}

/* Where a DNS packet came from and went to, found before the ring is touched. */
struct tc_dns_loc {
	__u8 saddr[16];
	__u8 daddr[16];
	__u16 sport;
	__u16 dport;
	__u8 ip_version;
	__u8 l4proto;
	__u32 seq; /* TCP sequence number, host order */
};

/* IPv6 extension headers walked at most: more is not a DNS packet. */
#define TC_IPV6_MAX_EXT 6
#define NEXTHDR_HOP 0
#define NEXTHDR_ROUTING 43
#define NEXTHDR_FRAGMENT 44
#define NEXTHDR_AUTH 51
#define NEXTHDR_DEST 60

/*
 * Walk the IPv6 extension headers from *off (the first one, *proto its
 * type): on return *proto is the upper-layer protocol and *off its header.
 * Returns -1 for a non-first fragment (no L4 header), a header that cannot
 * be read or a chain longer than TC_IPV6_MAX_EXT.
 */
static __always_inline int tc_ipv6_skip_ext(struct __sk_buff *skb, __u8 *proto, __u32 *off)
{
	__u8 h[2];

#pragma unroll
	for (int i = 0; i < TC_IPV6_MAX_EXT; i++) {
		switch (*proto) {
		case NEXTHDR_HOP:
		case NEXTHDR_ROUTING:
		case NEXTHDR_DEST:
			if (bpf_skb_load_bytes(skb, *off, h, 2))
				return -1;
			*proto = h[0];
			*off += ((__u32)h[1] + 1) * 8;
			break;
		case NEXTHDR_AUTH:
			if (bpf_skb_load_bytes(skb, *off, h, 2))
				return -1;
			*proto = h[0];
			*off += ((__u32)h[1] + 2) * 4;
			break;
		case NEXTHDR_FRAGMENT: {
			__u16 frag;

			if (bpf_skb_load_bytes(skb, *off, h, 1) ||
			    bpf_skb_load_bytes(skb, *off + 2, &frag, 2))
				return -1;
			if (bpf_ntohs(frag) & 0xfff8) /* offset != 0 */
				return -1;
			*proto = h[0];
			*off += 8;
			break;
		}
		default:
			return 0;
		}
	}
	return *proto == IPPROTO_UDP || *proto == IPPROTO_TCP ? 0 : -1;
}

/* What the linear headers alone say about a packet (tc_dns_quick). */
enum { TC_DNS_NO, TC_DNS_YES, TC_DNS_UNSURE };

/*
 * Whether skb is DNS in the wanted direction, from its linear part with
 * direct packet access (a header there costs a load, where
 * bpf_skb_load_bytes costs a helper call each): TC_DNS_UNSURE when the
 * headers are not all in the linear part or an IPv6 packet has extension
 * headers, for tc_dns_locate to decide with bpf_skb_load_bytes.
 */
static __always_inline int tc_dns_quick(struct __sk_buff *skb, int egress)
{
	void *data = (void *)(long)skb->data;
	void *end = (void *)(long)skb->data_end;
	__u8 *ip = data;
	__u16 *ports;
	__u32 l4;
	__u8 proto;

	if (skb->protocol == bpf_htons(ETH_P_IP)) {
		if (data + 20 > end)
			return TC_DNS_UNSURE;
		if (*(__u16 *)(ip + 6) & bpf_htons(0x1fff)) /* not the first fragment */
			return TC_DNS_NO;
		proto = ip[9];
		l4 = (ip[0] & 0x0f) * 4;
		if (l4 < 20)
			return TC_DNS_NO;
	} else if (skb->protocol == bpf_htons(ETH_P_IPV6)) {
		if (data + 40 > end)
			return TC_DNS_UNSURE;
		proto = ip[6];
		switch (proto) {
		case NEXTHDR_HOP:
		case NEXTHDR_ROUTING:
		case NEXTHDR_FRAGMENT:
		case NEXTHDR_AUTH:
		case NEXTHDR_DEST:
			return TC_DNS_UNSURE;
		}
		l4 = 40;
	} else {
		return TC_DNS_NO;
	}
	if (proto != IPPROTO_UDP && proto != IPPROTO_TCP)
		return TC_DNS_NO;
	ports = data + l4;
	if ((void *)(ports + 2) > end)
		return TC_DNS_UNSURE;
	if (ports[egress ? 1 : 0] == bpf_htons(DNS_PORT))
		return TC_DNS_YES;
	return tc_dns_marked(skb) ? TC_DNS_YES : TC_DNS_NO;
}

/*
 * Find the L4 payload of a DNS packet in the wanted direction (known: the
 * quick look said DNS already). Returns 0 and fills hdr's addresses, ports
 * and protocol, and *off, *len; -1 to skip.
 */
static __always_inline int tc_dns_locate(struct __sk_buff *skb, int egress, int known,
					 struct tc_dns_loc *hdr, __u32 *off, __u32 *len)
{
	__u32 l4;
	__u8 proto;
	__u16 ports[2];

	if (skb->protocol == bpf_htons(ETH_P_IP)) {
		__u8 vihl;
		__u16 frag;

		if (bpf_skb_load_bytes(skb, 0, &vihl, 1) ||
		    bpf_skb_load_bytes(skb, 6, &frag, 2) ||
		    bpf_skb_load_bytes(skb, 9, &proto, 1))
			return -1;
		if (bpf_ntohs(frag) & 0x1fff) /* not the first fragment: no L4 header */
			return -1;
		l4 = (vihl & 0x0f) * 4;
		if (l4 < 20)
			return -1;
		hdr->ip_version = 4;
	} else if (skb->protocol == bpf_htons(ETH_P_IPV6)) {
		if (bpf_skb_load_bytes(skb, 6, &proto, 1))
			return -1;
		l4 = 40;
		if (tc_ipv6_skip_ext(skb, &proto, &l4))
			return -1;
		hdr->ip_version = 6;
	} else {
		return -1;
	}
	if (proto != IPPROTO_UDP && proto != IPPROTO_TCP)
		return -1;
	if (bpf_skb_load_bytes(skb, l4, ports, sizeof(ports)))
		return -1;
	hdr->sport = bpf_ntohs(ports[0]);
	hdr->dport = bpf_ntohs(ports[1]);
	/* Not port 53 on the wire: DNS only if the socket was marked. */
	if (!known && (egress ? hdr->dport != DNS_PORT : hdr->sport != DNS_PORT) &&
	    !tc_dns_marked(skb))
		return -1;
	if (hdr->ip_version == 4) {
		if (bpf_skb_load_bytes(skb, 12, hdr->saddr, 4) ||
		    bpf_skb_load_bytes(skb, 16, hdr->daddr, 4))
			return -1;
	} else if (bpf_skb_load_bytes(skb, 8, hdr->saddr, 16) ||
		   bpf_skb_load_bytes(skb, 24, hdr->daddr, 16)) {
		return -1;
	}
	hdr->l4proto = proto;
	if (proto == IPPROTO_UDP) {
		l4 += 8;
	} else {
		__u8 doff;
		__u32 seq;

		if (bpf_skb_load_bytes(skb, l4 + 4, &seq, 4) ||
		    bpf_skb_load_bytes(skb, l4 + 12, &doff, 1))
			return -1;
		hdr->seq = bpf_ntohl(seq);
		l4 += (doff >> 4) * 4;
	}
	if (l4 >= skb->len) /* no payload (a bare TCP ACK, say) */
		return -1;
	*off = l4;
	*len = skb->len - l4;
	return 0;
}

/*
 * The network namespace (inode) of the socket that sends or receives skb; 0
 * when it is not a full socket (request, time-wait) or there is none.
 *
 * cgroup_skb runs where the packet is sent, which need not be the socket
 * owner's context (a TCP retransmit runs in softirq, on whatever task was
 * current), so the namespace comes from the socket, not from current. The
 * program gets the socket as a struct bpf_sock, on which the verifier
 * forbids pointer arithmetic, and 5.10 has no BTF cast helper for every
 * socket type (bpf_skc_to_udp6_sock is IPv6 only; there is none for IPv4
 * UDP). bpf_sk_fullsock's result is the kernel's struct sock, which
 * tc_sk_netns reads.
 */
static __always_inline __u32 tc_sock_netns(struct __sk_buff *skb, __u64 *scratch)
{
	struct bpf_sock *sk = skb->sk;

	if (!sk)
		return 0;
	sk = bpf_sk_fullsock(sk);
	if (!sk)
		return 0;
	return tc_sk_netns(sk, scratch);
}

static __always_inline void tc_dns_capture(struct __sk_buff *skb, int egress)
{
	struct tc_dns_loc hdr = {};
	struct tc_dns_event *e;
	__u32 off, len, n;
	int q = tc_dns_quick(skb, egress);

	if (q == TC_DNS_NO || tc_dns_locate(skb, egress, q == TC_DNS_YES, &hdr, &off, &len))
		return;
	e = bpf_ringbuf_reserve(&events, sizeof(*e), 0);
	if (!e) {
		tc_count(TC_LOST_DNS);
		return;
	}
	e->type = TC_EVENT_DNS;
	e->direction = egress;
	e->ip_version = hdr.ip_version;
	e->l4proto = hdr.l4proto;
	e->sport = hdr.sport;
	e->dport = hdr.dport;
	__builtin_memcpy(e->saddr, hdr.saddr, sizeof(e->saddr));
	__builtin_memcpy(e->daddr, hdr.daddr, sizeof(e->daddr));
	e->tcp_seq = hdr.seq;
	e->orig_len = len > 0xffff ? 0xffff : len;
	e->ts_ns = bpf_ktime_get_boot_ns();
	e->cgroup_id = bpf_skb_cgroup_id(skb);
	e->netns = tc_sock_netns(skb, &e->sock_cookie);
	e->sock_cookie = bpf_get_socket_cookie(skb);
	e->tgid = 0;
	if (egress && hdr.l4proto == IPPROTO_UDP) {
		/*
		 * A UDP datagram leaves in the sending task's context (sendmsg
		 * transmits it at once, corked or not), so current is the
		 * resolving process. TCP segments may leave in softirq
		 * (retransmits, a window opening) on whatever task was
		 * current: no process for TCP.
		 */
		struct task_struct *task = (struct task_struct *)bpf_get_current_task();

		e->tgid = BPF_CORE_READ(task, tgid);
	}
	/* len >= 1 here; shape n as [1, TC_DNS_MAX_PAYLOAD] in a way the verifier follows. */
	n = len - 1;
	if (n > TC_DNS_MAX_PAYLOAD - 1)
		n = TC_DNS_MAX_PAYLOAD - 1;
	barrier_var(n);
	n += 1;
	if (bpf_skb_load_bytes(skb, off, e->payload, n)) {
		bpf_ringbuf_discard(e, BPF_RB_NO_WAKEUP);
		tc_count(TC_LOST_DNS_COPY);
		return;
	}
	e->payload_len = n;
	tc_submit(e);
}

/* cgroup_skb/ingress: DNS answers arriving at any socket on the host. */
SEC("cgroup_skb/ingress")
int tc_dns_ingress(struct __sk_buff *skb)
{
	tc_dns_capture(skb, 0);
	return 1;
}

/* cgroup_skb/egress: DNS queries leaving any socket, to match answers against. */
SEC("cgroup_skb/egress")
int tc_dns_egress(struct __sk_buff *skb)
{
	tc_dns_capture(skb, 1);
	return 1;
}

/*
 * Mark (or, for a UDP socket pointed elsewhere, unmark) the socket of a
 * connect or sendmsg by the port the application gave, before any NAT.
 * Always allows the call.
 */
static __always_inline int tc_dns_mark(struct bpf_sock_addr *ctx)
{
	struct bpf_sock *sk = ctx->sk;
	__u8 *mark;

	if (!sk || (ctx->protocol != IPPROTO_UDP && ctx->protocol != IPPROTO_TCP))
		return 1;
	if (ctx->user_port == bpf_htons(DNS_PORT)) {
		mark = bpf_sk_storage_get(&dns_socks, sk, 0, BPF_SK_STORAGE_GET_F_CREATE);
		if (mark)
			*mark = 1;
	} else if (ctx->type == SOCK_DGRAM) {
		mark = bpf_sk_storage_get(&dns_socks, sk, 0, 0);
		if (mark)
			*mark = 0;
	}
	return 1;
}

/*
 * Mark the socket of a sendmsg to port 53. Only marks: a datagram elsewhere
 * does not unmark it. Always allows the call.
 */
static __always_inline int tc_dns_mark_sender(struct bpf_sock_addr *ctx)
{
	struct bpf_sock *sk = ctx->sk;
	__u8 *mark;

	if (ctx->user_port != bpf_htons(DNS_PORT) || !sk)
		return 1;
	mark = bpf_sk_storage_get(&dns_socks, sk, 0, BPF_SK_STORAGE_GET_F_CREATE);
	if (mark)
		*mark = 1;
	return 1;
}

/* cgroup/connect4: a UDP or TCP socket connected to port 53 is a DNS socket. */
SEC("cgroup/connect4")
int tc_dns_connect4(struct bpf_sock_addr *ctx)
{
	return tc_dns_mark(ctx);
}

/* cgroup/connect6: as connect4, for AF_INET6 sockets. */
SEC("cgroup/connect6")
int tc_dns_connect6(struct bpf_sock_addr *ctx)
{
	return tc_dns_mark(ctx);
}

/*
 * cgroup/sendmsg4: an unconnected UDP socket sending to port 53 (musl sends
 * to every server from one socket). Only marks: a datagram elsewhere does
 * not unmark it, so the answers to its queries are still seen.
 */
SEC("cgroup/sendmsg4")
int tc_dns_sendmsg4(struct bpf_sock_addr *ctx)
{
	return tc_dns_mark_sender(ctx);
}

/* cgroup/sendmsg6: as sendmsg4, for AF_INET6 sockets. */
SEC("cgroup/sendmsg6")
int tc_dns_sendmsg6(struct bpf_sock_addr *ctx)
{
	return tc_dns_mark_sender(ctx);
}
