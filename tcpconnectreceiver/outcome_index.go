package tcpconnectreceiver

import "math/bits"

// waitIndex maps the key of each waiting connect record to its slot in the
// outcomeWait ring. It is an open-addressing table with linear probing and
// backward-shift deletion (no tombstones), at least twice as large as the
// ring, so that a lookup touches one or two entries. It replaces a Go map:
// hashing a waitKey there (a padded struct) and the map's own bookkeeping
// cost about a tenth of the reader's time per connect with outcome tracking
// on. It is allocated once and used by the reader goroutine only.
type waitIndex struct {
	entries []indexEntry
	shift   uint // 64 - log2(len(entries)): the hash's top bits pick the home
	n       int
}

// waitKey names a connect record the way its outcome record does.
type waitKey struct {
	tid    uint32
	bootNs uint64
}

// indexEntry is one entry of a waitIndex; slot+1 is stored so that the zero
// entry is empty.
type indexEntry struct {
	tid    uint32
	slot1  int32
	bootNs uint64
}

// newWaitIndex returns an index for a ring of size slots.
func newWaitIndex(size int) *waitIndex {
	n := 1 << bits.Len(uint(2*size-1)) // a power of two >= 2*size
	n = max(n, 2)
	return &waitIndex{entries: make([]indexEntry, n), shift: uint(64 - bits.TrailingZeros(uint(n)))}
}

// home is the first entry k is looked for in (Fibonacci hashing of the tid
// and the connect's boot time).
func (x *waitIndex) home(tid uint32, bootNs uint64) int {
	h := (bootNs ^ uint64(tid)<<32 ^ uint64(tid)) * 0x9e3779b97f4a7c15
	return int(h >> x.shift)
}

// find returns the entry of k, or the empty entry where it would go.
func (x *waitIndex) find(k waitKey) (int, bool) {
	mask := len(x.entries) - 1
	for p := x.home(k.tid, k.bootNs); ; p = (p + 1) & mask {
		e := &x.entries[p]
		if e.slot1 == 0 {
			return p, false
		}
		if e.tid == k.tid && e.bootNs == k.bootNs {
			return p, true
		}
	}
}

// put maps k to slot, replacing what k mapped to. The index holds at most
// the ring's size of keys, so an empty entry is always found.
func (x *waitIndex) put(k waitKey, slot int) {
	p, ok := x.find(k)
	if !ok {
		x.n++
	}
	x.entries[p] = indexEntry{tid: k.tid, slot1: int32(slot) + 1, bootNs: k.bootNs}
}

// get returns the slot k maps to.
func (x *waitIndex) get(k waitKey) (int, bool) {
	p, ok := x.find(k)
	if !ok {
		return 0, false
	}
	return int(x.entries[p].slot1) - 1, true
}

// remove removes k, if present, and returns the slot it mapped to.
func (x *waitIndex) remove(k waitKey) (int, bool) {
	p, ok := x.find(k)
	if !ok {
		return 0, false
	}
	slot := int(x.entries[p].slot1) - 1
	x.removeAt(p)
	return slot, true
}

// removeAt empties entry p and moves back the entries after it in its
// probe run that would no longer be found past the hole.
func (x *waitIndex) removeAt(p int) {
	x.n--
	mask := len(x.entries) - 1
	for {
		x.entries[p] = indexEntry{}
		q := p
		for {
			q = (q + 1) & mask
			e := x.entries[q]
			if e.slot1 == 0 {
				return
			}
			h := x.home(e.tid, e.bootNs)
			// e stays when its home is cyclically in (p, q].
			if (p < q && p < h && h <= q) || (q < p && (p < h || h <= q)) {
				continue
			}
			x.entries[p] = e
			p = q
			break
		}
	}
}

// len returns the number of keys in the index.
func (x *waitIndex) len() int { return x.n }
