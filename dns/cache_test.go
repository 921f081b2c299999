package dns

import (
	"fmt"
	"net/netip"
	"slices"
	"testing"
	"time"
	"unsafe"
)

// insertion is one Cache.Insert call of a test.
type insertion struct {
	at    time.Duration // after t0
	ip    string
	scope Scope
	chain []string
	ttl   time.Duration
}

// lookupCheck is one Cache.Lookup call of a test and its expected result.
type lookupCheck struct {
	at    time.Duration
	ip    string
	scope Scope
	names []string
	best  string
	age   time.Duration
}

func chainBytes(names []string) [][]byte {
	var b [][]byte
	for _, n := range names {
		b = append(b, []byte(n))
	}
	return b
}

func TestCache(t *testing.T) {
	scopeC := Scope{NetNS: scopeA.NetNS, TGID: 300, CgroupID: 3} // scopeA's netns, another cgroup
	tests := []struct {
		name    string
		cfg     func(*Config)
		inserts []insertion
		lookups []lookupCheck
	}{
		{
			name:    "A record",
			inserts: []insertion{{0, "192.0.2.1", scopeA, []string{"example.com"}, time.Minute}},
			lookups: []lookupCheck{{10 * time.Second, "192.0.2.1", scopeA, []string{"example.com"}, "example.com", 10 * time.Second}},
		},
		{
			name: "CNAME chain in order, question name best",
			inserts: []insertion{{0, "192.0.2.1", scopeA,
				[]string{"www.example.com", "a.cdn.net", "b.cdn.net", "c.edge.net"}, time.Minute}},
			lookups: []lookupCheck{{0, "192.0.2.1", scopeA,
				[]string{"www.example.com", "a.cdn.net", "b.cdn.net", "c.edge.net"}, "www.example.com", 0}},
		},
		{
			name: "two names to one IP: newest first",
			inserts: []insertion{
				{0, "192.0.2.1", scopeA, []string{"a.example", "lb.example"}, time.Minute},
				{time.Second, "192.0.2.1", scopeA, []string{"b.example", "lb.example"}, time.Minute},
			},
			lookups: []lookupCheck{{2 * time.Second, "192.0.2.1", scopeA,
				[]string{"b.example", "lb.example", "a.example"}, "b.example", time.Second}},
		},
		{
			name: "TTL expiry",
			inserts: []insertion{
				{0, "192.0.2.1", scopeA, []string{"short.example"}, 10 * time.Second},
				{0, "192.0.2.1", scopeA, []string{"long.example"}, 60 * time.Second},
			},
			lookups: []lookupCheck{
				{9 * time.Second, "192.0.2.1", scopeA, []string{"long.example", "short.example"}, "long.example", 9 * time.Second},
				{10 * time.Second, "192.0.2.1", scopeA, []string{"long.example"}, "long.example", 10 * time.Second},
				{60 * time.Second, "192.0.2.1", scopeA, nil, "", 0},
			},
		},
		{
			name: "min TTL floor",
			inserts: []insertion{
				{0, "192.0.2.1", scopeA, []string{"zero.example"}, 0},
			},
			lookups: []lookupCheck{
				{DefaultMinTTL - 1, "192.0.2.1", scopeA, []string{"zero.example"}, "zero.example", DefaultMinTTL - 1},
				{DefaultMinTTL, "192.0.2.1", scopeA, nil, "", 0},
			},
		},
		{
			name: "max TTL cap",
			cfg:  func(c *Config) { c.MaxTTL = 10 * time.Minute },
			inserts: []insertion{
				{0, "192.0.2.1", scopeA, []string{"day.example"}, 24 * time.Hour},
			},
			lookups: []lookupCheck{
				{10*time.Minute - 1, "192.0.2.1", scopeA, []string{"day.example"}, "day.example", 10*time.Minute - 1},
				{10 * time.Minute, "192.0.2.1", scopeA, nil, "", 0},
			},
		},
		{
			name: "re-resolution refreshes the TTL",
			inserts: []insertion{
				{0, "192.0.2.1", scopeA, []string{"a.example"}, 10 * time.Second},
				{8 * time.Second, "192.0.2.1", scopeA, []string{"a.example"}, 10 * time.Second},
			},
			lookups: []lookupCheck{{15 * time.Second, "192.0.2.1", scopeA, []string{"a.example"}, "a.example", 7 * time.Second}},
		},
		{
			name: "names stay in their network namespace",
			inserts: []insertion{
				{0, "192.0.2.1", scopeA, []string{"a.example"}, time.Minute},
				{time.Second, "192.0.2.1", scopeB, []string{"b.example"}, time.Minute},
			},
			lookups: []lookupCheck{
				{2 * time.Second, "192.0.2.1", scopeA, []string{"a.example"}, "a.example", 2 * time.Second},
				{2 * time.Second, "192.0.2.1", scopeB, []string{"b.example"}, "b.example", time.Second},
				{2 * time.Second, "192.0.2.1", Scope{NetNS: 1, CgroupID: scopeA.CgroupID, TGID: scopeA.TGID}, nil, "", 0},
				{2 * time.Second, "192.0.2.1", Scope{CgroupID: scopeA.CgroupID}, nil, "", 0},
			},
		},
		{
			name: "within the namespace: cgroup, then process, then newest",
			inserts: []insertion{
				{0, "192.0.2.1", scopeC, []string{"same-netns.example"}, time.Minute},
				{time.Second, "192.0.2.1", Scope{NetNS: 77, CgroupID: scopeA.CgroupID}, []string{"same-cgroup.example"}, time.Minute},
				{2 * time.Second, "192.0.2.1", scopeA, []string{"own.example"}, time.Minute},
				{3 * time.Second, "192.0.2.1", scopeB, []string{"other.example"}, time.Minute},
				{4 * time.Second, "192.0.2.1", Scope{NetNS: scopeA.NetNS, CgroupID: 9}, []string{"newest.example"}, time.Minute},
			},
			lookups: []lookupCheck{
				{5 * time.Second, "192.0.2.1", scopeA,
					[]string{"own.example", "newest.example", "same-netns.example"}, "own.example", 3 * time.Second},
				{5 * time.Second, "192.0.2.1", Scope{NetNS: scopeA.NetNS, TGID: scopeC.TGID},
					[]string{"same-netns.example", "newest.example", "own.example"}, "same-netns.example", 5 * time.Second},
			},
		},
		{
			name: "deduplicated across scopes",
			inserts: []insertion{
				{0, "192.0.2.1", scopeA, []string{"www.example", "cdn.example"}, time.Minute},
				{0, "192.0.2.1", scopeC, []string{"cdn.example"}, time.Minute},
			},
			lookups: []lookupCheck{{0, "192.0.2.1", scopeC, []string{"cdn.example", "www.example"}, "cdn.example", 0}},
		},
		{
			name: "max names per IP",
			cfg:  func(c *Config) { c.MaxNamesPerIP = 3 },
			inserts: []insertion{
				{0, "192.0.2.1", scopeA, []string{"1.example", "2.example"}, time.Minute},
				{time.Second, "192.0.2.1", scopeA, []string{"3.example", "4.example"}, time.Minute},
				{time.Second, "192.0.2.2", scopeA, []string{"q.example", "c1.example", "c2.example", "c3.example"}, time.Minute},
				{0, "192.0.2.3", scopeA, []string{"a.example", "b.example"}, time.Minute},
				{0, "192.0.2.3", scopeC, []string{"c.example", "d.example"}, time.Minute},
			},
			lookups: []lookupCheck{
				{time.Second, "192.0.2.1", scopeA, []string{"3.example", "4.example", "1.example"}, "3.example", 0},
				{time.Second, "192.0.2.2", scopeA, []string{"q.example", "c1.example", "c2.example"}, "q.example", 0},
				{time.Second, "192.0.2.3", scopeA, []string{"a.example", "b.example", "c.example"}, "a.example", time.Second},
			},
		},
		{
			name: "LRU eviction",
			cfg:  func(c *Config) { c.MaxEntries = 2 },
			inserts: []insertion{
				{0, "192.0.2.1", scopeA, []string{"one.example"}, time.Minute},
				{0, "192.0.2.2", scopeA, []string{"two.example"}, time.Minute},
				// Using 192.0.2.1 makes 192.0.2.2 the least recently used.
				{time.Second, "192.0.2.1", scopeA, []string{"one.example"}, time.Minute},
				{2 * time.Second, "192.0.2.3", scopeA, []string{"three.example"}, time.Minute},
			},
			lookups: []lookupCheck{
				{3 * time.Second, "192.0.2.2", scopeA, nil, "", 0},
				{3 * time.Second, "192.0.2.1", scopeA, []string{"one.example"}, "one.example", 2 * time.Second},
				{3 * time.Second, "192.0.2.3", scopeA, []string{"three.example"}, "three.example", time.Second},
			},
		},
		{
			name: "v4-mapped normalisation",
			inserts: []insertion{
				{0, "::ffff:192.0.2.1", scopeA, []string{"mapped.example"}, time.Minute},
			},
			lookups: []lookupCheck{
				{0, "192.0.2.1", scopeA, []string{"mapped.example"}, "mapped.example", 0},
				{0, "::ffff:192.0.2.1", scopeA, []string{"mapped.example"}, "mapped.example", 0},
			},
		},
		{
			name:    "unknown IP",
			inserts: []insertion{{0, "192.0.2.1", scopeA, []string{"a.example"}, time.Minute}},
			lookups: []lookupCheck{{0, "192.0.2.2", scopeA, nil, "", 0}},
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			cfg := DefaultConfig()
			if tt.cfg != nil {
				tt.cfg(&cfg)
			}
			c := NewCache(cfg)
			for _, in := range tt.inserts {
				c.Insert(netip.MustParseAddr(in.ip), in.scope, chainBytes(in.chain), in.ttl, t0.Add(in.at))
			}
			for _, l := range tt.lookups {
				names, best, age, src := c.Lookup(netip.MustParseAddr(l.ip), l.scope, t0.Add(l.at), nil)
				if !slices.Equal(names, l.names) || best != l.best || age != l.age || (src != SourceNone) != (len(l.names) > 0) {
					t.Errorf("Lookup(%s, %+v, t0+%s) = %q, %q, %s, %v; want %q, %q, %s",
						l.ip, l.scope, l.at, names, best, age, src, l.names, l.best, l.age)
				}
			}
		})
	}
}

