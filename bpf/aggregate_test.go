package bpf

import (
	"errors"
	"net/netip"
	"os"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"golang.org/x/sys/unix"

	"github.com/tcpconnect/tcpconnect/internal/event"
	"github.com/tcpconnect/tcpconnect/internal/privtest"
)

// aggTally sums what the kernel reported for the test's ports: records of
// their own (first, overflow, plain) and the counts of summaries.
type aggTally struct {
	ports                    map[uint16]bool
	firsts, overflows, plain int
	summaries                int
	summed                   uint64
	summaryBadFirst          int
}

func (a *aggTally) record(t *testing.T, raw []byte) {
	if event.Type(raw) != event.TypeConnect {
		return
	}
	var c event.Connect
	if err := event.DecodeConnect(raw, &c); err != nil {
		t.Fatal(err)
	}
	if int(c.TGID) != os.Getpid() || !a.ports[c.DstPort] {
		return
	}
	switch {
	case c.AggFirst:
		a.firsts++
	case c.AggOverflow:
		a.overflows++
	default:
		a.plain++
	}
}

func (a *aggTally) summary(t *testing.T, s *AggregateSummary) {
	var c event.Connect
	if err := event.DecodeConnect(s.First[:], &c); err != nil {
		t.Errorf("summary's first record: %v", err)
		a.summaryBadFirst++
		return
	}
	if int(c.TGID) != os.Getpid() || !a.ports[c.DstPort] || c.Dst != netip.MustParseAddr("127.0.0.1") {
		a.summaryBadFirst++
		return
	}
	if s.LastNs < c.BootTimeNs {
		t.Errorf("summary last %d before its first connect %d", s.LastNs, c.BootTimeNs)
	}
	a.summaries++
	a.summed += s.Count
}

// refusedPorts holds n loopback ports bound but not listening: a connect to
// one is refused at once, and no one else can listen there.
func refusedPorts(t *testing.T, n int) []uint16 {
	t.Helper()
	ports := make([]uint16, n)
	for i := range ports {
		fd, port, err := boundLoopbackPort()
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { unix.Close(fd) })
		ports[i] = uint16(port)
	}
	return ports
}

// aggStorm connects from threads goroutines, each perThread times, round
// robin over ports; it returns the connects made (every connect() call).
func aggStorm(t *testing.T, ports []uint16, threads, perThread int) int64 {
	var made atomic.Int64
	var wg sync.WaitGroup
	errs := make(chan error, threads)
	for th := range threads {
		wg.Go(func() {
			for i := range perThread {
				ap := netip.AddrPortFrom(netip.MustParseAddr("127.0.0.1"), ports[(i+th)%len(ports)])
				err := privtest.Connect(ap, unix.SOCK_STREAM, false)
				made.Add(1)
				if err != nil && !errors.Is(err, unix.ECONNREFUSED) {
					errs <- err
					return
				}
			}
		})
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Fatalf("connect: %v", err)
	}
	return made.Load()
}

