package tcpconnectreceiver

import (
	"time"

	"github.com/tcpconnect/tcpconnect/bpf"
	"github.com/tcpconnect/tcpconnect/dns"
	"github.com/tcpconnect/tcpconnect/internal/event"
	"github.com/tcpconnect/tcpconnect/internal/procinfo"
)

// maxNames bounds the names buffer handed to the DNS correlator.
const maxNames = 64

// emitter names connect records (their process and DNS names) and adds
// them to the batch. It is used by the reader goroutine only.
type emitter struct {
	dns   dnsSink // nil when dns.enabled is false
	procs *procinfo.Cache
	batch *batcher
	agg   *aggregation // nil when aggregation.enabled is false
	names []string     // the buffer Lookup fills
	c     *counts      // the reader's
}

// process returns the process info of connect c, read now.
func (e *emitter) process(c *event.Connect, now time.Time) *procinfo.Info {
	return e.procs.Lookup(procinfo.Key{PID: c.TGID, StartTimeNs: c.StartTimeNs}, c.Exe(), c.Comm(), c.UID, c.CgroupID, now)
}

// newProcess returns the process info of connect c when its process has no
// resource in the batch, nil when it has: later records of a process in a
// batch share the resource its first one made.
func (e *emitter) newProcess(c *event.Connect, now time.Time) *procinfo.Info {
	if e.batch.hasProcess(procinfo.Key{PID: c.TGID, StartTimeNs: c.StartTimeNs}) {
		return nil
	}
	return e.process(c, now)
}

// lookup returns the names c's destination was resolved from at time ts.
func (e *emitter) lookup(c *event.Connect, ts time.Time) lookup {
	var l lookup
	if e.dns != nil {
		scope := dns.Scope{NetNS: c.NetNS, TGID: c.TGID, CgroupID: c.CgroupID}
		l.names, l.best, l.age, l.source = e.dns.Lookup(c.Dst, scope, ts, e.names[:0])
	}
	return l
}

// emit names connect c and adds its log record, with outcome res, to the
// batch. info may be nil when the process has a resource in the batch.
func (e *emitter) emit(c *event.Connect, info *procinfo.Info, res outcomeResult, ts, now time.Time) {
	l := e.lookup(c, ts)
	if e.agg != nil && c.AggFirst && e.dns != nil {
		e.agg.remember(c, l)
	}
	if len(l.names) > 0 {
		e.c.named++
	} else {
		e.c.unnamed++
	}
	e.batch.add(c, info, l, res, ts, now)
}

// summary adds the summary record of one aggregation key, whose first
// connect c was at first and last connect at last: the first record's
// attributes and names, the count, and the first and last times.
func (e *emitter) summary(c *event.Connect, s *bpf.AggregateSummary, first, last, now time.Time) {
	l, ok := e.agg.first(c)
	if !ok {
		// Its first record was not sent yet (or found the ring full): the
		// names the cache gives for the first connect's time.
		l = e.lookup(c, first)
	}
	e.batch.addSummary(c, e.newProcess(c, now), l, s, e.agg.outcomeKeys, first, last, now)
	e.c.summaries++
	e.c.aggregated += int64(s.Count)
}
