package event

import (
	"encoding/binary"
	"errors"
	"testing"
)

func firstBytesRaw(flags uint8, n uint16, offset, want uint32) []byte {
	raw := make([]byte, FirstBytesSize)
	raw[0], raw[1] = TypeFirstBytes, flags
	binary.LittleEndian.PutUint16(raw[2:], n)
	binary.LittleEndian.PutUint32(raw[4:], 7)
	binary.LittleEndian.PutUint64(raw[8:], 99)
	binary.LittleEndian.PutUint32(raw[16:], offset)
	binary.LittleEndian.PutUint32(raw[20:], want)
	return raw
}

// TestDecodeFirstBytes: good records decode; a record whose lengths do not
// add up is refused, not trusted.
func TestDecodeFirstBytes(t *testing.T) {
	for _, tc := range []struct {
		name string
		raw  []byte
		ok   bool
	}{
		{"middle", firstBytesRaw(0, 2048, 0, 4000), true},
		{"last", firstBytesRaw(1, 1952, 2048, 4000), true},
		{"short", firstBytesRaw(1, 10, 0, 10)[:FirstBytesSize-1], false},
		{"wrong_type", append([]byte{TypeOutcome}, firstBytesRaw(1, 10, 0, 10)[1:]...), false},
		{"empty", firstBytesRaw(1, 0, 0, 0), false},
		{"longer_than_chunk", firstBytesRaw(1, 2049, 0, 2049), false},
		{"past_want", firstBytesRaw(0, 100, 0, 50), false},
		{"last_not_at_end", firstBytesRaw(1, 100, 0, 500), false},
		{"end_not_last", firstBytesRaw(0, 100, 400, 500), false},
		{"offset_overflow", firstBytesRaw(0, 100, 0xffffffff, 0xffffffff), false},
		{"closed_none_sent", firstBytesRaw(2, 0, 0, 0), true},
		{"closed_header_only", firstBytesRaw(2, 0, 0, 0)[:FirstBytesHeaderSize], true},
		{"closed_short_header", firstBytesRaw(2, 0, 0, 0)[:FirstBytesHeaderSize-1], false},
		{"not_closed_header_only", firstBytesRaw(1, 10, 0, 10)[:FirstBytesHeaderSize], false},
		{"closed_part_sent", firstBytesRaw(2, 0, 2048, 4000), true},
		{"closed_with_bytes", firstBytesRaw(2, 10, 0, 0), false},
		{"closed_and_last", firstBytesRaw(3, 0, 0, 0), false},
		{"closed_past_want", firstBytesRaw(2, 0, 4001, 4000), false},
		{"closed_when_complete", firstBytesRaw(2, 0, 4000, 4000), false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			var f FirstBytes
			err := DecodeFirstBytes(tc.raw, &f)
			if (err == nil) != tc.ok {
				t.Fatalf("error %v, want ok %v", err, tc.ok)
			}
			if tc.name == "short" && !errors.Is(err, ErrShort) {
				t.Fatalf("short record: %v, want ErrShort", err)
			}
			if tc.ok && (f.TID != 7 || f.ConnectBootNs != 99 || len(f.Data) != int(binary.LittleEndian.Uint16(tc.raw[2:]))) {
				t.Fatalf("decoded %+v", f)
			}
		})
	}
}
