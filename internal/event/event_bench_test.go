package event

import (
	"encoding/binary"
	"testing"
)

// connectRecord is a raw IPv4 connect record as the kernel writes it.
func connectRecord(family byte) []byte {
	raw := make([]byte, ConnectSize)
	le := binary.LittleEndian
	raw[0] = TypeConnect
	raw[1] = family
	raw[2] = byte(HookCgroup)
	le.PutUint16(raw[4:], 443)
	le.PutUint64(raw[8:], 123456789)
	le.PutUint64(raw[16:], 1)
	le.PutUint64(raw[24:], 987654321)
	le.PutUint32(raw[32:], 4242)
	le.PutUint32(raw[36:], 4243)
	le.PutUint32(raw[40:], 1)
	if family == AFInet {
		copy(raw[56:], []byte{127, 0, 0, 1})
	} else {
		copy(raw[56:], []byte{0x20, 0x01, 0x0d, 0xb8, 15: 1})
	}
	copy(raw[connectCommOffset:], "curl")
	copy(raw[connectExeOffset:], "curl")
	return raw
}

// dnsRecord is a raw IPv4 UDP DNS answer record with a 99-byte payload.
func dnsRecord() []byte {
	const payload = 99
	raw := make([]byte, DNSHeaderSize+payload)
	le := binary.LittleEndian
	raw[0] = TypeDNS
	raw[2] = 4
	raw[3] = 17
	le.PutUint16(raw[4:], 53)
	le.PutUint16(raw[6:], 40000)
	le.PutUint16(raw[8:], payload)
	le.PutUint16(raw[10:], payload)
	le.PutUint64(raw[16:], 123456789)
	copy(raw[48:], []byte{127, 0, 0, 53})
	copy(raw[64:], []byte{127, 0, 0, 1})
	return raw
}

func benchmarkDecodeConnect(b *testing.B, family byte) {
	raw := connectRecord(family)
	var c Connect
	b.ReportAllocs()
	b.SetBytes(int64(len(raw)))
	for b.Loop() {
		if err := DecodeConnect(raw, &c); err != nil {
			b.Fatal(err)
		}
	}
	if c.DstPort != 443 || len(c.Comm()) != 4 {
		b.Fatalf("decoded %+v", c)
	}
}

func BenchmarkDecodeConnect(b *testing.B) {
	b.Run("ipv4", func(b *testing.B) { benchmarkDecodeConnect(b, AFInet) })
	b.Run("ipv6", func(b *testing.B) { benchmarkDecodeConnect(b, AFInet6) })
}

func BenchmarkDecodeDNS(b *testing.B) {
	raw := dnsRecord()
	var d DNS
	b.ReportAllocs()
	b.SetBytes(int64(len(raw)))
	for b.Loop() {
		if err := DecodeDNS(raw, &d); err != nil {
			b.Fatal(err)
		}
	}
	if d.SrcPort != 53 || len(d.Payload) != 99 {
		b.Fatalf("decoded %+v", d)
	}
}

// TestDecodeAllocs pins the zero-allocation promise of the hot path, so a
// change that allocates fails `go test`, not only a benchmark someone reads.
func TestDecodeAllocs(t *testing.T) {
	craw, draw := connectRecord(AFInet), dnsRecord()
	var c Connect
	var d DNS
	if n := testing.AllocsPerRun(1000, func() { _ = DecodeConnect(craw, &c) }); n != 0 {
		t.Errorf("DecodeConnect: %v allocs/op, want 0", n)
	}
	if n := testing.AllocsPerRun(1000, func() { _ = DecodeDNS(draw, &d) }); n != 0 {
		t.Errorf("DecodeDNS: %v allocs/op, want 0", n)
	}
}
