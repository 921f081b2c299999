package dns

// Entries, their per-namespace LRU lists and the fair eviction between
// network namespaces.
//
// Every entry belongs to the network namespace its names were resolved in
// and sits on that namespace's LRU list. When the cache is full, the entry
// evicted is the least recently used one of the namespace that holds the
// most entries (ties: the lower namespace inode): a namespace that floods
// the cache evicts its own names, never those of a namespace below its
// share. A max-heap of the namespaces by entry count finds it in O(1) and
// is kept in O(log namespaces) per insert and removal.

// entry holds the names of one IP resolved in one scope. It holds no
// pointers, so the garbage collector never scans the entries.
type entry struct {
	addr [16]byte  // the IP's 16-byte form (IPv4 as ::ffff:a.b.c.d)
	tgid uint32    // last process that resolved a name of this entry
	cgrp [2]uint32 // cgroup id, low half first
	// used is c.tick when the entry was last inserted into or looked up:
	// the order of its namespace's LRU list.
	used uint64
	// ns is the record, in c.nss, of the network namespace the names were
	// resolved in.
	ns int32
	// prev, next: the namespace's LRU list (most recent at its head);
	// next links the free list.
	prev, next int32
	ipNext     int32 // next entry of the same IP; freeEntry when free
	// names is the first slot of the entry's names, ordered newest
	// resolution first, each resolution in chain order (question name
	// first); none when empty.
	names int32
}

func (e *entry) cgroup() uint64 { return uint64(e.cgrp[1])<<32 | uint64(e.cgrp[0]) }

// netns returns the network namespace inode of entry i.
func (c *Cache) netns(i int32) uint32 { return c.nss[c.entries[i].ns].netns }

func (e *entry) live() bool { return e.ipNext != freeEntry }

// rank scores how well e matches scope within its namespace: cgroup, then
// process. Zero (unknown) fields never match.
func (e *entry) rank(scope Scope) int {
	r := 0
	if scope.CgroupID != 0 && e.cgroup() == scope.CgroupID {
		r += 2
	}
	if scope.TGID != 0 && e.tgid == scope.TGID {
		r++
	}
	return r
}

// nsRec is one network namespace that holds entries.
type nsRec struct {
	netns      uint32
	count      int32 // its entries
	head, tail int32 // its LRU list
	heap       int32 // its position in c.heap
}

// find returns the entry of the IP addr in scope, or none.
func (c *Cache) find(addr *[16]byte, scope Scope) int32 {
	_, i := c.ipFind(addr)
	for ; i != none; i = c.entries[i].ipNext {
		e := &c.entries[i]
		if c.netns(i) == scope.NetNS && e.cgroup() == scope.CgroupID {
			return i
		}
	}
	return none
}

// add creates the entry of the IP addr in scope, evicting to make room, and
// returns its index. The entry is the most recently used of its namespace.
func (c *Cache) add(addr *[16]byte, scope Scope) int32 {
	if _, head := c.ipFind(addr); head != none {
		if v := c.scopeVictim(head); v != none {
			c.remove(v)
			c.stats.Evictions++
		}
	}
	if c.live >= c.maxEntries {
		c.remove(c.nss[c.heap[0]].tail)
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
		cgrp:   [2]uint32{uint32(scope.CgroupID), uint32(scope.CgroupID >> 32)},
		ns:     c.nsFor(scope.NetNS),
		prev:   none,
		next:   none,
		ipNext: none,
		names:  none,
	}
	if pos, head := c.ipFind(addr); head != none {
		e.ipNext = head
		c.ipSetHead(pos, i)
	} else {
		c.ipInsert(i)
	}
	c.pushFront(i)
	c.nsAdjust(e.ns, 1)
	c.live++
	return i
}

// scopeVictim returns the entry to drop before the IP whose first entry is
// head takes a new scope, or none while it has fewer than MaxScopesPerIP:
// the least recently used entry of the namespace with the most entries of
// this IP (ties: the lower namespace inode).
func (c *Cache) scopeVictim(head int32) int32 {
	n := 0
	var netns uint32
	best := 0
	for i := head; i != none; i = c.entries[i].ipNext {
		n++
		k := 0
		for j := head; j != none; j = c.entries[j].ipNext {
			if c.entries[j].ns == c.entries[i].ns {
				k++
			}
		}
		if n := c.netns(i); k > best || k == best && n < netns {
			best, netns = k, n
		}
	}
	if n < MaxScopesPerIP {
		return none
	}
	victim := int32(none)
	for i := head; i != none; i = c.entries[i].ipNext {
		if e := &c.entries[i]; c.netns(i) == netns && (victim == none || e.used < c.entries[victim].used) {
			victim = i
		}
	}
	return victim
}

