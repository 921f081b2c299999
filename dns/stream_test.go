package dns

import (
	"fmt"
	"testing"
	"time"

	mdns "github.com/miekg/dns"
)

// FuzzTCPStream splits a TCP stream of answers at the points the fuzzer
// chooses, sends some segments twice (retransmissions) or overlapping, and
// checks that every answer is put together and cached, whatever the
// splits, with no stream abandoned or left waiting.
func FuzzTCPStream(f *testing.F) {
	f.Add([]byte{2, 40, 41}, uint8(3), []byte{0, 1})
	f.Add([]byte{1}, uint8(1), []byte{})
	f.Add([]byte{}, uint8(5), []byte{2, 2, 2})
	f.Add([]byte("0"), uint8(1), []byte("1")) // a retransmission after its message was complete
	f.Fuzz(func(t *testing.T, cuts []byte, n uint8, again []byte) {
		n = n%6 + 1
		c := newCorrelator(t, nil)
		var stream []byte
		qseq := uint32(7)
		for i := range int(n) {
			name := fmt.Sprintf("s%d.example", i)
			q := wire(t, uint16(i), name, mdns.TypeA)
			qp := queryPacket(ProtoTCP, client, server, scopeA, cookieA, append(tcpFrame(q), q...))
			qp.TCPSeq = qseq
			qseq += uint32(len(qp.Payload))
			_ = c.Handle(qp, t0)
			a := wire(t, uint16(i), name, mdns.TypeA, fmt.Sprintf("%s. 60 IN A 192.0.2.%d", name, i+1))
			stream = append(append(stream, tcpFrame(a)...), a...)
		}
		const isn = 0xfffffff0
		// Segment boundaries: increasing offsets from cuts.
		var bounds []int
		at := 0
		for _, b := range cuts {
			if at += int(b); at > 0 && at < len(stream) {
				bounds = append(bounds, at)
			}
		}
		segs := split(stream, bounds...)
		for i, s := range segs {
			send := func(s seg) {
				p := answerPacket(ProtoTCP, client, server, 0, cookieA, s.data)
				p.TCPSeq = uint32(isn + s.at)
				if err := c.Handle(p, t0); err != nil {
					t.Fatalf("segment at %d: %v", s.at, err)
				}
			}
			send(s)
			for _, r := range again {
				if int(r)%len(segs) == i { // a retransmission of this segment, then of the tail of the previous and this one
					send(s)
					if i > 0 && len(segs[i-1].data) > 0 {
						prev := segs[i-1]
						k := len(prev.data) / 2
						send(seg{at: prev.at + k, data: stream[prev.at+k : s.at+len(s.data)]})
					}
				}
			}
		}
		for i := range int(n) {
			if names, _, _ := lookup(c, fmt.Sprintf("192.0.2.%d", i+1), scopeA, t0); len(names) != 1 {
				t.Fatalf("answer %d not cached (segments at %v); stats %+v", i, bounds, c.Stats())
			}
		}
		if s := c.Stats(); s.TCPStreamsAbandoned != 0 || waiting(c) != 0 || s.ParseErrors != 0 {
			t.Fatalf("abandoned %d, waiting %d, parse errors %d", s.TCPStreamsAbandoned, waiting(c), s.ParseErrors)
		}
	})
}

// seg is one TCP segment of a test: its payload, and where it starts in
// the stream (relative to the stream's first byte).
type seg struct {
	at   int
	data []byte
	cut  int // bytes of the real segment beyond data (capture cut)
}

// split cuts b into segments at the given offsets.
func split(b []byte, at ...int) []seg {
	var out []seg
	prev := 0
	for _, a := range append(at, len(b)) {
		out = append(out, seg{at: prev, data: b[prev:a]})
		prev = a
	}
	return out
}

