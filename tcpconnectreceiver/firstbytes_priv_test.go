package tcpconnectreceiver

import (
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
	"os/exec"
	"slices"
	"strings"
	"testing"
	"time"

	"go.opentelemetry.io/collector/consumer/consumertest"

	"github.com/tcpconnect/tcpconnect/internal/firstbytes/echtest"
)

// helloSeen is what a TLS server saw of a client's ClientHello: the oracle
// of the record's names.
type helloSeen struct {
	serverName string
	protos     []string
}

// listenTCP4 listens at addr until the test ends.
func listenTCP4(t *testing.T, addr string) net.Listener {
	t.Helper()
	ln, err := net.Listen("tcp4", addr)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { ln.Close() })
	return ln
}

// serve accepts connections on ln until it closes, and handles each in a
// goroutine of its own.
func serve(ln net.Listener, handle func(net.Conn)) {
	go func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			go handle(c)
		}
	}()
}

// serveTLS serves TLS handshakes on ln (a self-signed certificate; it speaks
// h2 and http/1.1, and ECH with echKeys), closing each connection after its
// handshake, and calls hello with each ClientHello it is sent (the inner
// one, with ECH): the oracle of what the client sent.
func serveTLS(t *testing.T, ln net.Listener, hello func(*tls.ClientHelloInfo), echKeys ...tls.EncryptedClientHelloKey) {
	t.Helper()
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	tmpl := &x509.Certificate{SerialNumber: big.NewInt(1), DNSNames: []string{"server.example"},
		NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().Add(time.Hour)}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	if err != nil {
		t.Fatal(err)
	}
	conf := &tls.Config{Certificates: []tls.Certificate{{Certificate: [][]byte{der}, PrivateKey: key}}, NextProtos: []string{"h2", "http/1.1"},
		EncryptedClientHelloKeys: echKeys,
		GetConfigForClient: func(info *tls.ClientHelloInfo) (*tls.Config, error) {
			hello(info)
			return nil, nil
		}}
	serve(ln, func(c net.Conn) {
		defer c.Close()
		tc := tls.Server(c, conf)
		_ = tc.SetDeadline(time.Now().Add(10 * time.Second))
		_ = tc.Handshake()
	})
}

// tlsServer serves TLS handshakes at addr (serveTLS) and sends what it saw
// of each ClientHello.
func tlsServer(t *testing.T, addr string, echKeys ...tls.EncryptedClientHelloKey) <-chan helloSeen {
	t.Helper()
	seen := make(chan helloSeen, 8)
	serveTLS(t, listenTCP4(t, addr), func(info *tls.ClientHelloInfo) {
		seen <- helloSeen{info.ServerName, slices.Clone(info.SupportedProtos)}
	}, echKeys...)
	return seen
}

// httpServer serves HTTP/1.x at addr and sends the Host of each request.
func httpServer(t *testing.T, addr string) <-chan string {
	t.Helper()
	ln, err := net.Listen("tcp4", addr)
	if err != nil {
		t.Fatal(err)
	}
	hosts := make(chan string, 8)
	srv := &http.Server{Handler: http.HandlerFunc(func(_ http.ResponseWriter, r *http.Request) { hosts <- r.Host }), ReadHeaderTimeout: 10 * time.Second}
	go func() { _ = srv.Serve(ln) }()
	t.Cleanup(func() { srv.Close() })
	return hosts
}

// holdServer accepts connections at addr and holds each open, reading, until
// the test ends (a server that would speak first, and never does).
func holdServer(t *testing.T, addr string) {
	t.Helper()
	serve(listenTCP4(t, addr), func(c net.Conn) { _, _ = io.Copy(io.Discard, c); c.Close() })
}

// readOnceServer accepts connections at addr, reads once from each and
// closes it (a client waiting for an answer then gets none, and gives up).
func readOnceServer(t *testing.T, addr string) {
	t.Helper()
	serve(listenTCP4(t, addr), func(c net.Conn) {
		_ = c.SetDeadline(time.Now().Add(10 * time.Second))
		_, _ = c.Read(make([]byte, 4096))
		c.Close()
	})
}

// fbSeenRecord is a record to one destination, with its times.
type fbSeenRecord struct {
	fbRecord
	names  []string
	waited time.Duration // ObservedTimestamp - Timestamp: how long it waited
}

