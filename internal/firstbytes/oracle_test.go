package firstbytes

import (
	"bytes"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/binary"
	"errors"
	"io"
	"math/big"
	"net"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/tcpconnect/tcpconnect/internal/firstbytes/echtest"
)

// recordingConn keeps every byte read from the connection, so a server
// built on it can report what it saw next to the raw bytes it came from.
type recordingConn struct {
	net.Conn
	mu  sync.Mutex
	buf bytes.Buffer
}

func (c *recordingConn) Read(p []byte) (int, error) {
	n, err := c.Conn.Read(p)
	c.mu.Lock()
	c.buf.Write(p[:n])
	c.mu.Unlock()
	return n, err
}

func (c *recordingConn) bytes() []byte {
	c.mu.Lock()
	defer c.mu.Unlock()
	return bytes.Clone(c.buf.Bytes())
}

// helloSeen is what a crypto/tls server saw of one ClientHello, and the raw
// bytes it had read from the client when it saw it.
type helloSeen struct {
	serverName string
	protos     []string
	raw        []byte
}

// selfSigned returns a throwaway certificate for a TLS server on loopback.
func selfSigned(t testing.TB) tls.Certificate {
	t.Helper()
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	tmpl := &x509.Certificate{
		SerialNumber: big.NewInt(1),
		Subject:      pkix.Name{CommonName: "firstbytes test"},
		DNSNames:     []string{"public.example", "hidden.example", "sni.example", "curl.example", "openssl.example"},
		NotBefore:    time.Now().Add(-time.Hour),
		NotAfter:     time.Now().Add(time.Hour),
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	if err != nil {
		t.Fatal(err)
	}
	return tls.Certificate{Certificate: [][]byte{der}, PrivateKey: key}
}

// tlsServer serves TLS on a loopback port for each connection accepted, and
// sends on the returned channel what the server saw of each ClientHello.
// cfg may set ECH keys; its certificate and callbacks are filled here.
func tlsServer(t testing.TB, cfg *tls.Config) (string, <-chan helloSeen) {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { ln.Close() })
	cert := selfSigned(t)
	seen := make(chan helloSeen, 16)
	go func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			go func() {
				defer c.Close()
				rc := &recordingConn{Conn: c}
				var h helloSeen
				conf := cfg.Clone()
				conf.Certificates = []tls.Certificate{cert}
				conf.NextProtos = []string{"h2", "http/1.1"}
				conf.GetConfigForClient = func(info *tls.ClientHelloInfo) (*tls.Config, error) {
					h.serverName = info.ServerName
					h.protos = append([]string(nil), info.SupportedProtos...)
					h.raw = rc.bytes()
					return nil, nil
				}
				tc := tls.Server(rc, conf)
				_ = tc.SetDeadline(time.Now().Add(10 * time.Second))
				err := tc.Handshake()
				if h.raw != nil {
					seen <- h
				}
				if err == nil {
					_, _ = io.WriteString(tc, "HTTP/1.0 200 OK\r\nContent-Length: 2\r\n\r\nok")
					_ = tc.CloseWrite()
					_, _ = io.Copy(io.Discard, tc)
				}
			}()
		}
	}()
	return ln.Addr().String(), seen
}

// waitHello waits for the server's view of the next ClientHello.
func waitHello(t testing.TB, seen <-chan helloSeen) helloSeen {
	t.Helper()
	select {
	case h := <-seen:
		return h
	case <-time.After(20 * time.Second):
		t.Fatal("the server saw no ClientHello")
	}
	return helloSeen{}
}

// checkAgainstServer parses raw and checks it against what the server saw.
func checkAgainstServer(t *testing.T, raw []byte, h helloSeen, wantECH bool) *Result {
	t.Helper()
	var p Parser
	var r Result
	if s := p.Parse(raw, &r); s != StatusOK || r.Kind != KindTLS {
		t.Fatalf("parse %d bytes: kind %s status %s (%s)", len(raw), r.Kind, s, r.Reason)
	}
	wantName := strings.TrimSuffix(strings.ToLower(h.serverName), ".")
	if got := string(r.Name()); got != wantName {
		t.Errorf("name %q, the server saw %q", got, wantName)
	}
	if r.ECH != wantECH {
		t.Errorf("ECH %v, want %v", r.ECH, wantECH)
	}
	if !wantECH {
		var got []string
		for _, a := range r.ALPN() {
			got = append(got, string(a))
		}
		if !equalStrings(got, h.protos[:min(len(h.protos), MaxALPN)]) || r.ALPNOffered != len(h.protos) {
			t.Errorf("ALPN %q (%d offered), the server saw %q", got, r.ALPNOffered, h.protos)
		}
	}
	return &r
}

