// Package privtest holds the rules that privileged tests share: when they run,
// when they skip, and which attach mode they use.
package privtest

import (
	"fmt"
	"net/netip"
	"os"
	"os/exec"
	"runtime"
	"testing"
	"time"

	"github.com/cilium/ebpf"
	"github.com/vishvananda/netlink"
	"github.com/vishvananda/netns"
	"golang.org/x/sys/unix"
)

// Environment variables that steer privileged tests.
const (
	// EnvRequire, set to 1 (CI, the VM harness), turns a skip into a failure.
	EnvRequire = "TCPCONNECT_REQUIRE_PRIVILEGED"
	// EnvAttach picks the attach mode (auto, lsm, fentry, kprobe, cgroup).
	EnvAttach = "TCPCONNECT_ATTACH"
	// EnvExpectLSM, "active" or "inactive", is what the VM harness booted
	// the kernel with: bpf in its active LSM list or not.
	EnvExpectLSM = "TCPCONNECT_EXPECT_LSM"
	// EnvExpectAuto is the mode that attach: auto must choose on this boot.
	EnvExpectAuto = "TCPCONNECT_EXPECT_AUTO"
)

// CheckAutoMode fails t when the tests run in mode auto, EnvExpectAuto names
// the mode auto must pick on this kernel, and got differs.
func CheckAutoMode(t testing.TB, got string) {
	t.Helper()
	if want := os.Getenv(EnvExpectAuto); Mode() == "auto" && want != "" && got != want {
		t.Fatalf("attach: auto chose %q, want %q on this boot (%s)", got, want, EnvExpectAuto)
	}
}

// Require skips t with the reason when it cannot run privileged tests here
// (not root), or fails it when EnvRequire=1 says it must run.
func Require(t testing.TB) {
	t.Helper()
	if os.Geteuid() == 0 {
		return
	}
	SkipOrFail(t, "privileged test: needs root (CAP_BPF, CAP_PERFMON, CAP_NET_ADMIN; see the README's Requirements) to load and attach eBPF programs")
}

// Required reports whether EnvRequire=1 forbids skipping here.
func Required() bool { return os.Getenv(EnvRequire) == "1" }

// SkipOrFail is the one way a test that cannot run here says so: it skips t
// with reason, or fails it when EnvRequire=1 (CI, the VM harness) says that
// everything must run. A test must not skip by any other path, nor return
// early with a log line.
func SkipOrFail(t testing.TB, reason string) {
	t.Helper()
	if Required() {
		t.Fatalf("%s, and %s=1 forbids skipping", reason, EnvRequire)
	}
	t.Skip(reason)
}

// LookPath returns the path of the program name, or skips or fails t
// (SkipOrFail) naming pkg, the Debian package that provides it (make deps
// installs it).
func LookPath(t testing.TB, name, pkg string) string {
	t.Helper()
	p, err := exec.LookPath(name)
	if err != nil {
		SkipOrFail(t, fmt.Sprintf("needs %s (Debian package %s): %v", name, pkg, err))
	}
	return p
}

// Mode returns the attach mode to test: EnvAttach, or "auto".
func Mode() string {
	if m := os.Getenv(EnvAttach); m != "" {
		return m
	}
	return "auto"
}

// RequireUnloaded fails t for each of ids that is still a loaded BPF program:
// after Close or Shutdown nothing of ours may stay in the kernel. It waits up
// to a second: the kernel frees a program behind a raw tracepoint link only
// after an RCU grace period (bpf_link_free's deferred dealloc).
func RequireUnloaded(t testing.TB, ids []ebpf.ProgramID) {
	t.Helper()
	var left []ebpf.ProgramID
	for end := time.Now().Add(time.Second); ; time.Sleep(10 * time.Millisecond) {
		live := map[ebpf.ProgramID]bool{}
		for id := ebpf.ProgramID(0); ; {
			next, err := ebpf.ProgramGetNextID(id)
			if err != nil {
				break
			}
			live[next] = true
			id = next
		}
		left = left[:0]
		for _, id := range ids {
			if live[id] {
				left = append(left, id)
			}
		}
		if len(left) == 0 || time.Now().After(end) {
			break
		}
	}
	for _, id := range left {
		t.Errorf("program %d still loaded", id)
	}
}

