package bpf

import (
	"net/netip"
	"os"
	"runtime"
	"sync"
	"testing"
	"time"

	"golang.org/x/sys/unix"

	"github.com/tcpconnect/tcpconnect/internal/event"
	"github.com/tcpconnect/tcpconnect/internal/privtest"
)

// aggOutcomeTally collects, per destination, what the kernel reported with
// aggregation and outcome tracking on: the first records, the kinds their
// outcome records carry, and the summaries.
type aggOutcomeTally struct {
	firsts    map[netip.AddrPort][]event.Connect
	outcomes  map[waitKey]event.Kind
	summaries map[netip.AddrPort][]AggregateSummary
}

// waitKey names a connect record as its outcome record does.
type waitKey struct {
	tid    uint32
	bootNs uint64
}

func newAggOutcomeTally() *aggOutcomeTally {
	return &aggOutcomeTally{
		firsts:    map[netip.AddrPort][]event.Connect{},
		outcomes:  map[waitKey]event.Kind{},
		summaries: map[netip.AddrPort][]AggregateSummary{},
	}
}

func (a *aggOutcomeTally) record(t *testing.T, raw []byte) {
	switch event.Type(raw) {
	case event.TypeConnect:
		var c event.Connect
		if err := event.DecodeConnect(raw, &c); err != nil {
			t.Fatal(err)
		}
		if c.AggFirst {
			dst := netip.AddrPortFrom(c.Dst, c.DstPort)
			a.firsts[dst] = append(a.firsts[dst], c)
		}
	case event.TypeOutcome:
		var o event.Outcome
		if err := event.DecodeOutcome(raw, &o); err != nil {
			t.Fatal(err)
		}
		a.outcomes[waitKey{o.TID, o.ConnectBootNs}] = o.Kind
	}
}

func (a *aggOutcomeTally) summary(t *testing.T, s *AggregateSummary) {
	var c event.Connect
	if err := event.DecodeConnect(s.First[:], &c); err != nil {
		t.Errorf("summary's first record: %v", err)
		return
	}
	dst := netip.AddrPortFrom(c.Dst, c.DstPort)
	a.summaries[dst] = append(a.summaries[dst], *s)
}

// lateOutcomes reads the kernel's count of late aggregated outcomes.
func lateOutcomes(t *testing.T, p *Probe) uint64 {
	t.Helper()
	l, err := p.Counters()
	if err != nil {
		t.Fatal(err)
	}
	return l.AggLateOutcomes
}

// stopAndRead stops aggregating (flushing both windows into a), reads the
// ring into a, and returns the late outcomes counted since late0.
func (a *aggOutcomeTally) stopAndRead(t *testing.T, p *Probe, late0 uint64) uint64 {
	t.Helper()
	if _, err := p.FlushAggregate(true, func(s *AggregateSummary) { a.summary(t, s) }); err != nil {
		t.Fatal(err)
	}
	drainRound(t, p, 200*time.Millisecond, func(raw []byte) { a.record(t, raw) })
	return lateOutcomes(t, p) - late0
}

// kinds lists a summary's outcome counts by name, for messages.
func kinds(s *AggregateSummary) map[string]uint32 {
	m := map[string]uint32{}
	for k := event.KindEstablished; k <= event.KindPending; k++ {
		if n := s.Outcome(k); n > 0 {
			m[k.String()] = n
		}
	}
	return m
}

