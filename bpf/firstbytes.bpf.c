//go:build ignore

// SPDX-License-Identifier: (GPL-2.0-only OR BSD-2-Clause)
/*
 * First bytes: what a followed socket sends once connected (a TLS
 * ClientHello, an HTTP request head), copied into the shared ring for
 * internal/firstbytes to parse, keyed as the connect's outcome record is (the
 * connect record's tid and ts_ns).
 *
 * - cgroup/connect4 and connect6 mark the socket with per-socket storage
 *   (fb_socks) when the connect hook has just started following it
 *   (outcome_socks, outcome.bpf.h). They run in every attach mode, after the
 *   connect hook: the LSM, fentry and kprobe hooks run in
 *   security_socket_connect, before the cgroup hooks' pre-connect, and in
 *   cgroup mode the connect object's program is attached first. Raw
 *   tracepoints (the outcome object) cannot use socket storage, and kprobes
 *   cannot either: the cgroup hook is the one place every mode shares.
 * - cgroup_skb/egress sees every packet on the host: a packet of an unmarked
 *   socket costs the storage lookup (no create flag) and returns. A marked
 *   socket's segments are copied until the capture has its bytes, and the
 *   mark is deleted: the socket's later packets cost the same one lookup.
 *
 * A marked socket that sends a FIN or RST before the capture has its bytes
 * (a client that connects and closes without sending, or closes mid-way)
 * gets a header-only record flagged TC_FB_CLOSED and is unmarked: the
 * receiver stops waiting for it.
 *
 * How many bytes: a TLS ClientHello whose record header says how long it is
 * is taken whole (up to max_bytes); a ClientHello split across TLS records,
 * up to max_bytes; anything else, the start of its first segment (one
 * record, up to max_bytes).
 */
#include <linux/bpf.h>
#include "kernel.h"
#include <bpf/bpf_helpers.h>
#include <bpf/bpf_core_read.h>
#include <bpf/bpf_endian.h>

#include "common.bpf.h"
#include "outcome.bpf.h"

char LICENSE[] SEC("license") = "Dual BSD/GPL";

/* Puts the record type into BTF (bpf2go -type); lives in .rodata, never read. */
const struct tc_first_bytes_event *const tc_first_bytes_event_btf = 0;

/* Set by the loader: the most bytes captured per socket (at most TC_FB_CHUNK * TC_FB_SEG_CHUNKS). */
const volatile __u32 max_bytes = 16384;

#define ETH_P_IP 0x0800
#define ETH_P_IPV6 0x86DD
#define TCP_FLAG_FIN 0x01
#define TCP_FLAG_SYN 0x02
#define TCP_FLAG_RST 0x04
/* Records one segment may fill: 64 KiB, a GSO segment's most. */
#define TC_FB_SEG_CHUNKS 32

/* A socket waiting for its first bytes. */
struct tc_fb_sock {
	__u64 connect_ts_ns; /* its connect record's */
	__u32 tid;           /* its connect record's */
	__u32 base_seq;      /* sequence number of the first byte sent */
	__u32 captured;      /* bytes copied so far */
	__u32 want;          /* bytes to copy in all; 0 until the first segment */
};

struct {
	__uint(type, BPF_MAP_TYPE_SK_STORAGE);
	__uint(map_flags, BPF_F_NO_PREALLOC);
	__type(key, int);
	__type(value, struct tc_fb_sock);
} fb_socks SEC(".maps");

/* Where the connect hook turns a socket pointer into outcome_socks' key. */
struct {
	__uint(type, BPF_MAP_TYPE_PERCPU_ARRAY);
	__uint(max_entries, 1);
	__type(key, __u32);
	__type(value, __u64);
} fb_scratch SEC(".maps");

/*
 * Mark the socket of a TCP connect that the connect hook follows to its
 * outcome (and reports: aggregated connects have no record to key on).
 * Always allows the connect.
 */
static __always_inline int tc_fb_mark(struct bpf_sock_addr *ctx)
{
	struct tc_outcome_track *t;
	struct tc_fb_sock *st;
	struct bpf_sock *sk;
	__u32 zero = 0;
	__u64 *v, key;

	if (ctx->type != SOCK_STREAM || ctx->protocol != IPPROTO_TCP)
		return 1;
	sk = ctx->sk;
	if (!sk)
		return 1;
	v = bpf_map_lookup_elem(&fb_scratch, &zero);
	if (!v)
		return 1;
	/* The socket's address as a number, as the connect hook keyed it (tc_sk_netns). */
	*(volatile __u64 *)v = (__u64)(long)sk;
	key = *(volatile __u64 *)v;
	*v = 0;
	t = bpf_map_lookup_elem(&outcome_socks, &key);
	if (!t || t->agg)
		return 1;
	st = bpf_sk_storage_get(&fb_socks, sk, 0, BPF_SK_STORAGE_GET_F_CREATE);
	if (!st)
		return 1;
	st->connect_ts_ns = t->connect_ts_ns;
	st->tid = t->tid;
	st->base_seq = 0;
	st->captured = 0;
	st->want = 0;
	return 1;
}

