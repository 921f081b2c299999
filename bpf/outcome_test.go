package bpf

import (
	"context"
	"encoding/binary"
	"fmt"
	"net"
	"net/netip"
	"os"
	"os/exec"
	"runtime"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"golang.org/x/sys/unix"

	"github.com/tcpconnect/tcpconnect/internal/event"
	"github.com/tcpconnect/tcpconnect/internal/privtest"
)

// outcomeClient makes one connect to dst, the way one kind of client does.
type outcomeClient struct {
	name string
	// external names the program (curl, busybox) the client needs, "" for
	// the test process.
	external string
	connect  func(dst netip.AddrPort, cgroupFD int) error
	// guest stands in for this client in the VM guest, whose initramfs
	// does not have the external program (curl); make unit tests this one.
	guest *outcomeClient
}

// envGuest is set to 1 inside the vmtest guest.
const envGuest = "VMTEST_GUEST"

// runClient runs a program to dst, in cgroupFD when it is not -1. Its exit
// status does not matter: the kernel's view is the test.
func runClient(cgroupFD int, prog string, args ...string) error {
	return runClientFor(15*time.Second, cgroupFD, prog, args...)
}

// runClientFor is runClient that kills the program after d.
func runClientFor(d time.Duration, cgroupFD int, prog string, args ...string) error {
	ctx, cancel := context.WithTimeout(context.Background(), d)
	defer cancel()
	cmd := exec.CommandContext(ctx, prog, args...)
	if cgroupFD >= 0 {
		cmd.SysProcAttr = &syscall.SysProcAttr{UseCgroupFD: true, CgroupFD: cgroupFD}
	}
	err := cmd.Run()
	if _, ok := err.(*exec.ExitError); ok {
		return nil
	}
	return err
}

// uringConnect connects a fresh socket through io_uring; like the plain
// clients it closes the socket when done.
func uringConnect(dst netip.AddrPort) error {
	fd, err := unix.Socket(unix.AF_INET, unix.SOCK_STREAM|unix.SOCK_CLOEXEC, 0)
	if err != nil {
		return err
	}
	defer unix.Close(fd)
	sa := make([]byte, 16)
	binary.LittleEndian.PutUint16(sa[0:], unix.AF_INET)
	binary.BigEndian.PutUint16(sa[2:], dst.Port())
	a4 := dst.Addr().As4()
	copy(sa[4:], a4[:])
	// refused, unreachable: the outcome says it. EALREADY: io_uring took
	// a wakeup of the socket for the connect's end (the SYN's buffer
	// freed when ARP gave up wakes writers, before the ICMP error that
	// follows is processed) and retried the connect while it was still in
	// progress; the socket is still connecting, so wait for its end as a
	// careful application would, instead of closing it mid-connect.
	if err := ioURingConnect(fd, sa); err == unix.EALREADY {
		return waitConnect(fd, dst)
	}
	return nil
}

// connectNonblocking connects a non-blocking socket, polls until the
// connect is done (through signals) and closes the socket.
func connectNonblocking(dst netip.AddrPort) error {
	fd, err := unix.Socket(unix.AF_INET, unix.SOCK_STREAM|unix.SOCK_NONBLOCK|unix.SOCK_CLOEXEC, 0)
	if err != nil {
		return err
	}
	defer unix.Close(fd)
	err = unix.Connect(fd, &unix.SockaddrInet4{Port: int(dst.Port()), Addr: dst.Addr().As4()})
	if err != unix.EINPROGRESS {
		return nil // done already (refused on loopback)
	}
	return waitConnect(fd, dst)
}

// waitConnect polls fd, whose connect to dst is in progress, until the
// connect is done (through signals), for at most 15 s.
func waitConnect(fd int, dst netip.AddrPort) error {
	end := time.Now().Add(15 * time.Second)
	for time.Now().Before(end) {
		pfd := []unix.PollFd{{Fd: int32(fd), Events: unix.POLLOUT}}
		n, err := unix.Poll(pfd, 1000)
		if err == unix.EINTR || (err == nil && n == 0) {
			continue
		}
		return err
	}
	return fmt.Errorf("connect to %s: no result in 15 s", dst)
}

