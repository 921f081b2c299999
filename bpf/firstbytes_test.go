package bpf

import (
	"bytes"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"io"
	"math/big"
	"net"
	"net/http"
	"net/netip"
	"os"
	"strconv"
	"sync"
	"testing"
	"time"

	"github.com/vishvananda/netlink"
	"golang.org/x/sys/unix"

	"github.com/tcpconnect/tcpconnect/internal/event"
	"github.com/tcpconnect/tcpconnect/internal/firstbytes"
	"github.com/tcpconnect/tcpconnect/internal/privtest"
)

// fbRecordingConn keeps every byte the server read from its client.
type fbRecordingConn struct {
	net.Conn
	mu  sync.Mutex
	buf bytes.Buffer
}

func (c *fbRecordingConn) Read(p []byte) (int, error) {
	n, err := c.Conn.Read(p)
	c.mu.Lock()
	c.buf.Write(p[:n])
	c.mu.Unlock()
	return n, err
}

// fbSeen is what the server saw of a client's first flight.
type fbSeen struct {
	serverName string
	protos     []string
	raw        []byte
}

// fbTLSServer serves TLS handshakes on ln; for each connection it sends the
// server's ClientHelloInfo and the raw bytes it had read by then.
func fbTLSServer(t *testing.T, ln net.Listener) <-chan fbSeen {
	t.Helper()
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	tmpl := &x509.Certificate{SerialNumber: big.NewInt(1), DNSNames: []string{"first.example"},
		NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().Add(time.Hour)}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	if err != nil {
		t.Fatal(err)
	}
	cert := tls.Certificate{Certificate: [][]byte{der}, PrivateKey: key}
	seen := make(chan fbSeen, 4)
	go func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			go func() {
				defer c.Close()
				rc := &fbRecordingConn{Conn: c}
				var s fbSeen
				conf := &tls.Config{Certificates: []tls.Certificate{cert}, NextProtos: []string{"h2"},
					GetConfigForClient: func(info *tls.ClientHelloInfo) (*tls.Config, error) {
						rc.mu.Lock()
						s = fbSeen{info.ServerName, append([]string(nil), info.SupportedProtos...), bytes.Clone(rc.buf.Bytes())}
						rc.mu.Unlock()
						return nil, nil
					}}
				tc := tls.Server(rc, conf)
				_ = tc.SetDeadline(time.Now().Add(10 * time.Second))
				_ = tc.Handshake()
				seen <- s
			}()
		}
	}()
	return seen
}

// fbCapture is what the ring said of the connects to one destination: the
// connect records and the first-bytes pieces of each.
type fbCapture struct {
	conns  []event.Connect
	pieces map[[2]uint64][]event.FirstBytes
}

// readFirstBytes drains the ring until the connect to dst has its complete
// first bytes (or timeout).
func readFirstBytes(t *testing.T, p *Probe, dst netip.AddrPort, timeout time.Duration) (event.Connect, []event.FirstBytes, []byte) {
	t.Helper()
	c := fbCapture{pieces: map[[2]uint64][]event.FirstBytes{}}
	var asm firstbytes.Assembly
	end := time.Now().Add(timeout)
	for time.Now().Before(end) && !asm.Complete() {
		drainRound(t, p, 50*time.Millisecond, func(raw []byte) {
			switch event.Type(raw) {
			case event.TypeConnect:
				var e event.Connect
				if err := event.DecodeConnect(raw, &e); err != nil {
					t.Fatal(err)
				}
				if e.Dst == dst.Addr() && e.DstPort == dst.Port() {
					c.conns = append(c.conns, e)
				}
			case event.TypeFirstBytes:
				var f event.FirstBytes
				if err := event.DecodeFirstBytes(raw, &f); err != nil {
					t.Fatal(err)
				}
				f.Data = bytes.Clone(f.Data)
				k := [2]uint64{uint64(f.TID), f.ConnectBootNs}
				c.pieces[k] = append(c.pieces[k], f)
			}
		})
		if len(c.conns) == 1 {
			asm.Reset()
			for _, f := range c.pieces[[2]uint64{uint64(c.conns[0].TID), c.conns[0].BootTimeNs}] {
				if !asm.Add(int(f.Offset), int(f.Want), f.Data) {
					t.Fatalf("piece at %d (%d bytes of %d) does not continue the %d bytes so far", f.Offset, len(f.Data), f.Want, len(asm.Bytes()))
				}
			}
		}
	}
	if len(c.conns) != 1 {
		t.Fatalf("%d connect records to %s, want 1", len(c.conns), dst)
	}
	if !c.conns[0].Tracked {
		t.Fatalf("connect to %s not followed to its outcome", dst)
	}
	pieces := c.pieces[[2]uint64{uint64(c.conns[0].TID), c.conns[0].BootTimeNs}]
	if !asm.Complete() {
		t.Fatalf("first bytes of the connect to %s incomplete after %s: %d bytes in %d pieces", dst, timeout, len(asm.Bytes()), len(pieces))
	}
	return c.conns[0], pieces, asm.Bytes()
}

