package dns

import (
	"net/netip"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	mdns "github.com/miekg/dns"
)

func TestMatching(t *testing.T) {
	const id = 0x1234
	qname := "example.com"
	answer := wire(t, id, qname, mdns.TypeA, "example.com. 300 IN A 192.0.2.10")
	otherClient := netip.MustParseAddrPort("10.0.0.2:40001")
	otherServer := netip.MustParseAddrPort("10.0.0.54:53")
	tests := []struct {
		name  string
		query *Packet // nil: no query sent
		delay time.Duration
		ans   *Packet
		want  bool
		nat   bool // matched although the addresses differ (Stats.AnswersTranslated)
	}{
		{
			name:  "matching query accepted",
			query: queryPacket(ProtoUDP, client, server, scopeA, cookieA, wire(t, id, qname, mdns.TypeA)),
			ans:   answerPacket(ProtoUDP, client, server, 0, cookieA, answer),
			want:  true,
		},
		{
			name: "unsolicited answer ignored",
			ans:  answerPacket(ProtoUDP, client, server, 0, cookieA, answer),
		},
		{
			name:  "wrong id",
			query: queryPacket(ProtoUDP, client, server, scopeA, cookieA, wire(t, id+1, qname, mdns.TypeA)),
			ans:   answerPacket(ProtoUDP, client, server, 0, cookieA, answer),
		},
		{
			name:  "wrong client port, socket unknown",
			query: queryPacket(ProtoUDP, otherClient, server, scopeA, 0, wire(t, id, qname, mdns.TypeA)),
			ans:   answerPacket(ProtoUDP, client, server, 0, 0, answer),
		},
		{
			name:  "wrong server, socket unknown",
			query: queryPacket(ProtoUDP, client, otherServer, scopeA, 0, wire(t, id, qname, mdns.TypeA)),
			ans:   answerPacket(ProtoUDP, client, server, 0, 0, answer),
		},
		{
			name:  "matching query accepted, socket unknown",
			query: queryPacket(ProtoUDP, client, server, scopeA, 0, wire(t, id, qname, mdns.TypeA)),
			ans:   answerPacket(ProtoUDP, client, server, 0, 0, answer),
			want:  true,
		},
		{
			// Docker's embedded resolver: the query left for another
			// port (DNAT), the answer came back from port 53.
			name:  "NAT: other server port, same socket",
			query: queryPacket(ProtoUDP, client, netip.AddrPortFrom(server.Addr(), 5353), scopeA, cookieA, wire(t, id, qname, mdns.TypeA)),
			ans:   answerPacket(ProtoUDP, client, server, 0, cookieA, answer),
			want:  true, nat: true,
		},
		{
			// A DNAT'd service IP: the query left for the backend, the
			// answer came from the service IP.
			name:  "NAT: other server, same socket",
			query: queryPacket(ProtoUDP, client, otherServer, scopeA, cookieA, wire(t, id, qname, mdns.TypeA)),
			ans:   answerPacket(ProtoUDP, client, server, 0, cookieA, answer),
			want:  true, nat: true,
		},
		{
			// A local process answering a DNS socket from another port
			// (no privilege needed), with the right id and question.
			name:  "same socket, answer from another port",
			query: queryPacket(ProtoUDP, client, server, scopeA, cookieA, wire(t, id, qname, mdns.TypeA)),
			ans:   answerPacket(ProtoUDP, client, netip.AddrPortFrom(server.Addr(), 5353), 0, cookieA, answer),
		},
		{
			// A socket pointed at port 53 that then queried port 5353
			// itself: the answer mirrors its query.
			name:  "same socket, query and answer on another port",
			query: queryPacket(ProtoUDP, client, netip.AddrPortFrom(server.Addr(), 5353), scopeA, cookieA, wire(t, id, qname, mdns.TypeA)),
			ans:   answerPacket(ProtoUDP, client, netip.AddrPortFrom(server.Addr(), 5353), 0, cookieA, answer),
			want:  true,
		},
		{
			name:  "NAT: other client port, same socket",
			query: queryPacket(ProtoUDP, otherClient, server, scopeA, cookieA, wire(t, id, qname, mdns.TypeA)),
			ans:   answerPacket(ProtoUDP, client, server, 0, cookieA, answer),
			want:  true, nat: true,
		},
		{
			name:  "wrong question",
			query: queryPacket(ProtoUDP, client, server, scopeA, cookieA, wire(t, id, "other.com", mdns.TypeA)),
			ans:   answerPacket(ProtoUDP, client, server, 0, cookieA, answer),
		},
		{
			name:  "question case does not matter (0x20 randomization)",
			query: queryPacket(ProtoUDP, client, server, scopeA, cookieA, wire(t, id, "ExAmPlE.cOm", mdns.TypeA)),
			ans:   answerPacket(ProtoUDP, client, server, 0, cookieA, answer),
			want:  true,
		},
		{
			name:  "wrong socket",
			query: queryPacket(ProtoUDP, client, server, scopeA, cookieA, wire(t, id, qname, mdns.TypeA)),
			ans:   answerPacket(ProtoUDP, client, server, 0, cookieA+1, answer),
		},
		{
			name:  "wrong transport",
			query: queryPacket(ProtoTCP, client, server, scopeA, cookieA, append(tcpFrame(wire(t, id, qname, mdns.TypeA)), wire(t, id, qname, mdns.TypeA)...)),
			ans:   answerPacket(ProtoUDP, client, server, 0, cookieA, answer),
		},
		{
			name:  "answer after the query timed out",
			query: queryPacket(ProtoUDP, client, server, scopeA, cookieA, wire(t, id, qname, mdns.TypeA)),
			delay: DefaultQueryTimeout,
			ans:   answerPacket(ProtoUDP, client, server, 0, cookieA, answer),
		},
		{
			name:  "answer leaving a local server is not cached",
			query: queryPacket(ProtoUDP, client, server, scopeA, cookieA, wire(t, id, qname, mdns.TypeA)),
			ans:   packet(true, ProtoUDP, server, client, answer),
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			c := newCorrelator(t, nil)
			if tt.query != nil {
				if err := c.Handle(tt.query, t0); err != nil {
					t.Fatal(err)
				}
			}
			if err := c.Handle(tt.ans, t0.Add(tt.delay)); err != nil {
				t.Fatal(err)
			}
			names, _, _ := lookup(c, "192.0.2.10", scopeA, t0.Add(tt.delay))
			if got := len(names) > 0; got != tt.want {
				t.Fatalf("cached = %v (%q), want %v; stats %+v", got, names, tt.want, c.Stats())
			}
			s := c.Stats()
			if nat := s.AnswersTranslated == 1; nat != tt.nat || s.AnswersTranslated > 1 {
				t.Errorf("translated = %d, want NAT %v", s.AnswersTranslated, tt.nat)
			}
			if tt.want && (s.AnswersAccepted != 1 || s.Unsolicited != 0) {
				t.Errorf("accepted, unsolicited = %d, %d; want 1, 0", s.AnswersAccepted, s.Unsolicited)
			}
			if !tt.want && !tt.ans.Egress && (s.AnswersAccepted != 0 || s.Unsolicited != 1) {
				t.Errorf("accepted, unsolicited = %d, %d; want 0, 1", s.AnswersAccepted, s.Unsolicited)
			}
		})
	}
}

