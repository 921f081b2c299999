package dns

import (
	"encoding/binary"
	"errors"
	"net/netip"
	"slices"
	"testing"

	mdns "github.com/miekg/dns"
	"golang.org/x/net/dns/dnsmessage"
)

func TestParse(t *testing.T) {
	a := func(ip string, ttl uint32) Addr { return Addr{IP: netip.MustParseAddr(ip), TTL: ttl} }
	twoA := wire(t, 10, "example.com", mdns.TypeA,
		"example.com. 60 IN A 192.0.2.1",
		"example.com. 60 IN A 192.0.2.2")
	tests := []struct {
		name      string
		msg       []byte
		truncated bool
		wantErr   error // nil: no error expected; errAny: any error
		response  bool
		rcode     dnsmessage.RCode
		chain     []string
		addrs     []Addr
		cut       bool
		malformed int
	}{
		{
			name:     "A",
			msg:      wire(t, 1, "example.com", mdns.TypeA, "example.com. 300 IN A 93.184.216.34"),
			response: true,
			chain:    []string{"example.com"},
			addrs:    []Addr{a("93.184.216.34", 300)},
		},
		{
			name:     "AAAA",
			msg:      wire(t, 2, "example.com", mdns.TypeAAAA, "example.com. 120 IN AAAA 2606:2800:220:1:248:1893:25c8:1946"),
			response: true,
			chain:    []string{"example.com"},
			addrs:    []Addr{a("2606:2800:220:1:248:1893:25c8:1946", 120)},
		},
		{
			name: "three CNAMEs then two A",
			msg: wire(t, 3, "www.example.com", mdns.TypeA,
				"www.example.com. 3600 IN CNAME a.cdn.net.",
				"a.cdn.net. 600 IN CNAME b.cdn.net.",
				"b.cdn.net. 60 IN CNAME c.edge.net.",
				"c.edge.net. 20 IN A 192.0.2.1",
				"c.edge.net. 300 IN A 192.0.2.2"),
			response: true,
			chain:    []string{"www.example.com", "a.cdn.net", "b.cdn.net", "c.edge.net"},
			addrs:    []Addr{a("192.0.2.1", 20), a("192.0.2.2", 60)},
		},
		{
			name: "CNAMEs out of order, mixed case, other types skipped",
			msg: wire(t, 4, "WWW.Example.COM", mdns.TypeA,
				"B.cdn.net. 60 IN A 192.0.2.7",
				"www.example.com. 60 IN TXT \"hello\"",
				"A.CDN.net. 60 IN CNAME b.CDN.net.",
				"example.com. 60 IN MX 10 mail.example.com.",
				"www.EXAMPLE.com. 60 IN CNAME a.cdn.NET."),
			response: true,
			chain:    []string{"www.example.com", "a.cdn.net", "b.cdn.net"},
			addrs:    []Addr{a("192.0.2.7", 60)},
		},
		{
			name: "records of other names ignored",
			msg: wire(t, 5, "example.com", mdns.TypeA,
				"example.com. 60 IN A 192.0.2.1",
				"evil.com. 60 IN A 192.0.2.66",
				"other.example.com. 60 IN CNAME example.com."),
			response: true,
			chain:    []string{"example.com"},
			addrs:    []Addr{a("192.0.2.1", 60)},
		},
		{
			name: "CNAME loop ends the chain",
			msg: wire(t, 6, "a.example", mdns.TypeA,
				"a.example. 60 IN CNAME b.example.",
				"b.example. 60 IN CNAME a.example.",
				"a.example. 60 IN A 192.0.2.1"),
			response: true,
			chain:    []string{"a.example", "b.example"},
		},
		{
			name:     "v4-mapped AAAA is unmapped",
			msg:      wire(t, 7, "mapped.example", mdns.TypeAAAA, "mapped.example. 60 IN AAAA ::ffff:192.0.2.9"),
			response: true,
			chain:    []string{"mapped.example"},
			addrs:    []Addr{a("192.0.2.9", 60)},
		},
		{
			name:     "NXDOMAIN",
			msg:      rcode(wire(t, 8, "nope.example", mdns.TypeA, []string{}...), mdns.RcodeNameError),
			response: true,
			rcode:    dnsmessage.RCodeNameError,
			chain:    []string{"nope.example"},
		},
		{
			name:  "query",
			msg:   wire(t, 9, "example.com", mdns.TypeA),
			chain: nil,
		},
		{
			name:      "truncated capture keeps complete records",
			msg:       twoA[:len(twoA)-2],
			truncated: true,
			response:  true,
			chain:     []string{"example.com"},
			addrs:     []Addr{a("192.0.2.1", 60)},
			cut:       true,
		},
		{
			name: "cut message without truncation is an error",
			msg: wire(t, 11, "example.com", mdns.TypeA,
				"example.com. 60 IN A 192.0.2.1")[:40],
			wantErr: errAny,
		},
		{
			name:      "A with rdlength 3 takes no byte of the next record",
			msg:       setRdata(t, twoA, 0, []byte{192, 0, 2}),
			response:  true,
			chain:     []string{"example.com"},
			addrs:     []Addr{a("192.0.2.2", 60)},
			malformed: 1,
		},
		{
			name:      "A with rdlength 5",
			msg:       setRdata(t, twoA, 0, []byte{192, 0, 2, 1, 7}),
			response:  true,
			chain:     []string{"example.com"},
			addrs:     []Addr{a("192.0.2.2", 60)},
			malformed: 1,
		},
		{
			name:      "A with rdlength 0",
			msg:       setRdata(t, twoA, 1, nil),
			response:  true,
			chain:     []string{"example.com"},
			addrs:     []Addr{a("192.0.2.1", 60)},
			malformed: 1,
		},
		{
			name: "AAAA with rdlength 4",
			msg: setRdata(t, wire(t, 13, "example.com", mdns.TypeAAAA,
				"example.com. 60 IN AAAA 2001:db8::1",
				"example.com. 60 IN AAAA 2001:db8::2"), 0, []byte{0x20, 0x01, 0x0d, 0xb8}),
			response:  true,
			chain:     []string{"example.com"},
			addrs:     []Addr{a("2001:db8::2", 60)},
			malformed: 1,
		},
		{
			name: "AAAA with rdlength 17",
			msg: setRdata(t, wire(t, 14, "example.com", mdns.TypeAAAA,
				"example.com. 60 IN AAAA 2001:db8::1"), 0, append(netip.MustParseAddr("2001:db8::1").AsSlice(), 0)),
			response:  true,
			chain:     []string{"example.com"},
			malformed: 1,
		},
		{
			name: "CNAME whose target runs past its rdlength",
			msg: setRdata(t, wire(t, 15, "example.com", mdns.TypeA,
				"example.com. 60 IN CNAME evil.",
				"example. 60 IN A 192.0.2.66"), 0, []byte{4, 'e', 'v', 'i', 'l'}),
			response:  true,
			chain:     []string{"example.com"},
			malformed: 1,
		},
		{
			name: "CNAME whose target is shorter than its rdlength",
			msg: setRdata(t, wire(t, 16, "example.com", mdns.TypeA,
				"example.com. 60 IN CNAME evil.",
				"evil. 60 IN A 192.0.2.66"), 0, []byte{4, 'e', 'v', 'i', 'l', 0, 0}),
			response:  true,
			chain:     []string{"example.com"},
			malformed: 1,
		},
		{
			name:    "rdata past the end of the message",
			msg:     setRdlength(t, twoA, 1, 40),
			wantErr: errAny,
		},
		{
			name:      "rdata past the end of a truncated message",
			msg:       setRdlength(t, twoA, 1, 40),
			truncated: true,
			response:  true,
			chain:     []string{"example.com"},
			addrs:     []Addr{a("192.0.2.1", 60)},
			cut:       true,
		},
		{name: "empty", msg: nil, wantErr: errAny},
		{name: "short header", msg: []byte{0, 1, 0x81}, wantErr: errAny},
		{name: "no question", msg: []byte{0, 1, 0x81, 0x80, 0, 0, 0, 0, 0, 0, 0, 0}, wantErr: ErrNoQuestion},
		{name: "root question", msg: rootQuestion(t), wantErr: ErrBadName},
		{name: "control byte in name", msg: wire(t, 12, "a\\009b.example", mdns.TypeA), wantErr: ErrBadName},
	}
	var p Parser
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			m, err := p.Parse(tt.msg, tt.truncated)
			if tt.wantErr != nil {
				if err == nil {
					t.Fatalf("Parse: no error, want %v", tt.wantErr)
				}
				if tt.wantErr != errAny && !errors.Is(err, tt.wantErr) {
					t.Fatalf("Parse: %v, want %v", err, tt.wantErr)
				}
				return
			}
			if err != nil {
				t.Fatalf("Parse: %v", err)
			}
			if m.Response != tt.response || m.RCode != tt.rcode || m.Truncated != tt.cut {
				t.Errorf("response, rcode, truncated = %v, %v, %v; want %v, %v, %v",
					m.Response, m.RCode, m.Truncated, tt.response, tt.rcode, tt.cut)
			}
			var chain []string
			for _, n := range m.Chain {
				chain = append(chain, string(n))
			}
			if !slices.Equal(chain, tt.chain) {
				t.Errorf("chain = %q, want %q", chain, tt.chain)
			}
			if !slices.Equal(m.Addrs, tt.addrs) {
				t.Errorf("addrs = %v, want %v", m.Addrs, tt.addrs)
			}
			if m.Malformed != tt.malformed {
				t.Errorf("malformed = %d, want %d", m.Malformed, tt.malformed)
			}
		})
	}
}

