package tcpconnectreceiver

import (
	"context"

	"go.opentelemetry.io/otel/attribute"
	"go.opentelemetry.io/otel/metric"
	"go.uber.org/zap"

	"github.com/tcpconnect/tcpconnect/bpf"
	"github.com/tcpconnect/tcpconnect/dns"
	"github.com/tcpconnect/tcpconnect/tcpconnectreceiver/internal/metadata"
)

// The results of first bytes, counted (receiver_tcpconnect_first_bytes, attribute result).
const (
	fbTLS       = iota // a ClientHello parsed
	fbHTTP             // an HTTP/1.x request head parsed
	fbOther            // neither: not parsed
	fbTruncated        // a well-formed prefix, cut at the bound or the close or max_wait
	fbMalformed        // claims TLS or HTTP but breaks its grammar
	fbNone             // nothing sent: the socket closed, or max_wait passed, first
	fbResults
)

// fbResultNames are the attribute values of the fb* results.
var fbResultNames = [fbResults]string{"tls", "http", "other", "truncated", "malformed", "none"}

// counts are the reader's counters, added to the metrics once per tick so
// that the per-record path does not touch the metrics SDK.
type counts struct {
	connects, named, unnamed, decodeErrors, dnsReceived, dnsIgnored int64
	// outcomePending: records sent without an outcome; outcomeWaitFull: of
	// those, sent early because the wait queue was full; outcomeUnmatched:
	// outcome records that found no waiting connect.
	outcomePending, outcomeWaitFull, outcomeUnmatched int64
	// summaries: aggregation summary records sent; aggregated: the connects
	// they count.
	summaries, aggregated int64
	// sanitized, truncated: string values exported cleaned or cut.
	sanitized, truncated int64
	// fb: first bytes by result (fbTLS...); fbLost: first bytes that could
	// not be put together (no reassembly buffer free, a piece missing);
	// fbUnmatched: pieces that found no record waiting for them.
	fb                  [fbResults]int64
	fbLost, fbUnmatched int64
}

// meter turns the reader's counts and the cumulative counters of the kernel
// and the DNS correlator into the receiver's metrics. It keeps the last
// readings of the cumulative counters, to add their deltas.
type meter struct {
	t       *metadata.TelemetryBuilder
	log     *zap.Logger
	kernel  bpf.Counters
	dnsPrev dns.Stats
}

// addCounts adds the reader's counts.
func (m *meter) addCounts(ctx context.Context, c counts) {
	t := m.t
	addIf(ctx, t.ReceiverTcpconnectConnectsReceived, c.connects)
	addIf(ctx, t.ReceiverTcpconnectConnectsNamed, c.named)
	addIf(ctx, t.ReceiverTcpconnectConnectsUnnamed, c.unnamed)
	addIf(ctx, t.ReceiverTcpconnectDecodeErrors, c.decodeErrors)
	addIf(ctx, t.ReceiverTcpconnectDNSPacketsReceived, c.dnsReceived)
	addIf(ctx, t.ReceiverTcpconnectDNSPacketsIgnored, c.dnsIgnored)
	addIf(ctx, t.ReceiverTcpconnectStringsSanitized, c.sanitized)
	addIf(ctx, t.ReceiverTcpconnectStringsTruncated, c.truncated)
	addIf(ctx, t.ReceiverTcpconnectOutcomesPending, c.outcomePending)
	addIf(ctx, t.ReceiverTcpconnectOutcomeWaitFull, c.outcomeWaitFull)
	addIf(ctx, t.ReceiverTcpconnectOutcomesUnmatched, c.outcomeUnmatched)
	addIf(ctx, t.ReceiverTcpconnectAggregationSummaries, c.summaries)
	addIf(ctx, t.ReceiverTcpconnectConnectsAggregated, c.aggregated)
	for r, n := range c.fb {
		if n > 0 {
			t.ReceiverTcpconnectFirstBytes.Add(ctx, n, metric.WithAttributes(attribute.String("result", fbResultNames[r])))
		}
	}
	addIf(ctx, t.ReceiverTcpconnectFirstBytesLost, c.fbLost)
	addIf(ctx, t.ReceiverTcpconnectFirstBytesUnmatched, c.fbUnmatched)
}

