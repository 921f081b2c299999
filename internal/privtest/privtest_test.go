package privtest

import (
	"errors"
	"fmt"
	"net"
	"net/netip"
	"runtime"
	"testing"

	"github.com/vishvananda/netns"
	"golang.org/x/sys/unix"
)

// recorder is a testing.TB that records the first way the test would have
// ended (the real Fatalf and Skip never return; these do).
type recorder struct {
	testing.TB
	ended string
}

func (r *recorder) Helper() {}

func (r *recorder) Fatalf(format string, args ...any) {
	if r.ended == "" {
		r.ended = "fail: " + fmt.Sprintf(format, args...)
	}
}

func (r *recorder) Skip(args ...any) {
	if r.ended == "" {
		r.ended = "skip: " + fmt.Sprint(args...)
	}
}

func TestSkipOrFail(t *testing.T) {
	tests := []struct {
		env  string
		want string
	}{
		{"", "skip: no tool"},
		{"0", "skip: no tool"},
		{"1", "fail: no tool, and TCPCONNECT_REQUIRE_PRIVILEGED=1 forbids skipping"},
	}
	for _, tt := range tests {
		t.Run("env="+tt.env, func(t *testing.T) {
			t.Setenv(EnvRequire, tt.env)
			r := &recorder{}
			SkipOrFail(r, "no tool")
			if r.ended != tt.want {
				t.Errorf("SkipOrFail ended the test with %q, want %q", r.ended, tt.want)
			}
		})
	}
}

func TestLookPath(t *testing.T) {
	t.Setenv("PATH", t.TempDir())
	t.Setenv(EnvRequire, "1")
	r := &recorder{}
	LookPath(r, "curl", "curl")
	if want := "fail: needs curl (Debian package curl)"; len(r.ended) < len(want) || r.ended[:len(want)] != want {
		t.Errorf("LookPath of a missing program ended the test with %q, want %q...", r.ended, want)
	}
}

// TestInNetns checks that what fn creates belongs to the namespace (a
// listener there is not reachable from here) and that the thread comes back.
func TestInNetns(t *testing.T) {
	Require(t)
	runtime.LockOSThread()
	origin, err := netns.Get()
	runtime.UnlockOSThread()
	if err != nil {
		t.Fatal(err)
	}
	defer origin.Close()

	ns := NewNetns(t)
	var ap netip.AddrPort
	InNetns(t, ns, func() {
		cur, err := netns.Get()
		if err != nil {
			t.Fatal(err)
		}
		defer cur.Close()
		if !cur.Equal(ns) {
			t.Errorf("inside InNetns the thread is in %s, want %s", cur, ns)
		}
		ln, err := net.Listen("tcp4", "127.0.0.1:0")
		if err != nil {
			t.Fatalf("listen in the namespace (its lo must be up): %v", err)
		}
		t.Cleanup(func() { ln.Close() })
		ap = ln.Addr().(*net.TCPAddr).AddrPort()
	})

	runtime.LockOSThread()
	cur, err := netns.Get()
	runtime.UnlockOSThread()
	if err != nil {
		t.Fatal(err)
	}
	defer cur.Close()
	if !cur.Equal(origin) {
		t.Errorf("after InNetns the thread is in %s, want %s", cur, origin)
	}
	if err := Connect(ap, unix.SOCK_STREAM, false); !errors.Is(err, unix.ECONNREFUSED) {
		t.Errorf("connect from here to %s, a listener in the other namespace: %v, want ECONNREFUSED", ap, err)
	}
}