func TestTCP(t *testing.T) {
	q1 := wire(t, 21, "one.example", mdns.TypeA)
	q2 := wire(t, 22, "two.example", mdns.TypeA)
	a1 := wire(t, 21, "one.example", mdns.TypeA, "one.example. 60 IN A 192.0.2.21")
	a2 := wire(t, 22, "two.example", mdns.TypeA,
		"two.example. 60 IN A 192.0.2.22",
		"two.example. 60 IN A 192.0.2.23")
	frame := func(msgs ...[]byte) []byte {
		var b []byte
		for _, m := range msgs {
			b = append(append(b, tcpFrame(m)...), m...)
		}
		return b
	}
	fa2 := frame(a2)
	var big []string
	for i := range 1200 {
		big = append(big, fmt.Sprintf("two.example. 60 IN A 198.18.%d.%d", i/250, i%250+1))
	}
	huge := frame(wire(t, 22, "two.example", mdns.TypeA, big...)) // > maxStreamBytes
	const isn = 0xffffff00                                        // sequence numbers wrap inside the stream
	tests := []struct {
		name      string
		cookie    uint64
		queries   []seg
		answers   []seg
		want      []string // IPs that must be cached
		notWant   []string
		abandoned uint64
	}{
		{
			name:    "one message per segment",
			queries: split(frame(q1)),
			answers: split(frame(a1)),
			want:    []string{"192.0.2.21"},
		},
		{
			name:    "two messages in one segment",
			queries: split(frame(q1, q2)),
			answers: split(frame(a1, a2)),
			want:    []string{"192.0.2.21", "192.0.2.22", "192.0.2.23"},
		},
		{
			name:    "answer split across segments parsed whole",
			queries: split(frame(q2)),
			answers: split(fa2, len(fa2)-3),
			want:    []string{"192.0.2.22", "192.0.2.23"},
		},
		{
			name:    "length, then the message in three pieces",
			queries: split(frame(q2), 2),
			answers: split(fa2, 2, 20, 40),
			want:    []string{"192.0.2.22", "192.0.2.23"},
		},
		{
			name:    "length split in two",
			queries: split(frame(q1)),
			answers: split(frame(a1), 1),
			want:    []string{"192.0.2.21"},
		},
		{
			name:    "second message starts in the first segment",
			queries: split(frame(q1, q2)),
			answers: split(frame(a1, a2), len(frame(a1))+5),
			want:    []string{"192.0.2.21", "192.0.2.22", "192.0.2.23"},
		},
		{
			name:    "retransmitted and overlapping segments",
			queries: split(frame(q2)),
			answers: []seg{{at: 0, data: fa2[:30]}, {at: 0, data: fa2[:30]}, {at: 20, data: fa2[20:50]}, {at: 50, data: fa2[50:]}},
			want:    []string{"192.0.2.22", "192.0.2.23"},
		},
		{
			name:      "gap: records before it kept, stream abandoned",
			queries:   split(frame(q2)),
			answers:   []seg{{at: 0, data: fa2[:len(fa2)-3]}, {at: len(fa2) - 1, data: fa2[len(fa2)-1:]}},
			want:      []string{"192.0.2.22"},
			notWant:   []string{"192.0.2.23"},
			abandoned: 1,
		},
		{
			name:      "capture cut in the middle of a stream",
			queries:   split(frame(q2)),
			answers:   []seg{{at: 0, data: fa2[:10]}, {at: 10, data: fa2[10 : len(fa2)-3], cut: 3}},
			want:      []string{"192.0.2.22"},
			notWant:   []string{"192.0.2.23"},
			abandoned: 1,
		},
		{
			name:      "message larger than a stream holds: parsed as far as it goes",
			queries:   split(frame(q2)),
			answers:   split(huge, 1000, 9000),
			want:      []string{"198.18.0.1"},
			notWant:   []string{"198.18.4.200"},
			abandoned: 1,
		},
		{
			name:    "socket unknown: the first segment parsed as far as it goes",
			cookie:  1,
			queries: split(frame(q2)),
			answers: split(fa2, len(fa2)-3),
			want:    []string{"192.0.2.22"},
			notWant: []string{"192.0.2.23"},
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			cookie := cookieA
			if tt.cookie == 1 {
				cookie = 0
			}
			c := newCorrelator(t, nil)
			for _, q := range tt.queries {
				p := queryPacket(ProtoTCP, client, server, scopeA, cookie, q.data)
				p.TCPSeq, p.OrigLen = uint32(isn+q.at), uint16(len(q.data)+q.cut)
				_ = c.Handle(p, t0)
			}
			for _, a := range tt.answers {
				p := answerPacket(ProtoTCP, client, server, 0, cookie, a.data)
				p.TCPSeq, p.OrigLen = uint32(isn/2+a.at), uint16(len(a.data)+a.cut)
				_ = c.Handle(p, t0)
			}
			for _, ip := range tt.want {
				if names, _, _ := lookup(c, ip, scopeA, t0); len(names) == 0 {
					t.Errorf("%s not cached; stats %+v", ip, c.Stats())
				}
			}
			for _, ip := range tt.notWant {
				if names, _, _ := lookup(c, ip, scopeA, t0); len(names) != 0 {
					t.Errorf("%s cached: %q", ip, names)
				}
			}
			if s := c.Stats(); s.TCPStreamsAbandoned != tt.abandoned || s.Unsolicited != 0 {
				t.Errorf("abandoned %d, unsolicited %d; want %d, 0", s.TCPStreamsAbandoned, s.Unsolicited, tt.abandoned)
			}
			if n := waiting(c); n != 0 {
				t.Errorf("%d bytes left waiting", n)
			}
		})
	}
}

// waiting returns the bytes c's TCP streams hold.
func waiting(c *Correlator) int {
	n := 0
	for _, s := range c.streams {
		n += len(s.buf)
	}
	return n
}

// TestTCPStreamBounds: streams waiting for their next segment are bounded
// in number and time, and each one abandoned is counted.
func TestTCPStreamBounds(t *testing.T) {
	c := newCorrelator(t, nil)
	a := append(tcpFrame(make([]byte, 100)), make([]byte, 50)...) // the first 50 bytes of a 100-byte message
	for i := range maxStreams + 10 {
		p := answerPacket(ProtoTCP, client, server, 0, uint64(1000+i), a)
		_ = c.Handle(p, t0.Add(time.Duration(i)*time.Millisecond))
	}
	if n, s := waiting(c), c.Stats(); n != maxStreams*len(a) || s.TCPStreamsAbandoned != 10 {
		t.Fatalf("%d bytes waiting, %d abandoned; want %d, 10", n, s.TCPStreamsAbandoned, maxStreams*len(a))
	}
	c.Sweep(t0.Add(streamTimeout + time.Second))
	if n, s := len(c.streams), c.Stats(); n != 0 || s.TCPStreamsAbandoned != maxStreams+10 {
		t.Fatalf("after the timeout: %d streams, %d abandoned; want 0, %d", n, s.TCPStreamsAbandoned, maxStreams+10)
	}
}
