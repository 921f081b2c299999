/* SPDX-License-Identifier: (GPL-2.0-only OR BSD-2-Clause) */
/*
 * Connect outcome tracking, shared by the connect object (which starts
 * following a socket when it reports its connect) and the outcome object
 * (which reports the socket's next TCP state). The loader hands the connect
 * object's "outcome_socks" map to the outcome object (MapReplacements).
 */
#ifndef TCPCONNECT_OUTCOME_BPF_H
#define TCPCONNECT_OUTCOME_BPF_H

#include "common.bpf.h"
#include "aggregate.bpf.h"

/* Set by the loader: capture the first bytes of each reported connect (firstbytes.bpf.c). */
const volatile __u32 fb_enabled = 0;

/* Bits of tc_outcome_track.fb. */
enum tc_fb_track {
	TC_FB_WANTED = 1 << 0,      /* its first bytes are still to be captured */
	TC_FB_OUTCOME_SENT = 1 << 1, /* its outcome went out; the entry stays for the capture */
};

/*
 * The connect a followed socket belongs to: its record (tid, connect_ts_ns),
 * or, for a connect aggregation counted instead of reporting it (agg set),
 * its key and window generation, where its outcome is counted. With first
 * bytes on, a reported connect's entry also holds its capture's state: an
 * established socket stays here (TC_FB_OUTCOME_SENT) until the capture has
 * its bytes or the socket closes, so that following a socket's first bytes
 * costs no state of its own (firstbytes.bpf.c).
 */
struct tc_outcome_track {
	__u64 connect_ts_ns;
	__u32 tid;
	__u32 agg_gen;
	__u8 agg;
	__u8 fb;             /* enum tc_fb_track */
	__u8 _pad[6];
	struct tc_agg_key key;
	__u32 fb_base_seq;   /* sequence number of the first byte sent */
	__u32 fb_captured;   /* bytes copied so far */
	__u32 fb_want;       /* bytes to copy in all; 0 until the first segment */
	__u32 _pad2;
};

/*
 * Sockets whose connect was reported and whose outcome is not known yet,
 * keyed by the struct sock address (the one key every hook here can read:
 * socket cookies are not available to kprobes and raw tracepoints). Entries
 * leave on the outcome or when the socket is destroyed; LRU bounds what a
 * socket that leaves no trace could strand. Per-CPU LRU lists: an entry is
 * evicted only when its CPU's share (max_entries / CPUs) is full, while the
 * common LRU list may evict early once its free nodes sit in other CPUs'
 * local lists (128 each). Sized by the loader (1 when outcome tracking is
 * off).
 */
struct {
	__uint(type, BPF_MAP_TYPE_LRU_HASH);
	__uint(map_flags, BPF_F_NO_COMMON_LRU);
	__uint(max_entries, 16384);
	__type(key, __u64);
	__type(value, struct tc_outcome_track);
} outcome_socks SEC(".maps");

#define TC_ECONNRESET 104
#define TC_ETIMEDOUT 110
#define TC_ECONNREFUSED 111
#define TC_SS_UNCONNECTED 1
#define TCP_ESTABLISHED 1

/*
 * The kind of an outcome (the one place it is decided; user space only
 * decodes it), from why the outcome was reported, the socket's new TCP
 * state and SS_* state, and its error (tc_outcome_err):
 * - never left CLOSE (destroyed or connected again): denied;
 * - left CLOSE but the change was not reported: pending (unknown);
 * - ESTABLISHED: established;
 * - CLOSE with ECONNREFUSED: refused, ETIMEDOUT: timeout, ECONNRESET:
 *   reset, any other error (an ICMP error, or the timeout after ICMP soft
 *   errors): unreachable;
 * - CLOSE without an error: closed by the application (the socket is
 *   connecting), or, when the socket is still unconnected, a failure
 *   inside connect() after the SYN_SENT state was set (no free local
 *   port): denied.
 */
static __always_inline __u8 tc_outcome_kind(__u8 why, __u8 newstate, __u8 sock_state, __s32 err)
{
	if (why == TC_OUTCOME_DESTROYED || why == TC_OUTCOME_RECONNECT)
		return TC_KIND_DENIED;
	if (why == TC_OUTCOME_MISSED)
		return TC_KIND_PENDING;
	if (newstate == TCP_ESTABLISHED)
		return TC_KIND_ESTABLISHED;
	if (newstate != TCP_CLOSE)
		return TC_KIND_PENDING;
	switch (err) {
	case 0:
		return sock_state == TC_SS_UNCONNECTED ? TC_KIND_DENIED : TC_KIND_CLOSED;
	case TC_ECONNREFUSED:
		return TC_KIND_REFUSED;
	case TC_ETIMEDOUT:
		return TC_KIND_TIMEOUT;
	case TC_ECONNRESET:
		return TC_KIND_RESET;
	}
	return TC_KIND_UNREACHABLE;
}

/*
 * The socket's error: sk_err, else the soft error (an application that gave
 * up on a connect an ICMP error answered while the socket was locked,
 * before a retransmit made the error hard). A positive errno, or 0.
 */
