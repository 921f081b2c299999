package dns

import (
	"testing"

	"github.com/tcpconnect/tcpconnect/internal/event"
)

// TestEventConversion pins Packet to internal/event.DNS: the receiver
// converts a decoded record with (*Packet)(&d), which compiles only while
// both structs have the same fields in the same order.
func TestEventConversion(t *testing.T) {
	d := event.DNS{Egress: true, L4Proto: ProtoUDP, SrcPort: 40000, DstPort: 53, SockCookie: 7}
	p := (*Packet)(&d)
	if !p.Egress || p.L4Proto != ProtoUDP || p.SrcPort != 40000 || p.DstPort != 53 || p.SockCookie != 7 {
		t.Fatalf("converted %+v", *p)
	}
}
