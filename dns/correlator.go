package dns

import (
	"errors"
	"fmt"
	"net/netip"
	"time"

	"golang.org/x/net/dns/dnsmessage"

	"github.com/tcpconnect/tcpconnect/internal/event"
)

// Transport protocol numbers of Packet.L4Proto.
const (
	ProtoTCP = 6
	ProtoUDP = 17
)

// Packet is one captured DNS packet, as the kernel's record decodes
// (internal/event.DNS: the one type for it). BootTimeNs is not used here:
// the caller passes it, converted, as Handle's now.
type Packet = event.DNS

// Stats are the Correlator's counters, for the receiver to export.
type Stats struct {
	// Packets counts packets handled.
	Packets uint64
	// QueriesTracked counts queries recorded for matching.
	QueriesTracked uint64
	// QueriesOutstanding is the number of queries waiting for an answer.
	QueriesOutstanding int
	// QueriesExpired counts queries that got no answer within the timeout.
	QueriesExpired uint64
	// QueriesEvicted counts queries dropped because too many were waiting.
	QueriesEvicted uint64
	// AnswersParsed counts answers arriving at a local socket and parsed,
	// whether or not they match a query.
	AnswersParsed uint64
	// AnswersAccepted counts answers matched to a query.
	AnswersAccepted uint64
	// AnswersCached counts accepted answers that put at least one address
	// into the cache (a successful answer with A or AAAA records for its
	// chain); an NXDOMAIN or an answer without addresses is accepted but
	// not cached.
	AnswersCached uint64
	// AddressesCached counts the (address, chain) insertions of the cached
	// answers: one per A or AAAA record.
	AddressesCached uint64
	// Unsolicited counts answers ignored because no query matched them.
	Unsolicited uint64
	// AnswersTranslated counts accepted answers whose addresses or ports
	// are not their query's mirrored: NAT between the socket and the
	// server (Docker's 127.0.0.11, a DNAT'd service IP). They are matched
	// by socket, id and question.
	AnswersTranslated uint64
	// ParseErrors counts messages that could not be parsed, and records
	// that are not IPv4/IPv6 UDP/TCP.
	ParseErrors uint64
	// RecordsMalformed counts answer records skipped because their rdata
	// length does not fit their type (see [Message.Malformed]).
	RecordsMalformed uint64
	// Truncated counts messages parsed only in part: the capture was cut,
	// or a TCP stream was abandoned.
	Truncated uint64
	// TCPStreamsAbandoned counts DNS-over-TCP messages split across
	// segments that could not be put together: a segment was not captured
	// or cut, the message was longer than 16 KiB, no segment came for 30
	// s, or 256 other streams were waiting (see stream.go). What arrived
	// was parsed as far as it went.
	TCPStreamsAbandoned uint64
	// Ignored counts messages that are neither a query leaving nor an
	// answer arriving: the traffic of DNS servers running on this host.
	Ignored uint64
	// CacheEntries is the number of (IP, scope) cache entries.
	CacheEntries int
	// CacheNames is the number of distinct names in the cache.
	CacheNames int
	// CacheNamespaces is the number of network namespaces with cache
	// entries.
	CacheNamespaces int
	// Evictions counts cache entries evicted to make room.
	Evictions uint64
	// Expired counts cache entries removed because all names expired.
	Expired uint64
	// NamesDropped counts names pushed out of a full entry.
	NamesDropped uint64
}

// Correlator turns captured DNS packets into cache entries: it tracks the
// queries that leave local sockets, accepts only the answers that match
// one, and inserts the accepted answers' names, in the query's scope, into
// its Cache. Not safe for concurrent use.
type Correlator struct {
	parser      Parser
	tracker     *Tracker
	cache       *Cache
	stats       Stats
	streams     map[streamKey]*stream // TCP messages waiting for their next segment
	freeStreams []*stream
}

// New returns a Correlator configured by cfg. It validates cfg as if it
// were enabled. Queries wait DefaultQueryTimeout for their answer, at most
// DefaultMaxQueries at a time.
func New(cfg Config) (*Correlator, error) {
	cfg.Enabled = true
	if err := cfg.Validate(); err != nil {
		return nil, fmt.Errorf("dns: invalid config: %w", err)
	}
	return &Correlator{
		tracker: NewTracker(DefaultQueryTimeout, DefaultMaxQueries),
		cache:   NewCache(cfg),
	}, nil
}