// fbRecordsTo returns the records to ip:port in the sink.
func fbRecordsTo(sink *consumertest.LogsSink, ip string, port uint16) []fbSeenRecord {
	var out []fbSeenRecord
	for _, ld := range sink.AllLogs() {
		for i := 0; i < ld.ResourceLogs().Len(); i++ {
			lrs := ld.ResourceLogs().At(i).ScopeLogs().At(0).LogRecords()
			for k := 0; k < lrs.Len(); k++ {
				lr := lrs.At(k)
				a := lr.Attributes()
				if strAttr(a, attrNetPeerAddress) != ip || intAttr(a, attrNetPeerPort) != int64(port) {
					continue
				}
				r := fbSeenRecord{fbRecord: fbRecordOf(a.AsRaw()), waited: lr.ObservedTimestamp().AsTime().Sub(lr.Timestamp().AsTime())}
				if v, ok := a.Get(attrDNSNames); ok {
					for _, n := range v.Slice().AsRaw() {
						r.names = append(r.names, n.(string))
					}
				}
				out = append(out, r)
			}
		}
	}
	return out
}

// waitFBRecord waits up to within for the n-th record to ip:port and returns it.
func waitFBRecord(t *testing.T, sink *consumertest.LogsSink, ip string, port uint16, n int, within time.Duration) fbSeenRecord {
	t.Helper()
	var got []fbSeenRecord
	for end := time.Now().Add(within); time.Now().Before(end); time.Sleep(10 * time.Millisecond) {
		if got = fbRecordsTo(sink, ip, port); len(got) >= n {
			return got[n-1]
		}
	}
	t.Fatalf("%s:%d: %d records within %s, want %d", ip, port, len(got), within, n)
	return fbSeenRecord{}
}

// wantRecord compares a record's names with want (ALPN included).
func wantRecord(t *testing.T, got fbSeenRecord, want fbRecord) {
	t.Helper()
	if got.outcome != want.outcome || got.serverAddr != want.serverAddr || got.source != want.source || got.sni != want.sni ||
		got.host != want.host || got.ech != want.ech || got.mismatch != want.mismatch || !slices.Equal(got.alpn, want.alpn) {
		t.Errorf("record %+v (names %q), want %+v", got.fbRecord, got.names, want)
	}
}

// recvHello waits for what the server saw of a ClientHello.
func recvHello[H any](t *testing.T, seen <-chan H) H {
	t.Helper()
	select {
	case s := <-seen:
		return s
	case <-time.After(15 * time.Second):
		t.Fatal("the server saw no ClientHello")
	}
	var none H
	return none
}

// goTLS makes a TLS handshake with Go's client to ip:port, sending
// serverName and offering alpn, and closes.
func goTLS(t *testing.T, ip string, port uint16, serverName string, alpn ...string) {
	t.Helper()
	c, err := tls.Dial("tcp4", netip.AddrPortFrom(netip.MustParseAddr(ip), port).String(),
		&tls.Config{ServerName: serverName, NextProtos: alpn, InsecureSkipVerify: true}) // a test server's self-signed certificate
	if err != nil {
		t.Fatalf("TLS handshake with %s: %v", ip, err)
	}
	c.Close()
}

