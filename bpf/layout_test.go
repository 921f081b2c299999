package bpf

import (
	"bytes"
	"encoding/binary"
	"unsafe"
)

func sizeofConnect(c *connectTcConnectEvent) uintptr { return unsafe.Sizeof(*c) }

// putConnect writes c's fields after the first three bytes of raw, in the C layout.
func putConnect(raw []byte, c connectTcConnectEvent) {
	c.Type, c.Family, c.Hook = raw[0], raw[1], raw[2]
	var b bytes.Buffer
	_ = binary.Write(&b, binary.LittleEndian, &c)
	copy(raw, b.Bytes())
}

func sizeofOutcome(o *outcomeTcOutcomeEvent) uintptr { return unsafe.Sizeof(*o) }