// remove unlinks entry i from every list, releases its names and frees it.
func (c *Cache) remove(i int32) {
	c.unlink(i)
	e := &c.entries[i]
	pos, head := c.ipFind(&e.addr)
	if head == i {
		if e.ipNext == none {
			c.ipDelete(pos)
		} else {
			c.ipSetHead(pos, e.ipNext)
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
		c.names.release(c.slots[j].name)
		c.slots[j] = slot{name: noName, next: c.freeSlot}
		c.freeSlot = j
		j = next
	}
	c.nsAdjust(e.ns, -1)
	*e = entry{prev: none, next: c.free, ipNext: freeEntry, names: none}
	c.free = i
	c.live--
}

// touch makes entry i the most recently used of its namespace.
func (c *Cache) touch(i int32) {
	if c.nss[c.entries[i].ns].head == i {
		c.tick++
		c.entries[i].used = c.tick
		return
	}
	c.unlink(i)
	c.pushFront(i)
}

func (c *Cache) pushFront(i int32) {
	e := &c.entries[i]
	c.tick++
	e.used = c.tick
	ns := &c.nss[e.ns]
	e.prev, e.next = none, ns.head
	if ns.head != none {
		c.entries[ns.head].prev = i
	}
	ns.head = i
	if ns.tail == none {
		ns.tail = i
	}
}

func (c *Cache) unlink(i int32) {
	e := &c.entries[i]
	ns := &c.nss[e.ns]
	if e.prev != none {
		c.entries[e.prev].next = e.next
	} else {
		ns.head = e.next
	}
	if e.next != none {
		c.entries[e.next].prev = e.prev
	} else {
		ns.tail = e.prev
	}
	e.prev, e.next = none, none
}

// Namespaces.

// nsFor returns the record of netns, creating it (with no entries) when
// it has none.
func (c *Cache) nsFor(netns uint32) int32 {
	if k, ok := c.nsIndex[netns]; ok {
		return k
	}
	rec := nsRec{netns: netns, head: none, tail: none, heap: int32(len(c.heap))}
	var k int32
	if n := len(c.nsFree); n > 0 {
		k = c.nsFree[n-1]
		c.nsFree = c.nsFree[:n-1]
		c.nss[k] = rec
	} else {
		k = int32(len(c.nss))
		c.nss = append(c.nss, rec)
	}
	c.nsIndex[netns] = k
	c.heap = append(c.heap, k)
	c.heapUp(int(rec.heap))
	return k
}

// nsAdjust changes the entry count of namespace record k by delta and
// frees the record when it holds no entry.
func (c *Cache) nsAdjust(k int32, delta int32) {
	ns := &c.nss[k]
	ns.count += delta
	p := int(ns.heap)
	if ns.count > 0 {
		c.heapUp(p)
		c.heapDown(p)
		return
	}
	last := len(c.heap) - 1
	c.heapSwap(p, last)
	c.heap = c.heap[:last]
	if p < last {
		c.heapUp(p)
		c.heapDown(p)
	}
	delete(c.nsIndex, ns.netns)
	*ns = nsRec{}
	c.nsFree = append(c.nsFree, k)
}

// heapAbove reports whether the namespace at heap position a belongs above
// the one at b: more entries, or as many and a lower inode.
func (c *Cache) heapAbove(a, b int) bool {
	x, y := &c.nss[c.heap[a]], &c.nss[c.heap[b]]
	return x.count > y.count || x.count == y.count && x.netns < y.netns
}

func (c *Cache) heapSwap(a, b int) {
	c.heap[a], c.heap[b] = c.heap[b], c.heap[a]
	c.nss[c.heap[a]].heap = int32(a)
	c.nss[c.heap[b]].heap = int32(b)
}

func (c *Cache) heapUp(p int) {
	for p > 0 {
		parent := (p - 1) / 2
		if !c.heapAbove(p, parent) {
			return
		}
		c.heapSwap(p, parent)
		p = parent
	}
}

func (c *Cache) heapDown(p int) {
	for {
		top := p
		for _, ch := range [2]int{2*p + 1, 2*p + 2} {
			if ch < len(c.heap) && c.heapAbove(ch, top) {
				top = ch
			}
		}
		if top == p {
			return
		}
		c.heapSwap(p, top)
		p = top
	}
}
