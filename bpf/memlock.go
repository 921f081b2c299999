package bpf

import (
	"errors"
	"fmt"

	"github.com/cilium/ebpf"
	"github.com/cilium/ebpf/rlimit"
	"golang.org/x/sys/unix"
)

// removeMemlock lifts RLIMIT_MEMLOCK where the kernel charges BPF memory to
// it (before 5.11). rlimit decides that once, at package init, by creating
// a map under a zero limit: in a non-root process whose capabilities come
// from the binary's file capabilities that ran before the receiver made
// them effective (caps.RaiseEffective), so the map was refused for want of
// CAP_BPF and rlimit took the kernel for one without memory cgroup
// accounting. When rlimit cannot lift the limit, the check is made again
// now, and a bpf() that the process may not call at all (a seccomp filter)
// is named as such.
func removeMemlock() error {
	rerr := rlimit.RemoveMemlock()
	if rerr == nil {
		return nil
	}
	ok, err := memcgAccounting()
	switch {
	case err != nil:
		return err
	case ok:
		return nil
	}
	return fmt.Errorf("remove memlock limit: this kernel charges BPF memory to RLIMIT_MEMLOCK (before 5.11), which needs CAP_SYS_RESOURCE to lift, or a seccomp profile refuses bpf() with EPERM (the runtimes' default profiles allow it only with CAP_SYS_ADMIN; deploy/kubernetes/seccomp/tcpconnect-agent.json allows it): %w", rerr)
}

// memcgAccounting reports whether a map can be created with RLIMIT_MEMLOCK
// at zero (the kernel charges BPF memory to the memory cgroup, 5.11 and
// later). It lowers the soft limit for the time of one map creation, as
// rlimit's own check does; the receiver creates no other map meanwhile.
func memcgAccounting() (bool, error) {
	var old unix.Rlimit
	if err := unix.Prlimit(0, unix.RLIMIT_MEMLOCK, nil, &old); err != nil {
		return false, fmt.Errorf("read the memlock rlimit: %w", err)
	}
	zero := unix.Rlimit{Cur: 0, Max: old.Max}
	if err := unix.Prlimit(0, unix.RLIMIT_MEMLOCK, &zero, nil); err != nil {
		return false, fmt.Errorf("lower the memlock rlimit: %w", err)
	}
	m, mapErr := ebpf.NewMap(&ebpf.MapSpec{Type: ebpf.Array, KeySize: 4, ValueSize: 4, MaxEntries: 1})
	if err := unix.Prlimit(0, unix.RLIMIT_MEMLOCK, &old, nil); err != nil {
		return false, fmt.Errorf("restore the memlock rlimit: %w", err)
	}
	switch {
	case mapErr == nil:
		m.Close()
		return true, nil
	case errors.Is(mapErr, unix.ENOSYS):
		return false, fmt.Errorf("the bpf() system call is refused (%w): a seccomp profile that does not allow it (or a kernel without CONFIG_BPF_SYSCALL); allow bpf and perf_event_open as deploy/kubernetes/seccomp/tcpconnect-agent.json does", mapErr)
	case errors.Is(mapErr, unix.EPERM):
		return false, nil
	}
	return false, fmt.Errorf("create a BPF map to check memory accounting: %w", mapErr)
}
