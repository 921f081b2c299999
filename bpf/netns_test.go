package bpf

import (
	"fmt"
	"net"
	"net/netip"
	"os"
	"os/exec"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/vishvananda/netlink"
	"golang.org/x/sys/unix"

	"github.com/tcpconnect/tcpconnect/internal/event"
	"github.com/tcpconnect/tcpconnect/internal/privtest"
)

// envConnectTo makes the test binary a plain client: connect there (to each
// of a comma-separated list, in turn) and exit. With envSameSocket set, the
// connects are tries of one IPv4 socket (each after the last was refused).
const (
	envConnectTo  = "TCPCONNECT_TEST_CONNECT_TO"
	envSameSocket = "TCPCONNECT_TEST_SAME_SOCKET"
)

func TestMain(m *testing.M) {
	if to := os.Getenv(envConnectTo); to != "" {
		os.Exit(connectChild(strings.Split(to, ","), os.Getenv(envSameSocket) != ""))
	}
	if c := os.Getenv(envCgroupRootCase); c != "" {
		fmt.Println(cgroupRootChild(c))
		os.Exit(0)
	}
	os.Exit(m.Run())
}

// connectChild is TestMain's plain client: it connects to each of dsts and
// returns the exit code, 1 when any connect failed.
func connectChild(dsts []string, sameSocket bool) int {
	code := 0
	fd := -1
	if sameSocket {
		var err error
		if fd, err = unix.Socket(unix.AF_INET, unix.SOCK_STREAM|unix.SOCK_CLOEXEC, 0); err != nil {
			fmt.Fprintln(os.Stderr, "socket:", err)
			return 1
		}
		defer unix.Close(fd)
	}
	for _, dst := range dsts {
		ap := netip.MustParseAddrPort(dst)
		var err error
		if sameSocket {
			err = unix.Connect(fd, &unix.SockaddrInet4{Port: int(ap.Port()), Addr: ap.Addr().As4()})
		} else {
			err = privtest.Connect(ap, unix.SOCK_STREAM, false)
		}
		if err != nil {
			fmt.Fprintln(os.Stderr, "connect:", err)
			code = 1
		}
	}
	return code
}

// Addresses of the test's own hosts: RFC 2544's benchmarking range, on a veth
// pair between this namespace and one the test makes.
var (
	hostAddr      = netip.MustParsePrefix("198.18.7.1/24")
	containerAddr = netip.MustParsePrefix("198.18.7.2/24")
)

