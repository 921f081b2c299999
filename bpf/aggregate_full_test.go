package bpf

import (
	"net/netip"
	"testing"
	"time"
)

// TestAggregateFullWindow: a window map found full sends each new key of
// the window on its own (counted as an overflow) without trying to insert
// it, and takes new keys again once emptied: the same six destinations in
// a four-key map overflow by two in each window that uses it, not by more.
func TestAggregateFullWindow(t *testing.T) {
	ports := refusedPorts(t, 6)
	p := openForTest(t, Options{Aggregate: true, AggregateKeys: 4,
		Filter: Filter{IncludePorts: ports, IncludeCIDRs: []netip.Prefix{netip.MustParsePrefix("127.0.0.1/32")}}})
	defer p.Close()
	a := &aggTally{ports: map[uint16]bool{}}
	for _, port := range ports {
		a.ports[port] = true
	}
	overflows := func() uint64 {
		l, err := p.Counters()
		if err != nil {
			t.Fatal(err)
		}
		return l.AggOverflow
	}
	var made int64
	for w := range 4 { // maps 0, 1, 0, 1
		before := overflows()
		// Twice each: the repeats of a key in the map are counted, those
		// of an overflowed key go out on their own too.
		made += aggStorm(t, ports, 1, 2*len(ports))
		if got := overflows() - before; got != 4 {
			t.Errorf("window %d: %d overflows, want 4 (two keys past a four-key map, twice each)", w, got)
		}
		if _, err := p.FlushAggregate(w == 3, func(s *AggregateSummary) { a.summary(t, s) }); err != nil {
			t.Fatal(err)
		}
	}
	drainRound(t, p, 100*time.Millisecond, func(raw []byte) { a.record(t, raw) })
	if got := uint64(a.firsts+a.overflows+a.plain) + a.summed; got != uint64(made) {
		t.Errorf("records %d + summary counts %d, want the %d connects made", a.firsts+a.overflows+a.plain, a.summed, made)
	}
	if a.firsts != 16 || a.summaries != 16 {
		t.Errorf("%d first records and %d summaries, want 16 each (four keys in each of four windows)", a.firsts, a.summaries)
	}
}
