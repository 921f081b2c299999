package tcpconnectreceiver

import (
	"context"
	"encoding/binary"
	"net/netip"
	"testing"
	"time"

	"go.opentelemetry.io/collector/component/componenttest"
	"go.opentelemetry.io/collector/consumer/consumertest"
	"go.opentelemetry.io/collector/pdata/plog"

	"github.com/tcpconnect/tcpconnect/bpf"
	"github.com/tcpconnect/tcpconnect/internal/event"
)

// outcomeRaw encodes an outcome record (struct tc_outcome_event) for the
// connect (tid, bootNs): a state change that the kernel classified as kind,
// with the socket's error err.
func outcomeRaw(tid uint32, bootNs, atNs uint64, kind event.Kind, err int32) []byte {
	newState := uint8(7) // TCP_CLOSE
	if kind == event.KindEstablished {
		newState = 1
	}
	b := make([]byte, event.OutcomeSize)
	b[0], b[1], b[2], b[3], b[4], b[5] = event.TypeOutcome, event.WhyState, 2, newState, 3, uint8(kind)
	le := binary.LittleEndian
	le.PutUint32(b[8:], uint32(err))
	le.PutUint32(b[12:], tid)
	le.PutUint64(b[16:], bootNs)
	le.PutUint64(b[24:], atNs)
	return b
}

// missedRaw encodes the outcome record of a socket destroyed after its state
// change went unreported (TC_OUTCOME_MISSED).
func missedRaw(tid uint32, bootNs, atNs uint64) []byte {
	b := outcomeRaw(tid, bootNs, atNs, event.KindPending, 0)
	b[1], b[2], b[4] = event.WhyMissed, 7, 0xff
	return b
}

// trackedRecord is a connect from tid to port with kernel time bootNs that
// the kernel follows.
func trackedRecord(tid uint32, port uint16, bootNs uint64, tracked bool) []byte {
	return connectRec{hook: event.HookCgroup, dst: netip.AddrPortFrom(netip.MustParseAddr("127.0.0.1"), port),
		bootNs: bootNs, startNs: 1, tgid: tid, tid: tid, ppid: 1, comm: "replay", exe: "replay", tracked: tracked}.raw()
}

// outcomeAttrs is what a record says about its outcome.
type outcomeAttrs struct {
	port     int64
	outcome  string
	errType  string
	duration float64 // -1: absent
}

func recordOutcomes(logs []plog.Logs) []outcomeAttrs {
	var out []outcomeAttrs
	for _, ld := range logs {
		for i := 0; i < ld.ResourceLogs().Len(); i++ {
			sls := ld.ResourceLogs().At(i).ScopeLogs()
			for j := 0; j < sls.Len(); j++ {
				lrs := sls.At(j).LogRecords()
				for k := 0; k < lrs.Len(); k++ {
					a := lrs.At(k).Attributes()
					o := outcomeAttrs{duration: -1}
					if v, ok := a.Get(attrNetPeerPort); ok {
						o.port = v.Int()
					}
					if v, ok := a.Get(attrOutcome); ok {
						o.outcome = v.Str()
					}
					if v, ok := a.Get(attrErrorType); ok {
						o.errType = v.Str()
					}
					if v, ok := a.Get(attrConnectTime); ok {
						o.duration = v.Double()
					}
					out = append(out, o)
				}
			}
		}
	}
	return out
}

