package bpf

// The objects are committed; `make generate` rebuilds them with Debian's clang-19.
//go:generate go tool bpf2go -cc clang-19 -strip llvm-strip-19 -target amd64 -type tc_connect_event -cflags "-O2 -g -Wall -Werror -D__TARGET_ARCH_x86 -I/usr/include/x86_64-linux-gnu" connect connect.bpf.c
//go:generate go tool bpf2go -cc clang-19 -strip llvm-strip-19 -target amd64 -type tc_dns_event -cflags "-O2 -g -Wall -Werror -D__TARGET_ARCH_x86 -I/usr/include/x86_64-linux-gnu" dns dns.bpf.c