// TestFirstBytesPrivileged: real clients against real servers on loopback
// addresses of their own, with the receiver's default first_bytes: a Go TLS
// client that dials an IP no DNS answer named is named by its ClientHello
// (as its server saw it); an HTTP client (busybox wget) by its Host; a
// client that resolved name A through a real DNS server and sends SNI B is
// flagged, and one that sends A is not; a client that connects and closes
// without sending ends its record's wait (its record arrives well within
// outcome.max_wait, which is 10 s here). A client with an ECH config is
// named by the public name, flagged ECH.
func TestFirstBytesPrivileged(t *testing.T) {
	const maxWait = 10 * time.Second
	h := newDNSHarness(t, zone{"front-a.test./A": {"front-a.test. 60 IN A 127.0.19.3"}}, nil,
		func(c *Config) { c.Outcome.MaxWait = maxWait })
	port := h.port
	addr := func(ip string) string { return netip.AddrPortFrom(netip.MustParseAddr(ip), port).String() }

	t.Run("go_tls_without_dns", func(t *testing.T) {
		seen := tlsServer(t, addr("127.0.19.1"))
		goTLS(t, "127.0.19.1", port, "direct.test", "h2", "http/1.1")
		s := recvHello(t, seen)
		got := waitFBRecord(t, h.sink, "127.0.19.1", port, 1, maxWait/2)
		wantRecord(t, got, fbRecord{outcome: "established", serverAddr: s.serverName, source: "tls", sni: s.serverName, alpn: s.protos})
		if s.serverName != "direct.test" || len(got.names) != 0 {
			t.Errorf("server saw %q; record names %q", s.serverName, got.names)
		}
	})
	t.Run("busybox_wget_host", func(t *testing.T) {
		hosts := httpServer(t, addr("127.0.19.2"))
		bb := busybox(t)
		out, err := exec.Command(bb, "wget", "-q", "-O", "/dev/null", "--header", "Host: WGET.test", "http://"+addr("127.0.19.2")+"/").CombinedOutput()
		if err != nil {
			t.Fatalf("busybox wget: %v\n%s", err, out)
		}
		host := <-hosts
		got := waitFBRecord(t, h.sink, "127.0.19.2", port, 1, maxWait/2)
		want := strings.ToLower(host)
		wantRecord(t, got, fbRecord{outcome: "established", serverAddr: want, source: "http", host: want})
	})
	t.Run("fronting", func(t *testing.T) {
		seen := tlsServer(t, addr("127.0.19.3"))
		h.resolve("front-a.test", "udp", "ip4")
		n := 0
		for _, tc := range []struct {
			sni      string
			mismatch string
		}{
			{"front-b.test", "true"},
			{"front-a.test", "false"},
			{"FRONT-A.Test", "false"},
		} {
			goTLS(t, "127.0.19.3", port, tc.sni, "h2")
			s := recvHello(t, seen)
			n++
			got := waitFBRecord(t, h.sink, "127.0.19.3", port, n, maxWait/2)
			wantRecord(t, got, fbRecord{outcome: "established", serverAddr: "front-a.test", source: "dns",
				sni: strings.ToLower(s.serverName), alpn: s.protos, mismatch: tc.mismatch})
			if !slices.Equal(got.names, []string{"front-a.test"}) {
				t.Errorf("SNI %s: names %q, want the DNS answer's", tc.sni, got.names)
			}
		}
	})
	t.Run("ech", func(t *testing.T) {
		// The real name is encrypted: the record carries the ECH config's
		// public name, flagged, and never the inner name the server saw.
		key, list, err := echtest.Key("public.test")
		if err != nil {
			t.Fatal(err)
		}
		seen := tlsServer(t, addr("127.0.19.5"), key)
		c, err := tls.Dial("tcp4", addr("127.0.19.5"), &tls.Config{ServerName: "hidden.test", NextProtos: []string{"h2"},
			EncryptedClientHelloConfigList: list, MinVersion: tls.VersionTLS13, InsecureSkipVerify: true}) // a test server's self-signed certificate
		if err != nil {
			t.Fatalf("ECH handshake: %v", err)
		}
		accepted := c.ConnectionState().ECHAccepted
		c.Close()
		s := recvHello(t, seen)
		if !accepted || s.serverName != "hidden.test" {
			t.Fatalf("ECH accepted %v, the server decrypted name %q: want hidden.test", accepted, s.serverName)
		}
		got := waitFBRecord(t, h.sink, "127.0.19.5", port, 1, maxWait/2)
		wantRecord(t, got, fbRecord{outcome: "established", serverAddr: "public.test", source: "tls", sni: "public.test", alpn: s.protos, ech: "true"})
	})
	t.Run("connect_and_close", func(t *testing.T) {
		holdServer(t, addr("127.0.19.4"))
		c, err := net.Dial("tcp4", addr("127.0.19.4"))
		if err != nil {
			t.Fatal(err)
		}
		c.Close()
		// Half of max_wait: only the closed record can end the wait this early.
		got := waitFBRecord(t, h.sink, "127.0.19.4", port, 1, maxWait/2)
		wantRecord(t, got, fbRecord{outcome: "established", serverAddr: "127.0.19.4"})
	})
}

// TestFirstBytesPrivilegedServerFirst: a client of a server-speaks-first
// protocol connects and sends nothing, holding the socket open: its record
// waits outcome.max_wait and goes out established, without names, and is
// counted as none.
func TestFirstBytesPrivilegedServerFirst(t *testing.T) {
	const maxWait = 300 * time.Millisecond
	h := newDNSHarness(t, zone{}, nil, func(c *Config) { c.Outcome.MaxWait = maxWait })
	a := netip.AddrPortFrom(netip.MustParseAddr("127.0.19.8"), h.port).String()
	holdServer(t, a)
	c, err := net.Dial("tcp4", a)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	got := waitFBRecord(t, h.sink, "127.0.19.8", h.port, 1, 10*time.Second)
	wantRecord(t, got, fbRecord{outcome: "established", serverAddr: "127.0.19.8"})
	if got.waited < maxWait {
		t.Errorf("record went out %s after its connect, before max_wait %s", got.waited, maxWait)
	}
	waitFor(t, "first_bytes{result=none}", func() bool {
		return counterBy(t, h.tel, "receiver_tcpconnect_first_bytes", "result")["none"] == 1
	})
}