// checkHello parses the captured bytes and checks them against the
// server's view: the very bytes it read, and its ClientHelloInfo.
func checkHello(t *testing.T, got []byte, s fbSeen) {
	t.Helper()
	if !bytes.Equal(got, s.raw) {
		t.Fatalf("captured %d bytes, the server read %d before its ClientHelloInfo; equal: %v", len(got), len(s.raw), bytes.Equal(got, s.raw))
	}
	var fp firstbytes.Parser
	var r firstbytes.Result
	if st := fp.Parse(got, &r); st != firstbytes.StatusOK || r.Kind != firstbytes.KindTLS {
		t.Fatalf("captured bytes parse as %s %s (%s)", r.Kind, st, r.Reason)
	}
	if string(r.Name()) != s.serverName || len(r.ALPN()) != len(s.protos) || string(r.ALPN()[0]) != s.protos[0] {
		t.Fatalf("parsed name %q ALPN %q; the server saw %q %q", r.Name(), r.ALPN(), s.serverName, s.protos)
	}
}

func waitSeen(t *testing.T, seen <-chan fbSeen) fbSeen {
	t.Helper()
	select {
	case s := <-seen:
		if s.raw == nil {
			t.Fatal("the server saw no ClientHello")
		}
		return s
	case <-time.After(15 * time.Second):
		t.Fatal("the server saw no ClientHello")
	}
	return fbSeen{}
}

