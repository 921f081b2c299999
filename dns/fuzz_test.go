package dns

import (
	"bytes"
	"net/netip"
	"testing"
	"time"
)

// checkCache verifies the cache's internal invariants.
func checkCache(tb testing.TB, c *Cache) {
	tb.Helper()
	// LRU list: consistent links, every live entry once.
	n, prev := 0, int32(none)
	for i := c.head; i != none; i = c.entries[i].next {
		e := &c.entries[i]
		if !e.live || e.prev != prev {
			tb.Fatalf("LRU list broken at %d", i)
		}
		prev, n = i, n+1
		if n > len(c.entries) {
			tb.Fatal("LRU list loops")
		}
	}
	if prev != c.tail || n != c.live || n > c.maxEntries {
		tb.Fatalf("LRU list has %d entries, live %d, max %d; tail %d/%d", n, c.live, c.maxEntries, prev, c.tail)
	}
	// IP chains: every live entry reachable from its IP, once.
	refs := map[*interned]int32{}
	seen := 0
	for ip, head := range c.byIP {
		scopes := 0
		for i := head; i != none; i = c.entries[i].ipNext {
			e := &c.entries[i]
			if !e.live || e.addr != ip || ip.Is4In6() {
				tb.Fatalf("entry %d in the chain of %v: live %v, addr %v", i, ip, e.live, e.addr)
			}
			if scopes++; scopes > MaxScopesPerIP {
				tb.Fatalf("%v has more than %d scopes", ip, MaxScopesPerIP)
			}
			if len(e.names) > c.maxNames {
				tb.Fatalf("entry %d has %d names", i, len(e.names))
			}
			for j, s := range e.names {
				refs[s.name]++
				for _, o := range e.names[:j] {
					if o.name == s.name {
						tb.Fatalf("entry %d holds %q twice", i, s.name.s)
					}
				}
			}
			seen++
		}
	}
	if seen != c.live {
		tb.Fatalf("%d entries reachable by IP, %d live", seen, c.live)
	}
	// Interned strings: reference counts match, nothing leaks.
	if len(refs) != len(c.names) {
		tb.Fatalf("%d names referenced, %d interned", len(refs), len(c.names))
	}
	for p, r := range refs {
		if c.names[p.s] != p || p.refs != r {
			tb.Fatalf("name %q: %d refs counted, %d held", p.s, p.refs, r)
		}
	}
}

// checkName verifies a name as the parser hands it out.
func checkName(tb testing.TB, n []byte) {
	tb.Helper()
	if len(n) == 0 || n[len(n)-1] == '.' {
		tb.Fatalf("name %q: empty or trailing dot", n)
	}
	for _, b := range n {
		if b < 0x21 || b > 0x7e || (b >= 'A' && b <= 'Z') {
			tb.Fatalf("name %q: byte %#x", n, b)
		}
	}
}

// FuzzParse feeds arbitrary payloads to the parser, the cache and the
// correlator's UDP and TCP paths (with a matching query tracked, so that
// answers reach the cache) and checks their invariants.
func FuzzParse(f *testing.F) {
	data, tcp := readSeeds(f)
	for i := range data {
		f.Add(data[i], tcp[i], false)
		f.Add(data[i], tcp[i], true)
	}
	f.Fuzz(func(t *testing.T, data []byte, tcp, cut bool) {
		var p Parser
		m, err := p.Parse(data, cut)
		if err == nil {
			checkName(t, m.Question)
			if m.Response && (len(m.Chain) == 0 || !bytes.Equal(m.Chain[0], m.Question)) {
				t.Fatalf("chain %q does not start with the question %q", m.Chain, m.Question)
			}
			if len(m.Chain) > MaxChain || m.Truncated && !cut {
				t.Fatalf("chain of %d, truncated %v", len(m.Chain), m.Truncated)
			}
			for _, n := range m.Chain {
				checkName(t, n)
			}
			for _, a := range m.Addrs {
				if !a.IP.IsValid() || a.IP.Is4In6() {
					t.Fatalf("address %v", a.IP)
				}
			}
		}

		cfg := DefaultConfig()
		cfg.MaxEntries, cfg.MaxNamesPerIP = 8, 3
		c, err := New(cfg)
		if err != nil {
			t.Fatal(err)
		}
		scopes := []Scope{scopeA, scopeB, {NetNS: scopeA.NetNS, CgroupID: 9}}
		if m != nil && m.Response {
			for i, s := range scopes {
				for _, a := range m.Addrs {
					c.cache.Insert(a.IP, s, m.Chain, time.Duration(a.TTL)*time.Second, t0.Add(time.Duration(i)*time.Second))
				}
			}
			checkCache(t, c.cache)
			// The parser's buffers are reused: Parse again and make sure
			// the cache does not hold on to them.
			if _, err := p.Parse([]byte{0, 0, 0x81, 0x80, 0, 1, 0, 0, 0, 0, 0, 0, 1, 'X', 0, 0, 1, 0, 1}, false); err != nil {
				t.Fatal(err)
			}
			for _, a := range m.Addrs {
				names, best, age, ok := c.Lookup(a.IP, scopeA, t0.Add(2*time.Second), nil)
				if !ok || len(names) == 0 || len(names) > cfg.MaxNamesPerIP || names[0] != best || age < 0 {
					t.Fatalf("Lookup(%v) = %q, %q, %s, %v", a.IP, names, best, age, ok)
				}
				for j, n := range names {
					checkName(t, []byte(n))
					for _, o := range names[:j] {
						if o == n {
							t.Fatalf("Lookup(%v) = %q: duplicate", a.IP, names)
						}
					}
				}
			}
			if m, err = p.Parse(data, cut); err != nil {
				t.Fatalf("second Parse: %v", err)
			}
			c.Sweep(t0.Add(2 * time.Hour))
			checkCache(t, c.cache)
			if st := c.cache.Stats(); st.Entries != 0 || st.Names != 0 {
				t.Fatalf("after expiry: %+v", st)
			}
		}

		// The Handle path: queries in data are tracked on egress; an UDP
		// answer gets its query tracked by hand; then data arrives.
		proto := uint8(ProtoUDP)
		if tcp {
			proto = ProtoTCP
		}
		q := queryPacket(proto, client, server, scopeA, cookieA, data)
		a := answerPacket(proto, client, server, 0, cookieA, data)
		if cut {
			q.OrigLen, a.OrigLen = uint16(min(len(data)+1, 0xffff)), uint16(min(len(data)+1, 0xffff))
		}
		_ = c.Handle(q, t0)
		if !tcp && m != nil && m.Response {
			c.tracker.Track(m.ID, Flow{Client: client, Server: server, Proto: ProtoUDP}, m.Question, Query{Scope: scopeA, SockCookie: cookieA}, t0)
		}
		_ = c.Handle(a, t0)
		checkCache(t, c.cache)
		if m != nil && m.Response && !tcp && m.RCode == 0 {
			if st := c.Stats(); st.AnswersAccepted != 1 {
				t.Fatalf("answer with a tracked query not accepted: %+v", st)
			}
		}
		for _, ip := range []netip.Addr{netip.MustParseAddr("192.0.2.1"), netip.MustParseAddr("::1")} {
			c.Lookup(ip, scopeA, t0, nil)
		}
	})
}
