package bpf

import (
	"context"
	"encoding/binary"
	"fmt"
	"net"
	"net/netip"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"strconv"
	"syscall"
	"testing"
	"time"

	"github.com/cilium/ebpf"
	"github.com/cilium/ebpf/asm"
	"github.com/cilium/ebpf/link"
	"github.com/vishvananda/netlink"
	"github.com/vishvananda/netns"
	"golang.org/x/sys/unix"

	"github.com/tcpconnect/tcpconnect/internal/event"
	"github.com/tcpconnect/tcpconnect/internal/privtest"
)

// The outcome test's network: a client namespace joined by a veth pair to a
// router namespace that drops what goes to dropNet (a blackhole route: SYNs
// vanish, the client times out) and answers what goes to rejectNet with ICMP
// host unreachable, as a router does when no host answers its ARP requests
// (rejectNet is on a link where no one answers; the router gives up after one
// 100 ms probe). Routes and ARP do what nftables drop and reject rules would,
// with nothing but the kernel: the VM guest has no nft binary. And the ICMP
// error arrives after the connect() call returned, as from a real router: a
// reject rule in the same host answers while the connecting socket is still
// locked, which the kernel keeps as a soft error only (see event.Outcome).
var (
	clientAddr = netip.MustParsePrefix("198.18.9.2/24")
	routerAddr = netip.MustParsePrefix("198.18.9.1/24")
	dropNet    = netip.MustParsePrefix("198.18.10.0/24")
	rejectNet  = netip.MustParsePrefix("198.18.11.0/24")
	// rejectGw is the router's address on rejectNet's silent link.
	rejectGw = netip.MustParsePrefix("198.18.11.254/24")
)

// outcomeNet is the client namespace, and the one the test started in.
type outcomeNet struct {
	origin, client netns.NsHandle
}

// enter runs fn on this (locked) thread in the client namespace: sockets
// and child processes made there live in it.
func (n *outcomeNet) enter(t *testing.T, fn func()) {
	t.Helper()
	if err := netns.Set(n.client); err != nil {
		t.Fatalf("enter client netns: %v", err)
	}
	defer func() {
		if err := netns.Set(n.origin); err != nil {
			t.Fatalf("back to origin netns: %v", err)
		}
	}()
	fn()
}

// writeSysctl writes a sysctl of the current thread's network namespace.
func writeSysctl(name, value string) error {
	return os.WriteFile(filepath.Join("/proc/sys", name), []byte(value), 0o644)
}

