package tcpconnectreceiver

import (
	"context"
	"net/netip"
	"strings"
	"sync"
	"testing"
	"time"

	"go.opentelemetry.io/collector/component/componenttest"
	"go.opentelemetry.io/collector/confmap"
	"go.opentelemetry.io/collector/consumer/consumertest"
	"go.opentelemetry.io/collector/pdata/pcommon"
	"go.opentelemetry.io/collector/pdata/plog"
	"go.uber.org/zap"

	"github.com/tcpconnect/tcpconnect/bpf"
	"github.com/tcpconnect/tcpconnect/internal/event"
	"github.com/tcpconnect/tcpconnect/tcpconnectreceiver/internal/metadatatest"
)

func TestAggregationConfig(t *testing.T) {
	tests := []struct {
		name    string
		raw     map[string]any
		wantErr string // "" for valid
	}{
		{"off by default", nil, ""},
		{"off ignores its fields", map[string]any{"window": "0s", "max_keys": 0}, ""},
		{"on", map[string]any{"enabled": true, "window": "30s", "max_keys": 100}, ""},
		{"on with defaults", map[string]any{"enabled": true}, ""},
		{"outcomes not counted", map[string]any{"enabled": true, "count_outcomes": false}, ""},
		{"window zero", map[string]any{"enabled": true, "window": "0s"}, "aggregation.window: must be between 100ms and 1h0m0s, got 0s"},
		{"window negative", map[string]any{"enabled": true, "window": "-1s"}, "aggregation.window: must be between"},
		{"window too long", map[string]any{"enabled": true, "window": "2h"}, "aggregation.window: must be between"},
		{"window below poll interval", map[string]any{"enabled": true, "window": "200ms", "poll": "1s"}, "aggregation.window: must be at least poll_interval (1s)"},
		{"max keys zero", map[string]any{"enabled": true, "max_keys": 0}, "aggregation.max_keys: must be between 1 and 262144, got 0"},
		{"max keys too many", map[string]any{"enabled": true, "max_keys": 1 << 20}, "aggregation.max_keys: must be between 1 and 262144"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			cfg := createDefaultConfig()
			if cfg.Aggregation.Enabled {
				t.Fatal("aggregation on by default: one record per attempt must stay the default")
			}
			if !cfg.Aggregation.CountOutcomes {
				t.Fatal("summaries without counts per outcome by default")
			}
			raw := map[string]any{}
			for k, v := range tt.raw {
				if k == "poll" {
					raw["poll_interval"] = v
					continue
				}
				raw["aggregation::"+k] = v
			}
			if err := confmap.NewFromStringMap(raw).Unmarshal(cfg); err != nil {
				t.Fatal(err)
			}
			wantErr(t, "Validate", cfg.Validate(), tt.wantErr)
		})
	}
}

// TestSummaryBytesBound checks that summaryExtraBytes bounds what a summary
// adds to a record, at its largest count and longest times.
func TestSummaryBytesBound(t *testing.T) {
	for _, tt := range []struct {
		name        string
		count       uint64
		first, last time.Time
	}{
		{"small", 1, time.Unix(0, 0), time.Unix(1, 0)},
		{"largest", 1<<63 - 1, time.Date(2026, 12, 31, 23, 59, 59, 123456789, time.UTC), time.Date(9999, 12, 31, 23, 59, 59, 999999999, time.FixedZone("x", 3600))},
	} {
		t.Run(tt.name, func(t *testing.T) {
			lr := plog.NewLogRecord()
			// Every outcome counted, the longest name included, and pending.
			s := &bpf.AggregateSummary{Count: tt.count}
			for i := range s.Outcomes {
				s.Outcomes[i] = 1
			}
			n := putSummary(lr, s, newOutcomeCountKeys(), tt.first, tt.last)
			if n > summaryExtraBytes {
				t.Errorf("summary attributes bound %d, above summaryExtraBytes %d", n, summaryExtraBytes)
			}
			if v, _ := lr.Attributes().Get(attrConnectCount); v.Int() != int64(tt.count) {
				t.Errorf("count %d, want %d", v.Int(), tt.count)
			}
			if v, _ := lr.Attributes().Get(attrConnectLastTime); !strings.HasSuffix(v.Str(), "Z") {
				t.Errorf("last time %q not in UTC", v.Str())
			}
		})
	}
}

