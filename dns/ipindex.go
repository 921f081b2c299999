package dns

import (
	"encoding/binary"
	"math/bits"
)

// The IP index: an open-addressing table from an IP to the first entry of
// its chain (the entries of that IP, one per scope, linked by ipNext).
//
// A slot holds the entry index + 1 in the low 25 bits (entries are at most
// MaxMaxEntries = 1<<24) and 7 bits of the IP's hash above, so that most
// probes of other IPs are rejected without reading their entry; 0 is empty.
const (
	ipTagShift = 25
	ipIdxMask  = 1<<ipTagShift - 1
)

// ipHash hashes an IP's 16-byte form.
func (c *Cache) ipHash(addr *[16]byte) uint64 {
	lo := binary.LittleEndian.Uint64(addr[:8])
	hi := binary.LittleEndian.Uint64(addr[8:])
	h, l := bits.Mul64(lo^c.k0, hi^c.k1)
	h, l = bits.Mul64(h^l^c.k0, 0x9e3779b97f4a7c15)
	return h ^ l
}

// ipFind returns the index position and the first entry of the IP addr, or
// (-1, none).
func (c *Cache) ipFind(addr *[16]byte) (int, int32) {
	if len(c.ipIndex) == 0 {
		return -1, none
	}
	h := c.ipHash(addr)
	mask := len(c.ipIndex) - 1
	tag := uint32(h>>(64-(32-ipTagShift))) << ipTagShift
	for pos := int(h) & mask; ; pos = (pos + 1) & mask {
		v := c.ipIndex[pos]
		if v == 0 {
			return -1, none
		}
		if v&^ipIdxMask == tag {
			i := int32(v&ipIdxMask) - 1
			if c.entries[i].addr == *addr {
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
	h := c.ipHash(&c.entries[i].addr)
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
		home := int(c.ipHash(&e.addr)) & mask
		// Move j to pos unless its home lies cyclically in (pos, j].
		if (j-home)&mask >= (j-pos)&mask {
			c.ipIndex[pos] = c.ipIndex[j]
			pos = j
		}
	}
	c.ipIndex[pos] = 0
	c.ipCount--
}

// ipSetHead makes entry i the first of the chain at index position pos.
func (c *Cache) ipSetHead(pos int, i int32) {
	c.ipIndex[pos] = c.ipIndex[pos]&^ipIdxMask | uint32(i+1)
}
