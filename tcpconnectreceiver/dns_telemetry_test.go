package tcpconnectreceiver

import (
	"context"
	"encoding/binary"
	"net/netip"
	"testing"

	mdns "github.com/miekg/dns"
	"go.opentelemetry.io/collector/component/componenttest"
	"go.opentelemetry.io/collector/consumer/consumertest"

	"github.com/tcpconnect/tcpconnect/bpf"
	"github.com/tcpconnect/tcpconnect/internal/event"
)

// dnsFlowRaw is a kernel DNS record of a UDP packet between client and
// server (egress: a query leaving client) on the socket cookie.
func dnsFlowRaw(egress bool, client, server netip.AddrPort, cookie uint64, payload []byte) []byte {
	src, dst := server, client
	if egress {
		src, dst = client, server
	}
	b := make([]byte, event.DNSHeaderSize+len(payload))
	b[0] = event.TypeDNS
	if egress {
		b[1] = 1
	}
	b[2], b[3] = 4, 17
	binary.LittleEndian.PutUint16(b[4:], src.Port())
	binary.LittleEndian.PutUint16(b[6:], dst.Port())
	binary.LittleEndian.PutUint16(b[8:], uint16(len(payload)))
	binary.LittleEndian.PutUint16(b[10:], uint16(len(payload)))
	binary.LittleEndian.PutUint64(b[32:], cookie)
	binary.LittleEndian.PutUint32(b[40:], 4026531840)
	s4, d4 := src.Addr().As4(), dst.Addr().As4()
	copy(b[48:], s4[:])
	copy(b[64:], d4[:])
	copy(b[event.DNSHeaderSize:], payload)
	return b
}

// tcpSegment makes a dnsFlowRaw record a TCP segment starting at seq.
func tcpSegment(raw []byte, seq uint32) []byte {
	raw[3] = 6
	binary.LittleEndian.PutUint32(raw[44:], seq)
	return raw
}

// packDNS packs a DNS message: a query for name, or with rrs an answer.
func packDNS(t *testing.T, id uint16, name string, rrs ...string) []byte {
	t.Helper()
	m := new(mdns.Msg)
	m.SetQuestion(name, mdns.TypeA)
	m.Id = id
	if rrs != nil {
		m.Response = true
		for _, s := range rrs {
			rr, err := mdns.NewRR(s)
			if err != nil {
				t.Fatal(err)
			}
			m.Answer = append(m.Answer, rr)
		}
	}
	b, err := m.Pack()
	if err != nil {
		t.Fatal(err)
	}
	return b
}

// TestDNSTelemetry: the DNS counters say what they count. Of three parsed
// answers, one is cached, one has a malformed A record (matched, nothing
// cached) and one no query asked for; a DNS server's own traffic is
// ignored; records the kernel dropped on a failed payload copy are counted.
func TestDNSTelemetry(t *testing.T) {
	tt := componenttest.NewTelemetry()
	defer tt.Shutdown(context.Background())
	rcv, src := startReplay(t, testConfig(), new(consumertest.LogsSink), tt)
	client, server := netip.MustParseAddrPort("10.0.0.2:40000"), netip.MustParseAddrPort("10.0.0.53:53")
	bad := packDNS(t, 2, "bad.test.", "bad.test. 60 IN A 192.0.2.9")
	// Cut the A record's rdata to 3 bytes (it is the message's end).
	binary.BigEndian.PutUint16(bad[len(bad)-6:], 3)
	bad = bad[:len(bad)-1]
	src.feed(
		dnsFlowRaw(true, client, server, 7, packDNS(t, 1, "good.test.")),
		dnsFlowRaw(false, client, server, 7, packDNS(t, 1, "good.test.", "good.test. 60 IN A 192.0.2.8")),
		dnsFlowRaw(true, client, server, 7, packDNS(t, 2, "bad.test.")),
		dnsFlowRaw(false, client, server, 7, bad),
		dnsFlowRaw(false, client, server, 7, packDNS(t, 3, "unasked.test.", "unasked.test. 60 IN A 192.0.2.7")),
		// A server on this host: a query arriving, its answer leaving.
		dnsFlowRaw(false, server, client, 9, packDNS(t, 4, "served.test.")),
		// Docker's resolver: the query left for port 5353 (DNAT), the
		// answer came back from port 53, to the same socket.
		dnsFlowRaw(true, client, netip.AddrPortFrom(server.Addr(), 5353), 8, packDNS(t, 5, "nat.test.")),
		dnsFlowRaw(false, client, server, 8, packDNS(t, 5, "nat.test.", "nat.test. 60 IN A 192.0.2.10")),
		// DNS over TCP: the first 50 bytes of a 100-byte answer, then a
		// segment after a gap: the stream is abandoned.
		tcpSegment(dnsFlowRaw(false, client, server, 11, append([]byte{0, 100}, make([]byte, 50)...)), 1000),
		tcpSegment(dnsFlowRaw(false, client, server, 11, []byte{0}), 1100),
	)
	src.setCounters(bpf.Counters{Lost: bpf.Lost{DNSCopy: 3}})
	want := map[string]int64{
		"receiver_tcpconnect_dns_packets_received":      10,
		"receiver_tcpconnect_dns_answers_parsed":        4,
		"receiver_tcpconnect_dns_answers_cached":        2,
		"receiver_tcpconnect_dns_answers_translated":    1,
		"receiver_tcpconnect_dns_records_malformed":     1,
		"receiver_tcpconnect_dns_answers_unsolicited":   1,
		"receiver_tcpconnect_dns_packets_ignored":       1,
		"receiver_tcpconnect_dns_packets_copy_failed":   3,
		"receiver_tcpconnect_dns_tcp_streams_abandoned": 1,
	}
	waitFor(t, "the DNS counters", func() bool {
		for name, n := range want {
			if counter(t, tt, name) != n {
				return false
			}
		}
		return true
	})
	if err := rcv.Shutdown(context.Background()); err != nil {
		t.Fatal(err)
	}
}
