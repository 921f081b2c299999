/* SPDX-License-Identifier: (GPL-2.0-only OR BSD-2-Clause) */
/*
 * Records shared by the kernel programs and the Go decoder (internal/event).
 * Every record starts with a one-byte type so that one ring buffer can carry
 * connects and DNS packets in the order the kernel saw them. Layouts are fixed:
 * the Go side decodes them at fixed offsets and a test checks those offsets
 * against the bpf2go-generated types.
 */
#ifndef TCPCONNECT_H
#define TCPCONNECT_H

#define TC_COMM_LEN 16
#define TC_EXE_LEN 64
/* DNS payload copied per packet: at least the 1232-byte EDNS default. */
#define TC_DNS_MAX_PAYLOAD 1536

enum tc_event_type {
	TC_EVENT_CONNECT = 1,
	TC_EVENT_DNS = 2,
	TC_EVENT_OUTCOME = 3,
	TC_EVENT_FIRST_BYTES = 4,
};

/* Which program produced a connect record. */
enum tc_hook {
	TC_HOOK_LSM = 1,
	TC_HOOK_FENTRY = 2,
	TC_HOOK_KPROBE = 3,
	TC_HOOK_CGROUP = 4,
};

/*
 * Indexes of the per-CPU counters (map "counters", read by bpf.Counters).
 * TC_LOST_*: records dropped; TC_COUNT_*: events that are no loss.
 */
enum tc_counter {
	TC_LOST_CONNECT = 0,  /* connect records that found the ring full */
	TC_LOST_DNS = 1,      /* DNS records that found the ring full */
	TC_COUNT_FILTERED = 2, /* connects the user's filters left out */
	TC_LOST_OUTCOME = 3,  /* outcome records that found the ring full: their connects go out as pending */
	TC_LOST_DNS_COPY = 4, /* DNS records dropped: copying the payload failed */
	TC_COUNT_AGG_OVERFLOW = 5, /* connects that found the aggregation window full, reported one by one */
	TC_COUNT_AGG_LATE_OUTCOME = 6, /* outcomes of counted connects that came after their window ended */
	TC_LOST_FIRST_BYTES = 7, /* first-bytes captures cut short: the ring was full or a copy failed */
	TC_COUNTERS_MAX = 8,
};

/* Bits of the filter_flags variable: which optional filters are active. */
enum tc_filter_flag {
	TC_FILTER_INCLUDE_CIDR = 1 << 0, /* keep only destinations in include_cidr */
	TC_FILTER_INCLUDE_PORT = 1 << 1, /* keep only ports marked include */
	TC_FILTER_EXCLUDE_PORT = 1 << 2, /* drop ports marked exclude */
	TC_FILTER_INCLUDE_COMM = 1 << 3, /* keep only comms marked include */
	TC_FILTER_EXCLUDE_COMM = 1 << 4, /* drop comms marked exclude */
	TC_FILTER_EXCLUDE_CIDR = 1 << 5, /* drop destinations in exclude_cidr */
};

/* Key of the CIDR tries: IPv4 is stored v4-mapped (::ffff:a.b.c.d, prefix + 96). */
struct tc_cidr_key {
	__u32 prefixlen;
	__u8 addr[16];
};

/* One outbound TCP connect attempt. 152 bytes. */
struct tc_connect_event {
	__u8 type;            /* TC_EVENT_CONNECT */
	__u8 family;          /* AF_INET or AF_INET6 (v4-mapped v6 is reported as AF_INET) */
	__u8 hook;            /* enum tc_hook */
	__u8 flags;           /* TC_CONNECT_* bits */
	__u16 dport;          /* host byte order */
	__u16 _pad1;
	__u64 ts_ns;          /* CLOCK_BOOTTIME */
	__u64 cgroup_id;      /* cgroup v2 id of the task */
	__u64 start_time_ns;  /* thread-group leader start time, for process caches */
	__u32 tgid;
	__u32 tid;
	__u32 ptgid;          /* real parent's tgid */
	__u32 uid;
	__u32 gid;
	__u32 netns;          /* network namespace inode number */
	__u8 daddr[16];       /* v4 in the first 4 bytes, network byte order */
	char comm[TC_COMM_LEN];
	char exe[TC_EXE_LEN]; /* basename of the executable file (mm->exe_file) */
};

