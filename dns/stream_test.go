package dns

import (
	"fmt"
	"testing"

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
