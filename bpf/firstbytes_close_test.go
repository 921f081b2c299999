package bpf

import (
	"bytes"
	"net"
	"net/netip"
	"testing"
	"time"

	"github.com/tcpconnect/tcpconnect/internal/event"
)

// readUntilClosed drains the ring until the connect to dst has a piece
// flagged Closed (or timeout), and returns that connect's pieces.
func readUntilClosed(t *testing.T, p *Probe, dst netip.AddrPort, timeout time.Duration) []event.FirstBytes {
	t.Helper()
	var conns []event.Connect
	pieces := map[[2]uint64][]event.FirstBytes{}
	closed := func() bool {
		if len(conns) != 1 {
			return false
		}
		l := pieces[[2]uint64{uint64(conns[0].TID), conns[0].BootTimeNs}]
		return len(l) > 0 && l[len(l)-1].Closed
	}
	for end := time.Now().Add(timeout); time.Now().Before(end) && !closed(); {
		drainRound(t, p, 50*time.Millisecond, func(raw []byte) {
			switch event.Type(raw) {
			case event.TypeConnect:
				var e event.Connect
				if err := event.DecodeConnect(raw, &e); err != nil {
					t.Fatal(err)
				}
				if e.Dst == dst.Addr() && e.DstPort == dst.Port() {
					conns = append(conns, e)
				}
			case event.TypeFirstBytes:
				var f event.FirstBytes
				if err := event.DecodeFirstBytes(raw, &f); err != nil {
					t.Fatal(err)
				}
				if f.Closed && len(raw) != event.FirstBytesHeaderSize {
					t.Errorf("closed record of %d bytes, want the %d-byte header", len(raw), event.FirstBytesHeaderSize)
				}
				f.Data = bytes.Clone(f.Data)
				k := [2]uint64{uint64(f.TID), f.ConnectBootNs}
				pieces[k] = append(pieces[k], f)
			}
		})
	}
	if len(conns) != 1 || !conns[0].Tracked {
		t.Fatalf("%d connect records to %s (want 1, followed)", len(conns), dst)
	}
	if !closed() {
		t.Fatalf("no closed first-bytes record for the connect to %s within %s", dst, timeout)
	}
	return pieces[[2]uint64{uint64(conns[0].TID), conns[0].BootTimeNs}]
}

// closedCapture waits for the closed record of the connect to addr and
// returns how many bytes its capture took before it, and that record.
func closedCapture(t *testing.T, p *Probe, addr string) (int, event.FirstBytes) {
	t.Helper()
	pieces := readUntilClosed(t, p, netip.MustParseAddrPort(addr), 5*time.Second)
	got := 0
	for _, f := range pieces[:len(pieces)-1] {
		got += len(f.Data)
	}
	return got, pieces[len(pieces)-1]
}

// testFirstBytesClosed: a followed socket that closes (FIN, or RST with
// SO_LINGER 0) before sending ends its capture with one header-only closed
// record at offset 0; one that closes mid-way through a ClientHello its
// record header announced ends with a closed record after its bytes.
func testFirstBytesClosed(t *testing.T, p *Probe) {
	for _, tt := range []struct {
		name  string
		send  []byte
		reset bool
	}{
		{"fin_before_sending", nil, false},
		{"rst_before_sending", nil, true},
		// A handshake record announcing a 4096-byte ClientHello, cut after 100 bytes.
		{"fin_mid_hello", append([]byte{0x16, 3, 1, 0x10, 0x04, 1, 0, 0x10, 0}, make([]byte, 91)...), false},
	} {
		t.Run(tt.name, func(t *testing.T) {
			addr := discardListener(t)
			c, err := net.Dial("tcp4", addr)
			if err != nil {
				t.Fatal(err)
			}
			if len(tt.send) > 0 {
				if _, err := c.Write(tt.send); err != nil {
					t.Fatal(err)
				}
			}
			if tt.reset {
				if err := c.(*net.TCPConn).SetLinger(0); err != nil {
					t.Fatal(err)
				}
			}
			c.Close()
			got, last := closedCapture(t, p, addr)
			if got != len(tt.send) || int(last.Offset) != len(tt.send) {
				t.Fatalf("%d bytes captured, closed at offset %d (want %d)", got, last.Offset, len(tt.send))
			}
			if len(tt.send) > 0 && last.Want != 5+0x1004 {
				t.Fatalf("closed record wants %d bytes, want %d", last.Want, 5+0x1004)
			}
		})
	}
}

// testFirstBytesPastBound: a ClientHello's record header, then its bytes one
// per segment. The egress program stops looking the socket up once it has
// sent fbMaxSegs data segments before a packet, so the capture stops short;
// the socket's destruction (tc_outcome_destroy) ends it with a closed record
// at the offset captured.
func testFirstBytesPastBound(t *testing.T, p *Probe) {
	addr := discardListener(t)
	c, err := net.Dial("tcp4", addr)
	if err != nil {
		t.Fatal(err)
	}
	hdr := []byte{0x16, 3, 1, 0x10, 0x04, 1, 0, 0x10, 0}
	if _, err := c.Write(hdr); err != nil {
		t.Fatal(err)
	}
	// One byte a segment: Go sets TCP_NODELAY, and each write waits until
	// the one before has left (its segment counted in data_segs_out).
	sent := len(hdr)
	bound := int(fbMaxSegs(DefaultFirstBytes))
	for range 2 * bound {
		if _, err := c.Write([]byte{0}); err != nil {
			t.Fatal(err)
		}
		sent++
		time.Sleep(time.Millisecond)
	}
	c.Close()
	got, last := closedCapture(t, p, addr)
	t.Logf("sent %d bytes in %d writes; captured %d, closed at offset %d (bound %d segments)", sent, 1+2*bound, got, last.Offset, bound)
	if int(last.Offset) != got {
		t.Fatalf("closed at offset %d after %d bytes captured", last.Offset, got)
	}
	if got < len(hdr)+bound/2 || got >= sent {
		t.Fatalf("captured %d of %d bytes sent one per segment: want the capture to stop near %d segments", got, sent, bound)
	}
}