func equalStrings(a, b []string) bool {
	if len(a) != len(b) {
		return false
	}
	for i := range a {
		if a[i] != b[i] {
			return false
		}
	}
	return true
}

// TestGoClient: Go's crypto/tls client with its default configuration
// (X25519MLKEM768 key share: a ClientHello larger than one 1500-byte
// MSS), against a crypto/tls server whose ClientHelloInfo is the oracle.
// Every proper prefix of the bytes needs more; the whole parses.
func TestGoClient(t *testing.T) {
	addr, seen := tlsServer(t, &tls.Config{})
	for _, tc := range []struct {
		name   string
		sni    string
		protos []string
	}{
		{"sni_and_alpn", "sni.example", []string{"h2", "http/1.1"}},
		{"upper_case_sni", "SNI.Example", []string{"http/1.1"}},
		{"no_alpn", "sni.example", nil},
		{"many_alpn", "sni.example", []string{"a", "b", "c", "d", "e", "f", "g", "h", "i", "j"}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			c, err := tls.Dial("tcp", addr, &tls.Config{ServerName: tc.sni, NextProtos: tc.protos, InsecureSkipVerify: true})
			if err == nil {
				c.Close()
			}
			h := waitHello(t, seen)
			if len(h.raw) <= 1500 {
				t.Fatalf("ClientHello of %d bytes: want one larger than a 1500-byte MSS (post-quantum key share)", len(h.raw))
			}
			r := checkAgainstServer(t, h.raw, h, false)
			if len(tc.protos) > MaxALPN && (len(r.ALPN()) != MaxALPN || r.ALPNOffered != len(tc.protos)) {
				t.Errorf("kept %d of %d ALPN protocols, want %d", len(r.ALPN()), r.ALPNOffered, MaxALPN)
			}
			var p Parser
			var pr Result
			for n := range len(h.raw) {
				if s := p.Parse(h.raw[:n], &pr); s != StatusNeedMore {
					t.Fatalf("prefix of %d of %d bytes: %s (%s), want need_more", n, len(h.raw), s, pr.Reason)
				}
			}
		})
	}
}

// fragmentRecords re-frames the handshake records at the start of b into
// records of at most size bytes of fragment each (RFC 8446 5.1 allows a
// handshake message to span records).
func fragmentRecords(t testing.TB, b []byte, size int) []byte {
	t.Helper()
	var msg []byte
	var version []byte
	for len(b) >= 5 && b[0] == recordHandshake {
		n := int(binary.BigEndian.Uint16(b[3:]))
		version = b[1:3]
		msg = append(msg, b[5:5+n]...)
		b = b[5+n:]
	}
	var out []byte
	for len(msg) > 0 {
		k := min(size, len(msg))
		out = append(out, recordHandshake, version[0], version[1], byte(k>>8), byte(k))
		out = append(out, msg[:k]...)
		msg = msg[k:]
	}
	return append(out, b...)
}