// TestProbeFirstBytes: a real TLS connect (Go's client, post-quantum key
// share) and a real HTTP request on loopback; the first bytes captured for
// each connect are the bytes the server read, and parse to what it saw.
// A connect that is not reported (left out by a port filter), so not
// followed, leaves no first bytes.
func TestProbeFirstBytes(t *testing.T) {
	privtest.Require(t)
	unfollowed, err := net.Listen("tcp4", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer unfollowed.Close()
	unfollowedPort := unfollowed.Addr().(*net.TCPAddr).AddrPort().Port()
	p := openForTest(t, Options{Outcome: true, FirstBytes: true, Filter: Filter{ExcludePorts: []uint16{unfollowedPort}}})
	defer p.Close()

	t.Run("tls", func(t *testing.T) {
		ln, err := net.Listen("tcp4", "127.0.0.1:0")
		if err != nil {
			t.Fatal(err)
		}
		defer ln.Close()
		seen := fbTLSServer(t, ln)
		c, err := tls.Dial("tcp4", ln.Addr().String(), &tls.Config{ServerName: "first.example", NextProtos: []string{"h2"}, InsecureSkipVerify: true})
		if err != nil {
			t.Fatalf("TLS handshake: %v", err)
		}
		c.Close()
		s := waitSeen(t, seen)
		_, _, got := readFirstBytes(t, p, ln.Addr().(*net.TCPAddr).AddrPort(), 5*time.Second)
		checkHello(t, got, s)
	})
	t.Run("http", func(t *testing.T) {
		ln, err := net.Listen("tcp4", "127.0.0.1:0")
		if err != nil {
			t.Fatal(err)
		}
		hosts := make(chan string, 1)
		srv := &http.Server{Handler: http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) { hosts <- r.Host }), ReadHeaderTimeout: 5 * time.Second}
		go func() { _ = srv.Serve(ln) }()
		defer srv.Close()
		req, err := http.NewRequest("GET", "http://"+ln.Addr().String()+"/path", nil)
		if err != nil {
			t.Fatal(err)
		}
		req.Host = "Named.Example"
		resp, err := (&http.Client{Timeout: 5 * time.Second, Transport: &http.Transport{}}).Do(req)
		if err != nil {
			t.Fatalf("HTTP request: %v", err)
		}
		resp.Body.Close()
		host := <-hosts
		_, _, got := readFirstBytes(t, p, ln.Addr().(*net.TCPAddr).AddrPort(), 5*time.Second)
		var fp firstbytes.Parser
		var r firstbytes.Result
		if st := fp.Parse(got, &r); st != firstbytes.StatusOK || r.Kind != firstbytes.KindHTTP {
			t.Fatalf("captured %q parses as %s %s (%s)", got, r.Kind, st, r.Reason)
		}
		if string(r.Name()) != "named.example" || host != "Named.Example" || string(r.Target) != "/path" {
			t.Fatalf("parsed host %q target %q; the server saw host %q", r.Name(), r.Target, host)
		}
	})
	t.Run("http_upload", func(t *testing.T) {
		// A request head followed by a large body in the first write: the
		// capture takes one record's worth, which holds the head.
		addr := discardListener(t)
		c, err := net.Dial("tcp4", addr)
		if err != nil {
			t.Fatal(err)
		}
		head := "POST /upload HTTP/1.1\r\nHost: upload.example\r\nContent-Length: 65536\r\n\r\n"
		if _, err := c.Write(append([]byte(head), make([]byte, 65536)...)); err != nil {
			t.Fatal(err)
		}
		c.Close()
		_, pieces, got := readFirstBytes(t, p, netip.MustParseAddrPort(addr), 5*time.Second)
		if len(pieces) != 1 || len(got) != event.FirstBytesChunk {
			t.Fatalf("captured %d bytes in %d pieces, want one piece of %d", len(got), len(pieces), event.FirstBytesChunk)
		}
		var fp firstbytes.Parser
		var r firstbytes.Result
		if st := fp.Parse(got, &r); st != firstbytes.StatusOK || string(r.Name()) != "upload.example" || string(r.Method) != "POST" {
			t.Fatalf("captured head parses as %s %q %q (%s)", st, r.Method, r.Name(), r.Reason)
		}
	})
	t.Run("closed", func(t *testing.T) { testFirstBytesClosed(t, p) })
	t.Run("past_bound", func(t *testing.T) { testFirstBytesPastBound(t, p) })
	t.Run("not_followed", func(t *testing.T) {
		seen := fbTLSServer(t, unfollowed)
		c, err := tls.Dial("tcp4", unfollowed.Addr().String(), &tls.Config{ServerName: "unfollowed.example", InsecureSkipVerify: true})
		if err != nil {
			t.Fatalf("TLS handshake: %v", err)
		}
		c.Close()
		waitSeen(t, seen)
		var fp firstbytes.Parser
		var r firstbytes.Result
		pieces := 0
		for range 10 {
			drainRound(t, p, 50*time.Millisecond, func(raw []byte) {
				switch event.Type(raw) {
				case event.TypeConnect:
					var e event.Connect
					if err := event.DecodeConnect(raw, &e); err != nil {
						t.Fatal(err)
					}
					if e.DstPort == unfollowedPort {
						t.Errorf("connect to the filtered port %d reported", unfollowedPort)
					}
				case event.TypeFirstBytes:
					var f event.FirstBytes
					if err := event.DecodeFirstBytes(raw, &f); err != nil {
						t.Fatal(err)
					}
					pieces++
					if f.Offset == 0 && fp.Parse(f.Data, &r) != firstbytes.StatusMalformed && string(r.Name()) == "unfollowed.example" {
						t.Errorf("first bytes of a connect that is not followed: %d bytes", len(f.Data))
					}
				}
			})
		}
		t.Logf("%d first-bytes pieces of other sockets on the host meanwhile", pieces)
	})
}

