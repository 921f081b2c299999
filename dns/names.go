package dns

import (
	"hash/maphash"
	"unsafe"
)

// Interned names: each distinct name string is stored once, in an arena of
// chunks, and handed out by Lookup without copying.
//
// A name's record (nameRec) locates its bytes; an open-addressing index by
// content maps a name to its record. The chunks are never written over once
// a name is in them, so the strings handed out stay valid and immutable;
// chunks whose names are all gone are dropped, and when more than half the
// arena is dead the live names are copied to fresh chunks.

const (
	// chunkSize is the size of the arena chunks that hold the name bytes.
	// A name string handed out by Lookup keeps its chunk alive for as long
	// as the caller holds it, so chunks are kept small. Names are at most
	// maxNameLen bytes, so every name fits in one chunk.
	chunkSize = 4096
	// compactMin is the dead arena bytes below which the arena is never
	// compacted.
	compactMin = 16 * chunkSize
	// maxNameLen is the longest name kept: a DNS name is at most 255
	// bytes on the wire, 253 as text.
	maxNameLen = 255
)

// nameRec locates one interned name in the arena: n bytes at off in chunk.
// A free record has n == 0 and links the next free record in refs.
type nameRec struct {
	chunk uint32
	off   uint32
	n     uint32
	refs  uint32
}

// names is the interned name store of a Cache.
type names struct {
	recs       []nameRec
	freeName   uint32
	index      []uint32 // id + 1 by content hash, 0 for an empty slot
	count      int
	seed       maphash.Seed
	chunks     [][]byte
	chunkLive  []int    // live name bytes per chunk
	freeChunks []uint32 // indexes of dropped chunks
	cur        int      // the chunk names are appended to, none at first
	arenaUsed  int      // bytes used in the kept chunks
	arenaLive  int      // bytes of live names
	compactMin int      // dead bytes that never trigger a compaction
	last       []uint32 // ids of the last chain interned, by position
}

func newNames(chainLen int) names {
	ns := names{freeName: noName, seed: maphash.MakeSeed(), cur: none, compactMin: compactMin, last: make([]uint32, chainLen)}
	for k := range ns.last {
		ns.last[k] = noName
	}
	return ns
}

// str returns the string of name id, pointing into the arena.
func (ns *names) str(id uint32) string {
	r := &ns.recs[id]
	return unsafe.String(&ns.chunks[r.chunk][r.off], r.n)
}

// internAt returns the id of name, the k-th of its chain, with one more
// reference. The names of the last chain are remembered: the records of
// one answer share their chain, so the second and later inserts of an
// answer skip the index.
func (ns *names) internAt(k int, name []byte) uint32 {
	if k < len(ns.last) {
		if id := ns.last[k]; id != noName && ns.recs[id].n != 0 && ns.str(id) == string(name) {
			ns.recs[id].refs++
			return id
		}
	}
	h := maphash.Bytes(ns.seed, name)
	id, pos := ns.find(name, h)
	if id != noName {
		ns.recs[id].refs++
	} else {
		if (ns.count+1)*4 > len(ns.index)*3 {
			ns.grow()
			pos = ns.pos(h)
		}
		id = ns.add(name)
		ns.index[pos] = id + 1
		ns.count++
	}
	if k < len(ns.last) {
		ns.last[k] = id
	}
	return id
}

// find returns the id of name, whose hash is h, or noName and the index
// position where it would go.
func (ns *names) find(name []byte, h uint64) (uint32, int) {
	if len(ns.index) == 0 {
		return noName, -1
	}
	mask := len(ns.index) - 1
	for pos := int(h) & mask; ; pos = (pos + 1) & mask {
		v := ns.index[pos]
		if v == 0 {
			return noName, pos
		}
		if r := &ns.recs[v-1]; int(r.n) == len(name) && ns.str(v-1) == string(name) {
			return v - 1, pos
		}
	}
}

// pos returns the first empty index position for hash h.
func (ns *names) pos(h uint64) int {
	mask := len(ns.index) - 1
	pos := int(h) & mask
	for ns.index[pos] != 0 {
		pos = (pos + 1) & mask
	}
	return pos
}

