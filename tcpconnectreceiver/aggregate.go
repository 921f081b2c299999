package tcpconnectreceiver

import (
	"errors"
	"net/netip"
	"time"

	"github.com/tcpconnect/tcpconnect/bpf"
	"github.com/tcpconnect/tcpconnect/internal/event"
)

// aggregateSource is a source that aggregates in the kernel (*bpf.Probe).
type aggregateSource interface {
	FlushAggregate(stop bool, fn func(*bpf.AggregateSummary)) (int, error)
}

// aggKey is the kernel's aggregation key, as a connect record shows it.
type aggKey struct {
	start uint64
	tgid  uint32
	netns uint32
	dst   netip.Addr
	port  uint16
}

func aggKeyOf(c *event.Connect) aggKey {
	return aggKey{start: c.StartTimeNs, tgid: c.TGID, netns: c.NetNS, dst: c.Dst, port: c.DstPort}
}

// firstNames are the DNS names a key's first record went out with.
type firstNames struct {
	tid    uint32
	bootNs uint64
	l      lookup
}

// aggregation is the reader's side of the kernel's windows: when each ends,
// and the names each window's first records went out with. The reader
// ends a window (end), reads the ring up to what the window's programs put
// there, sends one summary per key (first gives its names) and then lets the
// window's names go (forget).
type aggregation struct {
	src    aggregateSource
	window time.Duration
	next   time.Time // when the window in use ends
	cur    uint8     // the kernel's window in use, as FlushAggregate moves it
	// names of each window's first records, by key: a summary carries the
	// names its key's first record had.
	names   [2]map[aggKey]firstNames
	pending []bpf.AggregateSummary
	// outcomeKeys: summaries carry counts per outcome (outcome.enabled);
	// nil when they do not.
	outcomeKeys *outcomeCountKeys
}

func newAggregation(src source, cfg AggregationConfig, outcomes bool, now time.Time) (*aggregation, error) {
	as, ok := src.(aggregateSource)
	if !ok {
		return nil, errors.New("aggregation: the event source does not aggregate")
	}
	a := &aggregation{
		src: as, window: cfg.Window, next: now.Add(cfg.Window),
		names: [2]map[aggKey]firstNames{{}, {}},
	}
	if outcomes {
		a.outcomeKeys = newOutcomeCountKeys()
	}
	return a, nil
}

// remember keeps the names that the first record of a key went out with.
func (a *aggregation) remember(c *event.Connect, l lookup) {
	l.names = append([]string(nil), l.names...)
	a.names[c.AggWindow&1][aggKeyOf(c)] = firstNames{tid: c.TID, bootNs: c.BootTimeNs, l: l}
}

// due reports whether the window in use has ended at now.
func (a *aggregation) due(now time.Time) bool { return !now.Before(a.next) }

// end ends the kernel's window (with stop, stops aggregating) and returns
// its summaries, one per key that counted connects; they are valid until the
// next end. On an error the summaries read so far are returned and the
// rest stay counted in the kernel until the next window.
func (a *aggregation) end(now time.Time, stop bool) ([]bpf.AggregateSummary, error) {
	a.next = now.Add(a.window)
	a.pending = a.pending[:0]
	_, err := a.src.FlushAggregate(stop, func(s *bpf.AggregateSummary) { a.pending = append(a.pending, *s) })
	return a.pending, err
}

// first returns the names the first record of c's key went out with in
// c's window, when that record was c (same thread and time).
func (a *aggregation) first(c *event.Connect) (lookup, bool) {
	f, ok := a.names[c.AggWindow&1][aggKeyOf(c)]
	if !ok || f.tid != c.TID || f.bootNs != c.BootTimeNs {
		return lookup{}, false
	}
	return f.l, true
}

// forget drops the names of the window just ended (of both, with stop):
// their summaries went out.
func (a *aggregation) forget(stop bool) {
	if stop {
		clear(a.names[0])
		clear(a.names[1])
		return
	}
	clear(a.names[a.cur])
	a.cur ^= 1
}
