package bpf

import (
	"net"
	"net/netip"
	"os"
	"testing"
	"time"

	"github.com/cilium/ebpf/ringbuf"
	"golang.org/x/sys/unix"

	"github.com/tcpconnect/tcpconnect/internal/event"
	"github.com/tcpconnect/tcpconnect/internal/privtest"
)

// lossConnects is how many connects the loss tests make: far more than a
// one-page ring holds (about 25 connect records of 152+8 bytes).
const lossConnects = 2000

// stormListener listens on 127.0.0.1 and accepts and closes until the test ends.
func stormListener(t *testing.T) netip.AddrPort {
	t.Helper()
	return closingListener(t, "127.0.0.1:0")
}

// closingListener listens on addr and accepts and closes until the test ends.
func closingListener(t testing.TB, addr string) netip.AddrPort {
	t.Helper()
	ln, err := net.Listen("tcp4", addr)
	if err != nil {
		t.Fatal(err)
	}
	done := make(chan struct{})
	go func() {
		defer close(done)
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			c.Close()
		}
	}()
	t.Cleanup(func() { ln.Close(); <-done })
	return ln.Addr().(*net.TCPAddr).AddrPort()
}

// countDelivered drains the ring until it stays empty for quiet and returns
// the connect records from this process to port.
func countDelivered(t *testing.T, p *Probe, port uint16, quiet, limit time.Duration) int {
	t.Helper()
	var c event.Connect
	n := 0
	end := time.Now().Add(limit)
	for time.Now().Before(end) {
		got := drainRound(t, p, quiet, func(raw []byte) {
			if event.Type(raw) != event.TypeConnect {
				return
			}
			if err := event.DecodeConnect(raw, &c); err != nil {
				t.Fatal(err)
			}
			if int(c.TGID) == os.Getpid() && c.DstPort == port {
				n++
			}
		})
		if got == 0 {
			return n
		}
	}
	t.Fatalf("ring still not empty after %v", limit)
	return n
}

// makeConnects connects n times to ap and fails on any error.
func makeConnects(t *testing.T, ap netip.AddrPort, n int) {
	t.Helper()
	for i := range n {
		if err := privtest.Connect(ap, unix.SOCK_STREAM, false); err != nil {
			t.Fatalf("connect %d: %v", i, err)
		}
	}
}

// TestLossAccounted fills a one-page ring with a reader that is never woken
// (the wakeup threshold is the whole ring) and never reads while the connects
// run: every connect must be either delivered or counted as lost, exactly.
// The in-kernel port filter keeps other processes' connects on this shared
// machine out of the ring and out of the loss counter, so the sums are exact.
func TestLossAccounted(t *testing.T) {
	ap := stormListener(t)
	page := os.Getpagesize()
	p := openForTest(t, Options{
		RingBytes:   page,
		WakeupBytes: page, // more than the ring can ever hold: no wakeup at all
		Filter: Filter{
			IncludePorts: []uint16{ap.Port()},
			IncludeCIDRs: []netip.Prefix{netip.MustParsePrefix("127.0.0.1/32")},
		},
	})
	defer p.Close()

	makeConnects(t, ap, lossConnects)
	delivered := countDelivered(t, p, ap.Port(), 0, 10*time.Second)
	counts, err := p.Counters()
	if err != nil {
		t.Fatal(err)
	}
	t.Logf("made %d, delivered %d, lost %d (dns lost %d, filtered %d)", lossConnects, delivered, counts.Lost.Connect, counts.Lost.DNS, counts.Filtered)
	if counts.Lost.Connect == 0 {
		t.Errorf("lost = 0: a %d-byte ring with no reader cannot hold %d records", page, lossConnects)
	}
	if delivered == 0 {
		t.Errorf("delivered = 0: the ring should hold some records")
	}
	if got := uint64(delivered) + counts.Lost.Connect; got != lossConnects {
		t.Errorf("delivered %d + lost %d = %d, want exactly %d connects made", delivered, counts.Lost.Connect, got, lossConnects)
	}
}

// TestNoLossWhenRead is the control: the default ring and a reader that
// drains it while the connects run lose nothing and deliver every connect.
func TestNoLossWhenRead(t *testing.T) {
	ap := stormListener(t)
	p := openForTest(t, Options{
		Filter: Filter{IncludePorts: []uint16{ap.Port()}},
	})
	defer p.Close()

	type result struct{ n int }
	res := make(chan result, 1)
	stop := make(chan struct{})
	go func() {
		var rec ringbuf.Record
		var c event.Connect
		n := 0
		for {
			select {
			case <-stop:
				res <- result{n}
				return
			default:
			}
			p.SetDeadline(time.Now().Add(20 * time.Millisecond))
			for {
				if err := p.ReadInto(&rec); err != nil {
					break
				}
				if event.Type(rec.RawSample) == event.TypeConnect &&
					event.DecodeConnect(rec.RawSample, &c) == nil &&
					int(c.TGID) == os.Getpid() && c.DstPort == ap.Port() {
					n++
				}
			}
		}
	}()
	makeConnects(t, ap, lossConnects)
	// Every record (or its loss) was written in its connect call: what the
	// reader has not read yet is in the ring now.
	close(stop)
	r := <-res
	delivered := r.n + countDelivered(t, p, ap.Port(), 0, 10*time.Second)
	counts, err := p.Counters()
	if err != nil {
		t.Fatal(err)
	}
	t.Logf("made %d, delivered %d, lost %d", lossConnects, delivered, counts.Lost.Connect)
	if counts.Lost.Connect != 0 || delivered != lossConnects {
		t.Errorf("delivered %d, lost %d; want %d delivered and 0 lost", delivered, counts.Lost.Connect, lossConnects)
	}
}
