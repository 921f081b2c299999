package dns

import (
	"fmt"
	"math/rand/v2"
	"net/netip"
	"slices"
	"strings"
	"testing"
	"time"
)

// TestCacheMatchesReference runs random inserts, lookups and sweeps on the
// cache and on refCache, a plain model of its documented behaviour, and
// requires the same results and counters throughout. Names the cache handed out must
// never change afterwards, whatever the arena does.
func TestCacheMatchesReference(t *testing.T) {
	for seed := range uint64(24) {
		t.Run(fmt.Sprint(seed), func(t *testing.T) { compareWithReference(t, seed) })
	}
}

func compareWithReference(t *testing.T, seed uint64) {
	rng := rand.New(rand.NewPCG(seed, 0x5eed))
	cfg := DefaultConfig()
	cfg.MaxEntries = 1 + rng.IntN(40)
	cfg.MaxNamesPerIP = 1 + rng.IntN(5)
	if seed%4 == 0 {
		cfg.MaxEntries, cfg.MaxNamesPerIP = DefaultMaxEntries, DefaultMaxNamesPerIP
	}
	cfg.MinTTL = time.Duration(rng.IntN(3)) * time.Second
	cfg.MaxTTL = cfg.MinTTL + time.Duration(1+rng.IntN(120))*time.Second
	if seed%3 == 1 {
		cfg.CrossNamespace = CrossNamespacePublicOnly
	}
	c, ref := NewCache(cfg), newRefCache(cfg)
	c.names.compactMin = 256 // compact often
	c.sweepN = 0             // the reference sweeps only when told

	var ips []netip.Addr
	for i := range 24 {
		switch i % 6 {
		case 0:
			ips = append(ips, netip.AddrFrom4([4]byte{93, 184, 216, byte(i)}))
		case 1, 2:
			ips = append(ips, netip.AddrFrom4([4]byte{10, 0, 2, byte(i)}))
		case 3:
			ips = append(ips, netip.MustParseAddr(fmt.Sprintf("2606:4700::%x", i)))
		case 4:
			ips = append(ips, netip.MustParseAddr(fmt.Sprintf("fe80::%x%%eth%d", i%12, i%3)))
		case 5:
			ips = append(ips, netip.MustParseAddr(fmt.Sprintf("::ffff:192.0.2.%d", i-5)))
		}
	}
	ips = append(ips, netip.MustParseAddr("::"), netip.MustParseAddr("::ffff:0.0.0.0"), netip.MustParseAddr("0.0.0.0"))
	scopes := []Scope{scopeA, scopeB, {NetNS: scopeA.NetNS, CgroupID: 3}, {NetNS: scopeA.NetNS, TGID: 7, CgroupID: 1}, {}, {CgroupID: 2},
		{NetNS: 5, CgroupID: 5}, {NetNS: 6, TGID: 6, CgroupID: 5}, {NetNS: 7, CgroupID: 1}}
	names := make([]string, 60)
	for i := range names {
		names[i] = fmt.Sprintf("n%d.%s.example", i, strings.Repeat("x", rng.IntN(100)))
	}
	names[0] = strings.Repeat("long.", 60) + "example" // longer than a DNS name: skipped
	fresh := 0
	name := func() string {
		if rng.IntN(3) == 0 {
			fresh++
			return fmt.Sprintf("fresh%d-%d.%s", fresh, seed, strings.Repeat("y", rng.IntN(60)))
		}
		if rng.IntN(20) == 0 {
			return ""
		}
		return names[rng.IntN(len(names))]
	}
	type held struct{ s, want string }
	var kept []held
	now := t0
	for op := range 6000 {
		now = now.Add(time.Duration(rng.IntN(4)) * 700 * time.Millisecond) // ties too
		ip, scope := ips[rng.IntN(len(ips))], scopes[rng.IntN(len(scopes))]
		switch r := rng.IntN(100); {
		case r < 55:
			chain := make([]string, 1+rng.IntN(6))
			for k := range chain {
				chain[k] = name()
			}
			if rng.IntN(10) == 0 {
				chain[len(chain)-1] = chain[0] // a loop
			}
			ttl := time.Duration(rng.IntN(150)) * time.Second
			c.Insert(ip, scope, chainBytes(chain), ttl, now)
			ref.Insert(ip, scope, chainBytes(chain), ttl, now)
		case r < 97:
			dst := make([]string, rng.IntN(3), 8)
			for k := range dst {
				dst[k] = "prefix"
			}
			gn, gb, ga, gok := c.Lookup(ip, scope, now, dst)
			wn, wb, wa, wok := ref.Lookup(ip, scope, now, slices.Clone(dst))
			if !slices.Equal(gn, wn) || gb != wb || ga != wa || gok != wok {
				t.Fatalf("op %d: Lookup(%v, %+v) = %q, %q, %s, %v; reference %q, %q, %s, %v",
					op, ip, scope, gn, gb, ga, gok, wn, wb, wa, wok)
			}
			for _, s := range gn[len(dst):] {
				if len(kept) < 2000 {
					kept = append(kept, held{s, strings.Clone(s)})
				}
			}
		case r < 99:
			c.Sweep(now)
			ref.Sweep(now)
		default:
			now = now.Add(time.Duration(rng.IntN(200)) * time.Second)
		}
		if g, w := c.Stats(), ref.Stats(); g != w {
			t.Fatalf("op %d: stats\n got %+v\nwant %+v", op, g, w)
		}
		if op%97 == 0 {
			checkCache(t, c)
		}
	}
	checkCache(t, c)
	for _, h := range kept {
		if h.s != h.want {
			t.Fatalf("a name handed out changed: %q, was %q", h.s, h.want)
		}
	}
	c.Sweep(now.Add(time.Hour))
	checkCache(t, c)
	if st := c.Stats(); st.Entries != 0 || st.Names != 0 || st.Namespaces != 0 || c.names.arenaLive != 0 || c.ipCount != 0 || len(c.nsIndex) != 0 {
		t.Fatalf("after expiry: %+v, arena %d, IPs %d, namespaces %d", st, c.names.arenaLive, c.ipCount, len(c.nsIndex))
	}
}