// Handle processes one captured packet at now. A query leaving a local
// socket is tracked; an answer arriving at one is matched against the
// tracked queries and, when it matches and succeeded, its A/AAAA records
// are cached under the question name and CNAME chain, in the scope
// (network namespace, cgroup, process) of the query. Everything else is
// counted and ignored.
//
// For TCP, the payload holds one or more length-prefixed messages; a
// message that continues in the next segment waits for it, per socket, and
// is parsed whole once it is complete (stream.go); one whose capture was cut
// is parsed as a truncated message. Segments that start in the middle of a
// message no stream waits for fail to parse or to match, and are counted,
// never cached.
//
// The error reports a packet that could not be parsed; it is already
// counted in Stats.ParseErrors and is meant for debug logging.
func (c *Correlator) Handle(p *Packet, now time.Time) error {
	c.stats.Packets++
	src, dst, err := packetAddrs(p)
	if err != nil {
		c.stats.ParseErrors++
		return packetError(p, src, dst, err)
	}
	payload := p.Payload
	truncated := int(p.OrigLen) > len(payload)
	switch p.L4Proto {
	case ProtoUDP:
		return c.message(p, src, dst, payload, truncated, now)
	case ProtoTCP:
		return c.tcp(p, src, dst, now)
	default:
		c.stats.ParseErrors++
		return packetError(p, src, dst, errors.New("dns: not UDP or TCP"))
	}
}

// message handles one DNS message of p.
func (c *Correlator) message(p *Packet, src, dst netip.AddrPort, msg []byte, truncated bool, now time.Time) error {
	m, err := c.parser.Parse(msg, truncated)
	if err != nil {
		c.stats.ParseErrors++
		return packetError(p, src, dst, err)
	}
	if m.Truncated {
		c.stats.Truncated++
	}
	c.stats.RecordsMalformed += uint64(m.Malformed)
	switch {
	case p.Egress && !m.Response:
		q := Query{Scope: Scope{NetNS: p.NetNS, TGID: p.TGID, CgroupID: p.CgroupID}, SockCookie: p.SockCookie}
		c.tracker.Track(m.ID, Flow{Client: src, Server: dst, Proto: p.L4Proto}, m.Question, q, now)
	case !p.Egress && m.Response:
		c.stats.AnswersParsed++
		q, ok := c.tracker.Match(m.ID, Flow{Client: dst, Server: src, Proto: p.L4Proto}, m.Question, p.SockCookie, now)
		if !ok || m.RCode != dnsmessage.RCodeSuccess || len(m.Addrs) == 0 {
			return nil
		}
		for _, a := range m.Addrs {
			c.cache.Insert(a.IP, q.Scope, m.Chain, time.Duration(a.TTL)*time.Second, now)
		}
		c.stats.AnswersCached++
		c.stats.AddressesCached += uint64(len(m.Addrs))
	default:
		c.stats.Ignored++
	}
	return nil
}

// Lookup returns the names ip was resolved from for a connect from scope;
// see [Cache.Lookup].
func (c *Correlator) Lookup(ip netip.Addr, scope Scope, now time.Time, dst []string) (names []string, best string, age time.Duration, src Source) {
	return c.cache.Lookup(ip, scope, now, dst)
}

// Sweep removes expired cache entries (see [Cache.Sweep]) and abandons
// TCP streams that waited too long for their next segment.
func (c *Correlator) Sweep(now time.Time) {
	c.cache.Sweep(now)
	c.expireStreams(now)
}

// Stats returns a snapshot of the counters.
func (c *Correlator) Stats() Stats {
	s := c.stats
	ts := c.tracker.Stats()
	s.QueriesTracked = ts.Tracked
	s.QueriesOutstanding = ts.Outstanding
	s.QueriesExpired = ts.Expired
	s.QueriesEvicted = ts.Evicted
	s.AnswersAccepted = ts.Matched
	s.Unsolicited = ts.Unsolicited
	s.AnswersTranslated = ts.Translated
	cs := c.cache.Stats()
	s.CacheEntries = cs.Entries
	s.CacheNames = cs.Names
	s.CacheNamespaces = cs.Namespaces
	s.Evictions = cs.Evictions
	s.Expired = cs.Expired
	s.NamesDropped = cs.NamesDropped
	return s
}

// packetAddrs returns the source and destination of p.
func packetAddrs(p *Packet) (src, dst netip.AddrPort, err error) {
	if !p.Src.IsValid() || !p.Dst.IsValid() {
		return src, dst, fmt.Errorf("dns: packet without addresses (IP version %d)", p.IPVersion)
	}
	return netip.AddrPortFrom(p.Src.Unmap(), p.SrcPort), netip.AddrPortFrom(p.Dst.Unmap(), p.DstPort), nil
}

// packetError wraps err with packet p's direction and flow.
func packetError(p *Packet, src, dst netip.AddrPort, err error) error {
	dir := "ingress"
	if p.Egress {
		dir = "egress"
	}
	proto := "udp"
	if p.L4Proto == ProtoTCP {
		proto = "tcp"
	} else if p.L4Proto != ProtoUDP {
		proto = fmt.Sprintf("proto %d", p.L4Proto)
	}
	if !src.IsValid() {
		return fmt.Errorf("%s %s: %w", dir, proto, err)
	}
	return fmt.Errorf("%s %s %s -> %s: %w", dir, proto, src, dst, err)
}