// TestAggregateOutcomes: with aggregation and outcome tracking on, the
// outcome of a connect counted in a window is counted in its summary by
// kind: for each kind a client connects twice to one destination, so that
// both connects end that way; the first connect's outcome comes as a record
// with its kind, the repeat's is counted in the summary, and both must be
// the kind that happened.
func TestAggregateOutcomes(t *testing.T) {
	p := openForTest(t, Options{Outcome: true, Aggregate: true, AggregateKeys: 256,
		Filter: Filter{IncludeCIDRs: []netip.Prefix{netip.MustParsePrefix("127.0.0.1/32"), dropNet, rejectNet}}})
	defer p.Close()
	runtime.LockOSThread()
	defer runtime.UnlockOSThread()
	n := newOutcomeNet(t)
	deny := denyCgroup(t)

	open := stormListener(t)
	closed := netip.AddrPortFrom(netip.MustParseAddr("127.0.0.1"), refusedPorts(t, 1)[0])
	port := uint16(20000 + os.Getpid()%20000)

	blocking := func(dst netip.AddrPort) { _ = privtest.Connect(dst, unix.SOCK_STREAM, false) }
	closing := func(dst netip.AddrPort) {
		if err := clientClosing.connect(dst, -1); err != nil {
			t.Error(err)
		}
	}
	tests := []struct {
		want     event.Kind
		dst      netip.AddrPort
		inClient bool
		twice    func(dst netip.AddrPort) // both connects; nil: blocking, one after the other
	}{
		{want: event.KindEstablished, dst: open},
		{want: event.KindRefused, dst: closed},
		{want: event.KindUnreachable, dst: netip.AddrPortFrom(rejectNet.Addr().Next(), port), inClient: true},
		{want: event.KindTimeout, dst: netip.AddrPortFrom(dropNet.Addr().Next(), port+1), inClient: true},
		{want: event.KindClosed, dst: netip.AddrPortFrom(dropNet.Addr().Next(), port+2), inClient: true,
			twice: func(dst netip.AddrPort) { closing(dst); closing(dst) }},
		// One child process in a cgroup whose connect4 program denies: both
		// connects are its own, one key.
		{want: event.KindDenied, dst: open, twice: func(dst netip.AddrPort) {
			if _, err := runSelfClient(deny, []netip.AddrPort{dst, dst}); err == nil {
				t.Errorf("a child in the deny cgroup connected to %s", dst)
			}
		}},
	}
	// Every kind at once: the timeouts take seconds.
	var wg sync.WaitGroup
	for _, tt := range tests {
		wg.Go(func() {
			twice := tt.twice
			if twice == nil {
				twice = func(dst netip.AddrPort) { blocking(dst); blocking(dst) }
			}
			if tt.inClient {
				privtest.InNetns(t, n.client, func() { twice(tt.dst) })
			} else {
				twice(tt.dst)
			}
		})
	}
	wg.Wait()
	a := newAggOutcomeTally()
	if late := a.stopAndRead(t, p, lateOutcomes(t, p)); late != 0 {
		t.Errorf("%d late outcomes: every connect was done before the window ended", late)
	}
	for _, tt := range tests {
		t.Run(tt.want.String(), func(t *testing.T) {
			// The denied child's key is its own; the test's established
			// connects go to the same address from another process.
			var first *event.Connect
			for i, c := range a.firsts[tt.dst] {
				if (tt.want == event.KindDenied) != (int(c.TGID) == os.Getpid()) {
					first = &a.firsts[tt.dst][i]
				}
			}
			if first == nil {
				t.Fatalf("no first record to %s", tt.dst)
			}
			if got, ok := a.outcomes[waitKey{first.TID, first.BootTimeNs}]; !ok || got != tt.want {
				t.Errorf("first connect's outcome record: %s (found %v), want %s", got, ok, tt.want)
			}
			var sum *AggregateSummary
			for i := range a.summaries[tt.dst] {
				s := &a.summaries[tt.dst][i]
				var c event.Connect
				if err := event.DecodeConnect(s.First[:], &c); err == nil && c.TGID == first.TGID {
					sum = s
				}
			}
			if sum == nil {
				t.Fatalf("no summary for %s from pid %d", tt.dst, first.TGID)
			}
			if sum.Count != 1 || sum.Outcome(tt.want) != 1 || len(kinds(sum)) != 1 {
				t.Errorf("summary: count %d, outcomes %v; want one connect, %s", sum.Count, kinds(sum), tt.want)
			}
		})
	}
}

