package dns

import (
	"hash/maphash"
	"net/netip"
	"time"
)

// Tracker defaults.
const (
	// DefaultQueryTimeout is how long a query waits for its answer.
	// Stub resolvers give up after 5 s per try (glibc) and recursive ones
	// after about 10-30 s; an answer later than 30 s is not used by anyone.
	DefaultQueryTimeout = 30 * time.Second
	// DefaultMaxQueries bounds the outstanding queries. A host resolving
	// 1000 names per second with 30 s timeouts and no answers at all would
	// need 30000; answered queries leave the table at once.
	DefaultMaxQueries = 16384

	// maxPendingAnswers bounds the answers one tracked query accepts.
	maxPendingAnswers = 16
	// dnsPort is the DNS server port.
	dnsPort = 53
)

// Scope is the context a name was resolved in, or a connect was made from.
// A zero field means unknown and matches nothing.
type Scope struct {
	// NetNS is the network namespace inode number.
	NetNS uint32
	// TGID is the process (thread group) id.
	TGID uint32
	// CgroupID is the cgroup v2 id.
	CgroupID uint64
}

// Flow is the 5-tuple of a DNS exchange, seen from the client.
type Flow struct {
	// Client is the address and port the query left from.
	Client netip.AddrPort
	// Server is the address and port the query went to.
	Server netip.AddrPort
	// Proto is the transport protocol: 17 (UDP) or 6 (TCP).
	Proto uint8
}

// Query is an outstanding query as recorded by [Tracker.Track].
type Query struct {
	// Scope is the sender's scope; an accepted answer inherits it.
	Scope Scope
	// SockCookie is the sending socket's cookie, 0 when unknown.
	SockCookie uint64
	// At is when the query was seen, in Unix nanoseconds.
	At int64
}

// queryKey identifies an outstanding query: by socket and id when the
// socket cookie is known (flow left zero: the addresses may be rewritten by
// NAT between the query and the answer), by flow and id otherwise.
type queryKey struct {
	flow   Flow
	cookie uint64
	id     uint16
}

// key returns the key of a query or answer of the given id, flow and
// socket cookie.
func key(id uint16, flow Flow, cookie uint64) queryKey {
	if cookie != 0 {
		return queryKey{flow: Flow{Proto: flow.Proto}, cookie: cookie, id: id}
	}
	return queryKey{flow: normFlow(flow), id: id}
}

type pending struct {
	Query
	flow  Flow   // the query's flow, normalized
	qname uint64 // hash of the question name
	seq   uint64 // matches the ring slot that expires it
	n     uint32 // answers still expected (same key sent again)
}

type ringSlot struct {
	key queryKey
	seq uint64
	at  int64
}

// TrackerStats are the Tracker's counters.
type TrackerStats struct {
	// Tracked counts queries recorded.
	Tracked uint64
	// Outstanding is the number of queries waiting for an answer.
	Outstanding int
	// Expired counts queries that got no answer in time.
	Expired uint64
	// Evicted counts queries dropped unanswered because the table was full.
	Evicted uint64
	// Matched counts answers matched to a query.
	Matched uint64
	// Unsolicited counts answers with no matching query: wrong socket, id
	// or question name (or, when the socket is unknown, addresses and
	// ports), or too late.
	Unsolicited uint64
	// Translated counts matched answers whose addresses or ports are not
	// the query's mirrored: NAT rewrote the exchange (Docker's embedded
	// resolver, a DNAT'd service IP). Matching by socket still found them.
	Translated uint64
}

// Tracker records outgoing queries and matches answers to them. An answer
// matches when an unexpired query left the socket the answer arrived at
// (same socket cookie) with the same id and the same question name
// (case-insensitively; the Parser lower-cases), and either mirrors the
// query's addresses and ports or comes from port 53. NAT may rewrite the
// addresses between the query (captured after the OUTPUT hooks: Docker's
// 127.0.0.11:53 leaves for another port, a service IP for its backend) and
// the answer (captured after NAT is undone, from the address and port 53
// the application asked); port 53 is privileged, so an unprivileged local
// process cannot send a translated-looking answer. (A connected UDP socket
// gets answers from its peer only; the kernel checks that.) When the
// socket cookie is unknown (0), the answer's source and destination must
// mirror the query's, with the same transport.
//
// Queries expire after a timeout and are bounded in number: when the table
// is full the oldest query is dropped. Expiry uses a FIFO ring in arrival
// order, so Track and Match cost O(1) and do not allocate in steady state.
type Tracker struct {
	timeout int64
	m       map[queryKey]*pending
	free    []*pending
	ring    []ringSlot // grows up to max slots
	max     int
	head, n int
	seq     uint64
	seed    maphash.Seed
	stats   TrackerStats
}