/* cgroup/connect4: mark a followed IPv4 TCP socket. */
SEC("cgroup/connect4")
int tc_fb_connect4(struct bpf_sock_addr *ctx)
{
	return tc_fb_mark(ctx);
}

/* cgroup/connect6: as connect4, for AF_INET6 sockets. */
SEC("cgroup/connect6")
int tc_fb_connect6(struct bpf_sock_addr *ctx)
{
	return tc_fb_mark(ctx);
}

/*
 * How many bytes to take, from the first segment's first bytes (n of them in
 * h): a TLS handshake record holding a whole ClientHello, that record; else
 * the first segment's first record's worth (TC_FB_CHUNK): an HTTP request
 * line and Host header come first in a request head, and the rest of a
 * large first write (an upload's body) is nobody's concern here.
 */
static __always_inline __u32 tc_fb_want(const __u8 *h, __u32 n, __u32 seglen)
{
	__u32 want = seglen < TC_FB_CHUNK ? seglen : TC_FB_CHUNK;

	if (n >= 9 && h[0] == 0x16 && h[1] == 3 && h[5] == 1) {
		__u32 rec = (__u32)h[3] << 8 | h[4];
		__u32 hello = (__u32)h[6] << 16 | (__u32)h[7] << 8 | h[8];

		want = 4 + hello <= rec ? 5 + rec : max_bytes;
	}
	return want < max_bytes ? want : max_bytes;
}

/* Stop capturing: the socket's later packets return at the lookup. */
static __always_inline void tc_fb_stop(struct bpf_sock *sk)
{
	bpf_sk_storage_delete(&fb_socks, sk);
}

/* The socket closed before the capture had its bytes: say so (a header-only record) and stop. */
static __always_inline void tc_fb_closed(struct bpf_sock *sk, struct tc_fb_sock *st)
{
	struct tc_first_bytes_event *e;

	e = bpf_ringbuf_reserve(&events, __builtin_offsetof(struct tc_first_bytes_event, payload), 0);
	if (e) {
		e->type = TC_EVENT_FIRST_BYTES;
		e->flags = TC_FB_CLOSED;
		e->len = 0;
		e->tid = st->tid;
		e->connect_ts_ns = st->connect_ts_ns;
		e->offset = st->captured;
		e->want = st->want;
		tc_submit(e);
	} else {
		tc_count(TC_LOST_FIRST_BYTES);
	}
	tc_fb_stop(sk);
}

/* The TCP header fields of an egress segment that the capture needs. */
struct tc_fb_tcp {
	__u32 l4;  /* offset of the TCP header */
	__u32 seq; /* sequence number, network order */
	__u8 doff; /* data offset byte */
	__u8 flags;
};

/*
 * Read skb's TCP header fields into h: from the linear part with direct
 * packet access (a field costs a load, where bpf_skb_load_bytes costs a
 * helper call each), else with bpf_skb_load_bytes. A TCP socket's IPv6
 * packets carry no extension headers. Returns -1 when skb is not TCP or
 * cannot be read.
 */
static __always_inline int tc_fb_tcp_header(struct __sk_buff *skb, struct tc_fb_tcp *h)
{
	void *data = (void *)(long)skb->data;
	void *end = (void *)(long)skb->data_end;
	__u8 *ip = data, *tcp;
	__u8 proto, vihl;
	__u32 l4;

	if (skb->protocol == bpf_htons(ETH_P_IP)) {
		if (data + 20 <= end) {
			proto = ip[9];
			vihl = ip[0];
		} else if (bpf_skb_load_bytes(skb, 0, &vihl, 1) || bpf_skb_load_bytes(skb, 9, &proto, 1)) {
			return -1;
		}
		l4 = (vihl & 0x0f) * 4;
	} else if (skb->protocol == bpf_htons(ETH_P_IPV6)) {
		if (data + 40 <= end)
			proto = ip[6];
		else if (bpf_skb_load_bytes(skb, 6, &proto, 1))
			return -1;
		l4 = 40;
	} else {
		return -1;
	}
	if (proto != IPPROTO_TCP)
		return -1;
	h->l4 = l4;
	tcp = data + l4;
	if ((void *)(tcp + 14) <= end) {
		h->seq = *(__u32 *)(tcp + 4);
		h->doff = tcp[12];
		h->flags = tcp[13];
		return 0;
	}
	if (bpf_skb_load_bytes(skb, l4 + 4, &h->seq, 4) ||
	    bpf_skb_load_bytes(skb, l4 + 12, &h->doff, 1) ||
	    bpf_skb_load_bytes(skb, l4 + 13, &h->flags, 1))
		return -1;
	return 0;
}