// TestAggregateLateOutcome: the outcome of a counted connect that comes
// after its window ended is counted as late, not in a later window that
// uses the same map (same key, two windows on): the window generation, not
// the map, decides.
func TestAggregateLateOutcome(t *testing.T) {
	p := openForTest(t, Options{Outcome: true, Aggregate: true, AggregateKeys: 64,
		Filter: Filter{IncludeCIDRs: []netip.Prefix{dropNet}}})
	defer p.Close()
	runtime.LockOSThread()
	defer runtime.UnlockOSThread()
	n := newOutcomeNet(t)
	dst := netip.AddrPortFrom(dropNet.Addr().Next(), uint16(30000+os.Getpid()%20000))

	// connect starts a non-blocking connect to dst (its SYN vanishes) and
	// returns its socket, still connecting.
	connect := func() int {
		var fd int
		privtest.InNetns(t, n.client, func() {
			var err error
			fd, err = unix.Socket(unix.AF_INET, unix.SOCK_STREAM|unix.SOCK_NONBLOCK|unix.SOCK_CLOEXEC, 0)
			if err != nil {
				t.Fatal(err)
			}
			err = unix.Connect(fd, &unix.SockaddrInet4{Port: int(dst.Port()), Addr: dst.Addr().As4()})
			if err != unix.EINPROGRESS {
				t.Fatalf("connect to %s: %v, want EINPROGRESS", dst, err)
			}
		})
		return fd
	}
	a := newAggOutcomeTally()
	flush := func() { // the window ends
		if _, err := p.FlushAggregate(false, func(s *AggregateSummary) { a.summary(t, s) }); err != nil {
			t.Fatal(err)
		}
	}
	late0 := lateOutcomes(t, p)
	// Window 0 (map 0): a first and a repeat, both still connecting.
	first0, repeat0 := connect(), connect()
	flush() // window 1 (map 1)
	flush() // window 2: map 0 again
	// Window 2: the key's first and a repeat, so its entry exists in map 0.
	first2, repeat2 := connect(), connect()
	unix.Close(repeat0) // late: its window (0) ended
	unix.Close(repeat2) // in its window: counted there, closed
	unix.Close(first0)
	unix.Close(first2)
	if late := a.stopAndRead(t, p, late0); late != 1 {
		t.Errorf("%d late outcomes, want 1 (the repeat of window 0, closed in window 2)", late)
	}
	sums := a.summaries[dst]
	if len(sums) != 2 {
		t.Fatalf("%d summaries for %s, want 2 (windows 0 and 2)", len(sums), dst)
	}
	for i, s := range sums {
		want := map[string]uint32{} // window 0: its repeat was pending at the window's end
		if i == 1 {
			want = map[string]uint32{event.KindClosed.String(): 1}
		}
		if got := kinds(&s); s.Count != 1 || len(got) != len(want) || got[event.KindClosed.String()] != want[event.KindClosed.String()] {
			t.Errorf("summary %d: count %d, outcomes %v; want one connect, outcomes %v", i, s.Count, got, want)
		}
	}
	if len(a.firsts[dst]) != 2 {
		t.Errorf("%d first records, want 2 (windows 0 and 2)", len(a.firsts[dst]))
	}
}