// TestPutSummaryOutcomes: a summary's counts per outcome are the kernel's
// non-zero ones, and pending is what they leave of the count, so that they
// add up to it; without outcome tracking there are none.
func TestPutSummaryOutcomes(t *testing.T) {
	tests := []struct {
		name     string
		count    uint64
		outcomes map[event.Kind]uint32
		off      bool
		want     map[string]int64 // the outcome attributes
	}{
		{name: "all known", count: 3, outcomes: map[event.Kind]uint32{event.KindEstablished: 3},
			want: map[string]int64{"established": 3}},
		{name: "some pending", count: 10, outcomes: map[event.Kind]uint32{event.KindEstablished: 7, event.KindRefused: 2},
			want: map[string]int64{"established": 7, "refused": 2, "pending": 1}},
		{name: "none known", count: 5, want: map[string]int64{"pending": 5}},
		{name: "missed counts as pending", count: 2, outcomes: map[event.Kind]uint32{event.KindEstablished: 1, event.KindPending: 1},
			want: map[string]int64{"established": 1, "pending": 1}},
		{name: "every failure", count: 6, outcomes: map[event.Kind]uint32{event.KindTimeout: 1, event.KindUnreachable: 1, event.KindReset: 1, event.KindDenied: 1, event.KindClosed: 2},
			want: map[string]int64{"timeout": 1, "unreachable": 1, "reset": 1, "denied": 1, "closed": 2}},
		// Never more than the count, whatever the kernel says.
		{name: "more than the count", count: 2, outcomes: map[event.Kind]uint32{event.KindEstablished: 5, event.KindRefused: 1},
			want: map[string]int64{"refused": 1, "pending": 1}},
		{name: "outcome tracking off", count: 4, outcomes: map[event.Kind]uint32{event.KindEstablished: 4}, off: true, want: map[string]int64{}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			s := &bpf.AggregateSummary{Count: tt.count}
			for k, v := range tt.outcomes {
				s.Outcomes[k-1] = v
			}
			keys := newOutcomeCountKeys()
			if tt.off {
				keys = nil
			}
			lr := plog.NewLogRecord()
			putSummary(lr, s, keys, time.Unix(1, 0), time.Unix(2, 0))
			got := map[string]int64{}
			sum := int64(0)
			for k, v := range lr.Attributes().All() {
				if name, ok := strings.CutPrefix(k, attrConnectOutcomes); ok {
					got[name] = v.Int()
					sum += v.Int()
				}
			}
			if len(got) != len(tt.want) {
				t.Fatalf("outcome attributes %v, want %v", got, tt.want)
			}
			for k, v := range tt.want {
				if got[k] != v {
					t.Errorf("outcome attributes %v, want %v", got, tt.want)
					break
				}
			}
			if !tt.off && sum != int64(tt.count) {
				t.Errorf("outcome counts add up to %d, want the count %d", sum, tt.count)
			}
		})
	}
}

// aggReplay is a replay source that aggregates: FlushAggregate hands out the
// summaries queued with add, at a window's end or at the stop.
type aggReplay struct {
	*replaySource
	mu               sync.Mutex
	queued           []bpf.AggregateSummary
	windows, stopped int
}

func (s *aggReplay) add(first []byte, count, lastNs uint64) {
	var sum bpf.AggregateSummary
	copy(sum.First[:], first)
	sum.Count, sum.LastNs = count, lastNs
	s.mu.Lock()
	s.queued = append(s.queued, sum)
	s.mu.Unlock()
}

func (s *aggReplay) FlushAggregate(stop bool, fn func(*bpf.AggregateSummary)) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if stop {
		s.stopped++
	} else {
		s.windows++
	}
	for i := range s.queued {
		fn(&s.queued[i])
	}
	n := len(s.queued)
	s.queued = nil
	return n, nil
}

