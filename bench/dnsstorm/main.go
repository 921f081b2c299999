// Command dnsstorm is a DNS answer storm on loopback: a UDP DNS server on
// 127.0.0.x:53 that answers every A query with a CNAME and two A records, and
// client workers that query it with unique random names, bounded by a count
// and a duration and optionally paced to a rate. Every answered name maps a
// new 10.x.y.z address, so a DNS cache that keeps every answer grows by one
// entry per query. No packet leaves loopback: the A records are data only.
//
// Output, one line on stdout:
//
//	queries=N answers=A timeouts=T seconds=S qps=R pid=P
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"math/rand/v2"
	"net"
	"os"
	"os/signal"
	"sync"
	"sync/atomic"
	"syscall"
	"time"

	"github.com/miekg/dns"
)

func main() {
	listen := flag.String("listen", "127.0.0.77:53", "server address (a loopback address, port 53 for capture)")
	workers := flag.Int("workers", 1, "client workers, each with one UDP socket and one query in flight")
	count := flag.Int("count", 100000, "total queries bound (1..10,000,000)")
	duration := flag.Duration("duration", 10*time.Second, "duration bound (at most 10m)")
	qps := flag.Int("qps", 0, "total queries per second to aim at (0: as fast as the server answers)")
	serveOnly := flag.Bool("serve-only", false, "only run the server until the duration passes or a signal")
	answers := flag.Int("answers", 2, "A records per answer (1..8)")
	flag.Parse()

	addr, err := net.ResolveUDPAddr("udp", *listen)
	if err != nil || !addr.IP.IsLoopback() {
		fatalf("listen %q: want a loopback address (%v)", *listen, err)
	}
	if *workers < 1 || *workers > 64 || *count < 1 || *count > 10_000_000 || *duration <= 0 || *duration > 10*time.Minute || *qps < 0 || *answers < 1 || *answers > 8 {
		fatalf("bounds: workers 1..64, count 1..10000000, duration (0,10m], qps >= 0, answers 1..8")
	}

	pc, err := net.ListenUDP("udp", addr)
	if err != nil {
		fatalf("listen %s: %v", addr, err)
	}
	var serial atomic.Uint32
	srv := &dns.Server{PacketConn: pc, Handler: dns.HandlerFunc(func(w dns.ResponseWriter, q *dns.Msg) {
		answer(w, q, serial.Add(1), *answers)
	})}
	go func() {
		if err := srv.ActivateAndServe(); err != nil {
			fmt.Fprintln(os.Stderr, "dnsstorm: server:", err)
		}
	}()
	defer srv.Shutdown()

	ctx, cancel := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer cancel()
	ctx, cancelT := context.WithTimeout(ctx, *duration)
	defer cancelT()
	if *serveOnly {
		<-ctx.Done()
		return
	}

	var issued, answered, timeouts atomic.Int64
	var interval time.Duration
	if *qps > 0 {
		interval = time.Duration(int64(time.Second) * int64(*workers) / int64(*qps))
	}
	start := time.Now()
	var wg sync.WaitGroup
	for w := range *workers {
		wg.Add(1)
		go func() {
			defer wg.Done()
			if err := client(ctx, addr, uint64(w), interval, int64(*count), &issued, &answered, &timeouts); err != nil {
				fmt.Fprintln(os.Stderr, "dnsstorm: client:", err)
			}
		}()
	}
	wg.Wait()
	secs := time.Since(start).Seconds()
	n := min(issued.Load(), int64(*count))
	fmt.Printf("queries=%d answers=%d timeouts=%d seconds=%.3f qps=%.0f pid=%d\n",
		n, answered.Load(), timeouts.Load(), secs, float64(answered.Load())/secs, os.Getpid())
}

// answer replies to an A query for NAME with NAME CNAME c<n>.cdn.bench.test.
// and k A records of that name, 10.x.y.z derived from n (unique per answer).
func answer(w dns.ResponseWriter, q *dns.Msg, n uint32, k int) {
	m := new(dns.Msg)
	m.SetReply(q)
	m.Authoritative = true
	if len(q.Question) == 1 && q.Question[0].Qtype == dns.TypeA {
		name := q.Question[0].Name
		target := fmt.Sprintf("c%d.cdn.bench.test.", n)
		hdr := func(owner string, t uint16) dns.RR_Header {
			return dns.RR_Header{Name: owner, Rrtype: t, Class: dns.ClassINET, Ttl: 300}
		}
		m.Answer = []dns.RR{&dns.CNAME{Hdr: hdr(name, dns.TypeCNAME), Target: target}}
		for i := range uint32(k) {
			v := uint32(k)*n + i
			ip := net.IPv4(10, byte(v>>16), byte(v>>8), byte(v)).To4()
			m.Answer = append(m.Answer, &dns.A{Hdr: hdr(target, dns.TypeA), A: ip})
		}
	}
	_ = w.WriteMsg(m)
}

// client sends one query at a time on its own connected UDP socket.
func client(ctx context.Context, srv *net.UDPAddr, w uint64, interval time.Duration, limit int64, issued, answered, timeouts *atomic.Int64) error {
	c, err := net.DialUDP("udp", nil, srv)
	if err != nil {
		return err
	}
	defer c.Close()
	rng := rand.New(rand.NewPCG(w, uint64(time.Now().UnixNano())))
	buf := make([]byte, 1500)
	next := time.Now()
	for ctx.Err() == nil {
		i := issued.Add(1)
		if i > limit {
			return nil
		}
		if interval > 0 {
			if d := time.Until(next); d > 0 {
				time.Sleep(d)
			}
			next = next.Add(interval)
		}
		q := new(dns.Msg)
		q.SetQuestion(fmt.Sprintf("h%d-%08x.bench.test.", i, rng.Uint32()), dns.TypeA)
		q.Id = uint16(rng.Uint32())
		out, err := q.Pack()
		if err != nil {
			return err
		}
		if _, err := c.Write(out); err != nil {
			return err
		}
		for {
			_ = c.SetReadDeadline(time.Now().Add(time.Second))
			n, err := c.Read(buf)
			var ne net.Error
			if errors.As(err, &ne) && ne.Timeout() {
				timeouts.Add(1)
				break
			}
			if err != nil {
				return err
			}
			var r dns.Msg
			if r.Unpack(buf[:n]) == nil && r.Id == q.Id {
				answered.Add(1)
				break
			}
		}
	}
	return nil
}

func fatalf(format string, a ...any) {
	fmt.Fprintf(os.Stderr, "dnsstorm: "+format+"\n", a...)
	os.Exit(2)
}
