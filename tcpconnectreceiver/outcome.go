package tcpconnectreceiver

import (
	"strings"
	"time"

	"github.com/tcpconnect/tcpconnect/internal/event"
	"github.com/tcpconnect/tcpconnect/internal/firstbytes"
	"github.com/tcpconnect/tcpconnect/internal/procinfo"
)

// outcomeResult is what a log record says about its connect's outcome.
type outcomeResult struct {
	kind     event.Kind    // event.KindNone: outcome tracking is off
	errType  string        // error.type; "" unless the connect failed
	duration time.Duration // connect to outcome; 0 when pending
	fb       *fbResult     // what the client's first bytes named; nil when none
}

// fbResult is what the first bytes a client sent name: a record carries it
// (outcomeResult.fb). Its strings are interned by the join and shared, its
// ALPN slice is shared and read-only.
type fbResult struct {
	kind     firstbytes.Kind // KindTLS or KindHTTP; KindOther: nothing to report
	name     string          // the server name (SNI, Host), lowercased, no trailing dot; "" none
	nameIsIP bool            // name is an HTTP Host's IP literal, not a DNS name
	alpn     []string        // the ALPN protocols offered (TLS)
	ech      bool            // the ClientHello carries encrypted_client_hello
}

// clientName returns the DNS name the client sent, "" when none (or an IP literal).
func (f *fbResult) clientName() string {
	if f == nil || f.nameIsIP {
		return ""
	}
	return f.name
}

// pendingResult is the result of a record that went out without an outcome.
func pendingResult() outcomeResult { return outcomeResult{kind: event.KindPending} }

// maxErrorTypeBytes bounds error.type: errno names are at most 15 bytes
// (ENOTRECOVERABLE, EPROTONOSUPPORT).
const maxErrorTypeBytes = 32

// maxOutcomeResult is the result with the longest attributes, for the
// record size bound (record_bound.go).
func maxOutcomeResult() outcomeResult {
	return outcomeResult{kind: event.KindUnreachable, errType: strings.Repeat("E", maxErrorTypeBytes), duration: time.Second}
}

// resultOf is the result of connect c whose outcome is o.
func resultOf(c *event.Connect, o *event.Outcome) outcomeResult {
	r := outcomeResult{kind: o.Kind, errType: o.ErrorType()}
	if o.BootTimeNs > c.BootTimeNs {
		r.duration = time.Duration(o.BootTimeNs - c.BootTimeNs)
	}
	return r
}

// waitingRecord is a connect record waiting for its outcome, with what the
// reader learnt about it when it was read (its process is looked up then:
// a short-lived client may be gone by the time the outcome comes).
type waitingRecord struct {
	conn event.Connect
	info *procinfo.Info
	ts   time.Time // the connect's kernel time, wall clock
	read time.Time // when it was read: its wait starts here
	done bool      // its outcome came and it was sent; the slot waits to be popped

	// An established connect's record waits on for its first bytes
	// (first_bytes): its outcome is kept here meanwhile.
	res     outcomeResult
	outcome bool     // res is its outcome; it waits for its first bytes
	fb      fbResult // what its first bytes named, once fbDone
	fbDone  bool     // its first bytes came (or will not)
	asm     int32    // 1 + its reassembly buffer in the join's pool; 0: none
}

// outcomeWait is the bounded queue of connect records waiting for their
// outcome, used by the reader goroutine only. Records are queued in read
// order in a ring of fixed slots (allocated once). A record whose outcome
// comes is sent at once and its slot marked done; the reader pops the front
// once per poll tick, sending a record that waited max_wait as pending. No
// timers and no goroutines.
//
// Most outcomes come within a few records of their connect (a refused or
// local connect ends before the next one starts), so the newest recent
// slots are not indexed: an outcome is looked for among them first, newest
// first, and a slot goes into index only once recent newer ones were
// pushed after it while it still waits.
type outcomeWait struct {
	slots   []waitingRecord
	head, n int
	recent  int // the newest slots, not in index: at most maxRecent
	index   *waitIndex
	maxWait time.Duration
}