// newOutcomeNet builds the namespaces. The caller has locked its OS thread.
func newOutcomeNet(t *testing.T) *outcomeNet {
	t.Helper()
	must := func(what string, err error) {
		t.Helper()
		if err != nil {
			t.Fatalf("outcome net: %s: %v", what, err)
		}
	}
	origin, err := netns.Get()
	must("current netns", err)
	t.Cleanup(func() { origin.Close() })
	defer func() { must("back to origin", netns.Set(origin)) }()

	router, err := netns.New()
	must("router netns", err)
	t.Cleanup(func() { router.Close() })
	must("router forwarding", writeSysctl("net/ipv4/ip_forward", "1"))
	must("router icmp rate", writeSysctl("net/ipv4/icmp_ratelimit", "0"))

	client, err := netns.New()
	must("client netns", err)
	t.Cleanup(func() { client.Close() })
	// Two SYNs, then ETIMEDOUT: about 3 s instead of two minutes.
	must("client syn retries", writeSysctl("net/ipv4/tcp_syn_retries", "1"))

	suffix := strconv.Itoa(os.Getpid() % 100000)
	veth := &netlink.Veth{LinkAttrs: netlink.LinkAttrs{Name: "tco" + suffix}, PeerName: "tcr" + suffix}
	must("add veth pair (needs the veth module)", netlink.LinkAdd(veth))
	peer, err := netlink.LinkByName(veth.PeerName)
	must("peer link", err)
	must("move peer", netlink.LinkSetNsFd(peer, int(router)))
	c, err := netlink.LinkByName(veth.Name)
	must("client link", err)
	must("client addr", netlink.AddrAdd(c, &netlink.Addr{IPNet: ipNet(clientAddr)}))
	must("client up", netlink.LinkSetUp(c))
	lo, err := netlink.LinkByName("lo")
	must("client lo", err)
	must("client lo up", netlink.LinkSetUp(lo))
	must("client default route", netlink.RouteAdd(&netlink.Route{LinkIndex: c.Attrs().Index, Gw: routerAddr.Addr().AsSlice()}))

	h, err := netlink.NewHandleAt(router, unix.NETLINK_ROUTE)
	must("netlink in router", err)
	defer h.Close()
	peer, err = h.LinkByName(veth.PeerName)
	must("peer in router", err)
	must("router addr", h.AddrAdd(peer, &netlink.Addr{IPNet: ipNet(routerAddr)}))
	must("router up", h.LinkSetUp(peer))
	must("blackhole route", h.RouteAdd(&netlink.Route{Dst: ipNet(dropNet), Type: unix.RTN_BLACKHOLE}))
	// rejectNet's link: a veth pair inside the router, the far end without
	// an address, so no ARP request for rejectNet is ever answered.
	silent := &netlink.Veth{LinkAttrs: netlink.LinkAttrs{Name: "tcu" + suffix}, PeerName: "tcv" + suffix}
	must("add silent veth pair", h.LinkAdd(silent))
	near, err := h.LinkByName(silent.Name)
	must("silent link", err)
	far, err := h.LinkByName(silent.PeerName)
	must("silent far end", err)
	must("silent addr", h.AddrAdd(near, &netlink.Addr{IPNet: ipNet(rejectGw)}))
	must("silent up", h.LinkSetUp(near))
	must("silent far end up", h.LinkSetUp(far))
	must("enter router", netns.Set(router))
	must("one ARP probe", writeSysctl("net/ipv4/neigh/"+silent.Name+"/mcast_solicit", "1"))
	must("100 ms ARP wait", writeSysctl("net/ipv4/neigh/"+silent.Name+"/retrans_time_ms", "100"))
	return &outcomeNet{origin: origin, client: client}
}

// denyCgroup makes a child of the cgroup v2 root with a connect4 program that
// returns 0 (EPERM), and returns an open descriptor of it for
// SysProcAttr.CgroupFD.
func denyCgroup(t *testing.T) int {
	t.Helper()
	root, err := CgroupV2Mount()
	if err != nil {
		t.Fatal(err)
	}
	dir := filepath.Join(root, fmt.Sprintf("tcpconnect-deny-%d", os.Getpid()))
	if err := os.Mkdir(dir, 0o755); err != nil {
		t.Fatalf("make cgroup: %v", err)
	}
	t.Cleanup(func() { _ = os.Remove(dir) })
	prog, err := ebpf.NewProgram(&ebpf.ProgramSpec{
		Type: ebpf.CGroupSockAddr, AttachType: ebpf.AttachCGroupInet4Connect, License: "GPL",
		Instructions: asm.Instructions{asm.Mov.Imm(asm.R0, 0), asm.Return()},
	})
	if err != nil {
		t.Fatalf("load deny program: %v", err)
	}
	t.Cleanup(func() { prog.Close() })
	l, err := link.AttachCgroup(link.CgroupOptions{Path: dir, Attach: ebpf.AttachCGroupInet4Connect, Program: prog})
	if err != nil {
		t.Fatalf("attach deny program: %v", err)
	}
	t.Cleanup(func() { l.Close() })
	fd, err := unix.Open(dir, unix.O_RDONLY|unix.O_DIRECTORY|unix.O_CLOEXEC, 0)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { unix.Close(fd) })
	return fd
}

