package bpf

import (
	"bytes"
	"encoding/binary"
	"strings"
	"testing"
	"unsafe"

	"github.com/tcpconnect/tcpconnect/internal/event"
)

// TestFirstBytesLayout checks the first-bytes decoder against the C layout
// (bpf2go's type).
func TestFirstBytesLayout(t *testing.T) {
	var e firstbytesTcFirstBytesEvent
	if got := int(unsafe.Sizeof(e)); got != event.FirstBytesSize || len(e.Payload) != event.FirstBytesChunk {
		t.Fatalf("sizeof(tc_first_bytes_event) = %d with %d payload bytes, decoder wants %d and %d", got, len(e.Payload), event.FirstBytesSize, event.FirstBytesChunk)
	}
	e = firstbytesTcFirstBytesEvent{Type: event.TypeFirstBytes, Flags: 1, Len: 3, Tid: 45, ConnectTsNs: 11, Offset: 2045, Want: 2048}
	copy(e.Payload[:], "abc")
	var b bytes.Buffer
	_ = binary.Write(&b, binary.LittleEndian, &e)
	var got event.FirstBytes
	if err := event.DecodeFirstBytes(b.Bytes(), &got); err != nil {
		t.Fatal(err)
	}
	if got.TID != 45 || got.ConnectBootNs != 11 || got.Offset != 2045 || got.Want != 2048 || !got.Last || string(got.Data) != "abc" {
		t.Fatalf("decoded %+v", got)
	}
}

// TestFirstBytesOptions: first bytes need outcome tracking, and their bound
// is checked before anything is loaded.
func TestFirstBytesOptions(t *testing.T) {
	for _, tc := range []struct {
		opts Options
		want string
	}{
		{Options{FirstBytes: true}, "needs outcome tracking"},
		{Options{FirstBytes: true, Outcome: true, FirstBytesMax: -1}, "must be 1 to 65536"},
		{Options{FirstBytes: true, Outcome: true, FirstBytesMax: MaxFirstBytes + 1}, "must be 1 to 65536"},
	} {
		p, err := Open(tc.opts)
		if err == nil {
			p.Close()
			t.Fatalf("%+v opened", tc.opts)
		}
		if !strings.Contains(err.Error(), tc.want) {
			t.Errorf("%+v: %v, want %q", tc.opts, err, tc.want)
		}
	}
}
