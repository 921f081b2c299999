package dns

// refCache is the test oracle of TestCacheMatchesReference: the cache's
// documented behaviour written as plainly as possible, with maps, slices
// and sorting, sharing no code with the cache. It is slow and allocates;
// it only has to be obviously right.

import (
	"net/netip"
	"slices"
	"time"
)

type refKey struct {
	ip     netip.Addr
	netns  uint32
	cgroup uint64
}

type refName struct {
	name             string
	learned, expires int64
}

type refEntry struct {
	tgid  uint32
	used  uint64    // when last inserted into or looked up (a counter)
	names []refName // newest resolution first, each in chain order
}

type refCache struct {
	cfg     Config
	entries map[refKey]*refEntry
	clock   uint64
	stats   CacheStats
}

func newRefCache(cfg Config) *refCache {
	return &refCache{cfg: cfg, entries: map[refKey]*refEntry{}}
}

func (c *refCache) use(e *refEntry) {
	c.clock++
	e.used = c.clock
}

// Insert: see Cache.Insert. The reference never sweeps on its own: the
// test turns the cache's incremental sweep off.
func (c *refCache) Insert(ip netip.Addr, scope Scope, chain [][]byte, ttl time.Duration, now time.Time) {
	ip = ip.Unmap().WithZone("")
	if !ip.IsValid() || len(chain) == 0 {
		return
	}
	at := now.UnixNano()
	ttl = min(max(ttl, c.cfg.MinTTL), max(c.cfg.MaxTTL, c.cfg.MinTTL))
	k := refKey{ip, scope.NetNS, scope.CgroupID}
	e := c.entries[k]
	if e == nil {
		c.makeRoom(k)
		e = &refEntry{}
		c.entries[k] = e
	}
	c.use(e)
	if scope.TGID != 0 {
		e.tgid = scope.TGID
	}
	c.stats.Inserts++
	var fresh []refName
	for _, n := range chain[:min(len(chain), c.cfg.MaxNamesPerIP)] {
		s := string(n)
		if s == "" || len(s) > 255 || slices.ContainsFunc(fresh, func(r refName) bool { return r.name == s }) {
			continue
		}
		fresh = append(fresh, refName{s, at, at + int64(ttl)})
	}
	for _, old := range e.names {
		renewed := slices.ContainsFunc(fresh, func(r refName) bool { return r.name == old.name })
		switch {
		case old.expires <= at || renewed:
		case len(fresh) < c.cfg.MaxNamesPerIP:
			fresh = append(fresh, old)
		default:
			c.stats.NamesDropped++
		}
	}
	e.names = fresh
}

// makeRoom evicts before k is added: first for the IP's scope bound, then
// for max_entries. Both evict the least recently used entry of the
// namespace with the most entries (of the IP, of the cache), the lower
// inode on ties.
func (c *refCache) makeRoom(k refKey) {
	var sameIP []refKey
	for o := range c.entries {
		if o.ip == k.ip {
			sameIP = append(sameIP, o)
		}
	}
	if len(sameIP) >= MaxScopesPerIP {
		c.evictFrom(sameIP)
	}
	if len(c.entries) >= c.cfg.MaxEntries {
		c.evictFrom(nil)
	}
}

func (c *refCache) evictFrom(keys []refKey) {
	if keys == nil {
		for o := range c.entries {
			keys = append(keys, o)
		}
	}
	count := map[uint32]int{}
	for _, o := range keys {
		count[o.netns]++
	}
	var netns uint32
	best := 0
	for n, k := range count {
		if k > best || k == best && n < netns {
			netns, best = n, k
		}
	}
	var victim *refKey
	for i, o := range keys {
		if o.netns == netns && (victim == nil || c.entries[o].used < c.entries[*victim].used) {
			victim = &keys[i]
		}
	}
	delete(c.entries, *victim)
	c.stats.Evictions++
}

// Lookup: see Cache.Lookup.
func (c *refCache) Lookup(ip netip.Addr, scope Scope, now time.Time, dst []string) ([]string, string, time.Duration, Source) {
	ip = ip.Unmap().WithZone("")
	at := now.UnixNano()
	type cand struct {
		e      *refEntry
		own    bool
		rank   int
		newest int64
	}
	var cands []cand
	for k, e := range c.entries {
		if k.ip != ip {
			continue
		}
		own := scope.NetNS != 0 && k.netns == scope.NetNS
		if !own && !(c.cfg.CrossNamespace == CrossNamespacePublicOnly && IsPublic(ip)) {
			continue
		}
		cd := cand{e: e, own: own, newest: -1}
		for _, n := range e.names {
			if n.expires > at {
				cd.newest = max(cd.newest, n.learned)
			}
		}
		if cd.newest < 0 {
			continue
		}
		if own && scope.CgroupID != 0 && k.cgroup == scope.CgroupID {
			cd.rank += 2
		}
		if own && scope.TGID != 0 && e.tgid == scope.TGID {
			cd.rank++
		}
		cands = append(cands, cd)
	}
	key := func(cd cand) []int64 {
		own := int64(0)
		if cd.own {
			own = 1
		}
		return []int64{own, int64(cd.rank), cd.newest, int64(cd.e.used)}
	}
	slices.SortFunc(cands, func(a, b cand) int { return slices.Compare(key(b), key(a)) })
	var got []string
	best, age, src := "", time.Duration(0), SourceNone
	for _, cd := range cands {
		c.use(cd.e)
		for _, n := range cd.e.names {
			if len(got) == c.cfg.MaxNamesPerIP || n.expires <= at || slices.Contains(got, n.name) {
				continue
			}
			if got = append(got, n.name); len(got) == 1 {
				best, age = n.name, time.Duration(max(at-n.learned, 0))
				switch {
				case !cd.own:
					src = SourceOtherNetNS
				case scope.TGID != 0 && cd.e.tgid == scope.TGID:
					src = SourceProcess
				default:
					src = SourceNetNS
				}
			}
		}
	}
	return append(dst, got...), best, age, src
}

// Sweep removes the entries whose names have all expired.
func (c *refCache) Sweep(now time.Time) {
	at := now.UnixNano()
	for k, e := range c.entries {
		if !slices.ContainsFunc(e.names, func(n refName) bool { return n.expires > at }) {
			delete(c.entries, k)
			c.stats.Expired++
		}
	}
}

func (c *refCache) Stats() CacheStats {
	s := c.stats
	s.Entries = len(c.entries)
	names := map[string]bool{}
	netns := map[uint32]bool{}
	for k, e := range c.entries {
		netns[k.netns] = true
		for _, n := range e.names {
			names[n.name] = true
		}
	}
	s.Names, s.Namespaces = len(names), len(netns)
	return s
}