// NewTracker returns a Tracker with the given query timeout and bound on
// outstanding queries; zero or negative values select the defaults.
func NewTracker(timeout time.Duration, maxQueries int) *Tracker {
	if timeout <= 0 {
		timeout = DefaultQueryTimeout
	}
	if maxQueries <= 0 {
		maxQueries = DefaultMaxQueries
	}
	return &Tracker{
		timeout: int64(timeout),
		m:       make(map[queryKey]*pending),
		max:     maxQueries,
		seed:    maphash.MakeSeed(),
	}
}

// Track records a query with the given id, flow and normalized question
// name, sent at now. A query sent again with the same id, flow and name
// (a retransmission, or A and AAAA queries sharing an id) waits for one
// more answer and restarts its timeout.
func (t *Tracker) Track(id uint16, flow Flow, qname []byte, q Query, now time.Time) {
	at := now.UnixNano()
	t.expire(at)
	k := key(id, flow, q.SockCookie)
	h := maphash.Bytes(t.seed, qname)
	q.At = at
	t.stats.Tracked++
	// Push first: a full ring drops its oldest query, which may be k's.
	seq := t.push(k, at)
	p, ok := t.m[k]
	switch {
	case ok && p.qname == h:
		p.n = min(p.n+1, maxPendingAnswers)
	case ok:
		p.qname, p.n = h, 1
	default:
		p = t.alloc()
		t.m[k] = p
		p.qname, p.n = h, 1
	}
	p.Query, p.seq, p.flow = q, seq, normFlow(flow)
}

// Match looks for the query an answer from server to client answers (flow
// is given from the client's side, as for Track). On a match it returns the
// query, consumes it, and reports true; otherwise it counts the answer as
// unsolicited. sockCookie is the receiving socket's cookie, 0 when unknown;
// a query tracked with a cookie is found only through that cookie.
func (t *Tracker) Match(id uint16, flow Flow, qname []byte, sockCookie uint64, now time.Time) (Query, bool) {
	at := now.UnixNano()
	t.expire(at)
	k := key(id, flow, sockCookie)
	p, ok := t.m[k]
	if !ok || p.qname != maphash.Bytes(t.seed, qname) {
		t.stats.Unsolicited++
		return Query{}, false
	}
	if k.cookie != 0 && normFlow(flow) != p.flow {
		// Rewritten by NAT, or forged: a real answer to a socket that was
		// pointed at port 53 comes from port 53 once NAT is undone.
		if flow.Server.Port() != dnsPort {
			t.stats.Unsolicited++
			return Query{}, false
		}
		t.stats.Translated++
	}
	q := p.Query
	if p.n--; p.n == 0 {
		t.remove(k, p)
	}
	t.stats.Matched++
	return q, true
}

// Stats returns the Tracker's counters.
func (t *Tracker) Stats() TrackerStats {
	s := t.stats
	s.Outstanding = len(t.m)
	return s
}

// push appends k to the expiry ring, growing it up to max slots and then
// dropping the oldest slot when full.
func (t *Tracker) push(k queryKey, at int64) uint64 {
	if t.n == len(t.ring) {
		if len(t.ring) < t.max {
			t.grow()
		} else {
			t.pop(false)
		}
	}
	t.seq++
	t.ring[(t.head+t.n)%len(t.ring)] = ringSlot{key: k, seq: t.seq, at: at}
	t.n++
	return t.seq
}

// expire drops the queries older than the timeout.
func (t *Tracker) expire(now int64) {
	for t.n > 0 && now-t.ring[t.head].at >= t.timeout {
		t.pop(true)
	}
}

// pop removes the oldest ring slot and its query, if the slot is still the
// query's latest.
func (t *Tracker) pop(expired bool) {
	s := &t.ring[t.head]
	if p, ok := t.m[s.key]; ok && p.seq == s.seq {
		t.remove(s.key, p)
		if expired {
			t.stats.Expired++
		} else {
			t.stats.Evicted++
		}
	}
	*s = ringSlot{}
	t.head = (t.head + 1) % len(t.ring)
	t.n--
}

// grow doubles the ring (at least 64 slots, at most max), keeping order.
func (t *Tracker) grow() {
	ring := make([]ringSlot, min(max(2*len(t.ring), 64), t.max))
	for i := range t.n {
		ring[i] = t.ring[(t.head+i)%len(t.ring)]
	}
	t.ring, t.head = ring, 0
}

func (t *Tracker) alloc() *pending {
	if n := len(t.free); n > 0 {
		p := t.free[n-1]
		t.free = t.free[:n-1]
		return p
	}
	return new(pending)
}

func (t *Tracker) remove(k queryKey, p *pending) {
	delete(t.m, k)
	t.free = append(t.free, p)
}

func normFlow(f Flow) Flow {
	f.Client = netip.AddrPortFrom(f.Client.Addr().Unmap(), f.Client.Port())
	f.Server = netip.AddrPortFrom(f.Server.Addr().Unmap(), f.Server.Port())
	return f
}
