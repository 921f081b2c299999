//go:build ignore

// SPDX-License-Identifier: (GPL-2.0-only OR BSD-2-Clause)
/*
 * The connect hook in four attach modes. All of them end in tc_emit() with the
 * destination taken from the kernel's own copy of the sockaddr, so the same
 * connect gives the same record in every mode.
 */
#include <linux/bpf.h>
#include "kernel.h"
#include <bpf/bpf_helpers.h>
#include <bpf/bpf_tracing.h>
#include <bpf/bpf_core_read.h>
#include <bpf/bpf_endian.h>

#include "common.bpf.h"
#include "outcome.bpf.h"
#include "aggregate.bpf.h"

char LICENSE[] SEC("license") = "Dual BSD/GPL";

/* Put the record type and the counters into BTF (bpf2go -type); in .rodata, never read. */
const struct tc_connect_event *const tc_connect_event_btf = 0;
const enum tc_counter *const tc_counter_btf = 0;

/* Set by the loader: enum tc_filter_flag bits of the filters in use. */
const volatile __u32 filter_flags = 0;

/* Set by the loader: follow reported sockets to their outcome (outcome.bpf.c). */
const volatile __u32 outcome_enabled = 0;

/*
 * Writable after load (.bss, mapped by the loader). The attach proof: while
 * proof_port is set, a connect to 127.0.0.1:proof_port from a thread whose
 * comm is proof_comm (a nonce) is not reported; the program stores the tgid
 * it ran for and its hook instead. So the loader sees that the attached hook
 * really runs (a BPF LSM program attaches but never runs when bpf is not an
 * active LSM) and learns its own tgid as the kernel sees it, which
 * self_tgid then holds (0: the collector's own connects are reported).
 */
volatile __u32 self_tgid;
volatile __u32 proof_port;
volatile __u64 proof_comm[2];
volatile __u32 proof_tgid;
volatile __u32 proof_hook;

/* Destination CIDRs to keep (when TC_FILTER_INCLUDE_CIDR) and to drop. */
struct {
	__uint(type, BPF_MAP_TYPE_LPM_TRIE);
	__uint(max_entries, 1024);
	__uint(map_flags, BPF_F_NO_PREALLOC);
	__type(key, struct tc_cidr_key);
	__type(value, __u8);
} include_cidr SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_LPM_TRIE);
	__uint(max_entries, 1024);
	__uint(map_flags, BPF_F_NO_PREALLOC);
	__type(key, struct tc_cidr_key);
	__type(value, __u8);
} exclude_cidr SEC(".maps");

/* Destination port -> 1 include, 2 exclude. */
struct {
	__uint(type, BPF_MAP_TYPE_HASH);
	__uint(max_entries, 1024);
	__type(key, __u16);
	__type(value, __u8);
} ports SEC(".maps");

/* Process name (thread-group leader's comm, NUL-padded) -> 1 include, 2 exclude. */
struct {
	__uint(type, BPF_MAP_TYPE_HASH);
	__uint(max_entries, 1024);
	__type(key, char[TC_COMM_LEN]);
	__type(value, __u8);
} comms SEC(".maps");

#define TC_MARK_INCLUDE 1
#define TC_MARK_EXCLUDE 2

/*
 * The user's filters, before anything is reserved: what they leave out costs
 * a few map lookups and no user-space work. Returns 1 to keep the connect.
 */