func TestAnswerInheritsQueryScope(t *testing.T) {
	c := newCorrelator(t, nil)
	resolve(t, c, scopeA, 1, "example.com", t0, "example.com. 300 IN A 192.0.2.10")
	// The answer packet carries no netns and tgid; the entry must still be
	// in scopeA's namespace, and scopeB's in scopeB's.
	resolve(t, c, scopeB, 2, "b.example", t0.Add(time.Second), "b.example. 300 IN A 192.0.2.10")
	for _, tt := range []struct {
		scope Scope
		want  string
	}{{scopeA, "example.com"}, {scopeB, "b.example"}} {
		names, best, _ := lookup(c, "192.0.2.10", tt.scope, t0.Add(2*time.Second))
		if !slices.Equal(names, []string{tt.want}) || best != tt.want {
			t.Fatalf("%+v: names, best = %q, %q; want [%q]", tt.scope, names, best, tt.want)
		}
	}
}

func TestDuplicateAnswerIgnored(t *testing.T) {
	c := newCorrelator(t, nil)
	resolve(t, c, scopeA, 1, "example.com", t0, "example.com. 300 IN A 192.0.2.10")
	a := answerPacket(ProtoUDP, client, server, 0, cookieA, wire(t, 1, "example.com", mdns.TypeA, "example.com. 300 IN A 192.0.2.66"))
	if err := c.Handle(a, t0); err != nil {
		t.Fatal(err)
	}
	if names, _, _ := lookup(c, "192.0.2.66", scopeA, t0); len(names) != 0 {
		t.Fatalf("second answer to one query cached: %q", names)
	}
	if s := c.Stats(); s.Unsolicited != 1 || s.AnswersAccepted != 1 {
		t.Fatalf("stats %+v", s)
	}
}