// TestClientHelloAcrossRecords: a real ClientHello re-framed into records of
// 100 bytes by a proxy between a Go client and a Go server; the server
// accepts it (its ClientHelloInfo is the oracle) and so must the parser.
func TestClientHelloAcrossRecords(t *testing.T) {
	addr, seen := tlsServer(t, &tls.Config{})
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	go func() {
		c, err := ln.Accept()
		if err != nil {
			return
		}
		defer c.Close()
		s, err := net.Dial("tcp", addr)
		if err != nil {
			return
		}
		defer s.Close()
		// The client's first flight is its ClientHello alone: read one record.
		hdr := make([]byte, 5)
		if _, err := io.ReadFull(c, hdr); err != nil {
			return
		}
		body := make([]byte, binary.BigEndian.Uint16(hdr[3:]))
		if _, err := io.ReadFull(c, body); err != nil {
			return
		}
		if _, err := s.Write(fragmentRecords(t, append(hdr, body...), 100)); err != nil {
			return
		}
		go func() { _, _ = io.Copy(s, c) }()
		_, _ = io.Copy(c, s)
	}()
	c, err := tls.Dial("tcp", ln.Addr().String(), &tls.Config{ServerName: "sni.example", NextProtos: []string{"h2"}, InsecureSkipVerify: true})
	if err != nil {
		t.Fatalf("handshake through the re-framing proxy: %v", err)
	}
	c.Close()
	h := waitHello(t, seen)
	if recs := bytes.Count(h.raw, []byte{recordHandshake, 3, 1}) + bytes.Count(h.raw, []byte{recordHandshake, 3, 3}); recs < 10 {
		t.Fatalf("the server got the ClientHello in %d records, want it split", recs)
	}
	checkAgainstServer(t, h.raw, h, false)
	var p Parser
	var r Result
	for n := range len(h.raw) {
		if s := p.Parse(h.raw[:n], &r); s != StatusNeedMore {
			t.Fatalf("prefix of %d of %d bytes: %s (%s), want need_more", n, len(h.raw), s, r.Reason)
		}
	}
}

// echKey makes an ECH server key and client config list (echtest.Key).
func echKey(t testing.TB, publicName string) (tls.EncryptedClientHelloKey, []byte) {
	t.Helper()
	key, list, err := echtest.Key(publicName)
	if err != nil {
		t.Fatal(err)
	}
	return key, list
}

// TestECHClient: a Go client with an ECH config against a Go server that
// holds its key. The handshake accepts ECH; the visible name is the public
// name (the server's outer ClientHelloInfo), the flag is set, and the real
// name the server decrypted is nowhere in the result.
func TestECHClient(t *testing.T) {
	key, list := echKey(t, "public.example")
	addr, seen := tlsServer(t, &tls.Config{MinVersion: tls.VersionTLS13, EncryptedClientHelloKeys: []tls.EncryptedClientHelloKey{key}})
	c, err := tls.Dial("tcp", addr, &tls.Config{ServerName: "hidden.example", NextProtos: []string{"h2"},
		EncryptedClientHelloConfigList: list, MinVersion: tls.VersionTLS13, InsecureSkipVerify: true})
	if err != nil {
		t.Fatalf("ECH handshake: %v", err)
	}
	accepted := c.ConnectionState().ECHAccepted
	c.Close()
	if !accepted {
		t.Fatal("the server did not accept ECH")
	}
	h := waitHello(t, seen)
	if h.serverName != "hidden.example" {
		t.Fatalf("the ECH server decrypted server name %q, want hidden.example", h.serverName)
	}
	// The visible name: what a server without the ECH key sees of the
	// same bytes (it rejects ECH and answers the outer ClientHello).
	outer := plainServerView(t, h.raw)
	if outer.serverName != "public.example" {
		t.Fatalf("a server without the ECH key saw server name %q", outer.serverName)
	}
	outer.raw = h.raw
	r := checkAgainstServer(t, h.raw, outer, true)
	if bytes.Contains(r.Name(), []byte("hidden")) {
		t.Fatalf("name %q: the inner name leaked", r.Name())
	}
}

// plainServerView feeds raw, a client's first flight, to a crypto/tls
// server with no ECH keys and returns what it saw of the ClientHello.
func plainServerView(t testing.TB, raw []byte) helloSeen {
	t.Helper()
	client, server := net.Pipe()
	defer client.Close()
	go func() {
		_, _ = client.Write(raw)
		_, _ = io.Copy(io.Discard, client)
	}()
	var h helloSeen
	conf := &tls.Config{Certificates: []tls.Certificate{selfSigned(t)},
		GetConfigForClient: func(info *tls.ClientHelloInfo) (*tls.Config, error) {
			h.serverName = info.ServerName
			h.protos = append([]string(nil), info.SupportedProtos...)
			return nil, errors.New("seen")
		}}
	_ = server.SetDeadline(time.Now().Add(5 * time.Second))
	_ = tls.Server(server, conf).Handshake()
	server.Close()
	return h
}
