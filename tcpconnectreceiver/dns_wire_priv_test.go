package tcpconnectreceiver

import (
	"encoding/binary"
	"io"
	"net"
	"net/netip"
	"strconv"
	"testing"
	"time"

	mdns "github.com/miekg/dns"
	"golang.org/x/sys/unix"
)

// splitServer is a DNS-over-TCP server that writes each answer as a
// resolver under load or a proxy may: the 2-byte length alone, then the
// message in pieces, with a delay before each write, so that each write
// leaves as its own segment.
type splitServer struct {
	zone   zone
	pieces int
	delay  time.Duration
}

func (s *splitServer) serve(t *testing.T, addr string) {
	t.Helper()
	ln, err := net.Listen("tcp", addr)
	if err != nil {
		t.Fatalf("split server %s: %v", addr, err)
	}
	t.Cleanup(func() { ln.Close() })
	serve(ln, s.conn)
}

func (s *splitServer) conn(c net.Conn) {
	defer c.Close()
	var l [2]byte
	for {
		if _, err := io.ReadFull(c, l[:]); err != nil {
			return
		}
		q := make([]byte, binary.BigEndian.Uint16(l[:]))
		if _, err := io.ReadFull(c, q); err != nil {
			return
		}
		r := new(mdns.Msg)
		if err := r.Unpack(q); err != nil || len(r.Question) == 0 {
			return
		}
		m := new(mdns.Msg)
		m.SetReply(r)
		for _, rr := range s.zone[r.Question[0].Name+"/"+mdns.TypeToString[r.Question[0].Qtype]] {
			parsed, err := mdns.NewRR(rr)
			if err != nil {
				panic(err)
			}
			m.Answer = append(m.Answer, parsed)
		}
		msg, err := m.Pack()
		if err != nil {
			return
		}
		writes := [][]byte{binary.BigEndian.AppendUint16(nil, uint16(len(msg)))}
		for i := range s.pieces {
			writes = append(writes, msg[i*len(msg)/s.pieces:(i+1)*len(msg)/s.pieces])
		}
		for _, w := range writes {
			time.Sleep(s.delay)
			if _, err := c.Write(w); err != nil {
				return
			}
		}
	}
}

// TestDNSPrivilegedTCPSegments: an answer over TCP whose length and
// message arrive in separate segments, the message itself in three, is
// put together and parsed whole: every address of it names the connects.
func TestDNSPrivilegedTCPSegments(t *testing.T) {
	h := newDNSHarness(t, zone{}, nil)
	var rrs []string
	for i := range 20 {
		rrs = append(rrs, "split.test. 60 IN A 127.0.5."+strconv.Itoa(i+1))
	}
	srv := &splitServer{zone: zone{"split.test./A": rrs}, pieces: 3, delay: 30 * time.Millisecond}
	const addr = "127.0.53.55:53"
	srv.serve(t, addr)
	ips, err := goResolve("split.test", addr, "tcp", "ip4")
	if err != nil || len(ips) != 20 {
		t.Fatalf("resolve over TCP: %v %v", ips, err)
	}
	// The first and the last address: the last came in the last piece.
	wantNames(t, h.connect("127.0.5.1"), "split.test", "split.test")
	wantNames(t, h.connect("127.0.5.20"), "split.test", "split.test")
	if got := counter(t, h.tel, "receiver_tcpconnect_dns_tcp_streams_abandoned"); got != 0 {
		t.Errorf("streams abandoned %d, want 0", got)
	}
}

// TestDNSPrivilegedIPv6ExtHeaders: a query sent over IPv6 with a
// destination options extension header (IPV6_DSTOPTS) is captured: the
// kernel program walks the extension headers to the UDP header, and the
// answer then matches it.
func TestDNSPrivilegedIPv6ExtHeaders(t *testing.T) {
	h := newDNSHarness(t, zone{}, nil)
	srv := &dnsTestServer{zone: zone{"ext6.test./A": {"ext6.test. 60 IN A 127.0.5.30"}}}
	pc, ln := listenDNS(t, "[::1]:53")
	srv.serve(t, pc, ln)

	fd, err := unix.Socket(unix.AF_INET6, unix.SOCK_DGRAM|unix.SOCK_CLOEXEC, 0)
	if err != nil {
		t.Fatal(err)
	}
	defer unix.Close(fd)
	// Destination options: next header and length (filled by the kernel:
	// 8 bytes), then a PadN option of 4 bytes.
	if err := unix.SetsockoptString(fd, unix.IPPROTO_IPV6, unix.IPV6_DSTOPTS, string([]byte{0, 0, 1, 4, 0, 0, 0, 0})); err != nil {
		t.Fatalf("IPV6_DSTOPTS: %v", err)
	}
	if err := unix.SetsockoptTimeval(fd, unix.SOL_SOCKET, unix.SO_RCVTIMEO, &unix.Timeval{Sec: 5}); err != nil {
		t.Fatal(err)
	}
	if err := unix.Connect(fd, &unix.SockaddrInet6{Port: 53, Addr: netip.IPv6Loopback().As16()}); err != nil {
		t.Fatal(err)
	}
	q := new(mdns.Msg)
	q.SetQuestion("ext6.test.", mdns.TypeA)
	pkt, err := q.Pack()
	if err != nil {
		t.Fatal(err)
	}
	if _, err := unix.Write(fd, pkt); err != nil {
		t.Fatal(err)
	}
	buf := make([]byte, 1500)
	n, err := unix.Read(fd, buf)
	if err != nil {
		t.Fatalf("answer: %v", err)
	}
	var a mdns.Msg
	if err := a.Unpack(buf[:n]); err != nil || len(a.Answer) != 1 {
		t.Fatalf("answer %v: %v", a.Answer, err)
	}
	wantNames(t, h.connect("127.0.5.30"), "ext6.test", "ext6.test")
}
