package receiver

import (
	"net/netip"
	"testing"
	"time"

	"go.opentelemetry.io/collector/receiver/receivertest"

	"github.com/tcpconnect/tcpconnect/dns"
	"github.com/tcpconnect/tcpconnect/internal/event"
	"github.com/tcpconnect/tcpconnect/internal/procinfo"
	"github.com/tcpconnect/tcpconnect/receiver/internal/metadata"
)

// benchDNS is a dnsSink that names every destination with two names.
type benchDNS struct{}

func (benchDNS) HandleDNS(*event.DNS, time.Time) {}
func (benchDNS) Lookup(_ netip.Addr, _ dns.Scope, _ time.Time, dst []string) ([]string, string, time.Duration, dns.Source) {
	dst = append(dst, "www.example.com", "example.com-v4.edgesuite.net")
	return dst, dst[0], 1500 * time.Millisecond, dns.SourceProcess
}
func (benchDNS) Stats() dnsStats   { return dnsStats{} }
func (benchDNS) Sweep(_ time.Time) {}

// benchmarkHandle measures the reader's whole per-connect path, raw record to
// plog record: decode, process cache, DNS lookup, record build. The records
// come from two threads of one process to eight destinations, like a busy
// client; the batch is taken every 1024 records.
// With outcome, each connect is tracked and followed by its outcome record
// (established), as the kernel writes them; one iteration handles both.
func benchmarkHandle(b *testing.B, sink dnsSink, outcome bool) {
	var raws [][]byte
	for i := range 8 {
		dst := netip.AddrPortFrom(netip.AddrFrom4([4]byte{10, 0, 1, byte(i)}), 443)
		tid := 4243 + uint32(i%2)
		raws = append(raws, connectRec{hook: event.HookCgroup, dst: dst, bootNs: uint64(i + 1), startNs: 1, tgid: 4242, tid: tid, ppid: 1, comm: []string{"curl", "worker"}[i%2], exe: "curl", tracked: outcome}.raw())
		if outcome {
			raws = append(raws, outcomeRaw(tid, uint64(i+1), uint64(i+2), 1, 0))
		}
	}
	cfg := createDefaultConfig()
	cfg.Outcome.Enabled = outcome
	r := &tcpconnectReceiver{cfg: cfg, set: receivertest.NewNopSettings(metadata.Type), dns: sink}
	rd := &reader{
		r:     r,
		procs: procinfo.New(procinfo.Config{ProcRoot: b.TempDir()}),
		batch: newBatcher("host-1", "v1", createDefaultConfig()),
		mode:  "cgroup",
		names: make([]string, 0, maxNames),
	}
	if outcome {
		rd.wait = newOutcomeWait(cfg.Outcome.MaxWaiting, cfg.Outcome.MaxWait)
	}
	now := time.Now()
	b.ReportAllocs()
	for i := 0; b.Loop(); i++ {
		rd.handle(raws[i%len(raws)], now)
		if outcome {
			i++
			rd.handle(raws[i%len(raws)], now)
		}
		if rd.batch.len() == 1024 {
			rd.batch.take()
		}
	}
	if outcome && (rd.c.outcomeUnmatched != 0 || rd.wait.len() != 0) {
		b.Fatalf("%d outcomes unmatched, %d records waiting", rd.c.outcomeUnmatched, rd.wait.len())
	}
	if rd.c.decodeErrors != 0 {
		b.Fatalf("%d decode errors", rd.c.decodeErrors)
	}
}

func BenchmarkHandle(b *testing.B) {
	b.Run("no_dns", func(b *testing.B) { benchmarkHandle(b, nil, false) })
	b.Run("names", func(b *testing.B) { benchmarkHandle(b, benchDNS{}, false) })
	b.Run("names_outcome", func(b *testing.B) { benchmarkHandle(b, benchDNS{}, true) })
}
