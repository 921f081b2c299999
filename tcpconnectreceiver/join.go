package tcpconnectreceiver

import (
	"context"
	"time"

	"github.com/tcpconnect/tcpconnect/internal/event"
	"github.com/tcpconnect/tcpconnect/internal/procinfo"
)

// join holds each connect record the kernel follows until its outcome
// record comes (outcome.enabled), and sends it with that outcome, or as
// pending when it waited outcome.max_wait or the queue had no room. It is
// used by the reader goroutine only.
type join struct {
	q     *outcomeWait
	out   *emitter
	flush *flusher
	c     *counts // the reader's
}

// newJoin returns the join of outcome.max_waiting records, each waiting at
// most outcome.max_wait, which sends through out and flush and counts in c.
func newJoin(cfg OutcomeConfig, out *emitter, flush *flusher, c *counts) *join {
	return &join{q: newOutcomeWait(cfg.MaxWaiting, cfg.MaxWait), out: out, flush: flush, c: c}
}

// connect queues connect c until its outcome comes. Its process is looked
// up now, while it surely lives. A record the kernel does not follow goes
// out at once as pending; when the queue is full, its oldest record goes
// out as pending to make room.
func (j *join) connect(c *event.Connect, ts, now time.Time) {
	info := j.out.process(c, now)
	if !c.Tracked {
		j.pending(c, info, ts, now)
		return
	}
	q := j.q
	if q.full() {
		if s := q.front(); !s.done {
			j.c.outcomeWaitFull++
			j.pending(&s.conn, s.info, s.ts, now)
		}
		q.pop()
	}
	q.push(c, info, ts, now)
}

// outcome sends the record that waited for outcome o.
func (j *join) outcome(o *event.Outcome, now time.Time) {
	q := j.q
	s := q.take(o)
	if s == nil {
		j.c.outcomeUnmatched++
		return
	}
	res := resultOf(&s.conn, o)
	if res.kind == event.KindPending {
		j.c.outcomePending++ // its state change was not reported
	}
	j.out.emit(&s.conn, s.info, res, s.ts, now)
	for f := q.front(); f != nil && f.done; f = q.front() {
		q.pop()
	}
}

// expire pops the records at the front of the queue that are sent or have
// waited outcome.max_wait (all of them when all is set), sending the
// waiting ones as pending.
func (j *join) expire(ctx context.Context, now time.Time, all bool) {
	q := j.q
	for s := q.front(); s != nil; s = q.front() {
		if !s.done {
			if !all && !q.expired(s, now) {
				return
			}
			j.pending(&s.conn, s.info, s.ts, now)
		}
		q.pop()
		j.flush.flushIfFull(ctx)
	}
}

// pending sends connect c without an outcome (pending) and counts it.
func (j *join) pending(c *event.Connect, info *procinfo.Info, ts, now time.Time) {
	j.c.outcomePending++
	j.out.emit(c, info, pendingResult(), ts, now)
}