func TestSameIDForAAndAAAA(t *testing.T) {
	// Some stub resolvers send the A and AAAA queries of one name from one
	// socket with one id: both answers must be accepted.
	c := newCorrelator(t, nil)
	for _, qt := range []uint16{mdns.TypeA, mdns.TypeAAAA} {
		if err := c.Handle(queryPacket(ProtoUDP, client, server, scopeA, cookieA, wire(t, 7, "dual.example", qt)), t0); err != nil {
			t.Fatal(err)
		}
	}
	for _, rr := range []string{"dual.example. 60 IN A 192.0.2.1", "dual.example. 60 IN AAAA 2001:db8::1"} {
		qt := mdns.TypeA
		if strings.Contains(rr, "AAAA") {
			qt = mdns.TypeAAAA
		}
		if err := c.Handle(answerPacket(ProtoUDP, client, server, 0, cookieA, wire(t, 7, "dual.example", qt, rr)), t0); err != nil {
			t.Fatal(err)
		}
	}
	for _, ip := range []string{"192.0.2.1", "2001:db8::1"} {
		if _, best, _ := lookup(c, ip, scopeA, t0); best != "dual.example" {
			t.Errorf("%s: best %q, want dual.example", ip, best)
		}
	}
}

func TestTruncatedCapture(t *testing.T) {
	c := newCorrelator(t, nil)
	if err := c.Handle(queryPacket(ProtoUDP, client, server, scopeA, cookieA, wire(t, 5, "big.example", mdns.TypeA)), t0); err != nil {
		t.Fatal(err)
	}
	var rrs []string
	for i := range 120 {
		rrs = append(rrs, "big.example. 60 IN A 192.0.2."+strconv.Itoa(i+1))
	}
	full := wire(t, 5, "big.example", mdns.TypeA, rrs...)
	a := answerPacket(ProtoUDP, client, server, 0, cookieA, full[:1536])
	a.OrigLen = uint16(len(full))
	if err := c.Handle(a, t0); err != nil {
		t.Fatal(err)
	}
	if names, _, _ := lookup(c, "192.0.2.1", scopeA, t0); len(names) == 0 {
		t.Errorf("first record of a truncated capture not cached")
	}
	if names, _, _ := lookup(c, "192.0.2.120", scopeA, t0); len(names) != 0 {
		t.Errorf("record beyond the capture cached")
	}
	if s := c.Stats(); s.Truncated != 1 || s.ParseErrors != 0 {
		t.Errorf("truncated, parse errors = %d, %d; want 1, 0", s.Truncated, s.ParseErrors)
	}
}

func TestIPv6AndMapped(t *testing.T) {
	c := newCorrelator(t, nil)
	// Query and answer over IPv6 between v4-mapped addresses (a dual-stack
	// socket): they must match the same flow as plain IPv4.
	mc := netip.MustParseAddrPort("[::ffff:10.0.0.2]:40000")
	ms := netip.MustParseAddrPort("[::ffff:10.0.0.53]:53")
	if err := c.Handle(queryPacket(ProtoUDP, mc, ms, scopeA, cookieA, wire(t, 9, "mapped.example", mdns.TypeA)), t0); err != nil {
		t.Fatal(err)
	}
	if err := c.Handle(answerPacket(ProtoUDP, client, server, 0, cookieA,
		wire(t, 9, "mapped.example", mdns.TypeA, "mapped.example. 60 IN AAAA ::ffff:192.0.2.9")), t0); err != nil {
		t.Fatal(err)
	}
	for _, ip := range []string{"192.0.2.9", "::ffff:192.0.2.9"} {
		if _, best, _ := lookup(c, ip, scopeA, t0); best != "mapped.example" {
			t.Errorf("lookup %s: best %q, want mapped.example", ip, best)
		}
	}

	v6c := netip.MustParseAddrPort("[2001:db8::2]:40000")
	v6s := netip.MustParseAddrPort("[2001:db8::53]:53")
	if err := c.Handle(queryPacket(ProtoUDP, v6c, v6s, scopeA, cookieA, wire(t, 10, "six.example", mdns.TypeAAAA)), t0); err != nil {
		t.Fatal(err)
	}
	if err := c.Handle(answerPacket(ProtoUDP, v6c, v6s, 0, cookieA,
		wire(t, 10, "six.example", mdns.TypeAAAA, "six.example. 60 IN AAAA 2001:db8::6")), t0); err != nil {
		t.Fatal(err)
	}
	if _, best, _ := lookup(c, "2001:db8::6", scopeA, t0); best != "six.example" {
		t.Errorf("IPv6: best %q, want six.example", best)
	}
}

