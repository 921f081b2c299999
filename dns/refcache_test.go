package dns

// The cache as it was before the flat-array rewrite, kept as the reference
// of TestCacheMatchesReference.

import (
	"net/netip"
	"time"
)

// refInterned is one name string shared by every refEntry that holds it.
type refInterned struct {
	s    string
	refs int32
}

// refSlot is one name of an refEntry.
type refSlot struct {
	name    *refInterned
	learned int64 // Unix ns of the answer
	expires int64 // Unix ns
}

// refEntry holds the names of one IP resolved in one scope.
type refEntry struct {
	addr   netip.Addr
	netns  uint32
	tgid   uint32 // last process that resolved a name of this refEntry
	cgroup uint64
	// names are ordered newest resolution first, each resolution in chain
	// order (question name first).
	names      []refSlot
	prev, next int32 // LRU list (most recent at c.head); next links the free list
	ipNext     int32 // next refEntry of the same IP
	live       bool
}

// refCache maps IPs to the DNS names they were resolved from. Entries are kept
// per (IP, network namespace, cgroup): names resolved in different scopes
// to the same IP are kept apart, so that a lookup can put the connecting
// process's own names first. Name strings are refInterned: each distinct name
// is stored once and handed out by Lookup without copying.
type refCache struct {
	maxEntries int
	maxNames   int
	minTTL     int64
	maxTTL     int64

	entries    []refEntry
	free       int32
	head, tail int32
	live       int
	byIP       map[netip.Addr]int32
	names      map[string]*refInterned
	scratch    []refSlot
	last       []*refInterned // strings of the last chain inserted, by position
	hand       int
	stats      CacheStats
}

// newRefCache returns an empty cache configured by cfg, which must be valid
// (see [Config.Validate]); MaxEntries and MaxNamesPerIP below 1 are taken
// as 1.
func newRefCache(cfg Config) *refCache {
	return &refCache{
		maxEntries: max(cfg.MaxEntries, 1),
		maxNames:   max(cfg.MaxNamesPerIP, 1),
		minTTL:     int64(cfg.MinTTL),
		maxTTL:     int64(max(cfg.MaxTTL, cfg.MinTTL)),
		free:       none,
		head:       none,
		tail:       none,
		byIP:       make(map[netip.Addr]int32),
		names:      make(map[string]*refInterned),
		scratch:    make([]refSlot, 0, 2*max(cfg.MaxNamesPerIP, 1)),
		last:       make([]*refInterned, max(cfg.MaxNamesPerIP, 1)),
	}
}

// Insert records that ip was resolved from the names of chain (question
// name first, then each CNAME target) in scope at now, valid for ttl
// clamped to [min_ttl, max_ttl]. Names must be normalized (lower case, no
// trailing dot) as [Parser] returns them; only the first max_names_per_ip
// are kept. The chain becomes the refEntry's newest resolution; older names
// stay behind it while they fit and have not expired.
func (c *refCache) Insert(ip netip.Addr, scope Scope, chain [][]byte, ttl time.Duration, now time.Time) {
	ip = ip.Unmap()
	if !ip.IsValid() || len(chain) == 0 {
		return
	}
	at := now.UnixNano()
	c.sweep(at, sweepPerInsert)
	exp := at + min(max(int64(ttl), c.minTTL), c.maxTTL)

	i := c.find(ip, scope)
	if i == none {
		i = c.add(ip, scope)
	} else {
		c.touch(i)
	}
	e := &c.entries[i]
	if scope.TGID != 0 {
		e.tgid = scope.TGID
	}
	c.stats.Inserts++

	sc := c.scratch[:0]
	for k, n := range chain[:min(len(chain), c.maxNames)] {
		if len(n) == 0 || refHasName(sc, n) {
			continue
		}
		sc = append(sc, refSlot{name: c.internAt(k, n), learned: at, expires: exp})
	}
	for _, s := range e.names {
		switch {
		case s.expires <= at || refHasInterned(sc, s.name):
		case len(sc) < c.maxNames:
			sc = append(sc, s)
			continue
		default:
			c.stats.NamesDropped++
		}
		c.release(s.name)
	}
	e.names = append(e.names[:0], sc...)
	clear(sc)
	c.scratch = sc[:0]
}