// TestAggregateExact storms from two threads while windows end every few
// milliseconds, to one destination and to many, with the window map forced
// small: every connect is in exactly one record or one summary's count, the
// overflow records match the kernel's counter, and a stop mid-window
// (shutdown) leaves nothing counted behind.
func TestAggregateExact(t *testing.T) {
	tests := []struct {
		name      string
		ports     int
		keys      int
		perThread int
		flush     time.Duration // 0: no window ends during the storm
		overflow  bool          // the map must overflow
		ringPage  bool          // a one-page ring, not read during the storm
	}{
		{name: "one destination", ports: 1, keys: 64, perThread: 3000, flush: 5 * time.Millisecond},
		{name: "many destinations", ports: 48, keys: 4096, perThread: 3000, flush: 5 * time.Millisecond},
		{name: "many destinations small map", ports: 48, keys: 8, perThread: 3000, flush: 5 * time.Millisecond, overflow: true},
		{name: "stop mid-window", ports: 4, keys: 64, perThread: 2000},
		// Most firsts find the ring full: they are kept in the window, counted there.
		{name: "ring full", ports: 48, keys: 64, perThread: 500, ringPage: true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			ports := refusedPorts(t, tt.ports)
			ring, wakeup := 0, 0
			if tt.ringPage {
				ring, wakeup = os.Getpagesize(), os.Getpagesize()
			}
			p := openForTest(t, Options{
				RingBytes:     ring,
				WakeupBytes:   wakeup,
				Aggregate:     true,
				AggregateKeys: tt.keys,
				// Only the test's connects reach the window maps.
				Filter: Filter{IncludePorts: ports, IncludeCIDRs: []netip.Prefix{netip.MustParsePrefix("127.0.0.1/32")}},
			})
			defer p.Close()
			counts0, err := p.Counters()
			if err != nil {
				t.Fatal(err)
			}
			a := &aggTally{ports: map[uint16]bool{}}
			for _, port := range ports {
				a.ports[port] = true
			}
			onSummary := func(s *AggregateSummary) { a.summary(t, s) }
			onRecord := func(raw []byte) { a.record(t, raw) }

			done := make(chan int64)
			go func() { done <- aggStorm(t, ports, 2, tt.perThread) }()
			var made int64
			windows := 0
		storm:
			for {
				select {
				case made = <-done:
					break storm
				case <-time.After(tt.flush + time.Millisecond):
				}
				if tt.flush > 0 {
					if _, err := p.FlushAggregate(false, onSummary); err != nil {
						t.Fatal(err)
					}
					windows++
				}
				if !tt.ringPage {
					drainRound(t, p, time.Millisecond, onRecord)
				}
			}
			// Shutdown: stop aggregating, flush both windows, read the ring.
			if _, err := p.FlushAggregate(true, onSummary); err != nil {
				t.Fatal(err)
			}
			drainRound(t, p, 100*time.Millisecond, onRecord)
			counts, err := p.Counters()
			if err != nil {
				t.Fatal(err)
			}
			overflowed := counts.AggOverflow - counts0.AggOverflow
			t.Logf("%d connects, %d windows: %d first records, %d overflow, %d plain, %d summaries counting %d; kernel overflow counter %d, lost %d",
				made, windows, a.firsts, a.overflows, a.plain, a.summaries, a.summed, overflowed, counts.Lost.Connect-counts0.Lost.Connect)

			if got := uint64(a.firsts+a.overflows+a.plain) + a.summed; got != uint64(made) {
				t.Errorf("records %d + summary counts %d = %d, want the %d connects made", a.firsts+a.overflows+a.plain, a.summed, got, made)
			}
			if uint64(a.overflows) != overflowed {
				t.Errorf("overflow records %d, kernel counter %d", a.overflows, overflowed)
			}
			if tt.overflow && a.overflows == 0 {
				t.Errorf("a %d-key map took %d destinations without overflowing", tt.keys, tt.ports)
			}
			if !tt.overflow && a.overflows != 0 {
				t.Errorf("%d overflow records with a %d-key map for %d destinations", a.overflows, tt.keys, tt.ports)
			}
			if a.plain != 0 {
				t.Errorf("%d records neither first nor overflow while aggregating", a.plain)
			}
			if counts.Lost.Connect != counts0.Lost.Connect {
				t.Errorf("%d connects lost: with room in the window map none may be", counts.Lost.Connect-counts0.Lost.Connect)
			}
			if tt.ringPage && a.firsts >= tt.ports {
				t.Errorf("%d first records in a one-page ring: the ring never filled", a.firsts)
			}
			if a.summaryBadFirst != 0 {
				t.Errorf("%d summaries without their key's first record", a.summaryBadFirst)
			}
			if a.summed == 0 {
				t.Error("no repeat was counted")
			}
			if tt.flush == 0 && !tt.ringPage && a.firsts != tt.ports {
				t.Errorf("%d first records in one window, want one per destination (%d)", a.firsts, tt.ports)
			}

			// After the stop every connect is reported on its own.
			plain := a.plain
			aggStorm(t, ports[:1], 1, 5)
			drainRound(t, p, 100*time.Millisecond, onRecord)
			if a.plain-plain != 5 {
				t.Errorf("after the stop: %d plain records for 5 connects", a.plain-plain)
			}
		})
	}
}

// TestAggregateLayout checks the window maps' key and value sizes against
// the loader's (aggregate.go reads the values at fixed offsets).
func TestAggregateLayout(t *testing.T) {
	spec, err := loadConnect()
	if err != nil {
		t.Fatal(err)
	}
	for _, name := range []string{"agg_win0", "agg_win1"} {
		m := spec.Maps[name]
		if m == nil {
			t.Fatalf("no map %s", name)
		}
		if m.KeySize != aggKeySize || m.ValueSize != aggValueSize {
			t.Errorf("%s: key %d value %d bytes, loader reads %d and %d", name, m.KeySize, m.ValueSize, aggKeySize, aggValueSize)
		}
	}
	if in := spec.Maps["agg_windows"].InnerMap; in == nil || in.ValueSize != aggValueSize {
		t.Errorf("agg_windows inner map %+v, want a %d-byte value", in, aggValueSize)
	}
}
