package tcpconnectreceiver

import (
	"context"
	"time"

	"github.com/tcpconnect/tcpconnect/internal/event"
	"github.com/tcpconnect/tcpconnect/internal/procinfo"
)

// join holds each connect record the kernel follows until its outcome
// record comes (outcome.enabled), and sends it with that outcome, or as
// pending when it waited outcome.max_wait or the queue had no room. With
// first bytes on, an established connect's record waits on, in the same
// slot and within the same max_wait, until its first bytes are complete
// (or the socket closed before sending them). It is used by the reader
// goroutine only.
type join struct {
	q     *outcomeWait
	fb    *fbJoin // nil when first bytes are off
	out   *emitter
	flush *flusher
	c     *counts // the reader's
}

// newJoin returns the join of outcome.max_waiting records, each waiting at
// most outcome.max_wait, which sends through out and flush and counts in c.
func newJoin(cfg OutcomeConfig, fb FirstBytesConfig, out *emitter, flush *flusher, c *counts) *join {
	return &join{q: newOutcomeWait(cfg.MaxWaiting, cfg.MaxWait), fb: newFBJoin(fb, cfg.MaxWaiting), out: out, flush: flush, c: c}
}

// connect queues connect c until its outcome comes. Its process is looked
// up now, while it surely lives. A record the kernel does not follow goes
// out at once as pending; when the queue is full, its oldest record goes
// out (as pending, or with its outcome when it waited for its first bytes)
// to make room.
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
			j.giveUp(s, now)
		}
		q.pop()
	}
	q.push(c, info, ts, now)
}

// outcome sends the record that waited for outcome o, or keeps an
// established one waiting for its first bytes.
func (j *join) outcome(o *event.Outcome, now time.Time) {
	q := j.q
	i, ok := q.find(o.TID, o.ConnectBootNs)
	if !ok || q.slots[i].outcome {
		j.c.outcomeUnmatched++
		return
	}
	s := &q.slots[i]
	res := resultOf(&s.conn, o)
	if res.kind == event.KindPending {
		j.c.outcomePending++ // its state change was not reported
	}
	if j.fb != nil && res.kind == event.KindEstablished && !s.fbDone {
		s.res, s.outcome = res, true
		return
	}
	if s.fbDone {
		res.fb = &s.fb
	}
	j.send(i, res, now)
}

// firstBytes takes a piece of a waiting record's first bytes, and sends the
// record when they are complete and its outcome came.
func (j *join) firstBytes(f *event.FirstBytes, now time.Time) {
	q := j.q
	i, ok := q.find(f.TID, f.ConnectBootNs)
	if !ok || j.fb == nil || q.slots[i].fbDone {
		j.c.fbUnmatched++
		return
	}
	s := &q.slots[i]
	if !j.fb.add(s, f, j.c) || !s.outcome {
		return
	}
	res := s.res
	res.fb = &s.fb
	j.send(i, res, now)
}

// send sends the record of waiting slot i with res, marks it done and pops
// the done slots at the front.
func (j *join) send(i int, res outcomeResult, now time.Time) {
	q := j.q
	s := &q.slots[i]
	if s.asm != 0 {
		j.fb.finish(s, j.c) // pieces came, but the connect failed: free the buffer
	}
	j.out.emit(&s.conn, s.info, res, s.ts, now)
	q.finish(i)
	for f := q.front(); f != nil && f.done; f = q.front() {
		q.pop()
	}
}

// giveUp sends waiting record s, which waited its time (or must make room):
// with its outcome and what came of its first bytes when it waited for
// them, else as pending. The caller pops it.
func (j *join) giveUp(s *waitingRecord, now time.Time) {
	if s.asm != 0 || (s.outcome && !s.fbDone) {
		j.fb.finish(s, j.c) // truncated, or none: nothing came within max_wait
	}
	res := s.res
	if !s.outcome {
		res = pendingResult()
		j.c.outcomePending++
	}
	if s.fbDone {
		res.fb = &s.fb
	}
	j.out.emit(&s.conn, s.info, res, s.ts, now)
}

// expire pops the records at the front of the queue that are sent or have
// waited outcome.max_wait (all of them when all is set), sending the
// waiting ones.
func (j *join) expire(ctx context.Context, now time.Time, all bool) {
	q := j.q
	for s := q.front(); s != nil; s = q.front() {
		if !s.done {
			if !all && !q.expired(s, now) {
				return
			}
			j.giveUp(s, now)
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
