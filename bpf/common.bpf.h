/* SPDX-License-Identifier: (GPL-2.0-only OR BSD-2-Clause) */
/*
 * Maps and helpers shared by every object. The Go loader loads the connect
 * object first and hands its "events" and "counters" maps to the DNS object
 * (MapReplacements), so all records meet in one ring, in kernel order.
 */
#ifndef TCPCONNECT_COMMON_BPF_H
#define TCPCONNECT_COMMON_BPF_H

#include "tcpconnect.h"

/* Set by the loader before load; read-only afterwards. */
const volatile __u64 wakeup_bytes = 0; /* wake the reader only once this much data waits */

/* The one ring buffer: connect and DNS records. Size set by the loader. */
struct {
	__uint(type, BPF_MAP_TYPE_RINGBUF);
	__uint(max_entries, 1 << 23);
} events SEC(".maps");

/* Records dropped and other events counted, per CPU, by enum tc_counter. */
struct {
	__uint(type, BPF_MAP_TYPE_PERCPU_ARRAY);
	__uint(max_entries, TC_COUNTERS_MAX);
	__type(key, __u32);
	__type(value, __u64);
} counters SEC(".maps");

static __always_inline void tc_count(__u32 index)
{
	__u64 *v = bpf_map_lookup_elem(&counters, &index);

	if (v)
		*v += 1; /* per-CPU slot: no atomic needed */
}

/*
 * Submit without waking the reader, unless the data waiting in the ring has
 * passed the threshold: the reader polls on a short timer, so latency stays
 * bounded and the workload pays no wakeup per event.
 */
static __always_inline void tc_submit(void *rec)
{
	__u64 flags = BPF_RB_NO_WAKEUP;

	if (bpf_ringbuf_query(&events, BPF_RB_AVAIL_DATA) >= wakeup_bytes)
		flags = BPF_RB_FORCE_WAKEUP;
	bpf_ringbuf_submit(rec, flags);
}

/*
 * The network namespace (inode) of a kernel socket. The hooks get the socket
 * as a pointer the verifier will not let them turn into a number (struct
 * bpf_sock in cgroup programs), so it passes through *scratch, ring memory
 * of the record being filled, which makes it one (the loader has
 * CAP_PERFMON, so the store is allowed), and is read from there with CO-RE.
 * The caller overwrites *scratch afterwards: no pointer reaches user space.
 */
static __always_inline __u32 tc_sk_netns(const void *sk, __u64 *scratch)
{
	struct sock *ks;

	*(volatile __u64 *)scratch = (__u64)(long)sk;
	ks = (struct sock *)(long)*(volatile __u64 *)scratch;
	return BPF_CORE_READ(ks, __sk_common.skc_net.net, ns.inum);
}

#endif