// TestProbeOutcomeReconnect: a socket denied before its SYN left (a cgroup
// program refuses it) and tried again has its first try's outcome reported
// when the second is (denied: connected again without leaving TCP_CLOSE),
// and the second's when it is destroyed; with aggregation on, the second is
// a repeat of its key whose denial is counted in the summary.
func TestProbeOutcomeReconnect(t *testing.T) {
	for _, agg := range []bool{false, true} {
		t.Run(map[bool]string{false: "records", true: "aggregated"}[agg], func(t *testing.T) {
			p := openForTest(t, Options{Outcome: true, Aggregate: agg, AggregateKeys: 64,
				Filter: Filter{IncludeCIDRs: []netip.Prefix{netip.MustParsePrefix("127.0.0.1/32")}}})
			defer p.Close()
			dst := stormListener(t)
			pid, err := runSelfClient(denyCgroup(t), []netip.AddrPort{dst, dst}, envSameSocket+"=1")
			if err == nil {
				t.Fatalf("a child in the deny cgroup connected to %s", dst)
			}
			child := uint32(pid)

			var conns []event.Connect
			whys := map[waitKey]event.Outcome{}
			var sums []AggregateSummary
			if agg {
				if _, err := p.FlushAggregate(true, func(s *AggregateSummary) { sums = append(sums, *s) }); err != nil {
					t.Fatal(err)
				}
			}
			drainRound(t, p, 200*time.Millisecond, func(raw []byte) {
				switch event.Type(raw) {
				case event.TypeConnect:
					var c event.Connect
					if err := event.DecodeConnect(raw, &c); err != nil {
						t.Fatal(err)
					}
					if c.TGID == child {
						conns = append(conns, c)
					}
				case event.TypeOutcome:
					var o event.Outcome
					if err := event.DecodeOutcome(raw, &o); err != nil {
						t.Fatal(err)
					}
					whys[waitKey{o.TID, o.ConnectBootNs}] = o
				}
			})
			want := []uint8{event.WhyReconnect, event.WhyDestroyed}
			if agg {
				want = want[:1] // the second is counted, not reported
			}
			if len(conns) != len(want) {
				t.Fatalf("%d connect records of the child, want %d", len(conns), len(want))
			}
			for i, c := range conns {
				o, ok := whys[waitKey{c.TID, c.BootTimeNs}]
				if !ok || o.Why != want[i] || o.Kind != event.KindDenied {
					t.Errorf("try %d: outcome %+v (found %v), want reason %d, denied", i+1, o, ok, want[i])
				}
			}
			if agg {
				var c event.Connect
				if len(sums) != 1 || event.DecodeConnect(sums[0].First[:], &c) != nil || c.TGID != child {
					t.Fatalf("summaries %+v, want one of the child's key", sums)
				}
				if s := &sums[0]; s.Count != 1 || s.Outcome(event.KindDenied) != 1 || len(kinds(s)) != 1 {
					t.Errorf("summary: count %d, outcomes %v; want one connect, denied", s.Count, kinds(s))
				}
			}
		})
	}
}

// TestAggregateOutcomesSkipped: with AggregateSkipOutcomes the connects a
// window counts are not followed: their summary has no outcome counts and
// none comes late, while the key's first record still gets its outcome.
func TestAggregateOutcomesSkipped(t *testing.T) {
	ports := refusedPorts(t, 1)
	p := openForTest(t, Options{Outcome: true, Aggregate: true, AggregateKeys: 16, AggregateSkipOutcomes: true,
		Filter: Filter{IncludePorts: ports, IncludeCIDRs: []netip.Prefix{netip.MustParsePrefix("127.0.0.1/32")}}})
	defer p.Close()
	late0 := lateOutcomes(t, p)
	made := aggStorm(t, ports, 1, 5)
	a := newAggOutcomeTally()
	late := a.stopAndRead(t, p, late0)
	dst := netip.AddrPortFrom(netip.MustParseAddr("127.0.0.1"), ports[0])
	sums, firsts := a.summaries[dst], a.firsts[dst]
	if len(sums) != 1 || len(firsts) != 1 || sums[0].Count != uint64(made-1) {
		t.Fatalf("%d summaries, %d first records for %d connects, want one of each and a count of %d", len(sums), len(firsts), made, made-1)
	}
	if k := kinds(&sums[0]); len(k) != 0 {
		t.Errorf("summary's outcomes %v, want none counted", k)
	}
	if got := a.outcomes[waitKey{firsts[0].TID, firsts[0].BootTimeNs}]; got != event.KindRefused {
		t.Errorf("first record's outcome %s, want refused", got)
	}
	if late != 0 {
		t.Errorf("%d late outcomes of connects not followed", late)
	}
}