// Connect connects a socket of type typ to ap with plain system calls, so
// that a v4-mapped address reaches the kernel on an AF_INET6 socket (Go's
// dialer unmaps it); nonblocking connects with O_NONBLOCK and then polls for
// the result.
func Connect(ap netip.AddrPort, typ int, nonblocking bool) error {
	family := unix.AF_INET6
	var sa unix.Sockaddr = &unix.SockaddrInet6{Port: int(ap.Port()), Addr: ap.Addr().As16()}
	if ap.Addr().Is4() {
		family = unix.AF_INET
		sa = &unix.SockaddrInet4{Port: int(ap.Port()), Addr: ap.Addr().As4()}
	}
	if nonblocking {
		typ |= unix.SOCK_NONBLOCK
	}
	fd, err := unix.Socket(family, typ|unix.SOCK_CLOEXEC, 0)
	if err != nil {
		return fmt.Errorf("socket: %w", err)
	}
	defer unix.Close(fd)
	err = unix.Connect(fd, sa)
	if nonblocking && err == unix.EINPROGRESS {
		pfd := []unix.PollFd{{Fd: int32(fd), Events: unix.POLLOUT}}
		if _, err := unix.Poll(pfd, 3000); err != nil {
			return fmt.Errorf("poll: %w", err)
		}
		soErr, err := unix.GetsockoptInt(fd, unix.SOL_SOCKET, unix.SO_ERROR)
		if err != nil {
			return fmt.Errorf("SO_ERROR: %w", err)
		}
		if soErr != 0 {
			return unix.Errno(soErr)
		}
		return nil
	}
	return err
}

// NewNetns creates a network namespace with its loopback up and returns its
// handle, closed when t ends (the namespace lives on while anything in it
// does). The calling thread stays in its own namespace.
func NewNetns(t testing.TB) netns.NsHandle {
	t.Helper()
	var ns netns.NsHandle
	// netns.New moves the thread it runs on into the new namespace: do it
	// on a locked thread and come back (InNetns).
	InNetns(t, 0, func() {
		var err error
		if ns, err = netns.New(); err != nil {
			t.Fatalf("new network namespace: %v", err)
		}
	})
	t.Cleanup(func() { ns.Close() })
	h, err := netlink.NewHandleAt(ns, unix.NETLINK_ROUTE)
	if err != nil {
		t.Fatalf("netlink in the new namespace: %v", err)
	}
	defer h.Close()
	lo, err := h.LinkByName("lo")
	if err == nil {
		err = h.LinkSetUp(lo)
	}
	if err != nil {
		t.Fatalf("loopback up in the new namespace: %v", err)
	}
	return ns
}

// InNetns runs fn on the calling goroutine, locked to its OS thread, with
// that thread in the network namespace ns (0: fn chooses, e.g. netns.New).
// What fn creates there belongs to ns: sockets, and processes started with
// os/exec (the fork happens on this thread). The thread returns to its own
// namespace afterwards, also when fn calls t.Fatal; if it cannot, the thread
// stays locked and dies with the goroutine instead of serving others in the
// wrong namespace.
func InNetns(t testing.TB, ns netns.NsHandle, fn func()) {
	t.Helper()
	runtime.LockOSThread()
	origin, err := netns.Get()
	if err != nil {
		runtime.UnlockOSThread()
		t.Fatalf("current network namespace: %v", err)
	}
	defer origin.Close()
	defer func() {
		if err := netns.Set(origin); err != nil {
			t.Errorf("back to the test's network namespace: %v (the thread is discarded)", err)
			return // still locked: the runtime ends the thread with the goroutine
		}
		runtime.UnlockOSThread()
	}()
	if ns != 0 {
		if err := netns.Set(ns); err != nil {
			t.Fatalf("enter network namespace: %v", err)
		}
	}
	fn()
}
