package dns

import (
	"math"
	"math/rand/v2"
	"net/netip"
	"time"
)

const (
	// MaxScopesPerIP bounds the scopes (network namespace + cgroup) one IP
	// keeps names for; a new scope beyond it replaces the least recently
	// used one of the namespace with the most scopes of that IP. It also
	// bounds the work of one lookup.
	MaxScopesPerIP = 16
	// sweepPerInsert is how many entries each insert checks for expiry.
	sweepPerInsert = 2
	// none is the null entry and slot index.
	none = -1
	// freeEntry marks a free entry in its ipNext.
	freeEntry = -2
	// noName is the null name id.
	noName = math.MaxUint32
)

// Source tells where the names of a lookup came from.
type Source uint8

// Sources of names, best first.
const (
	// SourceNone: no name was found.
	SourceNone Source = iota
	// SourceProcess: the best name was resolved by the connecting process
	// itself (its last resolution of that IP in its network namespace).
	SourceProcess
	// SourceNetNS: the best name was resolved by another process in the
	// connecting process's network namespace.
	SourceNetNS
	// SourceOtherNetNS: the best name was resolved in another network
	// namespace; only with cross_namespace: public_only, and only for
	// public destinations.
	SourceOtherNetNS
)

// String returns the source's attribute value: "", "process", "netns" or
// "other_netns".
func (s Source) String() string {
	switch s {
	case SourceProcess:
		return "process"
	case SourceNetNS:
		return "netns"
	case SourceOtherNetNS:
		return "other_netns"
	}
	return ""
}

// CacheStats are the Cache's counters.
type CacheStats struct {
	// Entries is the number of (IP, scope) entries held.
	Entries int
	// Names is the number of distinct name strings held.
	Names int
	// Namespaces is the number of network namespaces holding entries.
	Namespaces int
	// Inserts counts (IP, name chain) insertions.
	Inserts uint64
	// Evictions counts entries dropped to make room: the least recently
	// used of the namespace with the most entries when max_entries is
	// reached, or of an IP that has MaxScopesPerIP scopes.
	Evictions uint64
	// Expired counts entries removed because all their names expired.
	Expired uint64
	// NamesDropped counts unexpired names pushed out of an entry by newer
	// ones because it held max_names_per_ip names.
	NamesDropped uint64
}

// slot is one name of an entry, in the slot pool. The names of an entry
// form a list linked by next.
type slot struct {
	learned int64 // Unix ns of the answer
	expires int64 // Unix ns
	name    uint32
	next    int32 // next name of the entry; next free slot when free
}

// Cache maps IPs to the DNS names they were resolved from. Entries are kept
// per (IP, network namespace, cgroup). A lookup returns the names resolved
// in the connecting process's own network namespace; with cross_namespace
// public_only, names from other namespaces follow them, for public
// addresses only. The namespaces share the room fairly (see entries.go).
//
// Memory: entries, their names (slots) and the name records live in flat
// arrays of fixed-size structs without pointers; the IP and name indexes
// are open-addressing tables of 4-byte indexes; the names are interned (see
// names.go).
type Cache struct {
	maxEntries int
	maxNames   int
	minTTL     int64
	maxTTL     int64
	cross      bool // cross_namespace: public_only
	sweepN     int  // entries each insert checks for expiry

	entries []entry
	free    int32
	live    int
	tick    uint64

	nss     []nsRec
	nsFree  []int32
	nsIndex map[uint32]int32 // netns -> its record
	heap    []int32          // nss indexes, most entries first

	slots    []slot
	freeSlot int32

	ipIndex []uint32
	ipCount int
	k0, k1  uint64 // IP hash keys

	names   names
	scratch []uint32 // name ids of the chain being inserted
	hand    int
	stats   CacheStats
}

