//go:build ignore

// SPDX-License-Identifier: (GPL-2.0-only OR BSD-2-Clause)
/*
 * Connect outcomes. The connect object puts each socket it reports into
 * outcome_socks (outcome.bpf.h); these programs report what became of it:
 *
 * - sock:inet_sock_set_state, as a raw tracepoint (no tracefs needed; the
 *   tracepoint exists since 4.16 and fires for blocking, non-blocking and
 *   io_uring connects alike): the first change to ESTABLISHED or CLOSE after
 *   the connect, with sk_err (ECONNREFUSED, ETIMEDOUT, EHOSTUNREACH, ...)
 *   (or sk_err_soft: an ICMP error that arrived while the socket was locked,
 *   as a local reject rule's does, is only a soft error until a retransmit
 *   meets it again) and the socket's SS_* state, which tells a close by the application
 *   (SS_CONNECTING) from a failure inside connect() (SS_UNCONNECTED). The
 *   record carries the outcome's kind, decided here (tc_outcome_kind).
 * - tcp:tcp_destroy_sock: a socket destroyed while still followed never left
 *   TCP_CLOSE after its connect was reported: the connect was denied before
 *   a SYN left (another LSM, a cgroup program, no route); its write_seq,
 *   set by tcp_v4_connect and tcp_v6_connect just after the SYN_SENT state,
 *   is still 0. Else a state change was not reported: the kernel skips a
 *   program that is already running on the CPU (a softirq's state change
 *   while the program ran for another socket), counted as the program's
 *   recursion misses.
 *
 * - With first bytes on, an established socket's entry stays until its
 *   capture ends (firstbytes.bpf.c); destroyed before that, it gets the
 *   capture's closed record here.
 *
 * Both run in every attach mode: they are independent of the connect hook.
 */
#include <linux/bpf.h>
#include "kernel.h"
#include <bpf/bpf_helpers.h>
#include <bpf/bpf_tracing.h>
#include <bpf/bpf_core_read.h>

#include "common.bpf.h"
#include "outcome.bpf.h"

char LICENSE[] SEC("license") = "Dual BSD/GPL";

/* Put the record type and the kinds into BTF (bpf2go -type); in .rodata, never read. */
const struct tc_outcome_event *const tc_outcome_event_btf = 0;
const enum tc_outcome_kind *const tc_outcome_kind_btf = 0;

#define TCP_SYN_SENT 2
#define TCP_SYN_RECV 3

/* Just the fields read here, relocated against the kernel's struct sock and socket. */
struct socket___tc {
	enum socket_state state;
} __attribute__((preserve_access_index));

struct sock___tc {
	int sk_err;
	int sk_err_soft;
	struct socket___tc *sk_socket;
} __attribute__((preserve_access_index));

struct tcp_sock___tc {
	__u32 write_seq;
} __attribute__((preserve_access_index));

/* inet_sock_set_state(const struct sock *sk, const int oldstate, const int newstate) */
SEC("raw_tracepoint/inet_sock_set_state")
int tc_outcome_state(struct bpf_raw_tracepoint_args *ctx)
{
	struct sock___tc *sk = (struct sock___tc *)ctx->args[0];
	int oldstate = (int)ctx->args[1];
	int newstate = (int)ctx->args[2];
	struct tc_outcome_track *t, track;
	struct socket___tc *sock;
	__u8 sock_state = 0xff;
	__u64 key = (__u64)sk;

	/* Only the end of a handshake: SYN_SENT (or SYN_RECV, simultaneous open) to ESTABLISHED or CLOSE. */
	if (newstate != TCP_ESTABLISHED && newstate != TCP_CLOSE)
		return 0;
	if (oldstate != TCP_SYN_SENT && oldstate != TCP_SYN_RECV)
		return 0;
	t = bpf_map_lookup_elem(&outcome_socks, &key);
	if (!t || (t->fb & TC_FB_OUTCOME_SENT))
		return 0;
	sock = BPF_CORE_READ(sk, sk_socket);
	if (sock)
		sock_state = BPF_CORE_READ(sock, state);
	/*
	 * An established socket whose first bytes are wanted keeps its entry
	 * for the capture (firstbytes.bpf.c), which deletes it. Its state
	 * changes, its packets and its destruction are serialized by the
	 * socket's lock.
	 */
	if (newstate == TCP_ESTABLISHED && (t->fb & TC_FB_WANTED)) {
		t->fb |= TC_FB_OUTCOME_SENT;
		tc_outcome_report(t, TC_OUTCOME_STATE, oldstate, newstate, sock_state,
				BPF_CORE_READ(sk, sk_err), BPF_CORE_READ(sk, sk_err_soft));
		return 0;
	}
	track = *t;
	/* Whoever deletes the entry reports it: never twice. */
	if (bpf_map_delete_elem(&outcome_socks, &key))
		return 0;
	tc_outcome_report(&track, TC_OUTCOME_STATE, oldstate, newstate, sock_state,
			BPF_CORE_READ(sk, sk_err), BPF_CORE_READ(sk, sk_err_soft));
	return 0;
}

/* tcp_destroy_sock(struct sock *sk): the socket is going away. */
SEC("raw_tracepoint/tcp_destroy_sock")
int tc_outcome_destroy(struct bpf_raw_tracepoint_args *ctx)
{
	struct tcp_sock___tc *tp = (struct tcp_sock___tc *)ctx->args[0];
	struct tc_outcome_track *t, track;
	__u64 key = ctx->args[0];
	__u8 why = TC_OUTCOME_DESTROYED;

	t = bpf_map_lookup_elem(&outcome_socks, &key);
	if (!t)
		return 0;
	track = *t;
	if (bpf_map_delete_elem(&outcome_socks, &key))
		return 0;
	/* Established, its first bytes still wanted: that capture ends here. */
	if (track.fb & TC_FB_OUTCOME_SENT) {
		if (track.fb & TC_FB_WANTED)
			tc_fb_closed(&track);
		return 0;
	}
	if (BPF_CORE_READ(tp, write_seq))
		why = TC_OUTCOME_MISSED;
	tc_outcome_report(&track, why, TCP_CLOSE, TCP_CLOSE, 0xff, 0, 0);
	return 0;
}
