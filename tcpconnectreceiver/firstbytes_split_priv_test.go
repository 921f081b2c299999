package tcpconnectreceiver

import (
	"crypto/tls"
	"fmt"
	"net"
	"slices"
	"testing"
	"time"

	"github.com/vishvananda/netlink"
	"github.com/vishvananda/netns"
	"golang.org/x/sys/unix"

	"github.com/tcpconnect/tcpconnect/internal/privtest"
)

// splitHello is what a TLS server saw of one ClientHello, and how it came:
// the TCP bytes and data segments its socket had received when the
// ClientHello was parsed (the client sends nothing else before the server
// answers, so both are the ClientHello's).
type splitHello struct {
	helloSeen
	curves   []tls.CurveID
	bytes    uint64 // tcpi_bytes_received
	segments uint32 // tcpi_data_segs_in (counts the wire's segments, GRO or not)
	err      error  // reading TCP_INFO
}

// tcpInfo reads TCP_INFO of c, a TCP connection.
func tcpInfo(c net.Conn) (*unix.TCPInfo, error) {
	tc, ok := c.(*net.TCPConn)
	if !ok {
		return nil, fmt.Errorf("TCP_INFO of a %T", c)
	}
	rc, err := tc.SyscallConn()
	if err != nil {
		return nil, fmt.Errorf("TCP_INFO: %w", err)
	}
	var info *unix.TCPInfo
	var ierr error
	if err := rc.Control(func(fd uintptr) { info, ierr = unix.GetsockoptTCPInfo(int(fd), unix.IPPROTO_TCP, unix.TCP_INFO) }); err != nil {
		return nil, fmt.Errorf("TCP_INFO: %w", err)
	}
	if ierr != nil {
		return nil, fmt.Errorf("TCP_INFO: %w", ierr)
	}
	return info, nil
}

// splitTLSServer serves TLS handshakes on ln (serveTLS) and sends what it
// saw of each ClientHello and how many bytes and segments carried it.
func splitTLSServer(t *testing.T, ln net.Listener) <-chan splitHello {
	t.Helper()
	seen := make(chan splitHello, 4)
	serveTLS(t, ln, func(info *tls.ClientHelloInfo) {
		s := splitHello{helloSeen: helloSeen{info.ServerName, slices.Clone(info.SupportedProtos)}, curves: slices.Clone(info.SupportedCurves)}
		ti, err := tcpInfo(info.Conn)
		if s.err = err; err == nil {
			s.bytes, s.segments = ti.Bytes_received, ti.Data_segs_in
		}
		seen <- s
	})
	return seen
}

// splitLink makes the veth end name in ns send one MTU-sized segment per
// packet: MTU 1500 and gso_max_segs 1 (no TSO/GSO super-packets, so the
// egress program sees each segment on its own).
func splitLink(t *testing.T, ns netns.NsHandle, name string) {
	t.Helper()
	h, err := netlink.NewHandleAt(ns, unix.NETLINK_ROUTE)
	if err != nil {
		t.Fatal(err)
	}
	defer h.Close()
	l, err := h.LinkByName(name)
	if err != nil {
		t.Fatal(err)
	}
	if err := h.LinkSetMTU(l, 1500); err != nil {
		t.Fatalf("MTU of %s: %v", name, err)
	}
	if err := h.LinkSetGSOMaxSegs(l, 1); err != nil {
		t.Fatalf("gso_max_segs of %s: %v", name, err)
	}
}

// TestFirstBytesSplitClientHello: Go's TLS client, with its default key
// shares (the post-quantum hybrid X25519MLKEM768 first), dials a Go TLS
// server by IP over a veth pair between two namespaces with MTU 1500 and
// one segment per packet, so that its ClientHello (1520 bytes with Go 1.26)
// leaves in two segments and the kernel captures it in two pieces. The record is
// named by the ClientHello the receiver put together: the server name and
// ALPN the server saw, as server.address with source tls, and the first
// bytes are counted as tls and none lost.
func TestFirstBytesSplitClientHello(t *testing.T) {
	const maxWait = 10 * time.Second
	privtest.Require(t)
	const serverIP = "198.18.19.2"
	clientNS, serverNS := privtest.NewNetns(t), privtest.NewNetns(t)
	vethPair(t, clientNS, serverNS, "198.18.19.1/24", serverIP+"/24")
	splitLink(t, clientNS, "tcva")

	var ln net.Listener
	var err error
	privtest.InNetns(t, serverNS, func() {
		ln, err = net.Listen("tcp4", serverIP+":0")
	})
	if err != nil {
		t.Fatalf("listen in the server's namespace: %v", err)
	}
	t.Cleanup(func() { ln.Close() })
	port := ln.Addr().(*net.TCPAddr).AddrPort().Port()
	// No DNS server (newDNSHarness binds 127.0.53.53:53, which one test
	// binary at a time can hold).
	h := newReceiverHarness(t, port, func(c *Config) { c.Outcome.MaxWait = maxWait })
	seen := splitTLSServer(t, ln)

	privtest.InNetns(t, clientNS, func() { goTLS(t, serverIP, port, "split.test", "h2", "http/1.1") })
	s := recvHello(t, seen)
	if s.err != nil {
		t.Fatalf("the server's socket: %v", s.err)
	}
	// MTU 1500 less the IPv4 and TCP headers (TCP options make the real MSS smaller).
	const maxSegment = 1500 - 40
	if !slices.Contains(s.curves, tls.X25519MLKEM768) || s.bytes <= maxSegment || s.segments < 2 {
		t.Fatalf("ClientHello of %d bytes in %d segments, curves %v: want X25519MLKEM768, more than %d bytes, 2 or more segments",
			s.bytes, s.segments, s.curves, maxSegment)
	}
	if s.serverName != "split.test" || len(s.protos) != 2 {
		t.Fatalf("server saw name %q, ALPN %q", s.serverName, s.protos)
	}
	got := waitFBRecord(t, h.sink, serverIP, port, 1, maxWait/2)
	wantRecord(t, got, fbRecord{outcome: "established", serverAddr: s.serverName, source: "tls", sni: s.serverName, alpn: s.protos})
	if len(got.names) != 0 {
		t.Errorf("record names %q: no DNS answer named %s", got.names, serverIP)
	}
	waitFor(t, "first_bytes{result=tls}", func() bool {
		return counterBy(t, h.tel, "receiver_tcpconnect_first_bytes", "result")["tls"] == 1
	})
	if lost := counter(t, h.tel, "receiver_tcpconnect_first_bytes_lost"); lost != 0 {
		t.Errorf("first_bytes_lost %d, want 0", lost)
	}
	t.Logf("ClientHello of %d bytes in %d TCP segments; record %+v", s.bytes, s.segments, got.fbRecord)
}