// TestOutcomeWait replays connects and outcomes through the reader and
// checks what each record says and what was counted.
func TestOutcomeWait(t *testing.T) {
	const ms = uint64(time.Millisecond)
	tests := []struct {
		name       string
		enabled    bool
		maxWaiting int
		feed       [][]byte
		shutdown   bool // the records go out at Shutdown, not before
		lost       bpf.Lost
		want       []outcomeAttrs
		counters   map[string]int64
	}{
		{
			name: "outcome arrives", enabled: true,
			feed: [][]byte{trackedRecord(10, 80, 1000*ms, true), outcomeRaw(10, 1000*ms, 1000*ms+2500000, event.KindEstablished, 0)},
			want: []outcomeAttrs{{80, "established", "", 0.0025}},
		},
		{
			name: "refused, others wait on", enabled: true,
			feed: [][]byte{
				trackedRecord(10, 80, 1000*ms, true), trackedRecord(11, 81, 1001*ms, true),
				outcomeRaw(11, 1001*ms, 1001*ms+64000, event.KindRefused, 111),
			},
			want: []outcomeAttrs{{81, "refused", "ECONNREFUSED", 0.000064}, {80, "pending", "", -1}},
			counters: map[string]int64{
				"receiver_tcpconnect_outcomes_pending": 1,
			},
		},
		{
			name: "not followed: pending at once", enabled: true,
			feed:     [][]byte{trackedRecord(10, 80, 1000*ms, false)},
			want:     []outcomeAttrs{{80, "pending", "", -1}},
			counters: map[string]int64{"receiver_tcpconnect_outcomes_pending": 1},
		},
		{
			name: "queue full: oldest goes out", enabled: true, maxWaiting: 2,
			feed: [][]byte{
				trackedRecord(10, 80, 1000*ms, true), trackedRecord(11, 81, 1001*ms, true), trackedRecord(12, 82, 1002*ms, true),
				outcomeRaw(11, 1001*ms, 1002*ms, event.KindEstablished, 0), outcomeRaw(12, 1002*ms, 1003*ms, event.KindEstablished, 0),
			},
			want: []outcomeAttrs{{80, "pending", "", -1}, {81, "established", "", 0.001}, {82, "established", "", 0.001}},
			counters: map[string]int64{
				"receiver_tcpconnect_outcomes_pending":  1,
				"receiver_tcpconnect_outcome_wait_full": 1,
			},
		},
		{
			name: "outcome without its connect", enabled: true,
			feed: [][]byte{outcomeRaw(10, 1000*ms, 1001*ms, event.KindEstablished, 0), trackedRecord(11, 81, 1001*ms, true), outcomeRaw(11, 1001*ms, 1002*ms, event.KindUnreachable, 113)},
			want: []outcomeAttrs{{81, "unreachable", "EHOSTUNREACH", 0.001}},
			counters: map[string]int64{
				"receiver_tcpconnect_outcomes_unmatched": 1,
			},
		},
		{
			name: "outcome lost in the kernel", enabled: true, lost: bpf.Lost{Outcome: 1, OutcomeMissed: 2},
			feed: [][]byte{trackedRecord(10, 80, 1000*ms, true)},
			want: []outcomeAttrs{{80, "pending", "", -1}},
			counters: map[string]int64{
				"receiver_tcpconnect_outcomes_lost":    1,
				"receiver_tcpconnect_outcomes_missed":  2,
				"receiver_tcpconnect_outcomes_pending": 1,
			},
		},
		{
			name: "state change not reported", enabled: true,
			feed: [][]byte{trackedRecord(10, 80, 1000*ms, true), missedRaw(10, 1000*ms, 1002*ms)},
			want: []outcomeAttrs{{80, "pending", "", -1}},
			counters: map[string]int64{
				"receiver_tcpconnect_outcomes_pending": 1,
			},
		},
		{
			name: "shutdown sends what waits", enabled: true, shutdown: true,
			feed: [][]byte{trackedRecord(10, 80, 1000*ms, true)},
			want: []outcomeAttrs{{80, "pending", "", -1}},
		},
		{
			name: "off: no outcome, no wait",
			feed: [][]byte{trackedRecord(10, 80, 1000*ms, true), outcomeRaw(10, 1000*ms, 1001*ms, event.KindEstablished, 0)},
			want: []outcomeAttrs{{80, "", "", -1}},
			counters: map[string]int64{
				"receiver_tcpconnect_outcomes_unmatched": 1,
			},
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			cfg := testConfig()
			cfg.Batch.MaxSize = 1
			cfg.Outcome.Enabled = tt.enabled
			cfg.Outcome.MaxWait = 300 * time.Millisecond
			if tt.shutdown {
				cfg.Outcome.MaxWait = time.Hour
			}
			if tt.maxWaiting > 0 {
				cfg.Outcome.MaxWaiting = tt.maxWaiting
			}
			tel := componenttest.NewTelemetry()
			defer tel.Shutdown(context.Background()) //nolint:errcheck
			sink := new(consumertest.LogsSink)
			rcv, src := startReplay(t, cfg, sink, tel)
			src.setCounters(bpf.Counters{Lost: tt.lost})
			src.feed(tt.feed...)
			if !tt.shutdown {
				waitFor(t, "the records", func() bool { return sink.LogRecordCount() == len(tt.want) })
			} else {
				// Once the reader reported the connects read, and then
				// reported again, any record it sent would be counted.
				waitFor(t, "the connects to be read", func() bool {
					return counter(t, tel, "receiver_tcpconnect_connects_received") == int64(len(tt.want))
				})
				src.waitReport(t)
				if n := counter(t, tel, "receiver_tcpconnect_connects_unnamed"); n != 0 {
					t.Fatalf("%d records sent before shutdown, want them waiting", n)
				}
			}
			if err := rcv.Shutdown(context.Background()); err != nil {
				t.Fatal(err)
			}
			got := recordOutcomes(sink.AllLogs())
			if len(got) != len(tt.want) {
				t.Fatalf("records %+v, want %+v", got, tt.want)
			}
			for i := range got {
				g, w := got[i], tt.want[i]
				if g.port != w.port || g.outcome != w.outcome || g.errType != w.errType ||
					(w.duration < 0) != (g.duration < 0) || (w.duration >= 0 && abs(g.duration-w.duration) > 1e-9) {
					t.Errorf("record %d: %+v, want %+v", i, g, w)
				}
			}
			for name, want := range tt.counters {
				if got := counter(t, tel, name); got != want {
					t.Errorf("%s = %d, want %d", name, got, want)
				}
			}
		})
	}
}

func abs(x float64) float64 {
	if x < 0 {
		return -x
	}
	return x
}

// TestOutcomeConfig checks the outcome section's validation.
func TestOutcomeConfig(t *testing.T) {
	tests := []struct {
		name    string
		mod     func(*OutcomeConfig)
		wantErr string
	}{
		{"default", func(*OutcomeConfig) {}, ""},
		{"wait too short", func(o *OutcomeConfig) { o.MaxWait = 0 }, "outcome.max_wait"},
		{"wait too long", func(o *OutcomeConfig) { o.MaxWait = time.Minute }, "outcome.max_wait"},
		{"no room", func(o *OutcomeConfig) { o.MaxWaiting = 0 }, "outcome.max_waiting"},
		{"off: not checked", func(o *OutcomeConfig) { o.Enabled, o.MaxWaiting = false, 0 }, ""},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			cfg := createDefaultConfig()
			tt.mod(&cfg.Outcome)
			wantErr(t, "Validate", cfg.Validate(), tt.wantErr)
		})
	}
}
