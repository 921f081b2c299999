package dns

import "bytes"

// Names of the wire format, as the Parser reads them: decompressed into its
// arena, lower-cased and checked as they are copied, and reused when a
// compression pointer names one decoded before.

// nameRef locates a normalized name in Parser.arena.
type nameRef struct{ off, n int }

// seenName is a valid name decoded from wire offset off: a compression
// pointer to off (the usual owner of an answer record) reuses it.
type seenName struct {
	off int
	ref nameRef
}

// readName decompresses the name at off in msg into the arena, lower-cased
// and without the trailing dot, and returns where it is, the offset just
// past the name where it starts (past its zero label or first compression
// pointer) and whether it is valid for the cache: not the root, only
// printable ASCII (0x21-0x7e) and no dot inside a label (an invalid name
// leaves nothing in the arena). The error reports a name that runs past
// msg, has a reserved label type, follows too many pointers or is longer
// than 255 bytes.
func (ps *Parser) readName(msg []byte, off int) (ref nameRef, next int, ok bool, err error) {
	if off+1 < len(msg) && msg[off]&0xc0 == 0xc0 {
		// A pointer to a name decoded before: the same name.
		to := int(msg[off]&0x3f)<<8 | int(msg[off+1])
		for _, s := range ps.seen {
			if s.off == to {
				return s.ref, off + 2, true, nil
			}
		}
	}
	ref, next, ok, err = ps.decodeName(msg, off)
	if ok && len(ps.seen) < 2*maxRecords {
		ps.seen = append(ps.seen, seenName{off: off, ref: ref})
	}
	return ref, next, ok, err
}

// decodeName is readName without the reuse of names decoded before.
func (ps *Parser) decodeName(msg []byte, off int) (ref nameRef, next int, ok bool, err error) {
	start := len(ps.arena)
	cur, next, ptrs, n := off, -1, 0, 0
	ok = true
	for {
		if cur >= len(msg) {
			ps.arena = ps.arena[:start]
			return nameRef{}, 0, false, errWalkName
		}
		l := int(msg[cur])
		switch l & 0xc0 {
		case 0x00:
			cur++
			if l == 0 {
				if next < 0 {
					next = cur
				}
				if !ok || n == 0 { // n == 0: the root
					ps.arena = ps.arena[:start]
					return nameRef{}, next, false, nil
				}
				return nameRef{off: start, n: len(ps.arena) - start - 1}, next, true, nil
			}
			if cur+l > len(msg) {
				ps.arena = ps.arena[:start]
				return nameRef{}, 0, false, errWalkName
			}
			if n += l + 1; n > maxNamePresentation {
				ps.arena = ps.arena[:start]
				return nameRef{}, 0, false, errNameLong
			}
			label := msg[cur : cur+l]
			cur += l
			if !ok {
				continue
			}
			at := len(ps.arena)
			ps.arena = append(ps.arena, label...)
			ps.arena = append(ps.arena, '.')
			dst := ps.arena[at : at+l]
			for i, c := range label {
				b := nameBytes[c]
				if b == 0 {
					ok = false
					break
				}
				dst[i] = b
			}
		case 0xc0:
			if cur+1 >= len(msg) {
				ps.arena = ps.arena[:start]
				return nameRef{}, 0, false, errWalkName
			}
			if next < 0 {
				next = cur + 2
			}
			if ptrs++; ptrs > maxPointers {
				ps.arena = ps.arena[:start]
				return nameRef{}, 0, false, errPointers
			}
			cur = (l&0x3f)<<8 | int(msg[cur+1])
		default:
			ps.arena = ps.arena[:start]
			return nameRef{}, 0, false, errWalkName
		}
	}
}

// nameBytes maps a label byte to the byte the cache keeps: upper case
// lowered, printable ASCII (0x21-0x7e) but the dot kept, 0 for a byte that
// makes the name invalid.
const nameBytes = "" +
	"\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00" +
	"\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00" +
	"\x00\x21\x22\x23\x24\x25\x26\x27\x28\x29\x2a\x2b\x2c\x2d\x00\x2f" +
	"\x30\x31\x32\x33\x34\x35\x36\x37\x38\x39\x3a\x3b\x3c\x3d\x3e\x3f" +
	"\x40\x61\x62\x63\x64\x65\x66\x67\x68\x69\x6a\x6b\x6c\x6d\x6e\x6f" +
	"\x70\x71\x72\x73\x74\x75\x76\x77\x78\x79\x7a\x5b\x5c\x5d\x5e\x5f" +
	"\x60\x61\x62\x63\x64\x65\x66\x67\x68\x69\x6a\x6b\x6c\x6d\x6e\x6f" +
	"\x70\x71\x72\x73\x74\x75\x76\x77\x78\x79\x7a\x7b\x7c\x7d\x7e\x00" +
	"\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00" +
	"\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00" +
	"\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00" +
	"\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00" +
	"\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00" +
	"\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00" +
	"\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00" +
	"\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00"

// skipName returns the offset just past the wire-format name at off in
// msg: past its zero label or its compression pointer. It returns -1 for a
// name that runs past msg or has a reserved label type.
func skipName(msg []byte, off int) int {
	for off >= 0 && off < len(msg) {
		switch l := int(msg[off]); {
		case l == 0:
			return off + 1
		case l&0xc0 == 0xc0:
			if off+2 > len(msg) {
				return -1
			}
			return off + 2
		case l&0xc0 == 0:
			off += 1 + l
		default:
			return -1
		}
	}
	return -1
}

// equal reports whether names a and b are the same name.
func (ps *Parser) equal(a, b nameRef) bool {
	return a == b || bytes.Equal(ps.name(a), ps.name(b))
}

// name returns the bytes of name n in the arena (capacity cut to them).
func (ps *Parser) name(n nameRef) []byte {
	return ps.arena[n.off : n.off+n.n : n.off+n.n]
}
