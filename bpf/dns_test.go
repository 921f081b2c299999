package bpf

import (
	"context"
	"fmt"
	"net"
	"net/netip"
	"os"
	"runtime"
	"strings"
	"testing"
	"time"
	"unsafe"

	"github.com/cilium/ebpf"
	"github.com/miekg/dns"
	"github.com/vishvananda/netlink"
	"github.com/vishvananda/netns"
	"golang.org/x/net/dns/dnsmessage"
	"golang.org/x/sys/unix"

	"github.com/tcpconnect/tcpconnect/internal/event"
	"github.com/tcpconnect/tcpconnect/internal/privtest"
)

func TestDNSRecordLayout(t *testing.T) {
	var d dnsTcDnsEvent
	if got := int(unsafe.Sizeof(d)); got != event.DNSSize {
		t.Fatalf("sizeof(tc_dns_event) = %d, decoder wants %d", got, event.DNSSize)
	}
	if got := int(unsafe.Offsetof(d.Payload)); got != event.DNSHeaderSize {
		t.Fatalf("offsetof(payload) = %d, decoder wants %d", got, event.DNSHeaderSize)
	}
	for name, off := range map[string]uintptr{
		"sport": unsafe.Offsetof(d.Sport), "payload_len": unsafe.Offsetof(d.PayloadLen),
		"tgid": unsafe.Offsetof(d.Tgid), "ts_ns": unsafe.Offsetof(d.TsNs),
		"cgroup_id": unsafe.Offsetof(d.CgroupId), "sock_cookie": unsafe.Offsetof(d.SockCookie),
		"netns": unsafe.Offsetof(d.Netns), "tcp_seq": unsafe.Offsetof(d.TcpSeq),
		"saddr": unsafe.Offsetof(d.Saddr), "daddr": unsafe.Offsetof(d.Daddr),
	} {
		want := map[string]uintptr{"sport": 4, "payload_len": 8, "tgid": 12, "ts_ns": 16, "cgroup_id": 24,
			"sock_cookie": 32, "netns": 40, "tcp_seq": 44, "saddr": 48, "daddr": 64}[name]
		if off != want {
			t.Errorf("offsetof(%s) = %d, decoder reads %d", name, off, want)
		}
	}
}

// startDNSServer serves A records for *.test on addr over UDP and TCP.
func startDNSServer(t *testing.T, addr string) {
	t.Helper()
	h := dns.HandlerFunc(func(w dns.ResponseWriter, r *dns.Msg) {
		m := new(dns.Msg)
		m.SetReply(r)
		for _, q := range r.Question {
			if q.Qtype == dns.TypeA {
				rr, _ := dns.NewRR(q.Name + " 60 IN A 192.0.2.7")
				m.Answer = append(m.Answer, rr)
			}
		}
		_ = w.WriteMsg(m)
	})
	for _, network := range []string{"udp", "tcp"} {
		started := make(chan struct{})
		srv := &dns.Server{Addr: addr, Net: network, Handler: h, NotifyStartedFunc: func() { close(started) }}
		errc := make(chan error, 1)
		go func() { errc <- srv.ListenAndServe() }()
		select {
		case <-started:
		case err := <-errc:
			t.Fatalf("dns server %s %s: %v", network, addr, err)
		}
		t.Cleanup(func() { _ = srv.Shutdown() })
	}
}

// TestProbeDNSCapture opens the probe with DNS capture at the default ring
// size and at others (the DNS programs share the connect object's ring, whatever
// its size) and checks that a query and its answer reach the ring over UDP and
// TCP.
func TestProbeDNSCapture(t *testing.T) {
	privtest.Require(t)
	const server = "127.77.0.53:53"
	startDNSServer(t, server)
	for _, ring := range []int{0, 1 << 20, 32 << 20} {
		t.Run(fmt.Sprintf("ring=%d", ring), func(t *testing.T) {
			p := openForTest(t, Options{DNS: true, RingBytes: ring})
			defer p.Close()
			if want := ring; want != 0 && p.reader.BufferSize() != want {
				t.Errorf("ring is %d bytes, want %d", p.reader.BufferSize(), want)
			}
			testDNSCapture(t, p, server)
		})
	}
}