func TestCacheCounters(t *testing.T) {
	cfg := DefaultConfig()
	cfg.MaxEntries = 2
	cfg.MaxNamesPerIP = 2
	c := NewCache(cfg)
	ip := func(i int) netip.Addr { return netip.AddrFrom4([4]byte{192, 0, 2, byte(i)}) }
	c.Insert(ip(1), scopeA, chainBytes([]string{"a.example", "shared.example"}), time.Minute, t0)
	c.Insert(ip(2), scopeA, chainBytes([]string{"b.example", "shared.example"}), 10*time.Second, t0)
	c.Insert(ip(3), scopeA, chainBytes([]string{"c.example"}), time.Minute, t0) // evicts ip(1)
	c.Insert(ip(3), scopeA, chainBytes([]string{"d.example", "e.example"}), time.Minute, t0)
	want := CacheStats{Entries: 2, Names: 4, Namespaces: 1, Inserts: 4, Evictions: 1, NamesDropped: 1}
	if got := c.Stats(); got != want {
		t.Fatalf("stats\n got %+v\nwant %+v", got, want)
	}
	c.Sweep(t0.Add(30 * time.Second)) // ip(2) expired
	want.Entries, want.Names, want.Expired = 1, 2, 1
	if got := c.Stats(); got != want {
		t.Fatalf("after sweep\n got %+v\nwant %+v", got, want)
	}
	c.Sweep(t0.Add(time.Hour))
	want.Entries, want.Names, want.Namespaces, want.Expired = 0, 0, 0, 2
	if got := c.Stats(); got != want {
		t.Fatalf("after full expiry\n got %+v\nwant %+v", got, want)
	}
	// Freed entries are reused.
	for i := range 10 {
		c.Insert(ip(i), scopeA, chainBytes([]string{"x.example"}), time.Minute, t0.Add(time.Hour))
	}
	if got := len(c.entries); got != 2 {
		t.Errorf("entries array grew to %d, want 2", got)
	}
}

