package receiver

import (
	"context"
	"errors"
	"fmt"
	"net/netip"
	"os"
	"time"

	"github.com/cilium/ebpf/ringbuf"
	"go.opentelemetry.io/collector/pdata/plog"
	"go.uber.org/zap"

	"github.com/tcpconnect/tcpconnect/bpf"
	"github.com/tcpconnect/tcpconnect/dns"
	"github.com/tcpconnect/tcpconnect/internal/event"
	"github.com/tcpconnect/tcpconnect/internal/procinfo"
)

// Defaults and bounds of AggregationConfig.
const (
	defaultAggregationWindow = 10 * time.Second
	minAggregationWindow     = 100 * time.Millisecond
	maxAggregationWindow     = time.Hour
)

// Attributes of a summary record (aggregation).
const (
	attrConnectCount     = "tcpconnect.connect.count"
	attrConnectFirstTime = "tcpconnect.connect.first_time"
	attrConnectLastTime  = "tcpconnect.connect.last_time"
	// attrConnectOutcomes prefixes a summary's counts per outcome:
	// tcpconnect.connect.outcomes.established, ... .pending.
	attrConnectOutcomes = "tcpconnect.connect.outcomes."
	// summaryTimeLayout: UTC, so every value has the same length at most.
	summaryTimeLayout = time.RFC3339Nano
	// summaryExtraBytes bounds what a summary adds to a record (batch_size.go).
	summaryExtraBytes = 3*attrOverhead + len(attrConnectCount) + intBytes +
		len(attrConnectFirstTime) + len(attrConnectLastTime) + 2*len("2006-01-02T15:04:05.999999999Z") +
		int(event.KindPending)*(attrOverhead+len(attrConnectOutcomes)+len("established")+intBytes)
)

// outcomeCountKeys are the attribute names of a summary's counts per
// outcome, by event.Kind (KindNone's is unused).
type outcomeCountKeys [event.KindPending + 1]string

func newOutcomeCountKeys() *outcomeCountKeys {
	var k outcomeCountKeys
	for i := event.KindEstablished; i <= event.KindPending; i++ {
		k[i] = attrConnectOutcomes + i.String()
	}
	return &k
}

// AggregationConfig configures the opt-in aggregation of repeated connects:
// per key (process, its network namespace, destination IP and port) the
// first connect of a window is reported at once, as without aggregation;
// its repeats are only counted in the kernel and reported when the window
// ends, as one summary record with tcpconnect.connect.count.
type AggregationConfig struct {
	// Enabled turns aggregation on. Off (the default), every connect
	// attempt is a record of its own.
	Enabled bool `mapstructure:"enabled"`
	// Window is how long a window lasts; its end is checked once per
	// poll_interval. Each end costs the reader an RCU grace period (some
	// milliseconds) while the kernel ring keeps filling.
	Window time.Duration `mapstructure:"window"`
	// MaxKeys bounds the keys of one window (two kernel maps of this many
	// entries, about 300 bytes each, allocated at start). A connect whose
	// key finds the map full is reported on its own and counted in
	// receiver_tcpconnect_aggregation_overflows.
	MaxKeys int `mapstructure:"max_keys"`
	// CountOutcomes puts on each summary its connects' counts per outcome
	// (tcpconnect.connect.outcomes.*), with outcome.enabled. The kernel
	// then follows each counted connect's socket, as it does each reported
	// one's: about 0.6 us of kernel time per connect (BENCHMARKS.md), paid
	// by the connecting process. Off, summaries carry the count only.
	CountOutcomes bool `mapstructure:"count_outcomes"`
}

func defaultAggregationConfig() AggregationConfig {
	return AggregationConfig{Window: defaultAggregationWindow, MaxKeys: bpf.DefaultAggregateKeys, CountOutcomes: true}
}

