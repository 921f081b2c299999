package event

import (
	"encoding/binary"
	"fmt"
)

// TypeFirstBytes is the type of a first-bytes record (TC_EVENT_FIRST_BYTES).
const TypeFirstBytes = 4

// Sizes of a first-bytes record (struct tc_first_bytes_event).
const (
	FirstBytesHeaderSize = 24
	FirstBytesChunk      = 2048 // TC_FB_CHUNK
	FirstBytesSize       = FirstBytesHeaderSize + FirstBytesChunk
	firstBytesLast       = 1 // TC_FB_LAST
	firstBytesClosed     = 2 // TC_FB_CLOSED
)

// FirstBytes is a piece of the first bytes a followed socket sent once
// connected: Data is at Offset in them, and the capture takes Want bytes in
// all. TID and ConnectBootNs name the connect record, as an Outcome's do.
type FirstBytes struct {
	TID           uint32
	ConnectBootNs uint64
	Offset        uint32
	Want          uint32
	// Last: the capture's last piece (Offset + len(Data) == Want).
	Last bool
	// Closed: the socket sent a FIN or RST before the capture had its
	// bytes; Data is empty, Offset is how many bytes were captured (0: the
	// client sent nothing) and no more pieces come. Such a record is the
	// header alone (FirstBytesHeaderSize bytes).
	Closed bool
	// Data is a sub-slice of the raw record: copy it to keep it.
	Data []byte
}

// DecodeFirstBytes fills f from a raw first-bytes record.
func DecodeFirstBytes(raw []byte, f *FirstBytes) error {
	// A closed record is the header alone.
	if len(raw) < FirstBytesSize && (len(raw) < FirstBytesHeaderSize || raw[1]&firstBytesClosed == 0) {
		return fmt.Errorf("first-bytes record: %w: %d bytes, want %d", ErrShort, len(raw), FirstBytesSize)
	}
	if raw[0] != TypeFirstBytes {
		return fmt.Errorf("first-bytes record: type %d", raw[0])
	}
	le := binary.LittleEndian
	n := int(le.Uint16(raw[2:]))
	f.Last = raw[1]&firstBytesLast != 0
	f.Closed = raw[1]&firstBytesClosed != 0
	f.TID = le.Uint32(raw[4:])
	f.ConnectBootNs = le.Uint64(raw[8:])
	f.Offset = le.Uint32(raw[16:])
	f.Want = le.Uint32(raw[20:])
	if f.Closed {
		if n != 0 || f.Last || f.Offset > f.Want || (f.Want != 0 && f.Offset == f.Want) {
			return fmt.Errorf("first-bytes record: closed with %d bytes at %d of %d, last %v", n, f.Offset, f.Want, f.Last)
		}
		f.Data = raw[FirstBytesHeaderSize:FirstBytesHeaderSize:FirstBytesHeaderSize]
		return nil
	}
	if n == 0 || n > FirstBytesChunk {
		return fmt.Errorf("first-bytes record: length %d", n)
	}
	end := uint64(f.Offset) + uint64(n)
	if end > uint64(f.Want) || f.Last != (end == uint64(f.Want)) {
		return fmt.Errorf("first-bytes record: %d bytes at %d of %d, last %v", n, f.Offset, f.Want, f.Last)
	}
	f.Data = raw[FirstBytesHeaderSize : FirstBytesHeaderSize+n : FirstBytesHeaderSize+n]
	return nil
}
