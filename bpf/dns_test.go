package bpf

import (
	"context"
	"net"
	"os"
	"testing"
	"time"
	"unsafe"

	"github.com/miekg/dns"
	"golang.org/x/net/dns/dnsmessage"

	"github.com/tcpconnect/tcpconnect/internal/event"
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
		"netns": unsafe.Offsetof(d.Netns), "saddr": unsafe.Offsetof(d.Saddr), "daddr": unsafe.Offsetof(d.Daddr),
	} {
		want := map[string]uintptr{"sport": 4, "payload_len": 8, "tgid": 12, "ts_ns": 16, "cgroup_id": 24,
			"sock_cookie": 32, "netns": 40, "saddr": 48, "daddr": 64}[name]
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

func TestProbeDNSCapture(t *testing.T) {
	p := openForTest(t, Options{DNS: true})
	defer p.Close()
	const server = "127.77.0.53:53"
	startDNSServer(t, server)

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
						if int(d.TGID) != os.Getpid() || d.NetNS == 0 {
							t.Errorf("query from tgid %d netns %d, want %d and non-zero", d.TGID, d.NetNS, os.Getpid())
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
