package tcpconnectreceiver

import (
	"net/netip"
	"testing"
	"time"

	"go.opentelemetry.io/collector/receiver/receivertest"

	"github.com/tcpconnect/tcpconnect/dns"
	"github.com/tcpconnect/tcpconnect/internal/event"
	"github.com/tcpconnect/tcpconnect/internal/procinfo"
	"github.com/tcpconnect/tcpconnect/tcpconnectreceiver/internal/metadata"
)

// TestAllocsPerRecord is the allocation guard of the receiver's per-record
// path (issue 18): the reader's handle of a connect record and its outcome
// record, raw bytes in, decode, process cache, DNS lookup, outcome join and
// the log record built into the batch, counted with testing.AllocsPerRun
// (exact, not timed). One run is one log record. The bounds are what the
// pdata API needs for the record's values: one allocation per attribute
// value (the AnyValue's oneof), one for the log record, one for its
// attribute slice, three plus one per name for tcpconnect.dns.names. The
// issue's target is 8 for the default config; the default record has 10
// values (see bench/RESULTS-issue18.md, phase 2).
func TestAllocsPerRecord(t *testing.T) {
	if raceEnabled {
		t.Skip("the race detector allocates on its own; make unit runs this test again without -race") // skip-ok: counts differ under -race; the Makefile's unit target runs it without -race
	}
	correlator := func(t *testing.T) dnsSink {
		c, err := dns.New(dns.DefaultConfig())
		if err != nil {
			t.Fatal(err)
		}
		return correlator{c}
	}
	tests := []struct {
		name    string
		dns     func(*testing.T) dnsSink
		outcome bool
		max     float64
	}{
		// The default config on a connect no DNS answer named (the storm's):
		// 7 values + thread.name + outcome + duration, the record, its slice.
		{"default_unnamed", correlator, true, 12},
		// The default config with two names: + names (3 + 2), age, source.
		{"default_named", func(*testing.T) dnsSink { return benchDNS{} }, true, 19},
		{"outcome_off_unnamed", correlator, false, 10},
		{"dns_off_outcome_off", func(*testing.T) dnsSink { return nil }, false, 10},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			rd, batch, raws := allocsReader(t, tt.dns(t), tt.outcome)
			i := 0
			handle := func() {
				rd.handle(raws[i%len(raws)], time.Unix(1e9, 0))
				i++
				if tt.outcome {
					rd.handle(raws[i%len(raws)], time.Unix(1e9, 0))
					i++
				}
				if batch.len() == 1024 {
					batch.take()
				}
			}
			// Warm the caches (process, IP text, thread names) and the
			// batch, as a running receiver has them.
			for range 2048 {
				handle()
			}
			before := rd.c.named + rd.c.unnamed
			got := testing.AllocsPerRun(4096, handle)
			if n := rd.c.named + rd.c.unnamed - before; n < 4096 {
				t.Fatalf("%d records built in 4096 runs", n)
			}
			if rd.c.decodeErrors != 0 || rd.c.outcomeUnmatched != 0 {
				t.Fatalf("%d decode errors, %d outcomes unmatched", rd.c.decodeErrors, rd.c.outcomeUnmatched)
			}
			if tt.outcome && rd.join.q.len() != 0 {
				t.Fatalf("%d records still waiting for their outcome", rd.join.q.len())
			}
			t.Logf("%.0f allocations per record (bound %.0f)", got, tt.max)
			if got > tt.max {
				t.Errorf("%.0f allocations per record, want at most %.0f", got, tt.max)
			}
		})
	}
}

// allocsReader returns a reader of cfg's defaults (outcome as given) with
// sink as its DNS, its batch, and raw records of one process's two threads
// to eight destinations, like a busy client, each connect followed by its
// outcome (established, as the kernel writes them) with outcome. The
// allocation guard and BenchmarkHandle share it.
func allocsReader(t testing.TB, sink dnsSink, outcome bool) (*reader, *batcher, [][]byte) {
	t.Helper()
	var raws [][]byte
	for i := range 8 {
		dst := netip.AddrPortFrom(netip.AddrFrom4([4]byte{10, 0, 1, byte(i)}), 443)
		tid := 4243 + uint32(i%2)
		raws = append(raws, connectRec{hook: event.HookCgroup, dst: dst, bootNs: uint64(i + 1), startNs: 1, tgid: 4242, tid: tid, ppid: 1, comm: []string{"curl", "worker"}[i%2], exe: "curl", tracked: outcome}.raw())
		if outcome {
			raws = append(raws, outcomeRaw(tid, uint64(i+1), uint64(i+2), event.KindEstablished, 0))
		}
	}
	cfg := createDefaultConfig()
	cfg.Outcome.Enabled = outcome
	set := receivertest.NewNopSettings(metadata.Type)
	tel, err := metadata.NewTelemetryBuilder(set.TelemetrySettings)
	if err != nil {
		t.Fatal(err)
	}
	batch := newBatcher("host-1", "v1", cfg)
	rd := newReader(readerDeps{cfg: cfg, log: set.Logger, tel: tel, dns: sink, batch: batch,
		procs: procinfo.New(procinfo.Config{ProcRoot: t.TempDir()})})
	return rd, batch, raws
}
