package bpf

import (
	"fmt"
	"net"
	"net/netip"
	"os"
	"runtime"
	"strings"
	"testing"
	"time"
	"unsafe"

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
	before, err := p.Counters()
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
	got := readConnects(t, p, 3*time.Second, func(c *event.Connect) bool { return int(c.TGID) == os.Getpid() }, 1)
	if len(got) != 1 || got[0].DstPort != kept {
		t.Fatalf("records %+v, want only the one to port %d", got, kept)
	}
	after, err := p.Counters()
	if err != nil {
		t.Fatal(err)
	}
	if d := after.Filtered - before.Filtered; d < 2 {
		t.Errorf("filtered counter grew by %d, want at least 2", d)
	}
	if after.Lost.Connect != 0 {
		t.Errorf("lost connects = %d, want 0", after.Lost.Connect)
	}
}

// connectFromRenamedThread connects to ap from a thread of this process,
// other than the thread-group leader, that first renames itself (prctl
// PR_SET_NAME) to name. The thread is never handed back to the Go scheduler:
// it ends with its goroutine.
func connectFromRenamedThread(ap netip.AddrPort, name string) error {
	errc := make(chan error, 1)
	go func() {
		runtime.LockOSThread()
		if unix.Gettid() == os.Getpid() {
			// The leader, whose name is the process's: keep it busy here
			// so that another thread takes the next goroutine.
			errc <- connectFromRenamedThread(ap, name)
			runtime.UnlockOSThread()
			return
		}
		// No Unlock: the renamed thread exits with the goroutine.
		if err := unix.Prctl(unix.PR_SET_NAME, uintptr(unsafe.Pointer(unsafe.StringData(name+"\x00"))), 0, 0, 0); err != nil {
			errc <- fmt.Errorf("prctl PR_SET_NAME: %w", err)
			return
		}
		errc <- privtest.Connect(ap, unix.SOCK_STREAM, false)
	}()
	return <-errc
}

// TestProbeProcessFilterMatchesProcess checks that the process filters match
// the process (its thread-group leader's comm), not the thread: a thread that
// renames itself is kept or dropped as its process is.
func TestProbeProcessFilterMatchesProcess(t *testing.T) {
	privtest.Require(t)
	b, err := os.ReadFile("/proc/self/comm") // the thread-group leader's
	if err != nil {
		t.Fatal(err)
	}
	proc := strings.TrimSpace(string(b))
	const thread = "tc-renamed"
	ln, err := net.Listen("tcp4", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	ap := ln.Addr().(*net.TCPAddr).AddrPort()

	tests := []struct {
		name   string
		filter Filter
		kept   bool
	}{
		{"exclude the process", Filter{ExcludeComms: []string{proc}}, false},
		{"include the process", Filter{IncludeComms: []string{proc}}, true},
		{"exclude the thread's name", Filter{ExcludeComms: []string{thread}}, true},
		{"include only the thread's name", Filter{IncludeComms: []string{thread}}, false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			p := openForTest(t, Options{Filter: tt.filter})
			defer p.Close()
			if err := connectFromRenamedThread(ap, thread); err != nil {
				t.Fatal(err)
			}
			want := 0 // a filtered connect: what the ring holds now, no wait (readConnects)
			if tt.kept {
				want = 1
			}
			got := readConnects(t, p, time.Second, func(c *event.Connect) bool {
				return int(c.TGID) == os.Getpid() && c.DstPort == ap.Port()
			}, want)
			if kept := len(got) > 0; kept != tt.kept {
				t.Fatalf("record kept = %v, want %v (process %q, thread %q)", kept, tt.kept, proc, thread)
			}
			if tt.kept && string(got[0].Comm()) != thread {
				t.Errorf("record comm = %q, want the thread's %q", got[0].Comm(), thread)
			}
		})
	}
}