func TestCacheScopesPerIP(t *testing.T) {
	ip := netip.MustParseAddr("192.0.2.1")
	scope := func(i int) Scope { return Scope{NetNS: uint32(1000 + i), CgroupID: uint64(i + 1)} }
	t.Run("one scope per namespace: the lowest inode goes", func(t *testing.T) {
		c := NewCache(DefaultConfig())
		for i := range MaxScopesPerIP + 3 {
			c.Insert(ip, scope(i), chainBytes([]string{fmt.Sprintf("n%d.example", i)}), time.Minute, t0.Add(time.Duration(i)*time.Second))
		}
		if st := c.Stats(); st.Entries != MaxScopesPerIP || st.Evictions != 3 {
			t.Fatalf("entries, evictions = %d, %d; want %d, 3", st.Entries, st.Evictions, MaxScopesPerIP)
		}
		for i, want := range map[int]bool{0: false, 2: false, 3: true, MaxScopesPerIP + 2: true} {
			if _, _, _, src := c.Lookup(ip, scope(i), t0.Add(30*time.Second), nil); (src != SourceNone) != want {
				t.Errorf("scope %d: found %v, want %v", i, src != SourceNone, want)
			}
		}
	})
	t.Run("many cgroups of one namespace evict their own", func(t *testing.T) {
		c := NewCache(DefaultConfig())
		c.Insert(ip, scopeA, chainBytes([]string{"a.example"}), time.Minute, t0)
		for i := range 3 * MaxScopesPerIP {
			c.Insert(ip, Scope{NetNS: 5, CgroupID: uint64(100 + i)}, chainBytes([]string{fmt.Sprintf("n%d.example", i)}), time.Minute, t0.Add(time.Second))
		}
		if names, _, _, _ := c.Lookup(ip, scopeA, t0.Add(2*time.Second), nil); !slices.Equal(names, []string{"a.example"}) {
			t.Fatalf("scopeA's names = %q, want [a.example]", names)
		}
		checkCache(t, c)
	})
}