// answerOffsets returns the offset of each answer record's type field in
// msg, a message packed by wire (one question).
func answerOffsets(tb testing.TB, msg []byte) []int {
	tb.Helper()
	// name returns the offset past the name at off.
	name := func(off int) int {
		for msg[off] != 0 && msg[off]&0xc0 != 0xc0 {
			off += 1 + int(msg[off])
		}
		if msg[off] == 0 {
			return off + 1
		}
		return off + 2
	}
	off := name(12) + 4
	var offs []int
	for range binary.BigEndian.Uint16(msg[6:8]) {
		off = name(off)
		offs = append(offs, off)
		off += 10 + int(binary.BigEndian.Uint16(msg[off+8:]))
	}
	return offs
}

// setRdata returns a copy of msg whose k-th answer has rdata (and an
// rdlength to match).
func setRdata(tb testing.TB, msg []byte, k int, rdata []byte) []byte {
	tb.Helper()
	off := answerOffsets(tb, msg)[k]
	n := int(binary.BigEndian.Uint16(msg[off+8:]))
	return slices.Concat(msg[:off+8], binary.BigEndian.AppendUint16(nil, uint16(len(rdata))), rdata, msg[off+10+n:])
}

// setRdlength returns a copy of msg whose k-th answer claims n bytes of
// rdata, its bytes unchanged.
func setRdlength(tb testing.TB, msg []byte, k, n int) []byte {
	tb.Helper()
	out := slices.Clone(msg)
	off := answerOffsets(tb, out)[k]
	binary.BigEndian.PutUint16(out[off+8:], uint16(n))
	return out
}

