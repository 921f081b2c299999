package tcpconnectreceiver

import (
	"net/netip"
	"time"

	"github.com/tcpconnect/tcpconnect/dns"
	"github.com/tcpconnect/tcpconnect/internal/event"
)

// dnsSink is what the reader needs of the DNS correlator (package dns):
// *dns.Correlator through correlator, or the fake of BenchmarkHandle that
// names every destination. The reader goroutine is its only caller, in ring
// order: a DNS answer that reached a socket before a connect is handled
// before that connect is looked up. No method may block; none needs
// locking.
//
// With dns.enabled false the receiver runs with a nil dnsSink: DNS records
// (none are captured then) are counted in
// receiver_tcpconnect_dns_packets_ignored, and every connect has no
// tcpconnect.dns.names and server.address = IP.
type dnsSink interface {
	// HandleDNS takes one captured DNS packet (query or answer). d and its
	// Payload alias the ring record. now is the packet's kernel time as
	// wall time. A packet that does not parse is counted in Stats.
	HandleDNS(d *event.DNS, now time.Time)
	// Lookup is (*dns.Correlator).Lookup: the names ip was resolved from,
	// best first, appended to dst without allocating when dst has room.
	Lookup(ip netip.Addr, scope dns.Scope, now time.Time, dst []string) (names []string, best string, age time.Duration, src dns.Source)
	// Stats returns the correlator's cumulative counters and cache size.
	Stats() dns.Stats
	// Sweep frees expired entries; the reader calls it every sweepInterval.
	Sweep(now time.Time)
}

// correlator is a *dns.Correlator as a dnsSink.
type correlator struct{ *dns.Correlator }

// sweepInterval is how often expired cache entries are freed on a quiet host
// (busy hosts free them as they insert).
const sweepInterval = time.Minute

// HandleDNS hands d to the correlator; the error is counted in its stats
// and the packet skipped.
func (k correlator) HandleDNS(d *event.DNS, now time.Time) {
	_ = k.Handle((*dns.Packet)(d), now)
}
