package tcpconnectreceiver

import (
	"time"

	"go.opentelemetry.io/collector/pdata/plog"

	"github.com/tcpconnect/tcpconnect/bpf"
	"github.com/tcpconnect/tcpconnect/internal/event"
	"github.com/tcpconnect/tcpconnect/internal/procinfo"
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
	// summaryExtraBytes bounds what a summary adds to a record (record_bound.go).
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