var (
	clientBlocking = outcomeClient{name: "blocking", connect: func(dst netip.AddrPort, _ int) error {
		_ = privtest.Connect(dst, unix.SOCK_STREAM, false)
		return nil
	}}
	clientNonblocking = outcomeClient{name: "nonblocking", connect: func(dst netip.AddrPort, _ int) error {
		return connectNonblocking(dst)
	}}
	clientIOURing = outcomeClient{name: "io_uring", connect: func(dst netip.AddrPort, _ int) error { return uringConnect(dst) }}
	// clientClosing closes its non-blocking connect before any answer.
	clientClosing = outcomeClient{name: "nonblocking close", connect: func(dst netip.AddrPort, _ int) error {
		fd, err := unix.Socket(unix.AF_INET, unix.SOCK_STREAM|unix.SOCK_NONBLOCK|unix.SOCK_CLOEXEC, 0)
		if err != nil {
			return err
		}
		err = unix.Connect(fd, &unix.SockaddrInet4{Port: int(dst.Port()), Addr: dst.Addr().As4()})
		unix.Close(fd)
		if err != unix.EINPROGRESS {
			return fmt.Errorf("connect: %v, want EINPROGRESS", err)
		}
		return nil
	}}
	// clientSelf is this test binary run as a plain client (TestMain).
	clientSelf = outcomeClient{name: "child process", connect: func(dst netip.AddrPort, cg int) error {
		_, _ = runSelfClient(cg, []netip.AddrPort{dst})
		return nil
	}}
	clientCurl = outcomeClient{name: "curl", external: "curl", connect: func(dst netip.AddrPort, cg int) error {
		return runClient(cg, "curl", "-sS", "-o", "/dev/null", "--connect-timeout", "10", "-m", "10", "http://"+dst.String()+"/")
	}, guest: &clientWget}
	// clientCurlGivesUp gives up (closes) after one second.
	clientCurlGivesUp = outcomeClient{name: "curl --connect-timeout 1", external: "curl", connect: func(dst netip.AddrPort, cg int) error {
		return runClient(cg, "curl", "-sS", "-o", "/dev/null", "--connect-timeout", "1", "http://"+dst.String()+"/")
	}, guest: &clientWgetKilled}
	// clientWget is busybox's wget, curl's stand-in in the VM guest. No -T:
	// Debian 12's busybox-static 1.35.0 wget crashes (SIGSEGV) with it.
	clientWget = outcomeClient{name: "busybox wget", external: "busybox", connect: func(dst netip.AddrPort, cg int) error {
		return runClient(cg, "busybox", "wget", "-q", "-O", "/dev/null", "http://"+dst.String()+"/")
	}}
	// clientWgetKilled is busybox wget killed after one second: its exit
	// closes the connecting socket, as a client that gives up does.
	clientWgetKilled = outcomeClient{name: "busybox wget killed after 1s", external: "busybox", connect: func(dst netip.AddrPort, cg int) error {
		return runClientFor(time.Second, cg, "busybox", "wget", "-q", "-O", "/dev/null", "http://"+dst.String()+"/")
	}}
	clientNC = outcomeClient{name: "busybox nc", external: "busybox", connect: func(dst netip.AddrPort, cg int) error {
		return runClient(cg, "busybox", "nc", "-w", "10", dst.Addr().String(), strconv.Itoa(int(dst.Port())))
	}}
	// clientNCGivesUp gives up (closes) after one second.
	clientNCGivesUp = outcomeClient{name: "busybox nc -w 1", external: "busybox", connect: func(dst netip.AddrPort, cg int) error {
		return runClient(cg, "busybox", "nc", "-w", "1", dst.Addr().String(), strconv.Itoa(int(dst.Port())))
	}}
)

// runSelfClient runs this test binary as a plain client (TestMain) in
// cgroup cg, connecting to each of dsts in turn, with env added. It returns
// the child's pid and its exit error (an error when a connect failed).
func runSelfClient(cg int, dsts []netip.AddrPort, env ...string) (int, error) {
	ctx, cancel := context.WithTimeout(context.Background(), 15*time.Second)
	defer cancel()
	to := make([]string, len(dsts))
	for i, d := range dsts {
		to[i] = d.String()
	}
	cmd := exec.CommandContext(ctx, os.Args[0], "-test.run=^$")
	cmd.Env = append(append(os.Environ(), envConnectTo+"="+strings.Join(to, ",")), env...)
	cmd.SysProcAttr = &syscall.SysProcAttr{UseCgroupFD: true, CgroupFD: cg}
	err := cmd.Run()
	pid := 0
	if cmd.Process != nil {
		pid = cmd.Process.Pid
	}
	return pid, err
}

// readOutcome drains the ring until the connect to dst and its outcome
// arrived (or timeout), and returns them; it fails unless exactly one
// tracked connect went to dst.
func readOutcome(t *testing.T, p *Probe, dst netip.AddrPort, timeout time.Duration) (event.Connect, event.Outcome) {
	t.Helper()
	var conns []event.Connect
	var out event.Outcome
	found := false
	end := time.Now().Add(timeout)
	for time.Now().Before(end) && !found {
		drainRound(t, p, 50*time.Millisecond, func(raw []byte) {
			switch event.Type(raw) {
			case event.TypeConnect:
				var c event.Connect
				if err := event.DecodeConnect(raw, &c); err != nil {
					t.Fatal(err)
				}
				if c.Dst == dst.Addr() && c.DstPort == dst.Port() {
					conns = append(conns, c)
				}
			case event.TypeOutcome:
				var o event.Outcome
				if err := event.DecodeOutcome(raw, &o); err != nil {
					t.Fatal(err)
				}
				for _, c := range conns {
					if o.TID == c.TID && o.ConnectBootNs == c.BootTimeNs {
						if found {
							t.Errorf("second outcome for one connect: %+v", o)
						}
						out, found = o, true
					}
				}
			}
		})
	}
	if len(conns) != 1 {
		t.Fatalf("%d connect records to %s, want 1: %+v", len(conns), dst, conns)
	}
	if !conns[0].Tracked {
		t.Fatalf("connect record to %s not tracked", dst)
	}
	if !found {
		t.Fatalf("no outcome for the connect to %s within %s", dst, timeout)
	}
	return conns[0], out
}