// NewCache returns an empty cache configured by cfg, which must be valid
// (see [Config.Validate]); MaxEntries and MaxNamesPerIP below 1 are taken
// as 1.
func NewCache(cfg Config) *Cache {
	return &Cache{
		maxEntries: max(cfg.MaxEntries, 1),
		maxNames:   min(max(cfg.MaxNamesPerIP, 1), MaxMaxNamesPerIP),
		minTTL:     int64(cfg.MinTTL),
		maxTTL:     int64(max(cfg.MaxTTL, cfg.MinTTL)),
		cross:      cfg.CrossNamespace == CrossNamespacePublicOnly,
		sweepN:     sweepPerInsert,
		free:       none,
		freeSlot:   none,
		nsIndex:    make(map[uint32]int32),
		k0:         rand.Uint64(),
		k1:         rand.Uint64(),
		names:      newNames(max(cfg.MaxNamesPerIP, 1)),
		scratch:    make([]uint32, 0, max(cfg.MaxNamesPerIP, 1)),
	}
}

// Insert records that ip was resolved from the names of chain (question
// name first, then each CNAME target) in scope at now, valid for ttl
// clamped to [min_ttl, max_ttl]. Names must be normalized (lower case, no
// trailing dot) as [Parser] returns them; empty names and names longer
// than 255 bytes are skipped, and only the first max_names_per_ip are
// kept. The chain becomes the entry's newest resolution; older names stay
// behind it while they fit and have not expired.
func (c *Cache) Insert(ip netip.Addr, scope Scope, chain [][]byte, ttl time.Duration, now time.Time) {
	at := now.UnixNano()
	c.insert(ip, scope, chain, at, at, at+min(max(int64(ttl), c.minTTL), c.maxTTL))
}

// insert is Insert at time at of names learned at learned, expiring at exp
// (a state file restores names learned before now).
func (c *Cache) insert(ip netip.Addr, scope Scope, chain [][]byte, at, learned, exp int64) {
	ip = ip.Unmap().WithZone("")
	if !ip.IsValid() || len(chain) == 0 {
		return
	}
	c.sweep(at, c.sweepN)

	addr := ip.As16()
	i := c.find(&addr, scope)
	if i == none {
		i = c.add(&addr, scope)
	} else {
		c.touch(i)
	}
	if scope.TGID != 0 {
		c.entries[i].tgid = scope.TGID
	}
	c.stats.Inserts++

	ids := c.scratch[:0]
	for k, n := range chain[:min(len(chain), c.maxNames)] {
		if len(n) == 0 || len(n) > maxNameLen || c.names.has(ids, n) {
			continue
		}
		ids = append(ids, c.names.internAt(k, n))
	}
	// The new names first, in chain order, then the old ones that are
	// still valid, not renewed and fit.
	first, last := int32(none), int32(none)
	link := func(j int32) {
		if last == none {
			first = j
		} else {
			c.slots[last].next = j
		}
		last = j
	}
	for _, id := range ids {
		link(c.newSlot(id, learned, exp))
	}
	kept := len(ids)
	for j := c.entries[i].names; j != none; {
		s := c.slots[j]
		switch {
		case s.expires <= at || hasID(ids, s.name):
		case kept < c.maxNames:
			link(j)
			kept++
			j = s.next
			continue
		default:
			c.stats.NamesDropped++
		}
		c.names.release(s.name)
		c.slots[j] = slot{name: noName, next: c.freeSlot}
		c.freeSlot = j
		j = s.next
	}
	if last != none {
		c.slots[last].next = none
	}
	c.entries[i].names = first
	c.scratch = ids[:0]
	c.names.maybeCompact()
}

