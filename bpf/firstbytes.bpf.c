//go:build ignore

// SPDX-License-Identifier: (GPL-2.0-only OR BSD-2-Clause)
/*
 * First bytes: what a followed socket sends once connected (a TLS
 * ClientHello, an HTTP request head), copied into the shared ring for
 * internal/firstbytes to parse, keyed as the connect's outcome record is (the
 * connect record's tid and ts_ns).
 *
 * - The connect hook marks the entry it makes in outcome_socks for each
 *   reported connect (TC_FB_WANTED, outcome.bpf.h), and the outcome
 *   tracepoint leaves an established socket's entry in place
 *   (TC_FB_OUTCOME_SENT): the capture's state lives in that entry, and
 *   following a socket costs no storage of its own.
 * - cgroup_skb/egress sees every packet on the host. It looks a TCP packet
 *   up in outcome_socks only when it carries data or a FIN or RST and its
 *   socket has sent at most fb_max_segs data segments (bpf_tcp_sock's
 *   data_segs_out); any other packet returns without a lookup. A followed
 *   socket's segments are copied until the capture has its bytes, and its
 *   entry is deleted.
 *
 * A followed socket that sends a FIN or RST before the capture has its bytes
 * (a client that connects and closes without sending, or closes mid-way)
 * gets a header-only record flagged TC_FB_CLOSED and its entry is deleted:
 * the receiver stops waiting for it. A socket destroyed with its capture
 * still open gets the same record from tc_outcome_destroy.
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

/*
 * Set by the loader: a TCP socket's packets are looked for in outcome_socks
 * only while it has sent at most this many data segments before them. A
 * capture that needs more (max_bytes in writes of under 256 bytes) gets no
 * more bytes and ends at the socket's close (tc_outcome_destroy).
 */
const volatile __u32 fb_max_segs = 68;

/* Where the egress program turns a socket pointer into outcome_socks' key. */
struct {
	__uint(type, BPF_MAP_TYPE_PERCPU_ARRAY);
	__uint(max_entries, 1);
	__type(key, __u32);
	__type(value, __u64);
} fb_scratch SEC(".maps");

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

/*
 * Stop capturing: an entry whose outcome went out leaves outcome_socks; one
 * still waiting for its outcome (data sent before the handshake ended: Fast
 * Open) only stops wanting bytes.
 */
static __always_inline void tc_fb_stop(__u64 key, struct tc_outcome_track *t)
{
	if (t->fb & TC_FB_OUTCOME_SENT)
		bpf_map_delete_elem(&outcome_socks, &key);
	else
		t->fb &= ~TC_FB_WANTED;
}

/* The socket closed before the capture had its bytes: say so and stop. */
static __always_inline void tc_fb_close(__u64 key, struct tc_outcome_track *t)
{
	tc_fb_closed(t);
	tc_fb_stop(key, t);
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

/* Copy what segment skb (TCP header th) adds to the capture of the socket followed as key (entry st). */
static __always_inline void tc_fb_capture(struct __sk_buff *skb, const struct tc_fb_tcp *th,
					  __u64 key, struct tc_outcome_track *st)
{
	__u32 l4, seq, off, plen, start, end;
	__u8 flags = th->flags, h[9];

	seq = bpf_ntohl(th->seq);
	if (flags & TCP_FLAG_SYN) /* data on a SYN (Fast Open) starts after it */
		seq += 1;
	l4 = th->l4 + (th->doff >> 4) * 4;
	if (l4 >= skb->len) {
		/* no payload: a FIN or RST (the egress program let no other through) */
		if (flags & (TCP_FLAG_FIN | TCP_FLAG_RST))
			tc_fb_close(key, st);
		return;
	}
	plen = skb->len - l4;
	if (!st->fb_want) {
		__u32 n = plen < sizeof(h) ? plen : sizeof(h);

		__builtin_memset(h, 0, sizeof(h));
		if (n == sizeof(h) && bpf_skb_load_bytes(skb, l4, h, sizeof(h)))
			return;
		st->fb_base_seq = seq;
		st->fb_want = tc_fb_want(h, n, plen);
	}
	off = seq - st->fb_base_seq;
	if (off > st->fb_captured) { /* a gap: never on egress in order; give up */
		tc_count(TC_LOST_FIRST_BYTES);
		tc_fb_stop(key, st);
		return;
	}
	start = st->fb_captured - off; /* a retransmit may repeat what was copied */
	if (start >= plen)
		return;
	end = plen;
	if (off + end > st->fb_want)
		end = st->fb_want - off;
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
			tc_fb_stop(key, st);
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
			tc_fb_stop(key, st);
			return;
		}
		e->type = TC_EVENT_FIRST_BYTES;
		e->len = n;
		e->tid = st->tid;
		e->connect_ts_ns = st->connect_ts_ns;
		e->offset = off + pos;
		e->want = st->fb_want;
		st->fb_captured = off + pos + n;
		e->flags = st->fb_captured >= st->fb_want ? TC_FB_LAST : 0;
		tc_submit(e);
	}
	if (st->fb_captured >= st->fb_want)
		tc_fb_stop(key, st);
	else if (flags & (TCP_FLAG_FIN | TCP_FLAG_RST))
		tc_fb_close(key, st);
}

/*
 * cgroup_skb/egress: the first bytes of followed sockets. A TCP packet that
 * carries data, or ends the stream, of a socket that has sent few data
 * segments is looked up in outcome_socks; any other packet returns after
 * reading its headers and the socket's counters.
 */
SEC("cgroup_skb/egress")
int tc_fb_egress(struct __sk_buff *skb)
{
	struct bpf_sock *sk = skb->sk;
	struct tc_outcome_track *t;
	struct bpf_tcp_sock *tp;
	struct tc_fb_tcp th;
	__u32 zero = 0;
	__u64 *v, key;

	if (!sk)
		return 1;
	sk = bpf_sk_fullsock(sk);
	if (!sk || sk->protocol != IPPROTO_TCP || tc_fb_tcp_header(skb, &th))
		return 1;
	/* A SYN or bare ACK neither adds to a capture nor ends one. */
	if (th.l4 + (th.doff >> 4) * 4 >= skb->len && !(th.flags & (TCP_FLAG_FIN | TCP_FLAG_RST)))
		return 1;
	tp = bpf_tcp_sock(sk);
	/* data_segs_out counts this packet's segments already (gso_segs). */
	if (!tp || tp->data_segs_out > fb_max_segs + skb->gso_segs)
		return 1;
	v = bpf_map_lookup_elem(&fb_scratch, &zero);
	if (!v)
		return 1;
	/* The socket's address as a number, as the connect hook keyed it (tc_sk_netns). */
	*(volatile __u64 *)v = (__u64)(long)sk;
	key = *(volatile __u64 *)v;
	*v = 0;
	t = bpf_map_lookup_elem(&outcome_socks, &key);
	if (!t || !(t->fb & TC_FB_WANTED))
		return 1;
	tc_fb_capture(skb, &th, key, t);
	return 1;
}
