/* SPDX-License-Identifier: (GPL-2.0-only OR BSD-2-Clause) */
/*
 * Aggregation of repeated connects (opt-in). Two window maps, agg_win0 and
 * agg_win1; agg_state holds the window generation, whose bit 0 says which
 * one takes this window's connects. The first connect of a key
 * (tc_agg_key) in a window is inserted into it and reported as usual; its
 * repeats only bump the entry's count (no ring record). At the window's end
 * user space (aggregate.go) moves agg_state to the next generation and
 * updates a slot of agg_windows, an array of maps: the kernel then waits for
 * an RCU grace period (synchronize_rcu in maybe_wait_bpf_programs), and
 * every program here runs inside an RCU read section, so once the update
 * returns no program still uses the old map. User space reads and empties
 * it and reports one summary per key with a count. A key that finds the map
 * full is reported on its own, flagged and counted (TC_COUNT_AGG_OVERFLOW).
 * TC_AGG_STOPPED stops aggregating (at shutdown), so nothing is counted
 * after the last flush.
 *
 * Outcomes (outcome tracking on): each counted connect's socket is followed
 * (outcome.bpf.h) with its key and generation, and its outcome is counted in
 * the entry by kind (tc_agg_outcome) if it comes while that generation is
 * still the current one, under the same RCU argument; else it is counted as
 * late (TC_COUNT_AGG_LATE_OUTCOME). The outcome object shares these maps.
 */
#ifndef TCPCONNECT_AGGREGATE_BPF_H
#define TCPCONNECT_AGGREGATE_BPF_H

#include "common.bpf.h"

/* Set by the loader: aggregate repeats. Off, the verifier drops this code. */
const volatile __u32 agg_enabled = 0;
/* Set by the loader: count the outcomes of the connects counted (outcome tracking on). */
const volatile __u32 agg_outcomes = 0;

/*
 * Aggregation state, by enum tc_agg_state_index: the window generation
 * (TC_AGG_STOPPED: aggregation stopped), set by user space, and per window
 * map whether it was found full in its window: then a new key goes out on
 * its own at once, without another futile insert. User space clears a map's
 * flag when it has emptied the map, before any program can use it again.
 */
struct {
	__uint(type, BPF_MAP_TYPE_ARRAY);
	__uint(max_entries, TC_AGG_STATE_MAX);
	__type(key, __u32);
	__type(value, __u32);
} agg_state SEC(".maps");

/* A window map. Sized by the loader (both maps, and the template, alike). */
struct tc_agg_map {
	__uint(type, BPF_MAP_TYPE_HASH);
	__uint(max_entries, 1);
	__type(key, struct tc_agg_key);
	__type(value, struct tc_agg_value);
};

struct tc_agg_map agg_win0 SEC(".maps");
struct tc_agg_map agg_win1 SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_ARRAY_OF_MAPS);
	__uint(max_entries, 2);
	__type(key, __u32);
	__array(values, struct tc_agg_map);
} agg_windows SEC(".maps") = {
	.values = { &agg_win0, &agg_win1 },
};

/* Scratch per CPU: turns the socket pointer into a number (see tc_sk_netns). */
struct {
	__uint(type, BPF_MAP_TYPE_PERCPU_ARRAY);
	__uint(max_entries, 1);
	__type(key, __u32);
	__type(value, __u64);
} agg_scratch SEC(".maps");

/* What a new key is inserted with: zero counts (its record is filled later). */
static const struct tc_agg_value agg_zero;

/* Results of tc_agg_count. */
enum tc_agg_result {
	TC_AGG_NONE = 0,     /* not aggregating: report the connect as usual */
	TC_AGG_COUNTED = 1,  /* a repeat: counted in the window, nothing to report */
	TC_AGG_FIRST = 2,    /* the key's first: report it and fill *first */
	TC_AGG_OVERFLOW = 3, /* the window map is full: report it on its own, flagged */
};

/* The current window generation, or TC_AGG_STOPPED. */
static __always_inline __u32 tc_agg_generation(void)
{
	__u32 i = TC_AGG_STATE_GENERATION, *g = bpf_map_lookup_elem(&agg_state, &i);

	return g ? *(volatile __u32 *)g : TC_AGG_STOPPED;
}