/* Bits of tc_connect_event.flags. */
enum tc_connect_flag {
	/* The socket is followed to its next TCP state: a tc_outcome_event
	 * with this record's tid and ts_ns follows, unless the ring is full. */
	TC_CONNECT_TRACKED = 1 << 0,
	/* Aggregation: the first connect of its key in the window; the key's
	 * repeats are counted in the window map (aggregate.bpf.h). */
	TC_CONNECT_AGG_FIRST = 1 << 1,
	/* Aggregation overflow: the window map was full, so this connect is
	 * reported on its own (and counted in TC_COUNT_AGG_OVERFLOW). */
	TC_CONNECT_AGG_OVERFLOW = 1 << 2,
	/* Aggregation: the window the connect was counted in (0 or 1). */
	TC_CONNECT_AGG_WINDOW1 = 1 << 3,
};

/*
 * agg_state's first value, the window generation: bit 0 selects the window map,
 * TC_AGG_STOPPED stops aggregating (at shutdown). A counted connect's
 * outcome is counted only while its generation is still the current one.
 */
#define TC_AGG_STOPPED 0x80000000u

/* Entries of agg_state (aggregate.bpf.h). */
enum tc_agg_state_index {
	TC_AGG_STATE_GENERATION = 0, /* the window generation */
	TC_AGG_STATE_FULL0 = 1,      /* window map 0 was found full (1 + index: map 1) */
	TC_AGG_STATE_MAX = 3,
};

/*
 * What became of a connect, as the log record says it: classified here
 * only (outcome.bpf.h tc_outcome_kind), carried in tc_outcome_event.kind
 * and counted by kind for aggregated connects. Values as event.Kind.
 */
enum tc_outcome_kind {
	TC_KIND_ESTABLISHED = 1,
	TC_KIND_REFUSED = 2,
	TC_KIND_TIMEOUT = 3,
	TC_KIND_UNREACHABLE = 4,
	TC_KIND_RESET = 5,
	TC_KIND_DENIED = 6,
	TC_KIND_CLOSED = 7,
	TC_KIND_PENDING = 8,
};
#define TC_OUTCOME_KINDS 8

/*
 * Aggregation key: one process (tgid and its leader's start time, so that a
 * reused pid is another key), in one network namespace, to one destination.
 * 40 bytes; padding zeroed.
 */
struct tc_agg_key {
	__u64 start_time_ns;
	__u32 tgid;
	__u32 netns;          /* the socket's network namespace inode */
	__u8 daddr[16];       /* as tc_connect_event.daddr */
	__u16 dport;          /* host byte order */
	__u8 family;
	__u8 _pad[5];
};

/*
 * Aggregation value: the key's first connect of the window, as its record,
 * and the connects counted here instead of a record of their own, with
 * their outcomes (outcome tracking on). 200 bytes.
 */
struct tc_agg_value {
	struct tc_connect_event first;
	__u64 count;          /* connects of the key not reported by a record of their own */
	__u64 last_ts_ns;     /* CLOCK_BOOTTIME of the latest of them */
	/* The outcomes of those connects that came within the window, by enum tc_outcome_kind - 1. */
	__u32 outcomes[TC_OUTCOME_KINDS];
};