static __always_inline int tc_keep(__u16 dport, const __u32 addr[4])
{
	__u32 flags = filter_flags;
	struct tc_cidr_key key;
	__u8 *mark;

	if (!flags)
		return 1;
	if (flags & (TC_FILTER_INCLUDE_PORT | TC_FILTER_EXCLUDE_PORT)) {
		mark = bpf_map_lookup_elem(&ports, &dport);
		if ((flags & TC_FILTER_INCLUDE_PORT) && !(mark && *mark == TC_MARK_INCLUDE))
			return 0;
		if (mark && *mark == TC_MARK_EXCLUDE)
			return 0;
	}
	if (flags & (TC_FILTER_INCLUDE_CIDR | TC_FILTER_EXCLUDE_CIDR)) {
		key.prefixlen = 128;
		__builtin_memcpy(key.addr, addr, 16);
		if ((flags & TC_FILTER_INCLUDE_CIDR) && !bpf_map_lookup_elem(&include_cidr, &key))
			return 0;
		if ((flags & TC_FILTER_EXCLUDE_CIDR) && bpf_map_lookup_elem(&exclude_cidr, &key))
			return 0;
	}
	if (flags & (TC_FILTER_INCLUDE_COMM | TC_FILTER_EXCLUDE_COMM)) {
		/*
		 * The process's name: its thread-group leader's comm, not the
		 * calling thread's, which any thread may rename (prctl PR_SET_NAME).
		 */
		struct task_struct *task = (struct task_struct *)bpf_get_current_task();
		char comm[TC_COMM_LEN] = {};

		BPF_CORE_READ_STR_INTO(&comm, task, group_leader, comm);
		mark = bpf_map_lookup_elem(&comms, comm);
		if ((flags & TC_FILTER_INCLUDE_COMM) && !(mark && *mark == TC_MARK_INCLUDE))
			return 0;
		if (mark && *mark == TC_MARK_EXCLUDE)
			return 0;
	}
	return 1;
}

/*
 * Fill the process fields from the current task, and the network namespace
 * from it when the caller did not set the socket's. Works in every program
 * type used here.
 */
static __always_inline void tc_fill_task(struct tc_connect_event *e)
{
	struct task_struct *task = (struct task_struct *)bpf_get_current_task();
	__u64 pid_tgid = bpf_get_current_pid_tgid();
	__u64 uid_gid = bpf_get_current_uid_gid();
	struct file *exe;

	e->ts_ns = bpf_ktime_get_boot_ns();
	e->tgid = pid_tgid >> 32;
	e->tid = (__u32)pid_tgid;
	e->uid = (__u32)uid_gid;
	e->gid = uid_gid >> 32;
	e->cgroup_id = bpf_get_current_cgroup_id();
	e->ptgid = BPF_CORE_READ(task, real_parent, tgid);
	e->start_time_ns = BPF_CORE_READ(task, group_leader, start_time);
	if (!e->netns) /* no socket given: the task's */
		e->netns = BPF_CORE_READ(task, nsproxy, net_ns, ns.inum);
	bpf_get_current_comm(e->comm, sizeof(e->comm));
	exe = BPF_CORE_READ(task, mm, exe_file);
	if (exe)
		bpf_probe_read_kernel_str(e->exe, sizeof(e->exe),
					  BPF_CORE_READ(exe, f_path.dentry, d_name.name));
	else
		e->exe[0] = 0;
}

/* The loader's proof connect (see proof_port): recorded in .bss, never reported. */
static __always_inline int tc_proof(__u8 hook, __u8 family, __u16 dport, const __u32 addr[4])
{
	__u64 comm[2] = {};

	if (!proof_port || dport != proof_port || family != AF_INET ||
	    addr[3] != bpf_htonl(0x7f000001))
		return 0;
	bpf_get_current_comm(comm, sizeof(comm));
	if (comm[0] != proof_comm[0] || comm[1] != proof_comm[1])
		return 0;
	proof_hook = hook;
	proof_tgid = bpf_get_current_pid_tgid() >> 32;
	return 1;
}

static __always_inline int tc_is_self(void)
{
	__u32 self = self_tgid;

	return self && (__u32)(bpf_get_current_pid_tgid() >> 32) == self;
}

/*
 * Fill the connect record e (ring memory, or a window map entry when the
 * ring is full) and return the socket's address as a number (0: none).
 */
static __always_inline __u64 tc_fill_connect(struct tc_connect_event *e, __u8 hook, __u8 family,
					     __u16 dport, const __u32 addr[4], const void *sk)
{
	__u64 skey;

	e->type = TC_EVENT_CONNECT;
	e->family = family;
	e->hook = hook;
	e->flags = 0;
	e->dport = dport;
	e->_pad1 = 0;
	__builtin_memset(e->daddr, 0, sizeof(e->daddr));
	if (family == AF_INET)
		__builtin_memcpy(e->daddr, &addr[3], 4);
	else
		__builtin_memcpy(e->daddr, addr, 16);
	/*
	 * The namespace the connect goes out in is the socket's, which need not
	 * be the task's (a socket made before a setns). cgroup_id is scratch
	 * until tc_fill_task sets it.
	 */
	e->netns = sk ? tc_sk_netns(sk, &e->cgroup_id) : 0;
	/* The socket's address as a number: tc_sk_netns left it in the scratch. */
	skey = sk ? *(volatile __u64 *)&e->cgroup_id : 0;
	tc_fill_task(e);
	return skey;
}