// testDNSCapture resolves a name over UDP and over TCP through server and
// waits for the query and the answer in p's ring.
func testDNSCapture(t *testing.T, p *Probe, server string) {
	for _, network := range []string{"udp", "tcp"} {
		t.Run(network, func(t *testing.T) {
			r := &net.Resolver{PreferGo: true, Dial: func(ctx context.Context, _, _ string) (net.Conn, error) {
				var d net.Dialer
				return d.DialContext(ctx, network, server)
			}}
			name := network + "-capture.test"
			ctx, cancel := context.WithTimeout(context.Background(), 3*time.Second)
			defer cancel()
			if _, err := r.LookupIP(ctx, "ip4", name); err != nil {
				t.Fatalf("lookup: %v", err)
			}
			var query, answer bool
			var d event.DNS
			end := time.Now().Add(3 * time.Second)
			for time.Now().Before(end) && !(query && answer) {
				drainRound(t, p, 50*time.Millisecond, func(raw []byte) {
					if event.Type(raw) != event.TypeDNS {
						return
					}
					if err := event.DecodeDNS(raw, &d); err != nil {
						t.Fatal(err)
					}
					msg := d.Payload
					if d.L4Proto == 6 {
						if len(msg) < 2 {
							return
						}
						msg = msg[2:]
					}
					var parser dnsmessage.Parser
					if _, err := parser.Start(msg); err != nil {
						return
					}
					q, err := parser.Question()
					if err != nil || q.Name.String() != name+"." {
						return
					}
					if d.Egress && d.DstPort == 53 {
						query = true
						// UDP queries carry their process; TCP ones none
						// (a segment may leave in softirq).
						wantTGID := os.Getpid()
						if network == "tcp" {
							wantTGID = 0
						}
						if int(d.TGID) != wantTGID || d.NetNS == 0 {
							t.Errorf("query from tgid %d netns %d, want %d and non-zero", d.TGID, d.NetNS, wantTGID)
						}
					}
					if !d.Egress && d.SrcPort == 53 {
						answer = true
					}
				})
			}
			if !query || !answer {
				t.Fatalf("captured query=%v answer=%v for %s", query, answer, name)
			}
		})
	}
}