// maxRecent is how many of the newest waiting records are found by a scan
// rather than through the index.
const maxRecent = 8

func newOutcomeWait(size int, maxWait time.Duration) *outcomeWait {
	return &outcomeWait{
		slots:   make([]waitingRecord, size),
		index:   newWaitIndex(size),
		maxWait: maxWait,
	}
}

// full reports whether every slot is taken.
func (q *outcomeWait) full() bool { return q.n == len(q.slots) }

// len returns the number of slots taken (waiting or done, not yet popped).
func (q *outcomeWait) len() int { return q.n }

// push queues connect c; the queue must not be full.
func (q *outcomeWait) push(c *event.Connect, info *procinfo.Info, ts, now time.Time) {
	if q.recent == maxRecent {
		// The oldest recent slot still waits for its outcome: index it.
		i := q.at(q.n - q.recent)
		if s := &q.slots[i]; !s.done {
			q.index.put(waitKey{s.conn.TID, s.conn.BootTimeNs}, i)
		}
		q.recent--
	}
	s := &q.slots[q.at(q.n)]
	s.conn, s.info, s.ts, s.read, s.done = *c, info, ts, now, false
	s.res, s.outcome, s.fb, s.fbDone, s.asm = outcomeResult{}, false, fbResult{}, false, 0
	q.n++
	q.recent++
}

// at returns the ring index of the i-th slot taken, from the front.
func (q *outcomeWait) at(i int) int { return (q.head + i) % len(q.slots) }

// take returns the waiting record of outcome o and marks it done, or nil
// when none waits (it was sent as pending, or its connect record was lost).
func (q *outcomeWait) take(o *event.Outcome) *waitingRecord {
	i, ok := q.find(o.TID, o.ConnectBootNs)
	if !ok {
		return nil
	}
	q.finish(i)
	return &q.slots[i]
}

// find returns the slot of the record of connect (tid, bootNs) that still
// waits, leaving it waiting.
func (q *outcomeWait) find(tid uint32, bootNs uint64) (int, bool) {
	if q.recent > 0 {
		for i, j := q.at(q.n-1), 0; j < q.recent; j++ {
			s := &q.slots[i]
			if s.conn.BootTimeNs == bootNs && s.conn.TID == tid && !s.done {
				return i, true
			}
			if i == 0 {
				i = len(q.slots)
			}
			i--
		}
	}
	return q.index.get(waitKey{tid, bootNs})
}

// finish marks waiting slot i done (its record is sent) and takes it out of
// the index when it is there.
func (q *outcomeWait) finish(i int) {
	s := &q.slots[i]
	s.done = true
	if pos := (i - q.head + len(q.slots)) % len(q.slots); pos < q.n-q.recent {
		q.index.remove(waitKey{s.conn.TID, s.conn.BootTimeNs})
	}
}

// front returns the oldest slot taken, or nil when the queue is empty.
func (q *outcomeWait) front() *waitingRecord {
	if q.n == 0 {
		return nil
	}
	return &q.slots[q.head]
}

// pop frees the oldest slot (after the caller sent it, if it was waiting).
func (q *outcomeWait) pop() {
	s := &q.slots[q.head]
	if q.recent == q.n {
		q.recent-- // the front is a recent slot: not in index
	} else if !s.done {
		k := waitKey{s.conn.TID, s.conn.BootTimeNs}
		if i, ok := q.index.get(k); ok && i == q.head {
			q.index.remove(k)
		}
	}
	s.info = nil // let the process info go
	q.head = (q.head + 1) % len(q.slots)
	q.n--
}

// expired reports whether s has waited its time at now.
func (q *outcomeWait) expired(s *waitingRecord, now time.Time) bool {
	return now.Sub(s.read) >= q.maxWait
}