// Lookup appends to dst the unexpired names of ip (IPv4-mapped IPv6 is
// taken as IPv4) and returns the extended slice, at most max_names_per_ip
// names longer, deduplicated. Names from the scope that best matches the
// caller's come first: entries are ranked by network namespace match, then
// cgroup match, then process match, then by how recently they were
// resolved; within an refEntry, the newest resolution comes first in chain
// order (question name, then CNAMEs).
//
// best is the first of these names: the question name of the newest
// resolution in the best-matching scope, and so, when no scope matches, the
// newest name overall. age is how long before now best was learned. ok
// reports whether any name was found. Lookup does not allocate when dst has
// room; the strings it returns are shared and immutable.
func (c *refCache) Lookup(ip netip.Addr, scope Scope, now time.Time, dst []string) (names []string, best string, age time.Duration, ok bool) {
	i, found := c.byIP[ip.Unmap()]
	if !found {
		return dst, "", 0, false
	}
	at := now.UnixNano()
	type cand struct {
		i      int32
		rank   int
		newest int64
	}
	var cands [MaxScopesPerIP]cand
	nc := 0
	for ; i != none && nc < len(cands); i = c.entries[i].ipNext {
		e := &c.entries[i]
		newest, live := e.newest(at)
		if !live {
			continue
		}
		cd := cand{i: i, rank: e.rank(scope), newest: newest}
		j := nc
		for ; j > 0 && (cands[j-1].rank < cd.rank || cands[j-1].rank == cd.rank && cands[j-1].newest < cd.newest); j-- {
			cands[j] = cands[j-1]
		}
		cands[j] = cd
		nc++
	}
	start := len(dst)
	for _, cd := range cands[:nc] {
		c.touch(cd.i)
		for _, s := range c.entries[cd.i].names {
			if s.expires <= at || len(dst)-start >= c.maxNames || hasString(dst[start:], s.name.s) {
				continue
			}
			if best == "" {
				best, age = s.name.s, time.Duration(max(at-s.learned, 0))
			}
			dst = append(dst, s.name.s)
		}
	}
	return dst, best, age, len(dst) > start
}

// Sweep removes every refEntry whose names have all expired at now. Inserts
// already sweep a few entries each; a receiver with little DNS traffic can
// call Sweep from time to time (e.g. every minute) to release memory.
func (c *refCache) Sweep(now time.Time) {
	c.sweep(now.UnixNano(), len(c.entries))
}

// Stats returns the refCache's counters.
func (c *refCache) Stats() CacheStats {
	s := c.stats
	s.Entries = c.live
	s.Names = len(c.names)
	return s
}

// sweep checks up to n entries, round robin, and removes the expired ones.
func (c *refCache) sweep(at int64, n int) {
	for range min(n, len(c.entries)) {
		c.hand++
		if c.hand >= len(c.entries) {
			c.hand = 0
		}
		e := &c.entries[c.hand]
		if _, live := e.newest(at); e.live && !live {
			c.remove(int32(c.hand))
			c.stats.Expired++
		}
	}
}

// find returns the refEntry of ip in scope, or none.
func (c *refCache) find(ip netip.Addr, scope Scope) int32 {
	i, ok := c.byIP[ip]
	if !ok {
		return none
	}
	for ; i != none; i = c.entries[i].ipNext {
		e := &c.entries[i]
		if e.netns == scope.NetNS && e.cgroup == scope.CgroupID {
			return i
		}
	}
	return none
}

// add creates the refEntry of ip in scope, evicting to make room, and returns
// its index. The refEntry is the most recently used.
func (c *refCache) add(ip netip.Addr, scope Scope) int32 {
	if head, ok := c.byIP[ip]; ok {
		n, stalest := 0, int32(none)
		var stalestAt int64
		for i := head; i != none; i = c.entries[i].ipNext {
			n++
			if at := c.entries[i].updated(); stalest == none || at < stalestAt {
				stalest, stalestAt = i, at
			}
		}
		if n >= MaxScopesPerIP {
			c.remove(stalest)
			c.stats.Evictions++
		}
	}
	if c.live >= c.maxEntries {
		c.remove(c.tail)
		c.stats.Evictions++
	}
	var i int32
	if c.free != none {
		i = c.free
		c.free = c.entries[i].next
	} else {
		i = int32(len(c.entries))
		c.entries = append(c.entries, refEntry{names: make([]refSlot, 0, c.maxNames)})
	}
	e := &c.entries[i]
	*e = refEntry{
		addr:   ip,
		netns:  scope.NetNS,
		cgroup: scope.CgroupID,
		names:  e.names[:0],
		prev:   none,
		next:   none,
		ipNext: none,
		live:   true,
	}
	if head, ok := c.byIP[ip]; ok {
		e.ipNext = head
	}
	c.byIP[ip] = i
	c.pushFront(i)
	c.live++
	return i
}