// TestProbeOutcome makes connects that end each way, from the test process
// (blocking, non-blocking, io_uring) and from clients no one here wrote, and
// checks the kernel's outcome record for each, in the attach mode under test,
// with first bytes on as the receiver's default has them (an established
// socket's entry stays for its capture; TestOutcomeEntriesLeave checks both).
func TestProbeOutcome(t *testing.T) {
	p := openForTest(t, Options{Outcome: true, FirstBytes: true})
	defer p.Close()
	runtime.LockOSThread()
	defer runtime.UnlockOSThread()
	n := newOutcomeNet(t)
	deny := denyCgroup(t)

	// A listener that accepts and closes, and a port that nobody listens on.
	open := stormListener(t)
	closedLn, err := net.Listen("tcp4", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	closed := closedLn.Addr().(*net.TCPAddr).AddrPort()
	closedLn.Close()

	const (
		inOrigin = iota
		inClient
		inDenyCgroup
	)
	port := uint16(20000 + os.Getpid()%20000)
	unreachable := rejectNet.Addr()
	tests := []struct {
		want    event.Kind
		errType string
		dst     func() netip.AddrPort
		where   int
		clients []outcomeClient
	}{
		{event.KindEstablished, "", func() netip.AddrPort { return open }, inOrigin,
			[]outcomeClient{clientBlocking, clientNonblocking, clientIOURing, clientCurl, clientNC}},
		{event.KindRefused, "ECONNREFUSED", func() netip.AddrPort { return closed }, inOrigin,
			[]outcomeClient{clientBlocking, clientNonblocking, clientIOURing, clientCurl, clientNC}},
		// A new unreachable host each time: the router's ARP entry for a
		// host it gave up on is FAILED for a while, and the next packet to
		// it may meet that state at once instead of a fresh ARP wait.
		{event.KindUnreachable, "EHOSTUNREACH", func() netip.AddrPort {
			port++
			unreachable = unreachable.Next()
			return netip.AddrPortFrom(unreachable, port)
		}, inClient,
			[]outcomeClient{clientBlocking, clientNonblocking, clientIOURing, clientCurl, clientNC}},
		{event.KindTimeout, "ETIMEDOUT", func() netip.AddrPort { port++; return netip.AddrPortFrom(dropNet.Addr().Next(), port) }, inClient,
			[]outcomeClient{clientBlocking, clientCurl, clientNC}},
		{event.KindClosed, "", func() netip.AddrPort { port++; return netip.AddrPortFrom(dropNet.Addr().Next(), port) }, inClient,
			[]outcomeClient{clientClosing, clientCurlGivesUp, clientNCGivesUp}},
		{event.KindDenied, event.OtherError, func() netip.AddrPort { return open }, inDenyCgroup,
			[]outcomeClient{clientSelf, clientCurl, clientNC}},
	}
	for _, tt := range tests {
		for _, cl := range tt.clients {
			if cl.guest != nil && os.Getenv(envGuest) == "1" {
				cl = *cl.guest
			}
			t.Run(tt.want.String()+"/"+cl.name, func(t *testing.T) {
				if cl.external != "" {
					if _, err := exec.LookPath(cl.external); err != nil {
						privtest.SkipOrFail(t, fmt.Sprintf("needs %s (Debian package %s): %v", cl.external, map[string]string{"curl": "curl", "busybox": "busybox-static"}[cl.external], err))
					}
				}
				dst := tt.dst()
				cg := -1
				if tt.where == inDenyCgroup {
					cg = deny
				}
				start := time.Now()
				var err error
				if tt.where == inClient {
					n.enter(t, func() { err = cl.connect(dst, cg) })
				} else {
					err = cl.connect(dst, cg)
				}
				if err != nil {
					t.Fatalf("%s to %s: %v", cl.name, dst, err)
				}
				took := time.Since(start)
				c, o := readOutcome(t, p, dst, 10*time.Second)
				if got := o.Kind; got != tt.want {
					t.Errorf("outcome %s (%+v), want %s", got, o, tt.want)
				}
				if got := o.ErrorType(); got != tt.errType {
					t.Errorf("error.type %q, want %q", got, tt.errType)
				}
				d := time.Duration(o.BootTimeNs - c.BootTimeNs)
				if o.BootTimeNs < c.BootTimeNs || d > took+time.Second {
					t.Errorf("handshake time %s, client took %s", d, took)
				}
				t.Logf("%s -> %s: %s %s after %s (comm %s)", cl.name, dst, o.Kind, o.ErrorType(), d, c.Comm())
			})
		}
	}
}