// validate checks the fields when aggregation is on.
func (a AggregationConfig) validate(pollInterval time.Duration) []error {
	if !a.Enabled {
		return nil
	}
	var errs []error
	if a.Window < minAggregationWindow || a.Window > maxAggregationWindow {
		errs = append(errs, fmt.Errorf("aggregation.window: must be between %s and %s, got %s", minAggregationWindow, maxAggregationWindow, a.Window))
	} else if a.Window < pollInterval {
		errs = append(errs, fmt.Errorf("aggregation.window: must be at least poll_interval (%s), at which its end is checked, got %s", pollInterval, a.Window))
	}
	if a.MaxKeys < 1 || a.MaxKeys > bpf.MaxAggregateKeys {
		errs = append(errs, fmt.Errorf("aggregation.max_keys: must be between 1 and %d, got %d", bpf.MaxAggregateKeys, a.MaxKeys))
	}
	return errs
}

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

// aggregation is the reader's side of the kernel's windows.
type aggregation struct {
	src    aggregateSource
	window time.Duration
	end    time.Time
	cur    uint8 // the kernel's window in use, as FlushAggregate moves it
	// names of each window's first records, by key: a summary carries the
	// names its key's first record had.
	names   [2]map[aggKey]firstNames
	pending []bpf.AggregateSummary
	// outcomeKeys: summaries carry counts per outcome (outcome.enabled);
	// nil when they do not.
	outcomeKeys *outcomeCountKeys
	// Counted since the last report.
	summaries, aggregated int64
}