// addKernel adds what the kernel's cumulative counters k gained since the
// last reading, logging lost connect records.
func (m *meter) addKernel(ctx context.Context, k bpf.Counters) {
	t, l, p := m.t, k.Lost, m.kernel.Lost
	if l.Connect > p.Connect {
		n := l.Connect - p.Connect
		t.ReceiverTcpconnectConnectsLost.Add(ctx, int64(n))
		m.log.Warn("Kernel ring buffer full: connect records lost", zap.Uint64("lost", n), zap.Uint64("lost_total", l.Connect))
	}
	addDelta(ctx, t.ReceiverTcpconnectDNSPacketsLost, l.DNS, p.DNS)
	addDelta(ctx, t.ReceiverTcpconnectDNSPacketsCopyFailed, l.DNSCopy, p.DNSCopy)
	addDelta(ctx, t.ReceiverTcpconnectOutcomesLost, l.Outcome, p.Outcome)
	addDelta(ctx, t.ReceiverTcpconnectOutcomesMissed, l.OutcomeMissed, p.OutcomeMissed)
	addDelta(ctx, t.ReceiverTcpconnectFirstBytesLost, l.FirstBytes, p.FirstBytes)
	addDelta(ctx, t.ReceiverTcpconnectConnectsFiltered, k.Filtered, m.kernel.Filtered)
	addDelta(ctx, t.ReceiverTcpconnectAggregationOverflows, k.AggOverflow, m.kernel.AggOverflow)
	addDelta(ctx, t.ReceiverTcpconnectAggregationLateOutcomes, k.AggLateOutcomes, m.kernel.AggLateOutcomes)
	m.kernel = k
}

// addDNS adds what the DNS correlator's cumulative counters s gained since
// the last reading, and records its cache size.
func (m *meter) addDNS(ctx context.Context, s dns.Stats) {
	t, p := m.t, m.dnsPrev
	addDelta(ctx, t.ReceiverTcpconnectDNSAnswersParsed, s.AnswersParsed, p.AnswersParsed)
	addDelta(ctx, t.ReceiverTcpconnectDNSAnswersCached, s.AnswersCached, p.AnswersCached)
	addDelta(ctx, t.ReceiverTcpconnectDNSParseErrors, s.ParseErrors, p.ParseErrors)
	addDelta(ctx, t.ReceiverTcpconnectDNSRecordsMalformed, s.RecordsMalformed, p.RecordsMalformed)
	addDelta(ctx, t.ReceiverTcpconnectDNSPacketsIgnored, s.Ignored, p.Ignored)
	addDelta(ctx, t.ReceiverTcpconnectDNSAnswersUnsolicited, s.Unsolicited, p.Unsolicited)
	addDelta(ctx, t.ReceiverTcpconnectDNSAnswersTranslated, s.AnswersTranslated, p.AnswersTranslated)
	addDelta(ctx, t.ReceiverTcpconnectDNSTCPStreamsAbandoned, s.TCPStreamsAbandoned, p.TCPStreamsAbandoned)
	addDelta(ctx, t.ReceiverTcpconnectDNSCacheEvictions, s.Evictions, p.Evictions)
	t.ReceiverTcpconnectDNSCacheEntries.Record(ctx, int64(s.CacheEntries))
	m.dnsPrev = s
}

// reportAttach records the attach modes left at start and whether the one
// in use was proven.
func reportAttach(t *metadata.TelemetryBuilder, attempts []bpf.Attempt) {
	ctx := context.Background()
	for _, a := range attempts {
		mode := metric.WithAttributes(attribute.String("mode", string(a.Mode)))
		switch {
		case a.Err != nil:
			t.ReceiverTcpconnectAttachModesLeft.Add(ctx, 1, mode)
		case a.ProofSkipped != "":
			t.ReceiverTcpconnectAttachProven.Record(ctx, 0, mode)
		default:
			t.ReceiverTcpconnectAttachProven.Record(ctx, 1, mode)
		}
	}
}

// addIf adds v to the counter when there is something to add.
func addIf(ctx context.Context, c metric.Int64Counter, v int64) {
	if v > 0 {
		c.Add(ctx, v)
	}
}

// addDelta adds what cumulative counter now gained over prev (nothing when
// it did not grow).
func addDelta(ctx context.Context, c metric.Int64Counter, now, prev uint64) {
	if now > prev {
		c.Add(ctx, int64(now-prev))
	}
}
