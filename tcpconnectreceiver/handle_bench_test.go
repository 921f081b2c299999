package tcpconnectreceiver

import (
	"net/netip"
	"testing"
	"time"

	"go.opentelemetry.io/collector/pdata/pcommon"
	"go.opentelemetry.io/collector/pdata/plog"

	"github.com/tcpconnect/tcpconnect/dns"
	"github.com/tcpconnect/tcpconnect/internal/event"
)

// benchDNS is a dnsSink that names every destination with two names.
type benchDNS struct{}

func (benchDNS) HandleDNS(*event.DNS, time.Time) {}
func (benchDNS) Lookup(_ netip.Addr, _ dns.Scope, _ time.Time, dst []string) ([]string, string, time.Duration, dns.Source) {
	dst = append(dst, "www.example.com", "example.com-v4.edgesuite.net")
	return dst, dst[0], 1500 * time.Millisecond, dns.SourceProcess
}
func (benchDNS) Stats() dns.Stats  { return dns.Stats{} }
func (benchDNS) Sweep(_ time.Time) {}

// benchmarkHandle measures the reader's whole per-connect path, raw record to
// plog record: decode, process cache, DNS lookup, record build, on
// allocsReader's records; the batch is taken every 1024 records. With
// outcome, one iteration handles a connect and its outcome.
func benchmarkHandle(b *testing.B, sink dnsSink, outcome bool) {
	rd, batch, raws := allocsReader(b, sink, outcome)
	now := time.Now()
	b.ReportAllocs()
	for i := 0; b.Loop(); i++ {
		rd.handle(raws[i%len(raws)], now)
		if outcome {
			i++
			rd.handle(raws[i%len(raws)], now)
		}
		if batch.len() == 1024 {
			batch.take()
		}
	}
	if outcome && (rd.c.outcomeUnmatched != 0 || rd.join.q.len() != 0) {
		b.Fatalf("%d outcomes unmatched, %d records waiting", rd.c.outcomeUnmatched, rd.join.q.len())
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

// BenchmarkRecordFloor builds the record of BenchmarkHandle/names_outcome
// (the default mode: outcome on, two DNS names) from constants through the
// public pdata API and nothing else: no decoding, no caches, no outcome
// queue (the attach mode is a scope attribute, not the record's). It is the floor the receiver's per-record cost cannot go below
// while it builds plog records with that API: one allocation per attribute
// value, three for the names slice, one per log record and one for its
// attribute slice, and the garbage collection they cause.
func BenchmarkRecordFloor(b *testing.B) {
	ld := plog.NewLogs()
	recs := ld.ResourceLogs().AppendEmpty().ScopeLogs().AppendEmpty().LogRecords()
	b.ReportAllocs()
	for i := 0; b.Loop(); i++ {
		lr := recs.AppendEmpty()
		lr.SetEventName(EventName)
		lr.SetSeverityNumber(plog.SeverityNumberInfo)
		lr.SetSeverityText(severityText)
		lr.SetTimestamp(pcommon.Timestamp(i))
		lr.SetObservedTimestamp(pcommon.Timestamp(i))
		attrs := lr.Attributes()
		attrs.EnsureCapacity(14)
		attrs.PutStr(attrNetTransport, "tcp")
		attrs.PutStr(attrNetType, "ipv4")
		attrs.PutStr(attrNetPeerAddress, "10.0.1.3")
		attrs.PutInt(attrNetPeerPort, 443)
		attrs.PutStr(attrServerAddress, "www.example.com")
		attrs.PutInt(attrServerPort, 443)
		attrs.PutInt(attrThreadID, 4243)
		attrs.PutStr(attrThreadName, "worker")
		names := attrs.PutEmptySlice(attrDNSNames)
		names.EnsureCapacity(2)
		names.AppendEmpty().SetStr("www.example.com")
		names.AppendEmpty().SetStr("example.com-v4.edgesuite.net")
		attrs.PutDouble(attrDNSNameAge, 1.5)
		attrs.PutStr(attrDNSSource, "process")
		attrs.PutStr(attrOutcome, "established")
		attrs.PutDouble(attrConnectTime, 0.001)
		if recs.Len() == 1024 {
			ld = plog.NewLogs()
			recs = ld.ResourceLogs().AppendEmpty().ScopeLogs().AppendEmpty().LogRecords()
		}
	}
}
