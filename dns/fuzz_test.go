package dns

import (
	"bytes"
	"hash/maphash"
	"net/netip"
	"slices"
	"testing"
	"time"
)

// checkCache verifies the cache's internal invariants.
func checkCache(tb testing.TB, c *Cache) {
	tb.Helper()
	// Namespaces: each record's LRU list is consistent, ordered by use,
	// holds exactly its count of live entries of its namespace; the heap
	// holds every record once, most entries on top.
	n := 0
	if len(c.heap) != len(c.nsIndex) {
		tb.Fatalf("%d namespaces in the heap, %d indexed", len(c.heap), len(c.nsIndex))
	}
	for p, k := range c.heap {
		ns := &c.nss[k]
		if c.nsIndex[ns.netns] != k || int(ns.heap) != p || ns.count <= 0 {
			tb.Fatalf("namespace %d: index %d, heap position %d/%d, count %d", ns.netns, c.nsIndex[ns.netns], ns.heap, p, ns.count)
		}
		if p > 0 && c.heapAbove(p, (p-1)/2) {
			tb.Fatalf("heap order broken at %d", p)
		}
		cnt, prev := int32(0), int32(none)
		for i := ns.head; i != none; i = c.entries[i].next {
			e := &c.entries[i]
			if !e.live() || e.prev != prev || e.ns != k {
				tb.Fatalf("LRU list of namespace %d broken at %d", ns.netns, i)
			}
			if prev != none && c.entries[prev].used <= e.used {
				tb.Fatalf("LRU list of namespace %d out of order at %d", ns.netns, i)
			}
			prev, cnt = i, cnt+1
			if int(cnt) > len(c.entries) {
				tb.Fatal("LRU list loops")
			}
		}
		if prev != ns.tail || cnt != ns.count {
			tb.Fatalf("namespace %d: list of %d, count %d; tail %d/%d", ns.netns, cnt, ns.count, prev, ns.tail)
		}
		n += int(cnt)
	}
	if n != c.live || n > c.maxEntries {
		tb.Fatalf("LRU lists hold %d entries, live %d, max %d", n, c.live, c.maxEntries)
	}
	// IP chains: every live entry reachable from its IP, once; the index
	// finds every IP.
	refs := map[uint32]uint32{}
	seen, ips, slots := 0, 0, 0
	for _, v := range c.ipIndex {
		if v == 0 {
			continue
		}
		ips++
		head := int32(v&ipIdxMask) - 1
		addr := c.entries[head].addr
		if _, h := c.ipFind(&addr); h != head {
			tb.Fatalf("IP %v: index finds %d, holds %d", addr, h, head)
		}
		scopes := 0
		for i := head; i != none; i = c.entries[i].ipNext {
			e := &c.entries[i]
			if !e.live() || e.addr != addr {
				tb.Fatalf("entry %d in the chain of %v: live %v, addr %v", i, addr, e.live(), e.addr)
			}
			if scopes++; scopes > MaxScopesPerIP {
				tb.Fatalf("%v has more than %d scopes", addr, MaxScopesPerIP)
			}
			var names []uint32
			for j := e.names; j != none; j = c.slots[j].next {
				id := c.slots[j].name
				if slices.Contains(names, id) {
					tb.Fatalf("entry %d holds %q twice", i, c.names.str(id))
				}
				if names = append(names, id); len(names) > c.maxNames {
					tb.Fatalf("entry %d has more than %d names", i, c.maxNames)
				}
				refs[id]++
			}
			slots += len(names)
			seen++
		}
	}
	if seen != c.live || ips != c.ipCount {
		tb.Fatalf("%d entries reachable by IP, %d live; %d IPs indexed, %d counted", seen, c.live, ips, c.ipCount)
	}
	// Slots: every slot is an entry's or free.
	free := 0
	for j := c.freeSlot; j != none; j = c.slots[j].next {
		if free++; free > len(c.slots) {
			tb.Fatal("slot free list loops")
		}
	}
	if slots+free != len(c.slots) {
		tb.Fatalf("%d slots used, %d free, %d in the pool", slots, free, len(c.slots))
	}
	// Interned names: reference counts match, nothing leaks, each name
	// once and found by the index.
	ns := &c.names
	if len(refs) != ns.count {
		tb.Fatalf("%d names referenced, %d interned", len(refs), ns.count)
	}
	byName := map[string]uint32{}
	live := 0
	for id, r := range ns.recs {
		if r.n == 0 {
			continue
		}
		s := ns.str(uint32(id))
		if got, _ := ns.find([]byte(s), maphash.String(ns.seed, s)); got != uint32(id) || r.refs != refs[uint32(id)] {
			tb.Fatalf("name %q: found as %d, is %d; %d refs counted, %d held", s, got, id, refs[uint32(id)], r.refs)
		}
		if o, dup := byName[s]; dup {
			tb.Fatalf("name %q interned as %d and %d", s, o, id)
		}
		byName[s] = uint32(id)
		live += int(r.n)
	}
	if len(byName) != ns.count || live != ns.arenaLive {
		tb.Fatalf("%d names, %d bytes held; counted %d, %d", len(byName), live, ns.count, ns.arenaLive)
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
				names, best, age, src := c.Lookup(a.IP, scopeA, t0.Add(2*time.Second), nil)
				if src == SourceNone || len(names) == 0 || len(names) > cfg.MaxNamesPerIP || names[0] != best || age < 0 {
					t.Fatalf("Lookup(%v) = %q, %q, %s, %v", a.IP, names, best, age, src)
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
