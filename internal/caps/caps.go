// Package caps checks, before anything is loaded, that the process holds the
// Linux capabilities the receiver needs, so that a missing one is reported by
// name instead of as the kernel's EPERM or a verifier message.
//
// What each capability buys (measured with setpriv on Linux 6.18 and in the
// VM tests on Debian's 6.1 and 6.12, see the README's Requirements):
//   - CAP_BPF: create the ring and filter maps and load programs.
//   - CAP_PERFMON: load the tracing programs (lsm, fentry, kprobe) and use
//     bpf_get_current_task and bpf_probe_read_kernel, which every connect
//     program calls to read the process fields.
//   - CAP_NET_ADMIN: load and attach the cgroup programs (attach mode
//     cgroup, DNS capture).
//   - CAP_SYS_ADMIN: attach mode kprobe opens a perf event, which
//     kernel.perf_event_paranoid 3 (Debian's default, a Debian patch)
//     allows only with CAP_SYS_ADMIN.
//   - CAP_SYS_PTRACE: optional; read /proc/PID/exe of other users' (and
//     non-dumpable) processes for process.executable.path.
//
// CAP_SYS_ADMIN stands in for CAP_BPF and CAP_PERFMON (kernels before 5.8
// know no other), and for CAP_NET_ADMIN in attach mode cgroup, but not for
// DNS capture: on 6.1 attaching the cgroup_skb programs needs CAP_NET_ADMIN
// itself. It never stands in for CAP_SYS_PTRACE.
package caps

import (
	"errors"
	"fmt"
	"os"
	"strconv"
	"strings"
	"syscall"
	"unsafe"

	"golang.org/x/sys/unix"
)

// Cap is a capability number (unix.CAP_*).
type Cap uint

// Set is a set of capabilities, bit n for capability n.
type Set uint64

// Has reports whether c is in s.
func (s Set) Has(c Cap) bool { return c < 64 && s&(1<<c) != 0 }

// Of returns the set holding cs.
func Of(cs ...Cap) Set {
	var s Set
	for _, c := range cs {
		s |= 1 << c
	}
	return s
}

// Name returns the capability's name as in capabilities(7), e.g. "CAP_BPF".
func (c Cap) Name() string {
	switch c {
	case unix.CAP_BPF:
		return "CAP_BPF"
	case unix.CAP_PERFMON:
		return "CAP_PERFMON"
	case unix.CAP_NET_ADMIN:
		return "CAP_NET_ADMIN"
	case unix.CAP_SYS_ADMIN:
		return "CAP_SYS_ADMIN"
	case unix.CAP_SYS_PTRACE:
		return "CAP_SYS_PTRACE"
	}
	return fmt.Sprintf("capability %d", uint(c))
}

// Effective returns the calling thread's effective capabilities (capget).
// The Go runtime keeps every thread's capabilities the same unless the
// program changes them per thread, which this one does not.
func Effective() (Set, error) {
	hdr := unix.CapUserHeader{Version: unix.LINUX_CAPABILITY_VERSION_3}
	var data [2]unix.CapUserData
	if err := unix.Capget(&hdr, &data[0]); err != nil {
		return 0, fmt.Errorf("capget: %w", err)
	}
	return Set(data[0].Effective) | Set(data[1].Effective)<<32, nil
}

// RaiseEffective makes every permitted capability effective on every thread
// of the process and returns the effective set. A non-root process gets its
// capabilities from the file capabilities of its binary (the image's
// collector carries cap_bpf,cap_perfmon,cap_net_admin,cap_sys_ptrace+p):
// the kernel grants those of them the container's bounding set holds as
// permitted only, without the effective flag, because with it execve fails
// (EPERM) as soon as one of them is not in the bounding set, which would
// make the optional CAP_SYS_PTRACE required. Root, whose effective set is
// already its permitted set, is left as it is.
func RaiseEffective() (Set, error) {
	hdr := unix.CapUserHeader{Version: unix.LINUX_CAPABILITY_VERSION_3}
	var data [2]unix.CapUserData
	if err := unix.Capget(&hdr, &data[0]); err != nil {
		return 0, fmt.Errorf("capget: %w", err)
	}
	eff := Set(data[0].Effective) | Set(data[1].Effective)<<32
	perm := Set(data[0].Permitted) | Set(data[1].Permitted)<<32
	if eff == perm {
		return eff, nil
	}
	data[0].Effective, data[1].Effective = data[0].Permitted, data[1].Permitted
	// Capabilities are per thread: set them on every thread the Go runtime
	// has (it fails with ENOTSUP in a binary built with cgo). Its
	// go:uintptrescapes keeps hdr and data alive and in place.
	_, _, errno := syscall.AllThreadsSyscall(unix.SYS_CAPSET, uintptr(unsafe.Pointer(&hdr)), uintptr(unsafe.Pointer(&data[0])), 0)
	if errno != 0 {
		return eff, fmt.Errorf("capset: make the permitted capabilities effective: %w", errno)
	}
	return perm, nil
}