// TestProbeDNSSocketNetns: a query sent through a socket of another network
// namespace, by a thread that is back in this one, is that socket's: its
// record carries the socket's namespace, not the sending task's. (The same
// holds where there is no task of the socket at all: a TCP retransmit in
// softirq.) UDP queries carry the sending process; TCP ones none.
func TestProbeDNSSocketNetns(t *testing.T) {
	p := openForTest(t, Options{DNS: true})
	defer p.Close()

	runtime.LockOSThread()
	defer runtime.UnlockOSThread()
	origin, err := netns.Get()
	if err != nil {
		t.Fatal(err)
	}
	defer origin.Close()
	var st unix.Stat_t
	if err := unix.Fstat(int(origin), &st); err != nil {
		t.Fatal(err)
	}
	originInode := uint32(st.Ino)
	ns, err := netns.New()
	if err != nil {
		t.Fatalf("new netns: %v", err)
	}
	defer ns.Close()
	defer func() { _ = netns.Set(origin) }()
	if err := unix.Fstat(int(ns), &st); err != nil {
		t.Fatal(err)
	}
	nsInode := uint32(st.Ino)
	lo, err := netlink.LinkByName("lo")
	if err == nil {
		err = netlink.LinkSetUp(lo)
	}
	if err != nil {
		t.Fatalf("lo up in netns: %v", err)
	}
	// The namespace's server and the client socket, both made in it.
	srv, err := unix.Socket(unix.AF_INET, unix.SOCK_DGRAM, 0)
	if err != nil {
		t.Fatal(err)
	}
	defer unix.Close(srv)
	to := &unix.SockaddrInet4{Port: 53, Addr: [4]byte{127, 0, 0, 1}}
	if err := unix.Bind(srv, to); err != nil {
		t.Fatalf("bind 127.0.0.1:53 in netns: %v", err)
	}
	cli, err := unix.Socket(unix.AF_INET, unix.SOCK_DGRAM, 0)
	if err != nil {
		t.Fatal(err)
	}
	defer unix.Close(cli)
	if err := netns.Set(origin); err != nil {
		t.Fatal(err)
	}

	m := new(dns.Msg)
	m.SetQuestion("socket-netns.test.", dns.TypeA)
	q, err := m.Pack()
	if err != nil {
		t.Fatal(err)
	}
	if err := unix.Sendto(cli, q, 0, to); err != nil {
		t.Fatalf("send from this namespace's thread through the namespace's socket: %v", err)
	}
	var d event.DNS
	found := false
	for end := time.Now().Add(3 * time.Second); time.Now().Before(end) && !found; {
		drainRound(t, p, 50*time.Millisecond, func(raw []byte) {
			if event.Type(raw) != event.TypeDNS {
				return
			}
			if err := event.DecodeDNS(raw, &d); err != nil {
				t.Fatal(err)
			}
			var parser dnsmessage.Parser
			if _, err := parser.Start(d.Payload); err != nil {
				return
			}
			if qq, err := parser.Question(); err != nil || qq.Name.String() != "socket-netns.test." || !d.Egress {
				return
			}
			found = true
			if d.NetNS != nsInode || int(d.TGID) != os.Getpid() {
				t.Errorf("query record netns %d tgid %d; want the socket's namespace %d (not the thread's %d) and tgid %d",
					d.NetNS, d.TGID, nsInode, originInode, os.Getpid())
			}
		})
	}
	if !found {
		t.Fatal("no record of the query")
	}
}

// TestCounters: each index of the kernel's counters map (enum tc_counter)
// is read into its field of Counters, summed over CPUs; the DNS payload copy
// failures of dns.bpf.c included.
func TestCounters(t *testing.T) {
	p := openForTest(t, Options{DNS: true})
	defer p.Close()
	cpus, err := ebpf.PossibleCPU()
	if err != nil {
		t.Fatal(err)
	}
	before, err := p.Counters()
	if err != nil {
		t.Fatal(err)
	}
	adds := map[uint32]uint64{0: 1, 1: 10, 2: 100, 3: 10000, 4: 1000, 5: 100000, 6: 1000000}
	for i, n := range adds {
		var perCPU []uint64
		if err := p.counters.Lookup(i, &perCPU); err != nil {
			t.Fatal(err)
		}
		for c := range cpus {
			perCPU[c] += n
		}
		if err := p.counters.Put(i, perCPU); err != nil {
			t.Fatal(err)
		}
	}
	got, err := p.Counters()
	if err != nil {
		t.Fatal(err)
	}
	n, b := uint64(cpus), before.Lost
	want := Counters{
		Lost: Lost{Connect: b.Connect + n, DNS: b.DNS + 10*n, Outcome: b.Outcome + 10000*n, DNSCopy: b.DNSCopy + 1000*n,
			OutcomeMissed: b.OutcomeMissed},
		Filtered: before.Filtered + 100*n, AggOverflow: before.AggOverflow + 100000*n, AggLateOutcomes: before.AggLateOutcomes + 1000000*n,
	}
	if got != want {
		t.Fatalf("Counters() = %+v, want %+v", got, want)
	}
}

