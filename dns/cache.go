package dns

import (
	"encoding/binary"
	"hash/maphash"
	"math"
	"math/bits"
	"math/rand/v2"
	"net/netip"
	"time"
	"unsafe"
)

const (
	// MaxScopesPerIP bounds the scopes (network namespace + cgroup) one IP
	// keeps names for; a new scope beyond it replaces the one updated
	// longest ago. It also bounds the work of one lookup.
	MaxScopesPerIP = 16
	// sweepPerInsert is how many entries each insert checks for expiry.
	sweepPerInsert = 2
	// none is the null entry and slot index.
	none = -1
	// freeEntry marks a free entry in its ipNext.
	freeEntry = -2
	// noName is the null name id.
	noName = math.MaxUint32

	// chunkSize is the size of the arena chunks that hold the name bytes.
	// A name string handed out by Lookup keeps its chunk alive for as long
	// as the caller holds it, so chunks are kept small.
	chunkSize = 4096
	// compactMin is the dead arena bytes below which the arena is never
	// compacted.
	compactMin = 16 * chunkSize

	// ipTagShift and ipIdxMask split an IP index slot: the entry index + 1
	// in the low 25 bits (entries are at most MaxMaxEntries = 1<<24), 7
	// bits of the IP's hash above, so that most probes of other IPs are
	// rejected without reading their entry.
	ipTagShift = 25
	ipIdxMask  = 1<<ipTagShift - 1
)

// CacheStats are the Cache's counters.
type CacheStats struct {
	// Entries is the number of (IP, scope) entries held.
	Entries int
	// Names is the number of distinct name strings held.
	Names int
	// Inserts counts (IP, name chain) insertions.
	Inserts uint64
	// Evictions counts entries dropped to make room: the least recently
	// used when max_entries is reached, or the stalest scope of an IP that
	// has MaxScopesPerIP scopes.
	Evictions uint64
	// Expired counts entries removed because all their names expired.
	Expired uint64
	// NamesDropped counts unexpired names pushed out of an entry by newer
	// ones because it held max_names_per_ip names.
	NamesDropped uint64
}

// nameRec locates one interned name in the arena: n bytes at off in chunk.
// A free record has n == 0 and links the next free record in refs.
type nameRec struct {
	chunk uint32
	off   uint32
	n     uint32
	refs  uint32
}

// slot is one name of an entry, in the slot pool. The names of an entry
// form a list linked by next.
type slot struct {
	learned int64 // Unix ns of the answer
	expires int64 // Unix ns
	name    uint32
	next    int32 // next name of the entry; next free slot when free
}

// zoneRec is one IPv6 zone of the entries' addresses.
type zoneRec struct {
	s    string
	refs int32
}

// entry holds the names of one IP resolved in one scope. It holds no
// pointers, so the garbage collector never scans the entries, and only
// 4-byte fields (52 bytes, no padding).
type entry struct {
	addr  [16]byte // the IP's 16-byte form (IPv4 as ::ffff:a.b.c.d)
	netns uint32
	tgid  uint32    // last process that resolved a name of this entry
	cgrp  [2]uint32 // cgroup id, low half first
	// prev, next: LRU list (most recent at c.head); next links the free
	// list.
	prev, next int32
	ipNext     int32 // next entry of the same IP; freeEntry when free
	// names is the first slot of the entry's names, ordered newest
	// resolution first, each resolution in chain order (question name
	// first); none when empty.
	names int32
	zone  uint32 // the IPv6 zone's id + 1, 0 without a zone
}

func (e *entry) cgroup() uint64 { return uint64(e.cgrp[1])<<32 | uint64(e.cgrp[0]) }

func (e *entry) live() bool { return e.ipNext != freeEntry }