// Needs is what the configuration asks of the kernel.
type Needs struct {
	// Cgroup: the cgroup connect programs must load (attach mode cgroup).
	Cgroup bool
	// CgroupFallback: the cgroup connect programs may be used as auto's
	// last fallback.
	CgroupFallback bool
	// DNS: the cgroup_skb DNS capture programs must load.
	DNS bool
	// FirstBytes: the cgroup first-bytes programs (sock_addr and
	// cgroup_skb) must load.
	FirstBytes bool
	// Kprobe: the kprobe program must attach (attach mode kprobe).
	Kprobe bool
	// KprobeFallback: the kprobe program may be used by auto.
	KprobeFallback bool
	// PerfEventParanoid is kernel.perf_event_paranoid (-1: unknown). At 3
	// and above only CAP_SYS_ADMIN may open the kprobe's perf event.
	PerfEventParanoid int
}

// Warning is a missing optional capability and what goes without it.
type Warning struct {
	Cap    Cap
	Effect string
}

func (w Warning) String() string { return w.Cap.Name() + " missing: " + w.Effect }

// Check decides from the effective set have whether the receiver can start
// with needs. It returns an error naming every missing capability that
// loading or attaching needs, and a warning for each missing optional one.
func Check(have Set, needs Needs) (warnings []Warning, err error) {
	admin := have.Has(unix.CAP_SYS_ADMIN)
	missing := func(c Cap) bool { return !admin && !have.Has(c) }
	var errs []error
	if missing(unix.CAP_BPF) {
		errs = append(errs, errors.New("CAP_BPF missing: the eBPF maps and programs cannot be created"))
	}
	if missing(unix.CAP_PERFMON) {
		errs = append(errs, errors.New("CAP_PERFMON missing: the connect programs cannot read the process fields (bpf_get_current_task, bpf_probe_read_kernel) nor attach as lsm, fentry or kprobe"))
	}
	switch {
	case (needs.DNS || needs.FirstBytes) && !have.Has(unix.CAP_NET_ADMIN):
		var parts []string
		if needs.DNS {
			parts = append(parts, "DNS capture (dns.enabled)")
		}
		if needs.FirstBytes {
			parts = append(parts, "first bytes (first_bytes, with outcome.enabled)")
		}
		what := strings.Join(parts, " and ")
		if needs.Cgroup {
			what = "attach mode cgroup and " + what
		}
		errs = append(errs, fmt.Errorf("CAP_NET_ADMIN missing: the cgroup programs of %s cannot attach (CAP_SYS_ADMIN does not stand in for it on every kernel)", what))
	case needs.Cgroup && missing(unix.CAP_NET_ADMIN):
		errs = append(errs, errors.New("CAP_NET_ADMIN missing: the cgroup programs of attach mode cgroup cannot load"))
	case needs.CgroupFallback && missing(unix.CAP_NET_ADMIN):
		warnings = append(warnings, Warning{unix.CAP_NET_ADMIN, "attach mode auto cannot fall back to cgroup"})
	}
	if !admin && needs.PerfEventParanoid >= 3 {
		const why = "attach mode kprobe opens a perf event, which kernel.perf_event_paranoid=3 allows only with CAP_SYS_ADMIN (or lower the sysctl to 2)"
		switch {
		case needs.Kprobe:
			errs = append(errs, errors.New("CAP_SYS_ADMIN missing: "+why))
		case needs.KprobeFallback:
			warnings = append(warnings, Warning{unix.CAP_SYS_ADMIN, why + "; auto cannot use it"})
		}
	}
	if !have.Has(unix.CAP_SYS_PTRACE) {
		warnings = append(warnings, Warning{unix.CAP_SYS_PTRACE, "process.executable.path is left out for other users' processes (and non-dumpable ones)"})
	}
	if len(errs) > 0 {
		err = fmt.Errorf("missing capabilities: %w", errors.Join(errs...))
	}
	return warnings, err
}

// PerfEventParanoid reads kernel.perf_event_paranoid, -1 when it cannot.
func PerfEventParanoid() int {
	b, err := os.ReadFile("/proc/sys/kernel/perf_event_paranoid")
	if err != nil {
		return -1
	}
	n, err := strconv.Atoi(strings.TrimSpace(string(b)))
	if err != nil {
		return -1
	}
	return n
}