// outcomeClient makes one connect to dst, the way one kind of client does.
type outcomeClient struct {
	name string
	// external names the program (curl, busybox) the client needs, "" for
	// the test process.
	external string
	connect  func(dst netip.AddrPort, cgroupFD int) error
}

// runClient runs a program to dst, in cgroupFD when it is not -1. Its exit
// status does not matter: the kernel's view is the test.
func runClient(cgroupFD int, prog string, args ...string) error {
	ctx, cancel := context.WithTimeout(context.Background(), 15*time.Second)
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
	_ = ioURingConnect(fd, sa) // refused, unreachable: the outcome says it
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
		ctx, cancel := context.WithTimeout(context.Background(), 15*time.Second)
		defer cancel()
		cmd := exec.CommandContext(ctx, os.Args[0], "-test.run=^$")
		cmd.Env = append(os.Environ(), envConnectTo+"="+dst.String())
		cmd.SysProcAttr = &syscall.SysProcAttr{UseCgroupFD: true, CgroupFD: cg}
		_ = cmd.Run()
		return nil
	}}
	clientCurl = outcomeClient{name: "curl", external: "curl", connect: func(dst netip.AddrPort, cg int) error {
		return runClient(cg, "curl", "-sS", "-o", "/dev/null", "--connect-timeout", "10", "-m", "10", "http://"+dst.String()+"/")
	}}
	// clientCurlGivesUp gives up (closes) after one second.
	clientCurlGivesUp = outcomeClient{name: "curl --connect-timeout 1", external: "curl", connect: func(dst netip.AddrPort, cg int) error {
		return runClient(cg, "curl", "-sS", "-o", "/dev/null", "--connect-timeout", "1", "http://"+dst.String()+"/")
	}}
	clientNC = outcomeClient{name: "busybox nc", external: "busybox", connect: func(dst netip.AddrPort, cg int) error {
		return runClient(cg, "busybox", "nc", "-w", "10", dst.Addr().String(), strconv.Itoa(int(dst.Port())))
	}}
	// clientNCGivesUp gives up (closes) after one second.
	clientNCGivesUp = outcomeClient{name: "busybox nc -w 1", external: "busybox", connect: func(dst netip.AddrPort, cg int) error {
		return runClient(cg, "busybox", "nc", "-w", "1", dst.Addr().String(), strconv.Itoa(int(dst.Port())))
	}}
)

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
// checks the kernel's outcome record for each, in the attach mode under test.
func TestProbeOutcome(t *testing.T) {
	p := openForTest(t, Options{Outcome: true})
	defer p.Close()
	runtime.LockOSThread()
	defer runtime.UnlockOSThread()
	n := newOutcomeNet(t)
	deny := denyCgroup(t)

	// A listener that accepts and closes, and a port that nobody listens on.
	ln, err := net.Listen("tcp4", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	go func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			c.Close()
		}
	}()
	open := ln.Addr().(*net.TCPAddr).AddrPort()
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
			t.Run(tt.want.String()+"/"+cl.name, func(t *testing.T) {
				if cl.external != "" {
					if _, err := exec.LookPath(cl.external); err != nil {
						// CI installs curl and busybox (make deps); the
						// VM's initramfs holds only busybox.
						if cl.external == "curl" && os.Getenv("VMTEST_GUEST") == "1" {
							t.Logf("curl: not in the VM's initramfs, not tested here")
							return
						}
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
				if got := o.Kind(); got != tt.want {
					t.Errorf("outcome %s (%+v), want %s", got, o, tt.want)
				}
				if got := o.ErrorType(); got != tt.errType {
					t.Errorf("error.type %q, want %q", got, tt.errType)
				}
				d := time.Duration(o.BootTimeNs - c.BootTimeNs)
				if o.BootTimeNs < c.BootTimeNs || d > took+time.Second {
					t.Errorf("handshake time %s, client took %s", d, took)
				}
				t.Logf("%s -> %s: %s %s after %s (comm %s)", cl.name, dst, o.Kind(), o.ErrorType(), d, c.Comm())
			})
		}
	}
}