// Lookup appends to dst the unexpired names of ip (IPv4-mapped IPv6 is
// taken as IPv4) for a connect from scope, and returns the extended slice,
// at most max_names_per_ip names longer, deduplicated.
//
// Only names resolved in scope's network namespace are returned, and with
// cross_namespace public_only, after them, names resolved in other
// namespaces when ip is a public address ([IsPublic]). Entries of the own
// namespace come first, ranked by cgroup match, then process match; then
// by how recently they were resolved (then used); within an entry, the
// newest resolution comes first in chain order (question name, then
// CNAMEs).
//
// best is the first of these names and age how long before now it was
// learned; src tells where it came from, SourceNone when no name was
// found. Lookup does not allocate when dst has room; the strings it returns
// are shared and immutable.
func (c *Cache) Lookup(ip netip.Addr, scope Scope, now time.Time, dst []string) (names []string, best string, age time.Duration, src Source) {
	ip = ip.Unmap().WithZone("")
	if !ip.IsValid() {
		return dst, "", 0, SourceNone
	}
	addr := ip.As16()
	_, i := c.ipFind(&addr)
	if i == none {
		return dst, "", 0, SourceNone
	}
	public := c.cross && IsPublic(ip)
	at := now.UnixNano()
	type cand struct {
		i      int32
		own    bool
		rank   int
		newest int64
		used   uint64
	}
	above := func(a, b *cand) bool {
		switch {
		case a.own != b.own:
			return a.own
		case a.rank != b.rank:
			return a.rank > b.rank
		case a.newest != b.newest:
			return a.newest > b.newest
		}
		return a.used > b.used
	}
	var cands [MaxScopesPerIP]cand
	nc := 0
	for ; i != none && nc < len(cands); i = c.entries[i].ipNext {
		e := &c.entries[i]
		own := scope.NetNS != 0 && c.netns(i) == scope.NetNS
		if !own && !public {
			continue
		}
		newest, live := c.newest(e, at)
		if !live {
			continue
		}
		cd := cand{i: i, own: own, newest: newest, used: e.used}
		if own {
			cd.rank = e.rank(scope)
		}
		j := nc
		for ; j > 0 && above(&cd, &cands[j-1]); j-- {
			cands[j] = cands[j-1]
		}
		cands[j] = cd
		nc++
	}
	// Interned: two names are equal exactly when their ids are.
	var got [MaxMaxNamesPerIP]uint32
	n := 0
	for _, cd := range cands[:nc] {
		c.touch(cd.i)
		e := &c.entries[cd.i]
		for j := e.names; j != none && n < c.maxNames; j = c.slots[j].next {
			s := &c.slots[j]
			if s.expires <= at || hasID(got[:n], s.name) {
				continue
			}
			name := c.names.str(s.name)
			got[n] = s.name
			n++
			if best == "" {
				best, age = name, time.Duration(max(at-s.learned, 0))
				switch {
				case !cd.own:
					src = SourceOtherNetNS
				case scope.TGID != 0 && e.tgid == scope.TGID:
					src = SourceProcess
				default:
					src = SourceNetNS
				}
			}
			dst = append(dst, name)
		}
	}
	return dst, best, age, src
}

// Sweep removes every entry whose names have all expired at now. Inserts
// already sweep a few entries each; a receiver with little DNS traffic can
// call Sweep from time to time (e.g. every minute) to release memory.
func (c *Cache) Sweep(now time.Time) {
	c.sweep(now.UnixNano(), len(c.entries))
	c.names.maybeCompact()
}

// Stats returns the Cache's counters.
func (c *Cache) Stats() CacheStats {
	s := c.stats
	s.Entries = c.live
	s.Names = c.names.count
	s.Namespaces = len(c.heap)
	return s
}

// sweep checks up to n entries, round robin, and removes the expired ones.
func (c *Cache) sweep(at int64, n int) {
	for range min(n, len(c.entries)) {
		c.hand++
		if c.hand >= len(c.entries) {
			c.hand = 0
		}
		e := &c.entries[c.hand]
		if _, live := c.newest(e, at); e.live() && !live {
			c.remove(int32(c.hand))
			c.stats.Expired++
		}
	}
}

// newSlot returns a slot holding name id, taken from the free list or
// appended to the pool.
func (c *Cache) newSlot(id uint32, learned, expires int64) int32 {
	s := slot{learned: learned, expires: expires, name: id, next: none}
	if j := c.freeSlot; j != none {
		c.freeSlot = c.slots[j].next
		c.slots[j] = s
		return j
	}
	c.slots = append(c.slots, s)
	return int32(len(c.slots) - 1)
}

// newest returns when the newest unexpired name of e was learned, and
// whether e has one.
func (c *Cache) newest(e *entry, at int64) (int64, bool) {
	for j := e.names; j != none; j = c.slots[j].next {
		if s := &c.slots[j]; s.expires > at {
			return s.learned, true
		}
	}
	return 0, false
}

func hasID(ids []uint32, id uint32) bool {
	for _, x := range ids {
		if x == id {
			return true
		}
	}
	return false
}