// TestProbeNetnsVeth is the container-like case: a process in its own network
// namespace, joined to this one by a veth pair, connects out. Its record
// carries that process, its namespace and the right address.
func TestProbeNetnsVeth(t *testing.T) {
	p := openForTest(t, Options{})
	defer p.Close()

	suffix := strconv.Itoa(os.Getpid() % 100000)
	veth := &netlink.Veth{LinkAttrs: netlink.LinkAttrs{Name: "tch" + suffix}, PeerName: "tcc" + suffix}
	if err := netlink.LinkAdd(veth); err != nil {
		t.Fatalf("add veth pair (needs the veth module): %v", err)
	}
	t.Cleanup(func() { _ = netlink.LinkDel(veth) })
	must := func(what string, err error) {
		t.Helper()
		if err != nil {
			t.Fatalf("%s: %v", what, err)
		}
	}
	host, err := netlink.LinkByName(veth.Name)
	must("host link", err)
	must("host addr", netlink.AddrAdd(host, &netlink.Addr{IPNet: ipNet(hostAddr)}))
	must("host up", netlink.LinkSetUp(host))

	ln, err := net.Listen("tcp4", netip.AddrPortFrom(hostAddr.Addr(), 0).String())
	must("listen", err)
	defer ln.Close()
	port := ln.Addr().(*net.TCPAddr).AddrPort().Port()

	// The container: a new namespace; the peer moves in and is configured
	// from inside.
	ns := privtest.NewNetns(t)
	var st unix.Stat_t
	must("stat netns", unix.Fstat(int(ns), &st))
	nsInode := uint32(st.Ino)

	peer, err := netlink.LinkByName(veth.PeerName)
	must("peer link", err)
	must("move peer", netlink.LinkSetNsFd(peer, int(ns)))
	h, err := netlink.NewHandleAt(ns, unix.NETLINK_ROUTE)
	must("netlink in netns", err)
	defer h.Close()
	peer, err = h.LinkByName(veth.PeerName)
	must("peer in netns", err)
	must("peer addr", h.AddrAdd(peer, &netlink.Addr{IPNet: ipNet(containerAddr)}))
	must("peer up", h.LinkSetUp(peer))

	// The client, forked in the namespace.
	cmd := exec.Command(os.Args[0], "-test.run=^$")
	cmd.Env = append(os.Environ(), envConnectTo+"="+netip.AddrPortFrom(hostAddr.Addr(), port).String())
	var out []byte
	privtest.InNetns(t, ns, func() { out, err = cmd.CombinedOutput() })
	if err != nil {
		t.Fatalf("client in netns: %v: %s", err, out)
	}
	child := cmd.Process.Pid

	got := readConnects(t, p, 3*time.Second, func(c *event.Connect) bool { return c.DstPort == port }, 1)
	if len(got) != 1 {
		t.Fatalf("records for port %d: %+v, want exactly one", port, got)
	}
	c := got[0]
	if int(c.TGID) != child || c.Dst != hostAddr.Addr() || c.NetNS != nsInode || int(c.PPID) != os.Getpid() {
		t.Fatalf("record pid=%d ppid=%d dst=%s netns=%d, want pid=%d ppid=%d dst=%s netns=%d",
			c.TGID, c.PPID, c.Dst, c.NetNS, child, os.Getpid(), hostAddr.Addr(), nsInode)
	}
}

func ipNet(p netip.Prefix) *net.IPNet {
	return &net.IPNet{IP: p.Addr().AsSlice(), Mask: net.CIDRMask(p.Bits(), p.Addr().BitLen())}
}

// TestProbeConnectSocketNetns: a connect through a socket made in another
// network namespace, by a thread that is back in this one, goes out in that
// namespace: its record carries the socket's namespace, not the task's.
func TestProbeConnectSocketNetns(t *testing.T) {
	p := openForTest(t, Options{})
	defer p.Close()
	ns := privtest.NewNetns(t)
	var st unix.Stat_t
	if err := unix.Fstat(int(ns), &st); err != nil {
		t.Fatal(err)
	}
	var fd int
	privtest.InNetns(t, ns, func() {
		var err error
		if fd, err = unix.Socket(unix.AF_INET, unix.SOCK_STREAM|unix.SOCK_CLOEXEC, 0); err != nil {
			t.Fatal(err)
		}
	})
	defer unix.Close(fd)
	self, err := os.Readlink("/proc/thread-self/ns/net")
	if err != nil {
		t.Fatal(err)
	}
	if self == fmt.Sprintf("net:[%d]", st.Ino) {
		t.Fatalf("the thread is still in the test's namespace %s", self)
	}
	// Nothing listens on the namespace's loopback: refused, but reported.
	const port = 9
	err = unix.Connect(fd, &unix.SockaddrInet4{Port: port, Addr: [4]byte{127, 0, 0, 1}})
	t.Logf("connect from the namespace's socket: %v", err)
	got := readConnects(t, p, 3*time.Second, func(c *event.Connect) bool {
		return c.DstPort == port && int(c.TGID) == os.Getpid()
	}, 1)
	if len(got) != 1 {
		t.Fatalf("got %d records of the connect, want 1", len(got))
	}
	if got[0].NetNS != uint32(st.Ino) {
		t.Fatalf("record netns %d, want the socket's %d (the thread's is %s)", got[0].NetNS, st.Ino, self)
	}
}