/*
 * Filter, then reserve, fill and submit one record. addr is a 16-byte
 * v6 address in network order; AF_INET callers pass it v4-mapped (::ffff:a.b.c.d),
 * and any v4-mapped address is reported as AF_INET. sk is the struct sock,
 * whose address is also the key under which outcome.bpf.c follows it.
 * With aggregation on, a repeat of a key in the window is only counted
 * (aggregate.bpf.h).
 */
static __always_inline void tc_emit(__u8 hook, __u8 family, __u16 dport, const __u32 addr[4],
				    const void *sk)
{
	struct tc_agg_value *first = 0;
	struct tc_agg_key key = {};
	struct tc_connect_event *e;
	int agg = TC_AGG_NONE;
	__u64 skey = 0, first_ts = 0;
	__u32 gen = 0;

	if (family == AF_INET6 && addr[0] == 0 && addr[1] == 0 &&
	    addr[2] == bpf_htonl(0x0000ffff))
		family = AF_INET;
	if (tc_proof(hook, family, dport, addr) || tc_is_self())
		return;
	if (!tc_keep(dport, addr)) {
		tc_count(TC_COUNT_FILTERED);
		return;
	}
	if (agg_enabled) {
		agg = tc_agg_count(family, dport, addr, sk, &key, &skey, &first, &gen, &first_ts);
		if (agg == TC_AGG_COUNTED) {
			/* Its outcome is counted in the window too (outcome.bpf.h). */
			if (agg_outcomes && skey)
				tc_outcome_track_agg(skey, &key, gen);
			return;
		}
	}

	e = bpf_ringbuf_reserve(&events, sizeof(*e), 0);
	if (!e) {
		if (agg == TC_AGG_FIRST && first) {
			/*
			 * The key's first found the ring full: it is counted in
			 * its window instead, and its record kept there for the
			 * summary. Not a loss.
			 */
			tc_fill_connect(&first->first, hook, family, dport, addr, sk); /* skey: tc_agg_count's */
			first->first.ts_ns = first_ts;
			if (first_ts > first->last_ts_ns)
				first->last_ts_ns = first_ts;
			__sync_fetch_and_add(&first->count, 1);
			if (agg_outcomes && skey)
				tc_outcome_track_agg(skey, &key, gen);
			return;
		}
		tc_count(TC_LOST_CONNECT);
		return;
	}
	skey = tc_fill_connect(e, hook, family, dport, addr, sk);
	if (agg == TC_AGG_FIRST)
		e->ts_ns = first_ts; /* not later than its repeats' */
	/* Outcome tracking (outcome.bpf.h): only for a record that made it into the ring. */
	if (outcome_enabled && skey && tc_outcome_track(skey, e->tid, e->ts_ns))
		e->flags = TC_CONNECT_TRACKED;
	if (agg == TC_AGG_FIRST && first) {
		e->flags |= TC_CONNECT_AGG_FIRST | ((gen & 1) ? TC_CONNECT_AGG_WINDOW1 : 0);
		__builtin_memcpy(&first->first, e, sizeof(*e));
	} else if (agg == TC_AGG_OVERFLOW) {
		e->flags |= TC_CONNECT_AGG_OVERFLOW;
	}
	tc_submit(e);
}

/*
 * security_socket_connect(sock, address, addrlen), shared by the lsm, fentry and
 * kprobe programs. Keeps what the cgroup hooks would see: TCP stream sockets,
 * unconnected and in TCP_CLOSE, an AF_INET/AF_INET6 address of the socket's own family and of a
 * length the kernel accepts. AF_UNSPEC (disconnect) falls out here too.
 */
