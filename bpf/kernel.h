/* SPDX-License-Identifier: (GPL-2.0-only OR BSD-2-Clause) */
/*
 * The few kernel types the programs read, declared with preserve_access_index so
 * that every access is relocated against the running kernel's BTF (CO-RE). Only
 * the fields used are declared; their order and offsets here do not matter.
 */
#ifndef TCPCONNECT_KERNEL_H
#define TCPCONNECT_KERNEL_H

/* Tell bpf_tracing.h that the kernel's own struct pt_regs is declared here. */
#define __VMLINUX_H__

#define AF_UNSPEC 0
#define AF_INET 2
#define AF_INET6 10
#define SOCK_STREAM 1
#define IPPROTO_TCP 6
#define IPPROTO_UDP 17
#define TCP_CLOSE 7

#pragma clang attribute push(__attribute__((preserve_access_index)), apply_to = record)

/*
 * Kernel registers for BPF_KPROBE, under the names bpf_tracing.h reads for the
 * target (bpf2go defines __TARGET_ARCH_x86 or __TARGET_ARCH_arm64 per object).
 */
#if defined(__TARGET_ARCH_x86)
struct pt_regs {
	unsigned long r15, r14, r13, r12, bp, bx, r11, r10, r9, r8;
	unsigned long ax, cx, dx, si, di, orig_ax, ip, cs, flags, sp, ss;
};
#elif defined(__TARGET_ARCH_arm64)
/* arm64's struct pt_regs begins with this; bpf_tracing.h casts to it. */
struct user_pt_regs {
	__u64 regs[31];
	__u64 sp;
	__u64 pc;
	__u64 pstate;
};
#else
#error "kernel.h: unsupported target: build with bpf2go -target amd64 or arm64"
#endif

typedef struct {
	unsigned int val;
} kuid_t;

typedef struct {
	unsigned int val;
} kgid_t;

struct cred {
	kuid_t uid;
	kgid_t gid;
};

struct ns_common {
	unsigned int inum;
};

struct net {
	struct ns_common ns;
};

struct nsproxy {
	struct net *net_ns;
};

struct qstr {
	const unsigned char *name;
};

struct dentry {
	struct qstr d_name;
};

struct path {
	struct dentry *dentry;
};

struct file {
	struct path f_path;
};

struct mm_struct {
	struct file *exe_file;
};

struct task_struct {
	int pid;
	int tgid;
	struct task_struct *real_parent;
	struct task_struct *group_leader;
	unsigned long long start_time;
	const struct cred *cred;
	struct nsproxy *nsproxy;
	struct mm_struct *mm;
	char comm[16];
};

typedef struct {
	struct net *net;
} possible_net_t;

struct sock_common {
	unsigned short skc_family;
	volatile unsigned char skc_state;
	possible_net_t skc_net;
};

struct sock {
	struct sock_common __sk_common;
	unsigned short sk_protocol;
	unsigned short sk_type;
};

enum socket_state {
	SS_FREE = 0,
	SS_UNCONNECTED,
	SS_CONNECTING,
	SS_CONNECTED,
	SS_DISCONNECTING,
};

struct socket {
	enum socket_state state;
	short type;
	struct sock *sk;
};

#pragma clang attribute pop

/* User ABI (uapi) socket addresses: fixed layouts, no relocation needed. */
struct sockaddr {
	unsigned short sa_family;
};

struct in6_addr {
	union {
		__u8 u6_addr8[16];
		__u32 u6_addr32[4];
	} in6_u;
};

struct sockaddr_in {
	unsigned short sin_family;
	__u16 sin_port;
	struct {
		__u32 s_addr;
	} sin_addr;
};

struct sockaddr_in6 {
	unsigned short sin6_family;
	__u16 sin6_port;
	__u32 sin6_flowinfo;
	struct in6_addr sin6_addr;
};

#endif