// Cache maps IPs to the DNS names they were resolved from. Entries are kept
// per (IP, network namespace, cgroup): names resolved in different scopes
// to the same IP are kept apart, so that a lookup can put the connecting
// process's own names first. Name strings are interned: each distinct name
// is stored once and handed out by Lookup without copying.
//
// Memory: entries, their names (slots) and the name records live in flat
// arrays of fixed-size structs without pointers; the IP and name indexes
// are open-addressing tables of 4-byte indexes; the name bytes are packed
// in 4 KiB arena chunks that are never written over once a name is in
// them (the strings handed out stay valid and immutable). Chunks whose
// names are all gone are dropped, and when more than half the arena is
// dead the live names are copied to fresh chunks.
type Cache struct {
	maxEntries int
	maxNames   int
	minTTL     int64
	maxTTL     int64

	entries    []entry
	free       int32
	head, tail int32
	live       int

	slots    []slot
	freeSlot int32

	// ipIndex maps an IP (addr, zone) to its first entry; see ipTagShift.
	ipIndex []uint32
	ipCount int
	k0, k1  uint64 // IP hash keys

	// Interned names: records by id, an index by content (id + 1, 0 for
	// an empty slot) and the arena.
	recs       []nameRec
	freeName   uint32
	nameIndex  []uint32
	nameCount  int
	seed       maphash.Seed
	chunks     [][]byte
	chunkLive  []int    // live name bytes per chunk
	freeChunks []uint32 // indexes of dropped chunks
	cur        int      // the chunk names are appended to, none at first
	arenaUsed  int      // bytes used in the kept chunks
	arenaLive  int      // bytes of live names
	compactMin int      // dead bytes that never trigger a compaction

	zones     map[string]uint32 // zone -> id + 1
	zoneRecs  []zoneRec
	freeZones []uint32

	scratch []uint32 // name ids of the chain being inserted
	last    []uint32 // name ids of the last chain inserted, by position
	hand    int
	stats   CacheStats
}

// NewCache returns an empty cache configured by cfg, which must be valid
// (see [Config.Validate]); MaxEntries and MaxNamesPerIP below 1 are taken
// as 1.
func NewCache(cfg Config) *Cache {
	c := &Cache{
		maxEntries: max(cfg.MaxEntries, 1),
		maxNames:   max(cfg.MaxNamesPerIP, 1),
		minTTL:     int64(cfg.MinTTL),
		maxTTL:     int64(max(cfg.MaxTTL, cfg.MinTTL)),
		free:       none,
		head:       none,
		tail:       none,
		freeSlot:   none,
		k0:         rand.Uint64(),
		k1:         rand.Uint64(),
		freeName:   noName,
		seed:       maphash.MakeSeed(),
		cur:        none,
		compactMin: compactMin,
		scratch:    make([]uint32, 0, max(cfg.MaxNamesPerIP, 1)),
		last:       make([]uint32, max(cfg.MaxNamesPerIP, 1)),
	}
	for k := range c.last {
		c.last[k] = noName
	}
	return c
}

// Insert records that ip was resolved from the names of chain (question
// name first, then each CNAME target) in scope at now, valid for ttl
// clamped to [min_ttl, max_ttl]. Names must be normalized (lower case, no
// trailing dot) as [Parser] returns them; only the first max_names_per_ip
// are kept. The chain becomes the entry's newest resolution; older names
// stay behind it while they fit and have not expired.
func (c *Cache) Insert(ip netip.Addr, scope Scope, chain [][]byte, ttl time.Duration, now time.Time) {
	ip = ip.Unmap()
	if !ip.IsValid() || len(chain) == 0 {
		return
	}
	at := now.UnixNano()
	c.sweep(at, sweepPerInsert)
	exp := at + min(max(int64(ttl), c.minTTL), c.maxTTL)

	addr := ip.As16()
	zone := c.zoneID(ip.Zone(), true)
	i := c.find(&addr, zone, scope)
	if i == none {
		i = c.add(&addr, zone, scope)
	} else {
		c.touch(i)
	}
	c.releaseZone(zone) // zoneID's reference; the entry holds its own
	if scope.TGID != 0 {
		c.entries[i].tgid = scope.TGID
	}
	c.stats.Inserts++

	ids := c.scratch[:0]
	for k, n := range chain[:min(len(chain), c.maxNames)] {
		if len(n) == 0 || c.hasName(ids, n) {
			continue
		}
		ids = append(ids, c.internAt(k, n))
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
		link(c.newSlot(id, at, exp))
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
		c.release(s.name)
		c.slots[j] = slot{name: noName, next: c.freeSlot}
		c.freeSlot = j
		j = s.next
	}
	if last != none {
		c.slots[last].next = none
	}
	c.entries[i].names = first
	c.scratch = ids[:0]
	c.maybeCompact()
}