// remove unlinks refEntry i from every list, releases its names and frees it.
func (c *refCache) remove(i int32) {
	e := &c.entries[i]
	c.unlink(i)
	if head := c.byIP[e.addr]; head == i {
		if e.ipNext == none {
			delete(c.byIP, e.addr)
		} else {
			c.byIP[e.addr] = e.ipNext
		}
	} else {
		for j := head; j != none; j = c.entries[j].ipNext {
			if c.entries[j].ipNext == i {
				c.entries[j].ipNext = e.ipNext
				break
			}
		}
	}
	for _, s := range e.names {
		c.release(s.name)
	}
	clear(e.names)
	*e = refEntry{names: e.names[:0], prev: none, next: c.free, ipNext: none}
	c.free = i
	c.live--
}

// touch makes refEntry i the most recently used.
func (c *refCache) touch(i int32) {
	if c.head == i {
		return
	}
	c.unlink(i)
	c.pushFront(i)
}

func (c *refCache) pushFront(i int32) {
	e := &c.entries[i]
	e.prev, e.next = none, c.head
	if c.head != none {
		c.entries[c.head].prev = i
	}
	c.head = i
	if c.tail == none {
		c.tail = i
	}
}

func (c *refCache) unlink(i int32) {
	e := &c.entries[i]
	if e.prev != none {
		c.entries[e.prev].next = e.next
	} else {
		c.head = e.next
	}
	if e.next != none {
		c.entries[e.next].prev = e.prev
	} else {
		c.tail = e.prev
	}
	e.prev, e.next = none, none
}

// internAt returns the shared string of name, the k-th of its chain, with
// one more reference. The strings of the last chain are remembered: the
// records of one answer share their chain, so the second and later inserts
// of an answer skip the map.
func (c *refCache) internAt(k int, name []byte) *refInterned {
	if k < len(c.last) {
		if p := c.last[k]; p != nil && p.refs > 0 && p.s == string(name) {
			p.refs++
			return p
		}
	}
	p, ok := c.names[string(name)]
	if ok {
		p.refs++
	} else {
		p = &refInterned{s: string(name), refs: 1}
		c.names[p.s] = p
	}
	if k < len(c.last) {
		c.last[k] = p
	}
	return p
}

// release drops one reference to p, forgetting the string at zero.
func (c *refCache) release(p *refInterned) {
	if p.refs--; p.refs <= 0 {
		delete(c.names, p.s)
	}
}

// newest returns when the newest unexpired name of e was learned, and
// whether e has one.
func (e *refEntry) newest(at int64) (int64, bool) {
	for _, s := range e.names {
		if s.expires > at {
			return s.learned, true
		}
	}
	return 0, false
}

// updated returns when e last received a name (0 when empty).
func (e *refEntry) updated() int64 {
	if len(e.names) == 0 {
		return 0
	}
	return e.names[0].learned
}

// rank scores how well e's scope matches scope: network namespace first,
// then cgroup, then process. Zero (unknown) fields never match.
func (e *refEntry) rank(scope Scope) int {
	r := 0
	if scope.NetNS != 0 && e.netns == scope.NetNS {
		r += 4
	}
	if scope.CgroupID != 0 && e.cgroup == scope.CgroupID {
		r += 2
	}
	if scope.TGID != 0 && e.tgid == scope.TGID {
		r++
	}
	return r
}

func refHasName(s []refSlot, name []byte) bool {
	for _, x := range s {
		if x.name.s == string(name) {
			return true
		}
	}
	return false
}

func refHasInterned(s []refSlot, p *refInterned) bool {
	for _, x := range s {
		if x.name == p {
			return true
		}
	}
	return false
}
