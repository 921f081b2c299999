package dns

import (
	"fmt"
	"net/netip"
	"testing"
	"time"

	mdns "github.com/miekg/dns"
)

// benchAnswer is a typical answer: a CNAME and two A records (99 bytes for
// n = 0).
func benchAnswer(b *testing.B, n int) []byte {
	q := fmt.Sprintf("www%d.example.com", n)
	return wire(b, uint16(n), q, mdns.TypeA,
		q+". 300 IN CNAME edge.cdn.example.net.",
		fmt.Sprintf("edge.cdn.example.net. 60 IN A 198.51.%d.%d", n/256%256, n%256),
		fmt.Sprintf("edge.cdn.example.net. 60 IN A 203.0.%d.%d", n/256%256, n%256))
}

// BenchmarkParseInsert measures parsing an answer and inserting its records
// into the cache, in steady state: the (IP, scope) entries and names exist
// already, as they do for names resolved again and again.
func BenchmarkParseInsert(b *testing.B) {
	for _, n := range []int{1, 1024} {
		b.Run(fmt.Sprintf("answers=%d", n), func(b *testing.B) {
			msgs := make([][]byte, n)
			for i := range msgs {
				msgs[i] = benchAnswer(b, i)
			}
			var p Parser
			c := NewCache(DefaultConfig())
			insert := func(i int, now time.Time) {
				m, err := p.Parse(msgs[i%n], false)
				if err != nil {
					b.Fatal(err)
				}
				for _, a := range m.Addrs {
					c.Insert(a.IP, scopeA, m.Chain, time.Duration(a.TTL)*time.Second, now)
				}
			}
			for i := range n {
				insert(i, t0)
			}
			b.SetBytes(int64(len(msgs[0])))
			b.ReportAllocs()
			i := 0
			for b.Loop() {
				insert(i, t0)
				i++
			}
		})
	}
}

// BenchmarkHandle measures the whole path of one exchange: the query is
// tracked, the answer parsed, matched and cached.
func BenchmarkHandle(b *testing.B) {
	c := newCorrelator(b, nil)
	query := queryPacket(ProtoUDP, client, server, scopeA, cookieA, wire(b, 1, "www1.example.com", mdns.TypeA))
	answer := answerPacket(ProtoUDP, client, server, 0, cookieA, benchAnswer(b, 1))
	if err := c.Handle(query, t0); err != nil {
		b.Fatal(err)
	}
	if err := c.Handle(answer, t0); err != nil {
		b.Fatal(err)
	}
	b.ReportAllocs()
	now := t0
	for b.Loop() {
		now = now.Add(time.Microsecond)
		_ = c.Handle(query, now)
		_ = c.Handle(answer, now)
	}
	if s := c.Stats(); s.Unsolicited != 0 || s.AnswersAccepted < 2 {
		b.Fatalf("stats %+v", s)
	}
}

// BenchmarkLookup measures a lookup in a full cache of the default size:
// the IP has a question name and a CNAME in the caller's scope, one name in
// another cgroup of its network namespace and one in another namespace (not
// returned).
func BenchmarkLookup(b *testing.B) {
	c := NewCache(DefaultConfig())
	for i := range DefaultMaxEntries - 1 {
		ip := netip.AddrFrom4([4]byte{10, byte(i >> 16), byte(i >> 8), byte(i)})
		c.Insert(ip, scopeA, chainBytes([]string{fmt.Sprintf("host%d.example", i%4096)}), time.Hour, t0)
	}
	ip := netip.MustParseAddr("192.0.2.1")
	c.Insert(ip, Scope{NetNS: scopeA.NetNS, CgroupID: 9}, chainBytes([]string{"other.example"}), time.Hour, t0)
	c.Insert(ip, scopeB, chainBytes([]string{"other-netns.example"}), time.Hour, t0)
	c.Insert(ip, scopeA, chainBytes([]string{"www.example.com", "edge.cdn.example.net"}), time.Hour, t0)
	dst := make([]string, 0, DefaultMaxNamesPerIP)
	now := t0.Add(time.Minute)
	b.ReportAllocs()
	for b.Loop() {
		names, best, _, src := c.Lookup(ip, scopeA, now, dst[:0])
		if src == SourceNone || len(names) != 3 || best != "www.example.com" {
			b.Fatal(names, best)
		}
	}
}