// Lookup appends to dst the unexpired names of ip (IPv4-mapped IPv6 is
// taken as IPv4) and returns the extended slice, at most max_names_per_ip
// names longer, deduplicated. Names from the scope that best matches the
// caller's come first: entries are ranked by network namespace match, then
// cgroup match, then process match, then by how recently they were
// resolved; within an entry, the newest resolution comes first in chain
// order (question name, then CNAMEs).
//
// best is the first of these names: the question name of the newest
// resolution in the best-matching scope, and so, when no scope matches, the
// newest name overall. age is how long before now best was learned. ok
// reports whether any name was found. Lookup does not allocate when dst has
// room; the strings it returns are shared and immutable.
func (c *Cache) Lookup(ip netip.Addr, scope Scope, now time.Time, dst []string) (names []string, best string, age time.Duration, ok bool) {
	ip = ip.Unmap()
	var i int32 = none
	if zone := c.zoneID(ip.Zone(), false); ip.IsValid() && zone != noName {
		addr := ip.As16()
		_, i = c.ipFind(&addr, zone)
	}
	if i == none {
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
		newest, live := c.newest(e, at)
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
	// Interned: two names are equal exactly when their ids are.
	var got [MaxMaxNamesPerIP]uint32
	n := 0
	for _, cd := range cands[:nc] {
		c.touch(cd.i)
		for j := c.entries[cd.i].names; j != none && n < c.maxNames; j = c.slots[j].next {
			s := &c.slots[j]
			if s.expires <= at || hasID(got[:min(n, len(got))], s.name) {
				continue
			}
			name := c.str(s.name)
			if n >= len(got) && hasString(dst[len(dst)-n:], name) {
				continue // more names than MaxMaxNamesPerIP: not a valid config
			} else if n < len(got) {
				got[n] = s.name
			}
			n++
			if best == "" {
				best, age = name, time.Duration(max(at-s.learned, 0))
			}
			dst = append(dst, name)
		}
	}
	return dst, best, age, n > 0
}

// Sweep removes every entry whose names have all expired at now. Inserts
// already sweep a few entries each; a receiver with little DNS traffic can
// call Sweep from time to time (e.g. every minute) to release memory.
func (c *Cache) Sweep(now time.Time) {
	c.sweep(now.UnixNano(), len(c.entries))
	c.maybeCompact()
}

// Stats returns the Cache's counters.
func (c *Cache) Stats() CacheStats {
	s := c.stats
	s.Entries = c.live
	s.Names = c.nameCount
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

// find returns the entry of the IP (addr, zone) in scope, or none.
func (c *Cache) find(addr *[16]byte, zone uint32, scope Scope) int32 {
	_, i := c.ipFind(addr, zone)
	for ; i != none; i = c.entries[i].ipNext {
		e := &c.entries[i]
		if e.netns == scope.NetNS && e.cgroup() == scope.CgroupID {
			return i
		}
	}
	return none
}

// add creates the entry of the IP (addr, zone) in scope, evicting to make
// room, and returns its index. The entry is the most recently used.
func (c *Cache) add(addr *[16]byte, zone uint32, scope Scope) int32 {
	if _, head := c.ipFind(addr, zone); head != none {
		n, stalest := 0, int32(none)
		var stalestAt int64
		for i := head; i != none; i = c.entries[i].ipNext {
			n++
			if at := c.updated(&c.entries[i]); stalest == none || at < stalestAt {
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
		c.entries = append(c.entries, entry{ipNext: freeEntry})
	}
	e := &c.entries[i]
	*e = entry{
		addr:   *addr,
		netns:  scope.NetNS,
		cgrp:   [2]uint32{uint32(scope.CgroupID), uint32(scope.CgroupID >> 32)},
		prev:   none,
		next:   none,
		ipNext: none,
		names:  none,
		zone:   zone,
	}
	if zone != 0 {
		c.zoneRecs[zone-1].refs++
	}
	if pos, head := c.ipFind(addr, zone); head != none {
		e.ipNext = head
		c.ipIndex[pos] = c.ipIndex[pos]&^ipIdxMask | uint32(i+1)
	} else {
		c.ipInsert(i)
	}
	c.pushFront(i)
	c.live++
	return i
}

// remove unlinks entry i from every list, releases its names and frees it.
func (c *Cache) remove(i int32) {
	c.unlink(i)
	e := &c.entries[i]
	pos, head := c.ipFind(&e.addr, e.zone)
	if head == i {
		if e.ipNext == none {
			c.ipDelete(pos)
		} else {
			c.ipIndex[pos] = c.ipIndex[pos]&^ipIdxMask | uint32(e.ipNext+1)
		}
	} else {
		for j := head; j != none; j = c.entries[j].ipNext {
			if c.entries[j].ipNext == i {
				c.entries[j].ipNext = e.ipNext
				break
			}
		}
	}
	for j := e.names; j != none; {
		next := c.slots[j].next
		c.release(c.slots[j].name)
		c.slots[j] = slot{name: noName, next: c.freeSlot}
		c.freeSlot = j
		j = next
	}
	c.releaseZone(e.zone)
	*e = entry{prev: none, next: c.free, ipNext: freeEntry, names: none}
	c.free = i
	c.live--
}

// touch makes entry i the most recently used.
func (c *Cache) touch(i int32) {
	if c.head == i {
		return
	}
	c.unlink(i)
	c.pushFront(i)
}

func (c *Cache) pushFront(i int32) {
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

func (c *Cache) unlink(i int32) {
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

// updated returns when e last received a name (0 when empty).
func (c *Cache) updated(e *entry) int64 {
	if e.names == none {
		return 0
	}
	return c.slots[e.names].learned
}

// rank scores how well e's scope matches scope: network namespace first,
// then cgroup, then process. Zero (unknown) fields never match.
func (e *entry) rank(scope Scope) int {
	r := 0
	if scope.NetNS != 0 && e.netns == scope.NetNS {
		r += 4
	}
	if scope.CgroupID != 0 && e.cgroup() == scope.CgroupID {
		r += 2
	}
	if scope.TGID != 0 && e.tgid == scope.TGID {
		r++
	}
	return r
}

// ip returns the address of e.
func (c *Cache) ip(e *entry) netip.Addr {
	a := netip.AddrFrom16(e.addr).Unmap()
	if e.zone != 0 {
		a = a.WithZone(c.zoneRecs[e.zone-1].s)
	}
	return a
}

// IP index.

// ipHash hashes an IP (addr, zone).
func (c *Cache) ipHash(addr *[16]byte, zone uint32) uint64 {
	lo := binary.LittleEndian.Uint64(addr[:8])
	hi := binary.LittleEndian.Uint64(addr[8:])
	h, l := bits.Mul64(lo^c.k0, hi^c.k1^uint64(zone))
	h, l = bits.Mul64(h^l^c.k0, 0x9e3779b97f4a7c15)
	return h ^ l
}

// ipFind returns the index position and the first entry of the IP (addr,
// zone), or (-1, none).
func (c *Cache) ipFind(addr *[16]byte, zone uint32) (int, int32) {
	if len(c.ipIndex) == 0 {
		return -1, none
	}
	h := c.ipHash(addr, zone)
	mask := len(c.ipIndex) - 1
	tag := uint32(h>>(64-(32-ipTagShift))) << ipTagShift
	for pos := int(h) & mask; ; pos = (pos + 1) & mask {
		v := c.ipIndex[pos]
		if v == 0 {
			return -1, none
		}
		if v&^ipIdxMask == tag {
			i := int32(v&ipIdxMask) - 1
			if e := &c.entries[i]; e.addr == *addr && e.zone == zone {
				return pos, i
			}
		}
	}
}

// ipInsert adds entry i as the first entry of its IP, which has none.
func (c *Cache) ipInsert(i int32) {
	if (c.ipCount+1)*4 > len(c.ipIndex)*3 {
		old := c.ipIndex
		c.ipIndex = make([]uint32, max(2*len(old), 64))
		for _, v := range old {
			if v != 0 {
				c.ipPlace(int32(v&ipIdxMask) - 1)
			}
		}
	}
	c.ipPlace(i)
	c.ipCount++
}

// ipPlace puts entry i in the first free position of its probe sequence.
func (c *Cache) ipPlace(i int32) {
	e := &c.entries[i]
	h := c.ipHash(&e.addr, e.zone)
	mask := len(c.ipIndex) - 1
	pos := int(h) & mask
	for c.ipIndex[pos] != 0 {
		pos = (pos + 1) & mask
	}
	c.ipIndex[pos] = uint32(h>>(64-(32-ipTagShift)))<<ipTagShift | uint32(i+1)
}

// ipDelete empties position pos, shifting back the IPs probed past it.
func (c *Cache) ipDelete(pos int) {
	mask := len(c.ipIndex) - 1
	for j := (pos + 1) & mask; c.ipIndex[j] != 0; j = (j + 1) & mask {
		e := &c.entries[int32(c.ipIndex[j]&ipIdxMask)-1]
		home := int(c.ipHash(&e.addr, e.zone)) & mask
		// Move j to pos unless its home lies cyclically in (pos, j].
		if (j-home)&mask >= (j-pos)&mask {
			c.ipIndex[pos] = c.ipIndex[j]
			pos = j
		}
	}
	c.ipIndex[pos] = 0
	c.ipCount--
}

// Zones.

// zoneID returns the id + 1 of zone, 0 for no zone. With create it adds
// an unknown zone and takes a reference, which the caller releases;
// without, it returns noName for an unknown zone.
func (c *Cache) zoneID(zone string, create bool) uint32 {
	if zone == "" {
		return 0
	}
	id, ok := c.zones[zone]
	switch {
	case ok:
	case !create:
		return noName
	case len(c.freeZones) > 0:
		id = c.freeZones[len(c.freeZones)-1]
		c.freeZones = c.freeZones[:len(c.freeZones)-1]
		c.zoneRecs[id-1] = zoneRec{s: zone}
	default:
		c.zoneRecs = append(c.zoneRecs, zoneRec{s: zone})
		id = uint32(len(c.zoneRecs))
	}
	if create {
		if c.zones == nil {
			c.zones = make(map[string]uint32)
		}
		c.zones[zone] = id
		c.zoneRecs[id-1].refs++
	}
	return id
}

// releaseZone drops a reference to zone id + 1.
func (c *Cache) releaseZone(id uint32) {
	if id == 0 {
		return
	}
	z := &c.zoneRecs[id-1]
	if z.refs--; z.refs <= 0 {
		delete(c.zones, z.s)
		*z = zoneRec{}
		c.freeZones = append(c.freeZones, id)
	}
}

// Interned names.

// str returns the string of name id, pointing into the arena.
func (c *Cache) str(id uint32) string {
	r := &c.recs[id]
	return unsafe.String(&c.chunks[r.chunk][r.off], r.n)
}

// internAt returns the id of name, the k-th of its chain, with one more
// reference. The names of the last chain are remembered: the records of
// one answer share their chain, so the second and later inserts of an
// answer skip the index.
func (c *Cache) internAt(k int, name []byte) uint32 {
	if k < len(c.last) {
		if id := c.last[k]; id != noName && c.recs[id].n != 0 && c.str(id) == string(name) {
			c.recs[id].refs++
			return id
		}
	}
	h := maphash.Bytes(c.seed, name)
	id, pos := c.nameFind(name, h)
	if id != noName {
		c.recs[id].refs++
	} else {
		if (c.nameCount+1)*4 > len(c.nameIndex)*3 {
			c.growNames()
			pos = c.namePos(h)
		}
		id = c.newName(name)
		c.nameIndex[pos] = id + 1
		c.nameCount++
	}
	if k < len(c.last) {
		c.last[k] = id
	}
	return id
}

// nameFind returns the id of name, whose hash is h, or noName and the
// index position where it would go.
func (c *Cache) nameFind(name []byte, h uint64) (uint32, int) {
	if len(c.nameIndex) == 0 {
		return noName, -1
	}
	mask := len(c.nameIndex) - 1
	for pos := int(h) & mask; ; pos = (pos + 1) & mask {
		v := c.nameIndex[pos]
		if v == 0 {
			return noName, pos
		}
		if r := &c.recs[v-1]; int(r.n) == len(name) && c.str(v-1) == string(name) {
			return v - 1, pos
		}
	}
}

// namePos returns the first empty index position for hash h.
func (c *Cache) namePos(h uint64) int {
	mask := len(c.nameIndex) - 1
	pos := int(h) & mask
	for c.nameIndex[pos] != 0 {
		pos = (pos + 1) & mask
	}
	return pos
}

// growNames doubles the name index.
func (c *Cache) growNames() {
	old := c.nameIndex
	c.nameIndex = make([]uint32, max(2*len(old), 64))
	for _, v := range old {
		if v != 0 {
			c.nameIndex[c.namePos(maphash.String(c.seed, c.str(v-1)))] = v
		}
	}
}

// newName stores name in the arena and returns its new record's id, with
// one reference.
func (c *Cache) newName(name []byte) uint32 {
	ch, off := c.store(name)
	r := nameRec{chunk: ch, off: off, n: uint32(len(name)), refs: 1}
	c.arenaLive += len(name)
	if id := c.freeName; id != noName {
		c.freeName = c.recs[id].refs
		c.recs[id] = r
		return id
	}
	c.recs = append(c.recs, r)
	return uint32(len(c.recs) - 1)
}

// store copies b into the arena and returns where.
func (c *Cache) store(b []byte) (chunk, off uint32) {
	if c.cur == none || len(b) > cap(c.chunks[c.cur])-len(c.chunks[c.cur]) {
		ch := c.newChunk(max(len(b), chunkSize))
		if len(b) > chunkSize {
			// A name of its own: leave the current chunk current.
			c.chunks[ch] = append(c.chunks[ch], b...)
			c.chunkLive[ch] += len(b)
			c.arenaUsed += len(b)
			return ch, 0
		}
		c.cur = int(ch)
	}
	p := &c.chunks[c.cur]
	off = uint32(len(*p))
	*p = append(*p, b...)
	c.chunkLive[c.cur] += len(b)
	c.arenaUsed += len(b)
	return uint32(c.cur), off
}

// newChunk adds an empty chunk of capacity size and returns its index.
func (c *Cache) newChunk(size int) uint32 {
	b := make([]byte, 0, size)
	if n := len(c.freeChunks); n > 0 {
		ch := c.freeChunks[n-1]
		c.freeChunks = c.freeChunks[:n-1]
		c.chunks[ch], c.chunkLive[ch] = b, 0
		return ch
	}
	c.chunks = append(c.chunks, b)
	c.chunkLive = append(c.chunkLive, 0)
	return uint32(len(c.chunks) - 1)
}

// release drops one reference to name id, forgetting the name at zero.
func (c *Cache) release(id uint32) {
	r := &c.recs[id]
	if r.refs--; r.refs > 0 {
		return
	}
	mask := len(c.nameIndex) - 1
	pos := int(maphash.String(c.seed, c.str(id))) & mask
	for c.nameIndex[pos] != id+1 {
		pos = (pos + 1) & mask
	}
	// Shift back the names probed past pos.
	for j := (pos + 1) & mask; c.nameIndex[j] != 0; j = (j + 1) & mask {
		home := int(maphash.String(c.seed, c.str(c.nameIndex[j]-1))) & mask
		if (j-home)&mask >= (j-pos)&mask {
			c.nameIndex[pos] = c.nameIndex[j]
			pos = j
		}
	}
	c.nameIndex[pos] = 0
	c.nameCount--

	n := int(r.n)
	c.arenaLive -= n
	if ch := int(r.chunk); ch != c.cur {
		if c.chunkLive[ch] -= n; c.chunkLive[ch] == 0 {
			c.arenaUsed -= len(c.chunks[ch])
			c.chunks[ch] = nil
			c.freeChunks = append(c.freeChunks, uint32(ch))
		}
	} else {
		c.chunkLive[ch] -= n
	}
	*r = nameRec{refs: c.freeName}
	c.freeName = id
}

// maybeCompact copies the live names to fresh chunks when more than half
// of the arena is dead. Strings already handed out keep their old chunks
// alive, unchanged, for as long as their holders keep them.
func (c *Cache) maybeCompact() {
	dead := c.arenaUsed - c.arenaLive
	if dead < c.compactMin || dead <= c.arenaLive {
		return
	}
	old := c.chunks
	c.chunks, c.chunkLive, c.freeChunks = nil, nil, nil
	c.cur, c.arenaUsed = none, 0
	for id := range c.recs {
		r := &c.recs[id]
		if r.n == 0 {
			continue
		}
		r.chunk, r.off = c.store(old[r.chunk][r.off : r.off+r.n])
	}
}

// hasName reports whether one of the names ids is name.
func (c *Cache) hasName(ids []uint32, name []byte) bool {
	for _, id := range ids {
		if c.str(id) == string(name) {
			return true
		}
	}
	return false
}

func hasID(ids []uint32, id uint32) bool {
	for _, x := range ids {
		if x == id {
			return true
		}
	}
	return false
}

func hasString(s []string, name string) bool {
	for _, x := range s {
		if x == name {
			return true
		}
	}
	return false
}
