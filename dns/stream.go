package dns

// DNS over TCP, reassembled per socket: a message (a 2-byte length, then the
// message) may be split across segments (large answers; a server that
// writes the length and the message apart; nodelocaldns upstream). The
// kernel captures each segment with its sequence number; the bytes of a
// message that does not end in its segment wait here, per socket and
// direction, for the segments that follow.
//
// Memory is bounded: at most maxStreams streams wait at a time, each with at
// most maxStreamBytes. A stream is abandoned, and counted
// (Stats.TCPStreamsAbandoned), when a segment is missing (a gap in the
// sequence: the capture lost it), a segment's capture was cut, its message
// does not fit maxStreamBytes, it waits longer than streamTimeout, or room
// is needed for a newer stream; what it holds is then parsed as a truncated
// message, as far as it goes.

import (
	"encoding/binary"
	"errors"
	"net/netip"
	"time"
)

const (
	// maxStreams bounds the TCP streams waiting for the rest of a message.
	maxStreams = 256
	// maxStreamBytes bounds the bytes one stream holds: a message larger
	// than this is parsed as far as its first maxStreamBytes go.
	maxStreamBytes = 16 << 10
	// streamTimeout is how long a stream waits for its next segment.
	streamTimeout = DefaultQueryTimeout
)

// streamKey is one direction of one TCP socket.
type streamKey struct {
	cookie uint64
	egress bool
}

// stream is where one direction of a DNS-over-TCP socket is: the sequence
// number of the next byte, and the start of a message waiting for the rest.
// It stays after its messages are complete, so that a retransmission is
// known as one, until it is idle for streamTimeout.
type stream struct {
	next uint32 // sequence number of the next byte expected
	last int64  // Unix ns of the last segment
	buf  []byte // from a message's length prefix on; empty between messages
}

// tcp handles one TCP segment of p: the complete messages it holds or
// completes are handled; the start of a message that continues in the next
// segment waits in its socket's stream.
func (c *Correlator) tcp(p *Packet, src, dst netip.AddrPort, now time.Time) error {
	data := p.Payload
	cut := int(p.OrigLen) > len(data)
	if p.SockCookie == 0 { // no socket to follow: as far as this segment goes
		_, _, err := c.frames(p, src, dst, data, cut, false, now)
		return err
	}
	k := streamKey{cookie: p.SockCookie, egress: p.Egress}
	s := c.streams[k]
	if s == nil {
		// The first segment seen: taken to start with a message's length
		// prefix (the first bytes a DNS client or server sends).
		s = c.newStream(k)
		s.next = p.TCPSeq
	}
	s.last = now.UnixNano()
	end := p.TCPSeq + uint32(len(data))
	wait, gap := !cut, false
	var errs error
	switch d := int32(p.TCPSeq - s.next); {
	case d < 0 && int(-d) >= len(data): // a retransmission of bytes seen
		return nil
	case d < 0: // partly seen: take the new bytes
		data = data[-d:]
	case d > 0: // a gap: bytes that were never captured
		if len(s.buf) > 0 {
			// The message waiting lost its middle: what arrived is
			// parsed as far as it goes, and this segment starts in the
			// middle of a message or at the next: parse, do not wait.
			if len(s.buf) > 2 {
				errs = c.message(p, src, dst, s.buf[2:], true, now)
			}
			c.stats.TCPStreamsAbandoned++ // once for the gap, whatever follows
			s.buf = s.buf[:0]
			wait, gap = false, true
		}
	}
	s.next = end
	if len(s.buf)+len(data) > maxStreamBytes {
		data, cut, wait = data[:maxStreamBytes-len(s.buf)], true, false
	}
	s.buf = append(s.buf, data...)
	rest, partial, err := c.frames(p, src, dst, s.buf, cut, wait, now)
	if partial && !gap {
		c.stats.TCPStreamsAbandoned++
	}
	s.buf = s.buf[:copy(s.buf, rest)]
	if len(s.buf) == 0 && cap(s.buf) > 4<<10 {
		s.buf = nil // a large message is done: give its memory back
	}
	return errors.Join(errs, err)
}

// frames handles the complete length-prefixed messages at the start of
// data. With wait set it returns the incomplete rest (from its length
// prefix on) for a stream to keep; otherwise an incomplete last message is
// parsed as a truncated one, and a lone byte is a parse error unless cut
// (the capture was cut) explains it: partial reports either.
func (c *Correlator) frames(p *Packet, src, dst netip.AddrPort, data []byte, cut, wait bool, now time.Time) (rest []byte, partial bool, err error) {
	var errs error
	for len(data) > 0 {
		if len(data) < 2 {
			if wait {
				return data, false, errs
			}
			if !cut {
				c.stats.ParseErrors++
				errs = errors.Join(errs, packetError(p, src, dst, errors.New("dns: tcp: 1 byte left for a 2-byte length prefix")))
			}
			return nil, true, errs
		}
		n := int(binary.BigEndian.Uint16(data))
		if n+2 > len(data) {
			if wait {
				return data, false, errs
			}
			return nil, true, errors.Join(errs, c.message(p, src, dst, data[2:], true, now))
		}
		errs = errors.Join(errs, c.message(p, src, dst, data[2:2+n], false, now))
		data = data[2+n:]
	}
	return nil, false, errs
}

// newStream returns an empty stream for k, making room when maxStreams
// exist already: the stream idle longest goes (counted as abandoned if a
// message was waiting in it).
func (c *Correlator) newStream(k streamKey) *stream {
	if c.streams == nil {
		c.streams = make(map[streamKey]*stream)
	}
	if len(c.streams) >= maxStreams {
		var ok streamKey
		var oldest *stream
		for sk, s := range c.streams {
			if oldest == nil || s.last < oldest.last {
				ok, oldest = sk, s
			}
		}
		c.dropStream(ok, oldest)
	}
	var s *stream
	if n := len(c.freeStreams); n > 0 {
		s = c.freeStreams[n-1]
		c.freeStreams = c.freeStreams[:n-1]
	} else {
		s = new(stream)
	}
	c.streams[k] = s
	return s
}

// dropStream removes s, counting it as abandoned when a message waited in
// it, and keeps it for reuse.
func (c *Correlator) dropStream(k streamKey, s *stream) {
	if len(s.buf) > 0 {
		c.stats.TCPStreamsAbandoned++
	}
	delete(c.streams, k)
	if cap(s.buf) > 4<<10 {
		s.buf = nil
	}
	*s = stream{buf: s.buf[:0]}
	if len(c.freeStreams) < 16 {
		c.freeStreams = append(c.freeStreams, s)
	}
}

// expireStreams removes the streams idle for streamTimeout.
func (c *Correlator) expireStreams(now time.Time) {
	at := now.UnixNano()
	for k, s := range c.streams {
		if at-s.last >= int64(streamTimeout) {
			c.dropStream(k, s)
		}
	}
}
