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
		fb      string // first bytes after an established outcome: "" (first_bytes off), "closed", "tls", "http"
		max     float64
	}{
		// The default config on a connect no DNS answer named whose client
		// closed without sending (the storm's): 7 values + thread.name +
		// outcome + duration, the record, its slice.
		{"default_unnamed", correlator, true, "closed", 12},
		// The default config with two names: + names (3 + 2), age,
		// tcpconnect.dns.source, tcpconnect.server.address.source.
		{"default_named", func(*testing.T) dnsSink { return benchDNS{} }, true, "closed", 20},
		// A TLS client (Go's ClientHello, in two pieces: reassembled) no DNS answer
		// named: + tls.client.server_name, tcpconnect.tls.alpn (3 + 2),
		// tcpconnect.server.address.source.
		{"default_tls_unnamed", correlator, true, "tls", 19},
		// The same with two names: + the names' 7, tcpconnect.name.mismatch.
		{"default_tls_named", func(*testing.T) dnsSink { return benchDNS{} }, true, "tls", 27},
		// An HTTP/1.x client: + http.request.header.host (3 + 1), source.
		{"default_http_unnamed", correlator, true, "http", 17},
		{"first_bytes_off_unnamed", correlator, true, "", 12},
		{"outcome_off_unnamed", correlator, false, "", 10},
		{"dns_off_outcome_off", func(*testing.T) dnsSink { return nil }, false, "", 10},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			rd, batch, groups := newAllocsReader(t, tt.dns(t), tt.outcome, tt.fb)
			i := 0
			handle := func() {
				for _, raw := range groups[i%len(groups)] {
					rd.handle(raw, time.Unix(1e9, 0))
				}
				i++
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
			if rd.c.decodeErrors != 0 || rd.c.outcomeUnmatched != 0 || rd.c.fbUnmatched != 0 || rd.c.fbLost != 0 {
				t.Fatalf("%d decode errors, %d outcomes unmatched, first bytes %d unmatched %d lost",
					rd.c.decodeErrors, rd.c.outcomeUnmatched, rd.c.fbUnmatched, rd.c.fbLost)
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

// allocsReader returns newAllocsReader's reader with first bytes off, and
// its records one after the other (a connect, then its outcome with
// outcome), for BenchmarkHandle.
func allocsReader(t testing.TB, sink dnsSink, outcome bool) (*reader, *batcher, [][]byte) {
	rd, batch, groups := newAllocsReader(t, sink, outcome, "")
	var raws [][]byte
	for _, g := range groups {
		raws = append(raws, g...)
	}
	return rd, batch, raws
}

// newAllocsReader returns a reader of cfg's defaults (outcome as given,
// first bytes off when fb is "") with sink as its DNS, its batch, and the
// raw records of one process's two threads to eight destinations, like a
// busy client, one group per connect: the connect, with outcome its outcome
// (established, as the kernel writes them), and with fb its first bytes.
// The allocation guard and BenchmarkHandle share it.
func newAllocsReader(t testing.TB, sink dnsSink, outcome bool, fb string) (*reader, *batcher, [][][]byte) {
	t.Helper()
	var groups [][][]byte
	var hello []byte
	if fb == "tls" {
		hello = clientHello(t, "www.example.com", "h2", "http/1.1")
		if len(hello) <= 1400 {
			t.Fatalf("Go's ClientHello is %d bytes: it no longer takes two pieces", len(hello))
		}
	}
	for i := range 8 {
		dst := netip.AddrPortFrom(netip.AddrFrom4([4]byte{10, 0, 1, byte(i)}), 443)
		tid := 4243 + uint32(i%2)
		boot := uint64(i + 1)
		raws := [][]byte{connectRec{hook: event.HookCgroup, dst: dst, bootNs: boot, startNs: 1, tgid: 4242, tid: tid, ppid: 1, comm: []string{"curl", "worker"}[i%2], exe: "curl", tracked: outcome}.raw()}
		if outcome {
			raws = append(raws, outcomeRaw(tid, boot, boot+1, event.KindEstablished, 0))
		}
		switch fb {
		case "closed":
			raws = append(raws, fbRaw(tid, boot, fbFlagClosed, 0, 0, nil))
		case "tls":
			raws = append(raws, fbPieces(tid, boot, hello, 1400)...) // two segments' worth
		case "http":
			raws = append(raws, fbPieces(tid, boot, []byte("GET / HTTP/1.1\r\nHost: www.example.com\r\nUser-Agent: curl\r\n\r\n"), event.FirstBytesChunk)...)
		}
		groups = append(groups, raws)
	}
	cfg := createDefaultConfig()
	cfg.Outcome.Enabled = outcome
	if fb == "" {
		cfg.FirstBytes.TLS, cfg.FirstBytes.HTTP = false, false
	}
	set := receivertest.NewNopSettings(metadata.Type)
	tel, err := metadata.NewTelemetryBuilder(set.TelemetrySettings)
	if err != nil {
		t.Fatal(err)
	}
	batch := newBatcher("host-1", "v1", cfg)
	rd := newReader(readerDeps{cfg: cfg, log: set.Logger, tel: tel, dns: sink, batch: batch,
		procs: procinfo.New(procinfo.Config{ProcRoot: t.TempDir()})})
	return rd, batch, groups
}