func TestCacheInterns(t *testing.T) {
	c := NewCache(DefaultConfig())
	chain := chainBytes([]string{"shared.example"})
	c.Insert(netip.MustParseAddr("192.0.2.1"), scopeA, chain, time.Minute, t0)
	c.Insert(netip.MustParseAddr("192.0.2.2"), scopeB, chain, time.Minute, t0)
	n1, _, _, _ := c.Lookup(netip.MustParseAddr("192.0.2.1"), scopeA, t0, nil)
	n2, _, _, _ := c.Lookup(netip.MustParseAddr("192.0.2.2"), scopeB, t0, nil)
	if unsafe.StringData(n1[0]) != unsafe.StringData(n2[0]) {
		t.Fatal("one name stored twice")
	}
	if got := c.Stats().Names; got != 1 {
		t.Fatalf("Names = %d, want 1", got)
	}
}

func TestLookupAllocs(t *testing.T) {
	c := NewCache(DefaultConfig())
	ip := netip.MustParseAddr("192.0.2.1")
	c.Insert(ip, scopeA, chainBytes([]string{"www.example.com", "cdn.example.net"}), time.Minute, t0)
	c.Insert(ip, scopeB, chainBytes([]string{"other.example"}), time.Minute, t0)
	dst := make([]string, 0, 16)
	allocs := testing.AllocsPerRun(100, func() {
		if _, _, _, src := c.Lookup(ip, scopeA, t0, dst[:0]); src == SourceNone {
			t.Fatal("not found")
		}
	})
	if allocs != 0 {
		t.Errorf("Lookup: %v allocs/op, want 0", allocs)
	}
}
