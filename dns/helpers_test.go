package dns

import (
	"encoding/binary"
	"net/netip"
	"testing"
	"time"

	mdns "github.com/miekg/dns"
)

// t0 is the tests' clock origin.
var t0 = time.Date(2026, 11, 26, 12, 0, 0, 0, time.UTC)

// wire packs a DNS message built with miekg/dns: id, question name and
// type, and answer records in zone-file syntax. A nil rrs builds a query.
func wire(tb testing.TB, id uint16, qname string, qtype uint16, rrs ...string) []byte {
	tb.Helper()
	m := new(mdns.Msg)
	m.Id = id
	m.RecursionDesired = true
	m.Question = []mdns.Question{{Name: mdns.Fqdn(qname), Qtype: qtype, Qclass: mdns.ClassINET}}
	if rrs != nil {
		m.Response = true
		m.RecursionAvailable = true
		for _, s := range rrs {
			rr, err := mdns.NewRR(s)
			if err != nil {
				tb.Fatalf("NewRR(%q): %v", s, err)
			}
			m.Answer = append(m.Answer, rr)
		}
	}
	m.Compress = true
	b, err := m.Pack()
	if err != nil {
		tb.Fatalf("Pack: %v", err)
	}
	return b
}

// tcpFrame prefixes msg with its 2-byte length, as DNS over TCP does.
func tcpFrame(msg []byte) []byte {
	return binary.BigEndian.AppendUint16(nil, uint16(len(msg)))
}

// Standard addresses of the tests.
var (
	client  = netip.MustParseAddrPort("10.0.0.2:40000")
	server  = netip.MustParseAddrPort("10.0.0.53:53")
	scopeA  = Scope{NetNS: 4026531840, TGID: 100, CgroupID: 1}
	scopeB  = Scope{NetNS: 4026532000, TGID: 200, CgroupID: 2}
	cookieA = uint64(0xc0c0)
)

// packet builds a captured packet from src to dst.
func packet(egress bool, proto uint8, src, dst netip.AddrPort, payload []byte) *Packet {
	p := &Packet{
		Egress:    egress,
		IPVersion: 6,
		L4Proto:   proto,
		SrcPort:   src.Port(),
		DstPort:   dst.Port(),
		OrigLen:   uint16(len(payload)),
		Src:       src.Addr(),
		Dst:       dst.Addr(),
		Payload:   payload,
	}
	if src.Addr().Is4() {
		p.IPVersion = 4
	}
	return p
}

// queryPacket is a query leaving client for server in scope.
func queryPacket(proto uint8, client, server netip.AddrPort, scope Scope, cookie uint64, payload []byte) *Packet {
	p := packet(true, proto, client, server, payload)
	p.NetNS, p.TGID, p.CgroupID, p.SockCookie = scope.NetNS, scope.TGID, scope.CgroupID, cookie
	return p
}

// answerPacket is an answer from server arriving at client. Ingress records
// carry no netns or tgid, as the kernel reports them.
func answerPacket(proto uint8, client, server netip.AddrPort, cgroup, cookie uint64, payload []byte) *Packet {
	p := packet(false, proto, server, client, payload)
	p.CgroupID, p.SockCookie = cgroup, cookie
	return p
}

// newCorrelator returns a Correlator with cfg's changes to the defaults.
func newCorrelator(tb testing.TB, change func(*Config)) *Correlator {
	tb.Helper()
	cfg := DefaultConfig()
	if change != nil {
		change(&cfg)
	}
	c, err := New(cfg)
	if err != nil {
		tb.Fatal(err)
	}
	return c
}

// resolve sends query and answer through c for qname in scope.
func resolve(tb testing.TB, c *Correlator, scope Scope, id uint16, qname string, now time.Time, rrs ...string) {
	tb.Helper()
	q := queryPacket(ProtoUDP, client, server, scope, cookieA, wire(tb, id, qname, mdns.TypeA))
	if err := c.Handle(q, now); err != nil {
		tb.Fatalf("query: %v", err)
	}
	a := answerPacket(ProtoUDP, client, server, scope.CgroupID, cookieA, wire(tb, id, qname, mdns.TypeA, rrs...))
	if err := c.Handle(a, now); err != nil {
		tb.Fatalf("answer: %v", err)
	}
}

// lookup returns the names of ip for scope at now.
func lookup(c *Correlator, ip string, scope Scope, now time.Time) ([]string, string, time.Duration) {
	names, best, age, _ := c.Lookup(netip.MustParseAddr(ip), scope, now, nil)
	return names, best, age
}