// TestProbeFirstBytesSplit: a ClientHello with a post-quantum key share
// (larger than one 1500-byte MTU's segment) from a client namespace over a
// veth pair with MTU 1500 and no GSO (gso_max_segs 1: TCP builds one skb per
// MSS, so the egress hook sees the segments themselves) to a server in
// another namespace. The capture spans segments and equals what the server
// read.
func TestProbeFirstBytesSplit(t *testing.T) {
	p := openForTest(t, Options{Outcome: true, FirstBytes: true})
	defer p.Close()
	must := func(what string, err error) {
		t.Helper()
		if err != nil {
			t.Fatalf("%s: %v", what, err)
		}
	}
	clientNS, serverNS := privtest.NewNetns(t), privtest.NewNetns(t)
	suffix := strconv.Itoa(os.Getpid() % 100000)
	ch, err := netlink.NewHandleAt(clientNS, unix.NETLINK_ROUTE)
	must("netlink in client netns", err)
	defer ch.Close()
	sh, err := netlink.NewHandleAt(serverNS, unix.NETLINK_ROUTE)
	must("netlink in server netns", err)
	defer sh.Close()
	veth := &netlink.Veth{LinkAttrs: netlink.LinkAttrs{Name: "tfc" + suffix, MTU: 1500, GSOMaxSegs: 1}, PeerName: "tfs" + suffix}
	must("add veth pair (needs the veth module)", ch.LinkAdd(veth))
	peer, err := ch.LinkByName(veth.PeerName)
	must("peer link", err)
	must("move peer", ch.LinkSetNsFd(peer, int(serverNS)))
	clientAddr := netip.MustParsePrefix("198.18.12.1/24")
	serverAddr := netip.MustParsePrefix("198.18.12.2/24")
	link, err := ch.LinkByName(veth.Name)
	must("client link", err)
	must("client addr", ch.AddrAdd(link, &netlink.Addr{IPNet: ipNet(clientAddr)}))
	must("client up", ch.LinkSetUp(link))
	must("client gso segs", ch.LinkSetGSOMaxSegs(link, 1))
	peer, err = sh.LinkByName(veth.PeerName)
	must("server link", err)
	must("server addr", sh.AddrAdd(peer, &netlink.Addr{IPNet: ipNet(serverAddr)}))
	must("server up", sh.LinkSetUp(peer))

	var ln net.Listener
	privtest.InNetns(t, serverNS, func() {
		ln, err = net.Listen("tcp4", netip.AddrPortFrom(serverAddr.Addr(), 0).String())
	})
	must("listen in server netns", err)
	defer ln.Close()
	seen := fbTLSServer(t, ln)
	dst := ln.Addr().(*net.TCPAddr).AddrPort()

	var c *tls.Conn
	privtest.InNetns(t, clientNS, func() {
		c, err = tls.Dial("tcp4", dst.String(), &tls.Config{ServerName: "first.example", NextProtos: []string{"h2"}, InsecureSkipVerify: true})
	})
	must("TLS handshake over the veth pair", err)
	c.Close()
	s := waitSeen(t, seen)
	if len(s.raw) <= 1500 {
		t.Fatalf("ClientHello of %d bytes: want more than a 1500-byte MTU holds", len(s.raw))
	}
	_, pieces, got := readFirstBytes(t, p, dst, 10*time.Second)
	if len(pieces) < 2 || len(pieces[0].Data) > 1500-40 {
		t.Fatalf("captured in %d pieces, the first of %d bytes: want one per segment", len(pieces), len(pieces[0].Data))
	}
	checkHello(t, got, s)
}

// discardListener listens on 127.0.0.1, accepts connections and reads each
// to its end, until the test ends; it returns the address to dial.
func discardListener(t testing.TB) string {
	t.Helper()
	ln, err := net.Listen("tcp4", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { ln.Close() })
	go func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			go func() {
				_, _ = io.Copy(io.Discard, c)
				c.Close()
			}()
		}
	}()
	return ln.Addr().String()
}