// errAny stands for any error in test tables.
var errAny = errors.New("any error")

// rcode sets the response code of a packed message.
func rcode(msg []byte, code int) []byte {
	msg[3] = msg[3]&^0x0f | byte(code)
	return msg
}

// rootQuestion is an answer whose question is the root name.
func rootQuestion(t *testing.T) []byte {
	m := new(mdns.Msg)
	m.Id = 1
	m.Response = true
	m.Question = []mdns.Question{{Name: ".", Qtype: mdns.TypeA, Qclass: mdns.ClassINET}}
	b, err := m.Pack()
	if err != nil {
		t.Fatal(err)
	}
	return b
}

func TestParseCutEverywhere(t *testing.T) {
	msg := wire(t, 3, "www.example.com", mdns.TypeA,
		"www.example.com. 3600 IN CNAME a.cdn.net.",
		"a.cdn.net. 60 IN A 192.0.2.1",
		"a.cdn.net. 60 IN A 192.0.2.2")
	var p Parser
	for n := range len(msg) {
		m, err := p.Parse(msg[:n], true)
		if err != nil {
			continue // header or question cut: nothing to keep
		}
		for _, a := range m.Addrs {
			if a.IP != netip.MustParseAddr("192.0.2.1") && a.IP != netip.MustParseAddr("192.0.2.2") {
				t.Fatalf("cut at %d: bogus address %v", n, a.IP)
			}
		}
		if len(m.Addrs) > 0 && len(m.Chain) != 2 {
			t.Fatalf("cut at %d: chain %q", n, m.Chain)
		}
	}
}

func TestParseAllocs(t *testing.T) {
	msg := wire(t, 3, "www.example.com", mdns.TypeA,
		"www.example.com. 3600 IN CNAME a.cdn.net.",
		"a.cdn.net. 60 IN A 192.0.2.1",
		"a.cdn.net. 60 IN A 192.0.2.2")
	var p Parser
	allocs := testing.AllocsPerRun(100, func() {
		if _, err := p.Parse(msg, false); err != nil {
			t.Fatal(err)
		}
	})
	if allocs != 0 {
		t.Errorf("Parse: %v allocs/op, want 0", allocs)
	}
}