/* Copy what segment skb adds to the capture of socket sk (state st). */
static __always_inline void tc_fb_capture(struct __sk_buff *skb, struct bpf_sock *sk,
					  struct tc_fb_sock *st)
{
	struct tc_fb_tcp th;
	__u32 l4, seq, off, plen, start, end;
	__u8 flags, h[9];

	if (tc_fb_tcp_header(skb, &th))
		return;
	l4 = th.l4;
	seq = th.seq;
	flags = th.flags;
	seq = bpf_ntohl(seq);
	if (flags & TCP_FLAG_SYN) /* data on a SYN (Fast Open) starts after it */
		seq += 1;
	l4 += (th.doff >> 4) * 4;
	if (l4 >= skb->len) {
		/* no payload: the handshake's ACK, a bare ACK, or a FIN or RST */
		if (flags & (TCP_FLAG_FIN | TCP_FLAG_RST))
			tc_fb_closed(sk, st);
		return;
	}
	plen = skb->len - l4;
	if (!st->want) {
		__u32 n = plen < sizeof(h) ? plen : sizeof(h);

		__builtin_memset(h, 0, sizeof(h));
		if (n == sizeof(h) && bpf_skb_load_bytes(skb, l4, h, sizeof(h)))
			return;
		st->base_seq = seq;
		st->want = tc_fb_want(h, n, plen);
	}
	off = seq - st->base_seq;
	if (off > st->captured) { /* a gap: never on egress in order; give up */
		tc_count(TC_LOST_FIRST_BYTES);
		tc_fb_stop(sk);
		return;
	}
	start = st->captured - off; /* a retransmit may repeat what was copied */
	if (start >= plen)
		return;
	end = plen;
	if (off + end > st->want)
		end = st->want - off;
	/*
	 * pos follows from i alone, not from the lengths before: the verifier
	 * then sees the same state at each iteration's end whatever the clamp
	 * below chose, and the loop stays linear for it.
	 */
	for (int i = 0; i < TC_FB_SEG_CHUNKS; i++) {
		struct tc_first_bytes_event *e;
		__u32 pos = start + i * TC_FB_CHUNK, n;

		if (pos >= end)
			break;
		e = bpf_ringbuf_reserve(&events, sizeof(*e), 0);
		if (!e) {
			tc_count(TC_LOST_FIRST_BYTES);
			tc_fb_stop(sk);
			return;
		}
		/* shape n as [1, TC_FB_CHUNK] in a way the verifier follows */
		n = end - pos - 1;
		if (n > TC_FB_CHUNK - 1)
			n = TC_FB_CHUNK - 1;
		barrier_var(n);
		n += 1;
		if (bpf_skb_load_bytes(skb, l4 + pos, e->payload, n)) {
			bpf_ringbuf_discard(e, BPF_RB_NO_WAKEUP);
			tc_count(TC_LOST_FIRST_BYTES);
			tc_fb_stop(sk);
			return;
		}
		e->type = TC_EVENT_FIRST_BYTES;
		e->len = n;
		e->tid = st->tid;
		e->connect_ts_ns = st->connect_ts_ns;
		e->offset = off + pos;
		e->want = st->want;
		st->captured = off + pos + n;
		e->flags = st->captured >= st->want ? TC_FB_LAST : 0;
		tc_submit(e);
	}
	if (st->captured >= st->want)
		tc_fb_stop(sk);
	else if (flags & (TCP_FLAG_FIN | TCP_FLAG_RST))
		tc_fb_closed(sk, st);
}

/* cgroup_skb/egress: the first bytes of marked sockets; one storage lookup for any other packet. */
SEC("cgroup_skb/egress")
int tc_fb_egress(struct __sk_buff *skb)
{
	struct bpf_sock *sk = skb->sk;
	struct tc_fb_sock *st;

	if (!sk)
		return 1;
	sk = bpf_sk_fullsock(sk);
	if (!sk)
		return 1;
	st = bpf_sk_storage_get(&fb_socks, sk, 0, 0);
	if (!st)
		return 1;
	tc_fb_capture(skb, sk, st);
	return 1;
}
