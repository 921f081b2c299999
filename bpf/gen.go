package bpf

// The objects are committed; `make generate` rebuilds them with Debian's
// clang-19. One object per architecture: bpf2go defines __TARGET_ARCH_x86 or
// __TARGET_ARCH_arm64 (kernel.h and bpf_tracing.h pick the kprobe's register
// names by it), and the uapi headers' asm/ folder is the architecture's own
// (amd64: linux-libc-dev; arm64: linux-libc-dev-arm64-cross). Every kernel
// struct access stays CO-RE.
//go:generate go tool bpf2go -cc clang-19 -strip llvm-strip-19 -target amd64 -type tc_connect_event -type tc_counter -cflags "-O2 -g -Wall -Werror -I/usr/include/x86_64-linux-gnu" connect connect.bpf.c
//go:generate go tool bpf2go -cc clang-19 -strip llvm-strip-19 -target arm64 -type tc_connect_event -type tc_counter -cflags "-O2 -g -Wall -Werror -I/usr/aarch64-linux-gnu/include" connect connect.bpf.c
//go:generate go tool bpf2go -cc clang-19 -strip llvm-strip-19 -target amd64 -type tc_dns_event -cflags "-O2 -g -Wall -Werror -I/usr/include/x86_64-linux-gnu" dns dns.bpf.c
//go:generate go tool bpf2go -cc clang-19 -strip llvm-strip-19 -target arm64 -type tc_dns_event -cflags "-O2 -g -Wall -Werror -I/usr/aarch64-linux-gnu/include" dns dns.bpf.c
//go:generate go tool bpf2go -cc clang-19 -strip llvm-strip-19 -target amd64 -type tc_outcome_event -type tc_outcome_kind -cflags "-O2 -g -Wall -Werror -I/usr/include/x86_64-linux-gnu" outcome outcome.bpf.c
//go:generate go tool bpf2go -cc clang-19 -strip llvm-strip-19 -target arm64 -type tc_outcome_event -type tc_outcome_kind -cflags "-O2 -g -Wall -Werror -I/usr/aarch64-linux-gnu/include" outcome outcome.bpf.c
//go:generate go tool bpf2go -cc clang-19 -strip llvm-strip-19 -target amd64 -type tc_first_bytes_event -cflags "-O2 -g -Wall -Werror -I/usr/include/x86_64-linux-gnu" firstbytes firstbytes.bpf.c
//go:generate go tool bpf2go -cc clang-19 -strip llvm-strip-19 -target arm64 -type tc_first_bytes_event -cflags "-O2 -g -Wall -Werror -I/usr/aarch64-linux-gnu/include" firstbytes firstbytes.bpf.c