static __always_inline __s32 tc_outcome_err(__s32 err, __s32 err_soft)
{
	if (err > 0)
		return err;
	return err_soft > 0 ? err_soft : 0;
}

/* Reserve, fill and submit one outcome record; count it when the ring is full. */
static __always_inline void tc_outcome_emit(const struct tc_outcome_track *t, __u8 why,
					    __u8 oldstate, __u8 newstate, __u8 sock_state,
					    __u8 kind, __s32 err)
{
	struct tc_outcome_event *o;

	o = bpf_ringbuf_reserve(&events, sizeof(*o), 0);
	if (!o) {
		tc_count(TC_LOST_OUTCOME);
		return;
	}
	o->type = TC_EVENT_OUTCOME;
	o->why = why;
	o->oldstate = oldstate;
	o->newstate = newstate;
	o->sock_state = sock_state;
	o->kind = kind;
	o->_pad0[0] = 0;
	o->_pad0[1] = 0;
	o->err = err;
	o->tid = t->tid;
	o->connect_ts_ns = t->connect_ts_ns;
	o->ts_ns = bpf_ktime_get_boot_ns();
	tc_submit(o);
}

/*
 * The capture of t's first bytes ends before it has them (the socket closed,
 * or its entry is reused): say so with a header-only record (TC_FB_CLOSED)
 * so that the receiver stops waiting for them.
 */
static __always_inline void tc_fb_closed(const struct tc_outcome_track *t)
{
	struct tc_first_bytes_event *e;

	e = bpf_ringbuf_reserve(&events, __builtin_offsetof(struct tc_first_bytes_event, payload), 0);
	if (!e) {
		tc_count(TC_LOST_FIRST_BYTES);
		return;
	}
	e->type = TC_EVENT_FIRST_BYTES;
	e->flags = TC_FB_CLOSED;
	e->len = 0;
	e->tid = t->tid;
	e->connect_ts_ns = t->connect_ts_ns;
	e->offset = t->fb_captured;
	e->want = t->fb_want;
	tc_submit(e);
}

/* Report what became of followed connect t: its outcome record, or its count when aggregated. */
static __always_inline void tc_outcome_report(const struct tc_outcome_track *t, __u8 why,
					      __u8 oldstate, __u8 newstate, __u8 sock_state,
					      __s32 err, __s32 err_soft)
{
	__s32 e = tc_outcome_err(err, err_soft);
	__u8 kind = tc_outcome_kind(why, newstate, sock_state, e);

	if (agg_enabled && t->agg) {
		tc_agg_outcome(&t->key, t->agg_gen, kind);
		return;
	}
	tc_outcome_emit(t, why, oldstate, newstate, sock_state, kind, e);
}

/*
 * Start following socket sk for connect t. A socket still followed here has
 * not left TCP_CLOSE since its last followed connect (that one was denied
 * before it left): its outcome goes out first. Returns 1 when sk is followed.
 */
static __always_inline int tc_outcome_follow(__u64 sk, const struct tc_outcome_track *t)
{
	struct tc_outcome_track *old;

	/* The common case, a socket not followed yet, in one map operation. */
	if (bpf_map_update_elem(&outcome_socks, &sk, t, BPF_NOEXIST) == 0)
		return 1;
	old = bpf_map_lookup_elem(&outcome_socks, &sk);
	if (old) {
		struct tc_outcome_track prev = *old;

		if (bpf_map_delete_elem(&outcome_socks, &sk) == 0) {
			/*
			 * An entry whose outcome went out waits only for first
			 * bytes (a socket disconnected with AF_UNSPEC and
			 * connected again): that capture ends here.
			 */
			if (prev.fb & TC_FB_OUTCOME_SENT) {
				if (prev.fb & TC_FB_WANTED)
					tc_fb_closed(&prev);
			} else {
				tc_outcome_report(&prev, TC_OUTCOME_RECONNECT, TCP_CLOSE, TCP_CLOSE, 0xff, 0, 0);
			}
		}
	}
	return bpf_map_update_elem(&outcome_socks, &sk, t, BPF_ANY) == 0;
}

/* Follow socket sk for the connect record (tid, ts_ns), and its first bytes when they are captured. */
static __always_inline int tc_outcome_track(__u64 sk, __u32 tid, __u64 ts_ns)
{
	struct tc_outcome_track t = { .connect_ts_ns = ts_ns, .tid = tid,
				      .fb = fb_enabled ? TC_FB_WANTED : 0 };

	return tc_outcome_follow(sk, &t);
}

/* Follow socket sk for a connect counted under key in window generation gen. */
static __always_inline void tc_outcome_track_agg(__u64 sk, const struct tc_agg_key *key, __u32 gen)
{
	struct tc_outcome_track t = { .agg_gen = gen, .agg = 1 };

	__builtin_memcpy(&t.key, key, sizeof(t.key));
	tc_outcome_follow(sk, &t);
}

#endif
