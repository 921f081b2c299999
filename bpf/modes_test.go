package bpf

import (
	"net"
	"net/netip"
	"os"
	"testing"
	"time"

	"golang.org/x/sys/unix"

	"github.com/tcpconnect/tcpconnect/internal/event"
	"github.com/tcpconnect/tcpconnect/internal/privtest"
)

// TestProbeModesAgree attaches every mode this kernel allows at once and
// checks that one connect gives the same record in each (all but the hook and
// the timestamp, which differ by where in connect() each hook runs).
func TestProbeModesAgree(t *testing.T) {
	privtest.Require(t)
	var probes []*Probe
	for _, m := range AutoOrder() {
		p, err := Open(Options{Mode: m})
		if err != nil {
			t.Logf("mode %s not available here: %v", m, err) // log-ok: the count of modes attached is checked below
			continue
		}
		defer p.Close()
		probes = append(probes, p)
	}
	if len(probes) < 2 {
		// make unit leaves this test out (-skip); the VM runs it.
		privtest.SkipOrFail(t, "fewer than two attach modes load on this kernel (natively only cgroup does); the VM runs this test")
	}
	// In the VM every mode attaches, but lsm when the boot left bpf out of
	// the active LSM list.
	want := len(AutoOrder())
	if os.Getenv(privtest.EnvExpectLSM) == "inactive" {
		want--
	}
	if os.Getenv("VMTEST_GUEST") == "1" && len(probes) != want {
		t.Fatalf("%d modes attached in the VM, want %d", len(probes), want)
	}

	for _, tt := range []struct {
		name, network, listen string
		mapped                bool
	}{
		{"ipv4", "tcp4", "127.0.0.1:0", false},
		{"ipv6", "tcp6", "[::1]:0", false},
		{"v4mapped", "tcp4", "127.0.0.1:0", true},
	} {
		t.Run(tt.name, func(t *testing.T) {
			ln, err := net.Listen(tt.network, tt.listen)
			if err != nil {
				t.Fatal(err)
			}
			defer ln.Close()
			ap := ln.Addr().(*net.TCPAddr).AddrPort()
			if tt.mapped {
				ap = netip.AddrPortFrom(netip.AddrFrom16(ap.Addr().As16()), ap.Port())
			}
			if err := privtest.Connect(ap, unix.SOCK_STREAM, false); err != nil {
				t.Fatal(err)
			}
			var first event.Connect
			for i, p := range probes {
				got := readConnects(t, p, 3*time.Second, func(c *event.Connect) bool {
					return c.DstPort == ap.Port() && int(c.TGID) == os.Getpid()
				}, 1)
				if len(got) != 1 {
					t.Fatalf("mode %s: %d records, want 1", p.Mode(), len(got))
				}
				c := got[0]
				if c.Hook.String() != string(p.Mode()) {
					t.Errorf("mode %s: record says hook %s", p.Mode(), c.Hook)
				}
				c.Hook, c.BootTimeNs = 0, 0
				if i == 0 {
					first = c
					continue
				}
				if c != first {
					t.Errorf("mode %s record differs from mode %s:\n got %+v\nwant %+v", p.Mode(), probes[0].Mode(), c, first)
				}
			}
		})
	}
}