static __always_inline void tc_socket_connect(struct socket *sock, struct sockaddr *address,
					      int addrlen, __u8 hook)
{
	__u32 addr[4] = {};
	unsigned short family;
	struct sock *sk;
	__u16 port;

	if (BPF_CORE_READ(sock, type) != SOCK_STREAM)
		return;
	sk = BPF_CORE_READ(sock, sk);
	if (!sk || BPF_CORE_READ(sk, sk_protocol) != IPPROTO_TCP)
		return;
	/*
	 * Only a first connect: a call on a connecting socket (a non-blocking
	 * client polling, or a blocking connect restarted after a signal) sends
	 * nothing, and the cgroup hooks never see it either.
	 */
	if (BPF_CORE_READ(sock, state) != SS_UNCONNECTED ||
	    BPF_CORE_READ(sk, __sk_common.skc_state) != TCP_CLOSE)
		return;
	family = BPF_CORE_READ(address, sa_family);
	if (family != BPF_CORE_READ(sk, __sk_common.skc_family))
		return;

	if (family == AF_INET) {
		struct sockaddr_in *sin = (struct sockaddr_in *)address;

		if (addrlen < (int)sizeof(struct sockaddr_in))
			return;
		port = BPF_CORE_READ(sin, sin_port);
		addr[3] = BPF_CORE_READ(sin, sin_addr.s_addr);
		addr[2] = bpf_htonl(0x0000ffff);
	} else if (family == AF_INET6) {
		struct sockaddr_in6 *sin6 = (struct sockaddr_in6 *)address;

		if (addrlen < 24) /* SIN6_LEN_RFC2133 */
			return;
		port = BPF_CORE_READ(sin6, sin6_port);
		bpf_probe_read_kernel(addr, sizeof(addr), &sin6->sin6_addr);
	} else {
		return;
	}
	tc_emit(hook, family, bpf_ntohs(port), addr, sk);
}

/* lsm: the BPF LSM hook itself; needs "bpf" in the kernel's active LSM list. */
SEC("lsm/socket_connect")
int BPF_PROG(tc_lsm_connect, struct socket *sock, struct sockaddr *address, int addrlen, int ret)
{
	tc_socket_connect(sock, address, addrlen, TC_HOOK_LSM);
	return ret;
}

/* fentry: the same LSM entry point through a BTF trampoline; no lsm= needed. */
SEC("fentry/security_socket_connect")
int BPF_PROG(tc_fentry_connect, struct socket *sock, struct sockaddr *address, int addrlen)
{
	tc_socket_connect(sock, address, addrlen, TC_HOOK_FENTRY);
	return 0;
}

/* kprobe: the same function for kernels without BTF trampolines. */
SEC("kprobe/security_socket_connect")
int BPF_KPROBE(tc_kprobe_connect, struct socket *sock, struct sockaddr *address, int addrlen)
{
	tc_socket_connect(sock, address, addrlen, TC_HOOK_KPROBE);
	return 0;
}

/*
 * cgroup/connect4: runs in the TCP pre-connect path on the kernel's copy of the
 * address, for every socket under the cgroup it is attached to (the v2 root).
 * Always allows the connect.
 */
SEC("cgroup/connect4")
int tc_cgroup_connect4(struct bpf_sock_addr *ctx)
{
	__u32 addr[4] = {};

	if (ctx->type != SOCK_STREAM || ctx->protocol != IPPROTO_TCP ||
	    ctx->user_family != AF_INET)
		return 1;
	addr[2] = bpf_htonl(0x0000ffff);
	addr[3] = ctx->user_ip4;
	tc_emit(TC_HOOK_CGROUP, AF_INET, bpf_ntohs((__u16)ctx->user_port), addr, ctx->sk);
	return 1;
}

/* cgroup/connect6: as connect4, for AF_INET6 sockets (v4-mapped included). */
SEC("cgroup/connect6")
int tc_cgroup_connect6(struct bpf_sock_addr *ctx)
{
	__u32 addr[4];

	if (ctx->type != SOCK_STREAM || ctx->protocol != IPPROTO_TCP ||
	    ctx->user_family != AF_INET6)
		return 1;
	addr[0] = ctx->user_ip6[0];
	addr[1] = ctx->user_ip6[1];
	addr[2] = ctx->user_ip6[2];
	addr[3] = ctx->user_ip6[3];
	tc_emit(TC_HOOK_CGROUP, AF_INET6, bpf_ntohs((__u16)ctx->user_port), addr, ctx->sk);
	return 1;
}
