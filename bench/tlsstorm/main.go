// Command tlsstorm is a loopback connect storm where every client completes
// a TLS handshake: a crypto/tls server on 127.0.0.1 (an ephemeral port, a
// self-signed ECDSA P-256 certificate made at start for -name), and client
// workers that each loop dial + TLS handshake (crypto/tls, default client
// config: only RootCAs, the server's certificate, and ServerName set, so the
// ClientHello is Go's default, post-quantum key share included) + close with
// SO_LINGER 0, bounded by a count and a duration. Every connect's first
// bytes are a ClientHello naming -name: what a first-bytes capture takes and
// parses. Every handshake is a full one (no session cache).
//
// Output, one line on stdout:
//
//	connects=N errors=E seconds=S rate=R pid=P port=PORT
//
// connects counts dial attempts (each one a connect a monitor must report);
// errors counts the dials or handshakes that failed.
package main

import (
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"flag"
	"fmt"
	"io"
	"math/big"
	"net"
	"os"
	"sync"
	"sync/atomic"
	"time"
)

func main() {
	count := flag.Int("n", 20000, "total connects bound (1..10,000,000)")
	workers := flag.Int("t", 1, "client workers, each one connect at a time (1..64)")
	duration := flag.Duration("d", 60*time.Second, "duration bound (at most 10m)")
	name := flag.String("name", "storm.tls.example", "the server name the clients send (SNI) and the certificate names")
	flag.Parse()
	if *count < 1 || *count > 10_000_000 || *workers < 1 || *workers > 64 || *duration <= 0 || *duration > 10*time.Minute {
		fmt.Fprintln(os.Stderr, "tlsstorm: -n in [1, 10000000], -t in [1, 64], -d in (0, 10m]")
		os.Exit(2)
	}
	if err := run(*count, *workers, *duration, *name); err != nil {
		fmt.Fprintln(os.Stderr, "tlsstorm:", err)
		os.Exit(1)
	}
}

func run(count, workers int, duration time.Duration, name string) error {
	cert, pool, err := selfSigned(name)
	if err != nil {
		return err
	}
	ln, err := net.Listen("tcp4", "127.0.0.1:0")
	if err != nil {
		return fmt.Errorf("listen: %w", err)
	}
	defer ln.Close()
	srv := &tls.Config{Certificates: []tls.Certificate{cert}}
	var serving sync.WaitGroup
	serving.Go(func() { serve(ln, srv) })
	defer serving.Wait()
	defer ln.Close()

	cli := &tls.Config{RootCAs: pool, ServerName: name}
	port := ln.Addr().(*net.TCPAddr).Port
	addr := ln.Addr().String()
	ctx, cancel := context.WithTimeout(context.Background(), duration)
	defer cancel()
	var next, errs atomic.Int64
	var wg sync.WaitGroup
	start := time.Now()
	for range workers {
		wg.Go(func() {
			for ctx.Err() == nil && next.Add(1) <= int64(count) {
				if err := handshake(ctx, addr, cli); err != nil {
					if errs.Add(1) == 1 {
						fmt.Fprintln(os.Stderr, "tlsstorm: first error:", err)
					}
				}
			}
		})
	}
	wg.Wait()
	secs := time.Since(start).Seconds()
	made := min(next.Load(), int64(count))
	fmt.Printf("connects=%d errors=%d seconds=%.3f rate=%.0f pid=%d port=%d\n",
		made, errs.Load(), secs, float64(made)/secs, os.Getpid(), port)
	return nil
}

// handshake dials addr, completes a TLS handshake and closes with SO_LINGER
// 0 (no TIME_WAIT left behind: a long storm does not run out of ports).
func handshake(ctx context.Context, addr string, cfg *tls.Config) error {
	var d net.Dialer
	c, err := d.DialContext(ctx, "tcp4", addr)
	if err != nil {
		return fmt.Errorf("dial: %w", err)
	}
	if err := c.(*net.TCPConn).SetLinger(0); err != nil {
		c.Close()
		return fmt.Errorf("linger: %w", err)
	}
	tc := tls.Client(c, cfg)
	err = tc.HandshakeContext(ctx)
	c.Close()
	if err != nil {
		return fmt.Errorf("handshake: %w", err)
	}
	return nil
}

// serve accepts until ln is closed; each connection is handshaken and read
// until the client goes.
func serve(ln net.Listener, cfg *tls.Config) {
	var conns sync.WaitGroup
	defer conns.Wait()
	for {
		c, err := ln.Accept()
		if err != nil {
			return
		}
		conns.Go(func() {
			defer c.Close()
			_ = c.SetDeadline(time.Now().Add(10 * time.Second))
			tc := tls.Server(c, cfg)
			if tc.Handshake() != nil {
				return
			}
			_, _ = io.Copy(io.Discard, tc)
		})
	}
}

// selfSigned makes an ECDSA P-256 certificate for name and a pool that trusts it.
func selfSigned(name string) (tls.Certificate, *x509.CertPool, error) {
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		return tls.Certificate{}, nil, fmt.Errorf("key: %w", err)
	}
	tmpl := &x509.Certificate{
		SerialNumber:          big.NewInt(1),
		Subject:               pkix.Name{CommonName: name},
		DNSNames:              []string{name},
		NotBefore:             time.Now().Add(-time.Hour),
		NotAfter:              time.Now().Add(24 * time.Hour),
		KeyUsage:              x509.KeyUsageDigitalSignature | x509.KeyUsageCertSign,
		ExtKeyUsage:           []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth},
		BasicConstraintsValid: true,
		IsCA:                  true,
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	if err != nil {
		return tls.Certificate{}, nil, fmt.Errorf("certificate: %w", err)
	}
	leaf, err := x509.ParseCertificate(der)
	if err != nil {
		return tls.Certificate{}, nil, fmt.Errorf("certificate: %w", err)
	}
	pool := x509.NewCertPool()
	pool.AddCert(leaf)
	return tls.Certificate{Certificate: [][]byte{der}, PrivateKey: key, Leaf: leaf}, pool, nil
}