// grow doubles the index.
func (ns *names) grow() {
	old := ns.index
	ns.index = make([]uint32, max(2*len(old), 64))
	for _, v := range old {
		if v != 0 {
			ns.index[ns.pos(maphash.String(ns.seed, ns.str(v-1)))] = v
		}
	}
}

// add stores name in the arena and returns its new record's id, with one
// reference.
func (ns *names) add(name []byte) uint32 {
	ch, off := ns.store(name)
	r := nameRec{chunk: ch, off: off, n: uint32(len(name)), refs: 1}
	ns.arenaLive += len(name)
	if id := ns.freeName; id != noName {
		ns.freeName = ns.recs[id].refs
		ns.recs[id] = r
		return id
	}
	ns.recs = append(ns.recs, r)
	return uint32(len(ns.recs) - 1)
}

// store copies b (at most chunkSize bytes) into the arena and returns where.
func (ns *names) store(b []byte) (chunk, off uint32) {
	if ns.cur == none || len(b) > cap(ns.chunks[ns.cur])-len(ns.chunks[ns.cur]) {
		ns.cur = int(ns.newChunk())
	}
	p := &ns.chunks[ns.cur]
	off = uint32(len(*p))
	*p = append(*p, b...)
	ns.chunkLive[ns.cur] += len(b)
	ns.arenaUsed += len(b)
	return uint32(ns.cur), off
}

// newChunk adds an empty chunk and returns its index.
func (ns *names) newChunk() uint32 {
	b := make([]byte, 0, chunkSize)
	if n := len(ns.freeChunks); n > 0 {
		ch := ns.freeChunks[n-1]
		ns.freeChunks = ns.freeChunks[:n-1]
		ns.chunks[ch], ns.chunkLive[ch] = b, 0
		return ch
	}
	ns.chunks = append(ns.chunks, b)
	ns.chunkLive = append(ns.chunkLive, 0)
	return uint32(len(ns.chunks) - 1)
}

// release drops one reference to name id, forgetting the name at zero.
func (ns *names) release(id uint32) {
	r := &ns.recs[id]
	if r.refs--; r.refs > 0 {
		return
	}
	mask := len(ns.index) - 1
	pos := int(maphash.String(ns.seed, ns.str(id))) & mask
	for ns.index[pos] != id+1 {
		pos = (pos + 1) & mask
	}
	// Shift back the names probed past pos.
	for j := (pos + 1) & mask; ns.index[j] != 0; j = (j + 1) & mask {
		home := int(maphash.String(ns.seed, ns.str(ns.index[j]-1))) & mask
		if (j-home)&mask >= (j-pos)&mask {
			ns.index[pos] = ns.index[j]
			pos = j
		}
	}
	ns.index[pos] = 0
	ns.count--

	n := int(r.n)
	ns.arenaLive -= n
	if ch := int(r.chunk); ch != ns.cur {
		if ns.chunkLive[ch] -= n; ns.chunkLive[ch] == 0 {
			ns.arenaUsed -= len(ns.chunks[ch])
			ns.chunks[ch] = nil
			ns.freeChunks = append(ns.freeChunks, uint32(ch))
		}
	} else {
		ns.chunkLive[ch] -= n
	}
	*r = nameRec{refs: ns.freeName}
	ns.freeName = id
}

// maybeCompact copies the live names to fresh chunks when more than half
// of the arena is dead. Strings already handed out keep their old chunks
// alive, unchanged, for as long as their holders keep them.
func (ns *names) maybeCompact() {
	dead := ns.arenaUsed - ns.arenaLive
	if dead < ns.compactMin || dead <= ns.arenaLive {
		return
	}
	old := ns.chunks
	ns.chunks, ns.chunkLive, ns.freeChunks = nil, nil, nil
	ns.cur, ns.arenaUsed = none, 0
	for id := range ns.recs {
		r := &ns.recs[id]
		if r.n == 0 {
			continue
		}
		r.chunk, r.off = ns.store(old[r.chunk][r.off : r.off+r.n])
	}
}

// has reports whether one of the names ids is name.
func (ns *names) has(ids []uint32, name []byte) bool {
	for _, id := range ids {
		if ns.str(id) == string(name) {
			return true
		}
	}
	return false
}
