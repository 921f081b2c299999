package bpf

import (
	"fmt"
	"net"
	"net/netip"
	"os"
	"testing"
	"time"

	"golang.org/x/sys/unix"

	"github.com/tcpconnect/tcpconnect/internal/event"
	"github.com/tcpconnect/tcpconnect/internal/privtest"
)

func TestFilterFlagsAndKeys(t *testing.T) {
	f := Filter{IncludeCIDRs: []netip.Prefix{netip.MustParsePrefix("10.1.2.3/8")}, ExcludePorts: []uint16{22}}
	if got := f.flags(); got != filterIncludeCIDR|filterExcludePort {
		t.Errorf("flags = %#x", got)
	}
	k := newCIDRKey(netip.MustParsePrefix("10.1.2.3/8"))
	want := netip.MustParseAddr("::ffff:10.0.0.0").As16()
	if k.PrefixLen != 104 || k.Addr != want {
		t.Errorf("v4 key = %d %v, want 104 %v", k.PrefixLen, k.Addr, want)
	}
	if k := newCIDRKey(netip.MustParsePrefix("2001:db8::/32")); k.PrefixLen != 32 {
		t.Errorf("v6 key prefix = %d", k.PrefixLen)
	}
}

// TestProbeFilters checks that the kernel leaves out what the filters say and
// counts it, and keeps the rest.
func TestProbeFilters(t *testing.T) {
	listen := func(network, addr string) (net.Listener, uint16) {
		ln, err := net.Listen(network, addr)
		if err != nil {
			privtest.SkipOrFail(t, fmt.Sprintf("listen %s: %v", addr, err))
		}
		t.Cleanup(func() { ln.Close() })
		return ln, ln.Addr().(*net.TCPAddr).AddrPort().Port()
	}
	_, kept := listen("tcp4", "127.0.0.1:0")
	_, droppedPort := listen("tcp4", "127.0.0.1:0")
	_, v6 := listen("tcp6", "[::1]:0")

	p := openForTest(t, Options{Filter: Filter{
		IncludeCIDRs: []netip.Prefix{netip.MustParsePrefix("127.0.0.0/8"), netip.MustParsePrefix("::/0")},
		ExcludeCIDRs: []netip.Prefix{netip.MustParsePrefix("::1/128")},
		ExcludePorts: []uint16{droppedPort},
	}})
	defer p.Close()
	before, err := p.Lost()
	if err != nil {
		t.Fatal(err)
	}
	for _, ap := range []netip.AddrPort{
		netip.AddrPortFrom(netip.MustParseAddr("127.0.0.1"), droppedPort),
		netip.AddrPortFrom(netip.MustParseAddr("::1"), v6),
		netip.AddrPortFrom(netip.MustParseAddr("127.0.0.1"), kept),
	} {
		if err := privtest.Connect(ap, unix.SOCK_STREAM, false); err != nil {
			t.Fatalf("connect %s: %v", ap, err)
		}
	}
	got := readConnects(t, p, 3*time.Second, func(c *event.Connect) bool { return int(c.TGID) == os.Getpid() }, 3)
	if len(got) != 1 || got[0].DstPort != kept {
		t.Fatalf("records %+v, want only the one to port %d", got, kept)
	}
	after, err := p.Lost()
	if err != nil {
		t.Fatal(err)
	}
	if d := after.Filtered - before.Filtered; d < 2 {
		t.Errorf("filtered counter grew by %d, want at least 2", d)
	}
	if after.Connect != 0 {
		t.Errorf("lost connects = %d, want 0", after.Connect)
	}
}