/* Why an outcome record was written. */
enum tc_outcome_why {
	TC_OUTCOME_STATE = 1,     /* the socket left SYN_SENT (or SYN_RECV) */
	TC_OUTCOME_DESTROYED = 2, /* closed without ever leaving TCP_CLOSE */
	TC_OUTCOME_RECONNECT = 3, /* connected again without ever leaving TCP_CLOSE */
	/* Destroyed after it left TCP_CLOSE (a SYN went out), though no state
	 * change was reported: the kernel skipped the outcome program for it
	 * (it was already running on that CPU). The outcome is unknown. */
	TC_OUTCOME_MISSED = 4,
};

/*
 * What became of a reported connect: its kind, and the facts the kind was
 * decided by. 32 bytes.
 */
struct tc_outcome_event {
	__u8 type;            /* TC_EVENT_OUTCOME */
	__u8 why;             /* enum tc_outcome_why */
	__u8 oldstate;        /* TCP state before the change (TC_OUTCOME_STATE) */
	__u8 newstate;        /* TCP state after it */
	__u8 sock_state;      /* socket->state (SS_*) at the change; 0xff: no socket */
	__u8 kind;            /* enum tc_outcome_kind */
	__u8 _pad0[2];
	/* The socket's error (positive errno, 0 none): sk->sk_err at the
	 * change, else sk->sk_err_soft (an ICMP error that came while the
	 * socket was busy). */
	__s32 err;
	__u32 tid;            /* tid of the connect record */
	__u64 connect_ts_ns;  /* ts_ns of the connect record */
	__u64 ts_ns;          /* CLOCK_BOOTTIME of the change */
};

/* One DNS packet (port 53) seen by cgroup_skb: addresses, context, bounded payload. 1616 bytes. */
struct tc_dns_event {
	__u8 type;            /* TC_EVENT_DNS */
	__u8 direction;       /* 0 ingress (answer), 1 egress (query) */
	__u8 ip_version;      /* 4 or 6 */
	__u8 l4proto;         /* IPPROTO_UDP or IPPROTO_TCP */
	__u16 sport;          /* host byte order */
	__u16 dport;          /* host byte order */
	__u16 payload_len;    /* bytes of payload copied */
	__u16 orig_len;       /* L4 payload length in the packet */
	__u32 tgid;           /* egress UDP only: sending process; 0 for TCP (may be softirq) and ingress */
	__u64 ts_ns;          /* CLOCK_BOOTTIME */
	__u64 cgroup_id;      /* cgroup v2 id of the socket */
	__u64 sock_cookie;    /* socket cookie */
	__u32 netns;          /* the socket's network namespace inode, 0 when unknown */
	__u32 tcp_seq;        /* TCP: the segment's sequence number (host order); 0 for UDP */
	__u8 saddr[16];
	__u8 daddr[16];
	__u8 payload[TC_DNS_MAX_PAYLOAD];
};

/* Payload bytes per first-bytes record. */
#define TC_FB_CHUNK 2048

/* Bits of tc_first_bytes_event.flags. */
enum tc_first_bytes_flag {
	TC_FB_LAST = 1 << 0, /* the capture's last record: offset + len == want */
	/*
	 * The socket sent a FIN or RST before the capture had its bytes: no
	 * more come. A header-only record (no payload, len 0, 24 bytes):
	 * offset is how many bytes were captured (0: the client sent none).
	 */
	TC_FB_CLOSED = 1 << 1,
};

/*
 * A piece of the first bytes a followed socket sent once connected
 * (firstbytes.bpf.c), keyed as its outcome record is: by the tid and ts_ns of
 * its connect record. Pieces come in stream order; 2072 bytes.
 */
struct tc_first_bytes_event {
	__u8 type;            /* TC_EVENT_FIRST_BYTES */
	__u8 flags;           /* enum tc_first_bytes_flag */
	__u16 len;            /* payload bytes in this record */
	__u32 tid;            /* tid of the connect record */
	__u64 connect_ts_ns;  /* ts_ns of the connect record */
	__u32 offset;         /* of payload[0] in the bytes the client sent */
	__u32 want;           /* bytes the capture takes in all */
	__u8 payload[TC_FB_CHUNK];
};

#endif