func newAggregation(src source, cfg AggregationConfig, outcomes bool, now time.Time) (*aggregation, error) {
	as, ok := src.(aggregateSource)
	if !ok {
		return nil, errors.New("aggregation: the event source does not aggregate")
	}
	a := &aggregation{
		src: as, window: cfg.Window, end: now.Add(cfg.Window),
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

// endWindow ends the kernel's window when its time has come (or, with stop,
// stops aggregating at shutdown) and sends one summary record per key that
// counted connects. The ring is read first up to what the window's
// programs put there, so that the first records (and their names) go out
// before their summaries.
func (rd *reader) endWindow(ctx context.Context, now time.Time, stop bool) {
	a := rd.agg
	if !stop && now.Before(a.end) {
		return
	}
	a.end = now.Add(a.window)
	a.pending = a.pending[:0]
	_, err := a.src.FlushAggregate(stop, func(s *bpf.AggregateSummary) { a.pending = append(a.pending, *s) })
	if err != nil {
		rd.r.set.Logger.Error("Ending the aggregation window failed; its counts stay in the kernel until the next one", zap.Error(err))
	}
	rd.readRing(ctx, rd.r.cfg.RingBufferSize/event.ConnectSize)
	var c event.Connect
	for i := range a.pending {
		s := &a.pending[i]
		if err := event.DecodeConnect(s.First[:], &c); err != nil {
			// Counted as connects of the window all the same.
			rd.c.decodeErrors++
			rd.r.set.Logger.Debug("Undecodable first record of an aggregation summary", zap.Error(err))
			continue
		}
		rd.emitSummary(&c, s, now)
		if rd.batch.len() >= rd.r.cfg.Batch.MaxSize || rd.batch.full() {
			rd.flush(ctx)
		}
	}
	// The names of the window just ended are no longer needed.
	if stop {
		clear(a.names[0])
		clear(a.names[1])
	} else {
		clear(a.names[a.cur])
		a.cur ^= 1
	}
}

// readRing reads what the ring holds now, at most max records.
func (rd *reader) readRing(ctx context.Context, maxRecords int) {
	r := rd.r
	r.src.SetDeadline(time.Now()) // past: read what is there, then ErrDeadlineExceeded
	for range maxRecords {
		if err := r.src.ReadInto(&rd.rec); err != nil {
			if !errors.Is(err, os.ErrDeadlineExceeded) && !errors.Is(err, ringbuf.ErrClosed) {
				r.set.Logger.Debug("Reading the ring at the window's end failed", zap.Error(err))
			}
			return
		}
		rd.handle(rd.rec.RawSample, rd.readTime())
		if rd.batch.len() >= r.cfg.Batch.MaxSize || rd.batch.full() {
			rd.flush(ctx)
		}
	}
}

// emitSummary adds the summary record of one key: the first record's
// attributes and names, the count, and the first and last times.
func (rd *reader) emitSummary(c *event.Connect, s *bpf.AggregateSummary, now time.Time) {
	a := rd.agg
	first := time.Unix(0, int64(c.BootTimeNs)+rd.bootWall)
	last := time.Unix(0, int64(s.LastNs)+rd.bootWall)
	var l lookup
	if f, ok := a.names[c.AggWindow&1][aggKeyOf(c)]; ok && f.tid == c.TID && f.bootNs == c.BootTimeNs {
		l = f.l
	} else if rd.r.dns != nil {
		// Its first record was not sent yet (or found the ring full): the
		// names the cache gives for the first connect's time.
		scope := dns.Scope{NetNS: c.NetNS, TGID: c.TGID, CgroupID: c.CgroupID}
		l.names, l.best, l.age, l.source = rd.r.dns.Lookup(c.Dst, scope, first, rd.names[:0])
	}
	var info *procinfo.Info
	if key := (procinfo.Key{PID: c.TGID, StartTimeNs: c.StartTimeNs}); !rd.batch.hasProcess(key) {
		info = rd.procs.Lookup(key, c.Exe(), c.Comm(), c.UID, c.CgroupID, now)
	}
	rd.batch.addSummary(c, info, l, s, a.outcomeKeys, first, last, now)
	a.summaries++
	a.aggregated += int64(s.Count)
}

// addSummary appends a summary record: connect c's record, stamped with the
// last time, with s's count, the first and last times and, unless keys is
// nil, the counts per outcome.
func (b *batcher) addSummary(c *event.Connect, p *procinfo.Info, l lookup, s *bpf.AggregateSummary, keys *outcomeCountKeys, first, last, observed time.Time) {
	b.add(c, p, l, outcomeResult{}, last, observed)
	recs, _ := b.records(procinfo.Key{PID: c.TGID, StartTimeNs: c.StartTimeNs})
	lr := recs.At(recs.Len() - 1)
	b.bytes += putSummary(lr, s, keys, first, last)
}

// putSummary puts the summary attributes on lr and returns their size bound.
// The counts per outcome (unless keys is nil) are those that are not zero;
// pending is what the others leave of the count (the connects whose outcome
// had not come when the window ended, or was never seen), so that they add
// up to tcpconnect.connect.count.
func putSummary(lr plog.LogRecord, s *bpf.AggregateSummary, keys *outcomeCountKeys, first, last time.Time) int {
	attrs := lr.Attributes()
	n := putInt(attrs, attrConnectCount, int64(s.Count))
	n += putStr(attrs, attrConnectFirstTime, first.UTC().Format(summaryTimeLayout))
	n += putStr(attrs, attrConnectLastTime, last.UTC().Format(summaryTimeLayout))
	if keys == nil {
		return n
	}
	known := uint64(0)
	for k := event.KindEstablished; k < event.KindPending; k++ {
		if v := uint64(s.Outcome(k)); v > 0 && known+v <= s.Count {
			n += putInt(attrs, keys[k], int64(v))
			known += v
		}
	}
	if known < s.Count {
		n += putInt(attrs, keys[event.KindPending], int64(s.Count-known))
	}
	return n
}

// reportAggregation adds the aggregation counters to the metrics: the
// reader's own, and the kernel's since prev, its last reading (l now).
func (rd *reader) reportAggregation(ctx context.Context, l, prev bpf.Counters) {
	a := rd.agg
	if a == nil {
		return
	}
	t := rd.r.telemetry
	addIf(ctx, t.ReceiverTcpconnectAggregationSummaries, a.summaries)
	addIf(ctx, t.ReceiverTcpconnectConnectsAggregated, a.aggregated)
	if l.AggOverflow > prev.AggOverflow {
		t.ReceiverTcpconnectAggregationOverflows.Add(ctx, int64(l.AggOverflow-prev.AggOverflow))
	}
	if l.AggLateOutcomes > prev.AggLateOutcomes {
		t.ReceiverTcpconnectAggregationLateOutcomes.Add(ctx, int64(l.AggLateOutcomes-prev.AggLateOutcomes))
	}
	a.summaries, a.aggregated = 0, 0
}