/*
 * Count one connect in the current window. A repeat is counted here and
 * the caller reports nothing; a new key returns its entry in *first for the
 * caller to fill with the connect's record, whose time must be *first_ts:
 * read before the key was inserted, so that it is not later than any
 * repeat's (read after the repeat found the key). *key is the key, *gen the
 * window generation, and *skey the socket's address as a number (0 without
 * a socket), under which outcome.bpf.h follows it.
 */
static __always_inline int tc_agg_count(__u8 family, __u16 dport, const __u32 addr[4],
					const void *sk, struct tc_agg_key *key, __u64 *skey,
					struct tc_agg_value **first, __u32 *gen, __u64 *first_ts)
{
	struct task_struct *task = (struct task_struct *)bpf_get_current_task();
	struct tc_agg_value *v;
	__u32 w = tc_agg_generation(), idx, zero = 0;
	void *inner;
	long err;

	if (w & TC_AGG_STOPPED)
		return TC_AGG_NONE;
	*gen = w;
	idx = w & 1;
	inner = bpf_map_lookup_elem(&agg_windows, &idx);
	if (!inner)
		return TC_AGG_NONE;
	key->tgid = bpf_get_current_pid_tgid() >> 32;
	key->start_time_ns = BPF_CORE_READ(task, group_leader, start_time);
	if (sk) {
		__u64 *scratch = bpf_map_lookup_elem(&agg_scratch, &zero);

		if (!scratch)
			return TC_AGG_NONE;
		key->netns = tc_sk_netns(sk, scratch);
		*skey = *(volatile __u64 *)scratch;
		*scratch = 0;
	} else {
		key->netns = BPF_CORE_READ(task, nsproxy, net_ns, ns.inum);
	}
	key->family = family;
	key->dport = dport;
	if (family == AF_INET)
		__builtin_memcpy(key->daddr, &addr[3], 4);
	else
		__builtin_memcpy(key->daddr, addr, 16);

	v = bpf_map_lookup_elem(inner, key);
	if (!v) {
		__u32 fi = TC_AGG_STATE_FULL0 + idx, *full = bpf_map_lookup_elem(&agg_state, &fi);

		if (full && *(volatile __u32 *)full) {
			tc_count(TC_COUNT_AGG_OVERFLOW);
			return TC_AGG_OVERFLOW;
		}
		*first_ts = bpf_ktime_get_boot_ns();
		err = bpf_map_update_elem(inner, key, &agg_zero, BPF_NOEXIST);
		v = bpf_map_lookup_elem(inner, key);
		if (!v) {
			if (full)
				*full = 1;
			tc_count(TC_COUNT_AGG_OVERFLOW);
			return TC_AGG_OVERFLOW;
		}
		if (err == 0) {
			*first = v;
			return TC_AGG_FIRST;
		}
		/* Another CPU inserted it first (-EEXIST): a repeat. */
	}
	__sync_fetch_and_add(&v->count, 1);
	/* The latest repeat; concurrent repeats of one key may leave a few ns earlier. */
	{
		__u64 now = bpf_ktime_get_boot_ns();

		if (now > v->last_ts_ns)
			v->last_ts_ns = now;
	}
	return TC_AGG_COUNTED;
}

/*
 * Count the outcome (enum tc_outcome_kind) of a connect counted in window
 * generation gen under key. Only while gen is current: then user space
 * cannot be reading its map (it waits for this program to end after moving
 * the generation on). Else, or when the entry is gone, it is late.
 */
static __always_inline void tc_agg_outcome(const struct tc_agg_key *key, __u32 gen, __u8 kind)
{
	struct tc_agg_value *v;
	__u32 idx = gen & 1, i;
	void *inner;

	if (tc_agg_generation() != gen)
		goto late;
	inner = bpf_map_lookup_elem(&agg_windows, &idx);
	if (!inner)
		goto late;
	v = bpf_map_lookup_elem(inner, key);
	if (!v)
		goto late;
	/*
	 * The compiler knows kind's values and would drop this bound, while
	 * the verifier may not (kind may be the TCP state's register): the
	 * barrier keeps the check.
	 */
	i = kind - 1;
	barrier_var(i);
	if (i >= TC_OUTCOME_KINDS)
		goto late;
	__sync_fetch_and_add(&v->outcomes[i], 1);
	return;
late:
	tc_count(TC_COUNT_AGG_LATE_OUTCOME);
}

#endif