// TestProbeDNSMarkedSocket: a socket the application pointed at port 53
// is a DNS socket whatever ports its later packets carry (as after NAT):
// an unconnected UDP socket that sent to port 53 (sendmsg4 marks it) has
// its datagrams to and from port 5353 captured too, while another socket's
// port-5353 traffic is not. A UDP socket connected to port 53 and then
// elsewhere is unmarked (connect4). A TCP socket connected to port 53
// (connect4) has its segments captured with their sequence numbers.
func TestProbeDNSMarkedSocket(t *testing.T) {
	p := openForTest(t, Options{DNS: true})
	defer p.Close()
	udp := func(addr string) *net.UDPConn {
		c, err := net.ListenUDP("udp4", net.UDPAddrFromAddrPort(netip.MustParseAddrPort(addr)))
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { c.Close() })
		return c
	}
	send := func(c *net.UDPConn, to, payload string) {
		if _, err := c.WriteToUDPAddrPort([]byte(payload), netip.MustParseAddrPort(to)); err != nil {
			t.Fatal(err)
		}
	}
	dnsSock := udp("127.77.1.1:0")
	other := udp("127.77.1.2:0")
	peer := udp("127.77.1.53:5353")
	_ = udp("127.77.1.53:53") // so that the port-53 datagram is delivered, not refused
	send(dnsSock, "127.77.1.53:53", "marked-53")
	send(dnsSock, "127.77.1.53:5353", "marked-egress")
	send(other, "127.77.1.53:5353", "unmarked-egress")
	send(peer, dnsSock.LocalAddr().String(), "marked-ingress")
	send(peer, other.LocalAddr().String(), "unmarked-ingress")
	fd, err := unix.Socket(unix.AF_INET, unix.SOCK_DGRAM|unix.SOCK_CLOEXEC, 0)
	if err != nil {
		t.Fatal(err)
	}
	defer unix.Close(fd)
	for _, c := range []struct {
		port    int
		payload string
	}{{53, "reconnected-53"}, {5353, "reconnected-elsewhere"}} {
		if err := unix.Connect(fd, &unix.SockaddrInet4{Port: c.port, Addr: [4]byte{127, 77, 1, 53}}); err != nil {
			t.Fatal(err)
		}
		if _, err := unix.Write(fd, []byte(c.payload)); err != nil {
			t.Fatal(err)
		}
	}

	// TCP: connected to port 53, the segments carry their sequence numbers.
	ln, err := net.Listen("tcp4", "127.77.1.53:53")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	go func() {
		if c, err := ln.Accept(); err == nil {
			_, _ = c.Write([]byte("tcp-answer"))
			time.Sleep(100 * time.Millisecond)
			c.Close()
		}
	}()
	tc, err := net.Dial("tcp4", "127.77.1.53:53")
	if err != nil {
		t.Fatal(err)
	}
	defer tc.Close()
	if _, err := tc.Write([]byte("tcp-query-1")); err != nil {
		t.Fatal(err)
	}
	if _, err := tc.Write([]byte("tcp-query-2")); err != nil {
		t.Fatal(err)
	}

	got := map[string]event.DNS{}
	var seqs []uint32
	want := []string{"marked-53", "marked-egress", "marked-ingress", "reconnected-53", "tcp-answer", "tcp-query-1", "tcp-query-2"}
	var d event.DNS
	for end := time.Now().Add(3 * time.Second); time.Now().Before(end) && len(got) < len(want); {
		drainRound(t, p, 50*time.Millisecond, func(raw []byte) {
			if event.Type(raw) != event.TypeDNS {
				return
			}
			if err := event.DecodeDNS(raw, &d); err != nil {
				t.Fatal(err)
			}
			s := string(d.Payload)
			got[s] = d
			if strings.HasPrefix(s, "tcp-query") {
				seqs = append(seqs, d.TCPSeq)
			}
		})
	}
	for _, w := range want {
		if _, ok := got[w]; !ok {
			t.Errorf("%q not captured", w)
		}
	}
	for _, w := range []string{"unmarked-egress", "unmarked-ingress", "reconnected-elsewhere"} {
		if _, ok := got[w]; ok {
			t.Errorf("%q captured: not a DNS socket", w)
		}
	}
	if e := got["marked-egress"]; e.DstPort != 5353 || !e.Egress {
		t.Errorf("marked-egress: %+v", e)
	}
	if len(seqs) == 2 && seqs[1]-seqs[0] != uint32(len("tcp-query-1")) {
		t.Errorf("TCP sequence numbers %v: the second segment must start %d bytes after the first", seqs, len("tcp-query-1"))
	}
}