// TestAggregationReplay runs the reader's side of aggregation without a
// kernel: a first record goes out as usual, its summary (at a window's end,
// or at shutdown) carries the count, the first and last times, the first
// record's process and destination; the overflow counter is reported.
func TestAggregationReplay(t *testing.T) {
	tests := []struct {
		name   string
		window time.Duration
	}{
		{"window end", 100 * time.Millisecond},
		{"shutdown mid-window", time.Hour},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			tel := componenttest.NewTelemetry()
			defer func() { _ = tel.Shutdown(context.Background()) }()
			cfg := testConfig()
			cfg.DNS.Enabled = false
			cfg.Outcome.Enabled = false
			cfg.Batch.Timeout = 5 * time.Millisecond
			cfg.Aggregation = AggregationConfig{Enabled: true, Window: tt.window, MaxKeys: 16}
			src := &aggReplay{replaySource: newReplaySource()}
			sink := new(consumertest.LogsSink)
			rcv, err := newFactory(func(*Config, *zap.Logger) (source, error) { return src, nil }).
				CreateLogs(context.Background(), metadatatest.NewSettings(tel), cfg, sink)
			if err != nil {
				t.Fatal(err)
			}
			if err := rcv.Start(context.Background(), componenttest.NewNopHost()); err != nil {
				t.Fatal(err)
			}
			first := connectRec{hook: event.HookCgroup, dst: netip.MustParseAddrPort("127.0.0.1:8080"),
				bootNs: 1000, startNs: 7, tgid: 4242, tid: 4243, ppid: 1, comm: "client", exe: "client"}.raw()
			first[3] |= 2 // TC_CONNECT_AGG_FIRST
			src.add(first, 41, 5000)
			src.setCounters(bpf.Counters{AggOverflow: 7})
			src.feed(first)
			if tt.window < time.Hour {
				waitFor(t, "the summary", func() bool { return sink.LogRecordCount() == 2 })
			}
			if err := rcv.Shutdown(context.Background()); err != nil {
				t.Fatal(err)
			}
			if src.stopped != 1 {
				t.Errorf("aggregation stopped %d times at shutdown, want 1", src.stopped)
			}
			var summaries, plain int
			for _, ld := range sink.AllLogs() {
				for _, rl := range ld.ResourceLogs().All() {
					for _, sl := range rl.ScopeLogs().All() {
						for _, lr := range sl.LogRecords().All() {
							a := lr.Attributes()
							if intAttr(rl.Resource().Attributes(), attrProcessPID) != 4242 || intAttr(a, attrNetPeerPort) != 8080 {
								t.Errorf("record of another connect: %v", a.AsRaw())
							}
							v, ok := a.Get(attrConnectCount)
							if !ok {
								plain++
								continue
							}
							summaries++
							if v.Int() != 41 {
								t.Errorf("count %d, want 41", v.Int())
							}
							checkSummaryTimes(t, lr, a)
						}
					}
				}
			}
			if plain != 1 || summaries != 1 {
				t.Fatalf("%d records and %d summaries, want 1 and 1", plain, summaries)
			}
			if got := counter(t, tel, "receiver_tcpconnect_connects_aggregated"); got != 41 {
				t.Errorf("connects aggregated %d, want 41", got)
			}
			if got := counter(t, tel, "receiver_tcpconnect_aggregation_summaries"); got != 1 {
				t.Errorf("summaries %d, want 1", got)
			}
			if got := counter(t, tel, "receiver_tcpconnect_aggregation_overflows"); got != 7 {
				t.Errorf("overflows %d, want 7", got)
			}
		})
	}
}

// checkSummaryTimes checks that a summary's first and last times are 4000 ns
// apart (the kernel times 1000 and 5000) and that its Timestamp is the last.
func checkSummaryTimes(t *testing.T, lr plog.LogRecord, a pcommon.Map) {
	t.Helper()
	first, err1 := time.Parse(time.RFC3339Nano, strAttr(a, attrConnectFirstTime))
	last, err2 := time.Parse(time.RFC3339Nano, strAttr(a, attrConnectLastTime))
	if err1 != nil || err2 != nil {
		t.Fatalf("summary times: %v, %v", err1, err2)
	}
	if d := last.Sub(first); d != 4000 {
		t.Errorf("last - first = %s, want 4us", d)
	}
	if !lr.Timestamp().AsTime().Equal(last) {
		t.Errorf("Timestamp %s, want the last time %s", lr.Timestamp().AsTime(), last)
	}
}