func TestHandleErrors(t *testing.T) {
	c := newCorrelator(t, nil)
	bad := []*Packet{
		answerPacket(ProtoUDP, client, server, 0, 0, []byte{1, 2, 3}),
		answerPacket(ProtoUDP, client, server, 0, 0, nil),
		answerPacket(ProtoTCP, client, server, 0, 0, []byte{0}),
		answerPacket(47, client, server, 0, 0, wire(t, 1, "x.example", mdns.TypeA)),
		func() *Packet {
			p := answerPacket(ProtoUDP, client, server, 0, 0, wire(t, 1, "x.example", mdns.TypeA))
			p.Src = netip.Addr{}
			return p
		}(),
	}
	for i, p := range bad {
		if err := c.Handle(p, t0); err == nil {
			t.Errorf("packet %d: no error", i)
		} else if !strings.Contains(err.Error(), "ingress") {
			t.Errorf("packet %d: error without context: %v", i, err)
		}
	}
	if s := c.Stats(); s.ParseErrors != uint64(len(bad)) {
		t.Errorf("parse errors = %d, want %d", s.ParseErrors, len(bad))
	}
	// A TCP segment without payload is not an error.
	if err := c.Handle(answerPacket(ProtoTCP, client, server, 0, 0, nil), t0); err != nil {
		t.Errorf("empty TCP segment: %v", err)
	}
}

func TestStats(t *testing.T) {
	c := newCorrelator(t, nil)
	resolve(t, c, scopeA, 1, "www.example.com", t0,
		"www.example.com. 60 IN CNAME cdn.example.net.",
		"cdn.example.net. 60 IN A 192.0.2.1",
		"cdn.example.net. 60 IN A 192.0.2.2")
	_ = c.Handle(answerPacket(ProtoUDP, client, server, 0, cookieA, wire(t, 99, "x.example", mdns.TypeA, "x.example. 60 IN A 192.0.2.3")), t0)
	_ = c.Handle(answerPacket(ProtoUDP, client, server, 0, cookieA, []byte("garbage")), t0)
	// Accepted but not cached: NXDOMAIN, and an answer whose only A
	// record has a wrong rdlength.
	resolve(t, c, scopeA, 2, "none.example", t0, []string{}...)
	q := queryPacket(ProtoUDP, client, server, scopeA, cookieA, wire(t, 3, "bad.example", mdns.TypeA))
	a := answerPacket(ProtoUDP, client, server, 0, cookieA, setRdata(t, wire(t, 3, "bad.example", mdns.TypeA, "bad.example. 60 IN A 192.0.2.9"), 0, []byte{192, 0, 2}))
	for _, p := range []*Packet{q, a} {
		if err := c.Handle(p, t0); err != nil {
			t.Fatal(err)
		}
	}
	want := Stats{
		Packets:          8,
		QueriesTracked:   3,
		AnswersParsed:    4,
		AnswersAccepted:  3,
		AnswersCached:    1,
		AddressesCached:  2,
		Unsolicited:      1,
		ParseErrors:      1,
		RecordsMalformed: 1,
		CacheEntries:     2,
		CacheNames:       2,
		CacheNamespaces:  1,
	}
	if got := c.Stats(); got != want {
		t.Fatalf("stats\n got %+v\nwant %+v", got, want)
	}
}
