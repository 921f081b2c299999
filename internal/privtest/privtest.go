// Package privtest holds the rules that privileged tests share: when they run,
// when they skip, and which attach mode they use.
package privtest

import (
	"fmt"
	"net/netip"
	"os"
	"testing"

	"github.com/cilium/ebpf"
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
	reason := "privileged test: needs root (CAP_BPF, CAP_PERFMON, CAP_NET_ADMIN, CAP_SYS_ADMIN) to load and attach eBPF programs"
	if os.Getenv(EnvRequire) == "1" {
		t.Fatalf("%s, and %s=1 forbids skipping", reason, EnvRequire)
	}
	t.Skip(reason)
}

// Mode returns the attach mode to test: EnvAttach, or "auto".
func Mode() string {
	if m := os.Getenv(EnvAttach); m != "" {
		return m
	}
	return "auto"
}

// RequireUnloaded fails t for each of ids that is still a loaded BPF program:
// after Close or Shutdown nothing of ours may stay in the kernel.
func RequireUnloaded(t testing.TB, ids []ebpf.ProgramID) {
	t.Helper()
	live := map[ebpf.ProgramID]bool{}
	for id := ebpf.ProgramID(0); ; {
		next, err := ebpf.ProgramGetNextID(id)
		if err != nil {
			break
		}
		live[next] = true
		id = next
	}
	for _, id := range ids {
		if live[id] {
			t.Errorf("program %d still loaded", id)
		}
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
