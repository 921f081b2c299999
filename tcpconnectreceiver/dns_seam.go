package tcpconnectreceiver

import (
	"net/netip"
	"time"

	"github.com/tcpconnect/tcpconnect/dns"
	"github.com/tcpconnect/tcpconnect/internal/event"
)

// dnsSink is the seam for the DNS correlator (package dns). The reader
// goroutine is its only caller, in ring order: a DNS answer that reached a
// socket before a connect is handled before that connect is looked up. No
// method may block; none needs locking.
//
// With dns.enabled false the receiver runs with a nil dnsSink: DNS records
// (none are captured then) would be counted in
// receiver_tcpconnect_dns_packets_ignored, and every connect has an empty
// tcpconnect.dns.names and server.address = IP.
type dnsSink interface {
	// HandleDNS takes one captured DNS packet (query or answer). d and its
	// Payload alias the ring record: copy what must outlive the call. now is
	// the packet's kernel time converted to wall time.
	HandleDNS(d *event.DNS, now time.Time)
	// Lookup appends to dst the names ip was resolved from, best first, for
	// a connect from scope (its network namespace, cgroup and process) at
	// time now (the connect's kernel time as wall time). It returns the
	// extended slice, the best name ("" when none), the age of the answer
	// that gave it and where it came from (dns.SourceNone when no name was
	// found). It must not allocate when dst has room.
	Lookup(ip netip.Addr, scope dns.Scope, now time.Time, dst []string) (names []string, best string, age time.Duration, src dns.Source)
	// Stats returns the correlator's cumulative counters and cache size; the
	// receiver turns them into its receiver_tcpconnect_dns_* metrics.
	Stats() dnsStats
	// Sweep frees expired entries; the reader calls it every sweepInterval.
	Sweep(now time.Time)
}

// dnsStats are the DNS correlator's counters, cumulative since it started
// (Entries is a current value).
type dnsStats struct {
	AnswersParsed      uint64 // answers arriving at a local socket and parsed
	AnswersCached      uint64 // matched answers that put an address into the cache
	ParseErrors        uint64 // packets that did not parse
	RecordsMalformed   uint64 // answer records skipped for a wrong rdata length
	AnswersUnsolicited uint64 // answers no query asked for, ignored
	AnswersTranslated  uint64 // accepted answers whose addresses NAT rewrote
	TCPAbandoned       uint64 // DNS-over-TCP streams that could not be put together
	Ignored            uint64 // neither a query leaving nor an answer arriving
	Evictions          uint64 // cache entries evicted before their TTL
	Entries            int64  // cache entries now
}

// correlator adapts *dns.Correlator to dnsSink.
type correlator struct{ c *dns.Correlator }

// sweepInterval is how often expired cache entries are freed on a quiet host
// (busy hosts free them as they insert).
const sweepInterval = time.Minute

func (k correlator) HandleDNS(d *event.DNS, now time.Time) {
	// The error is counted in the correlator's stats; the packet is skipped.
	_ = k.c.Handle((*dns.Packet)(d), now)
}

func (k correlator) Lookup(ip netip.Addr, scope dns.Scope, now time.Time, dst []string) ([]string, string, time.Duration, dns.Source) {
	return k.c.Lookup(ip, scope, now, dst)
}

func (k correlator) Stats() dnsStats {
	s := k.c.Stats()
	return dnsStats{
		AnswersParsed:      s.AnswersParsed,
		AnswersCached:      s.AnswersCached,
		ParseErrors:        s.ParseErrors,
		RecordsMalformed:   s.RecordsMalformed,
		AnswersUnsolicited: s.Unsolicited,
		AnswersTranslated:  s.AnswersTranslated,
		TCPAbandoned:       s.TCPStreamsAbandoned,
		Ignored:            s.Ignored,
		Evictions:          s.Evictions,
		Entries:            int64(s.CacheEntries),
	}
}

func (k correlator) Sweep(now time.Time) { k.c.Sweep(now) }
