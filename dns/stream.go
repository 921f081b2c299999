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

// stream is the start of a message waiting for the rest.
type stream struct {
	next uint32 // sequence number of the next byte expected
	last int64  // Unix ns of the last segment
	buf  []byte // from the message's length prefix on
}

// tcp handles one TCP segment of p: the complete messages it holds or
// completes are handled; the start of a message that continues in the next
// segment waits in a stream.
func (c *Correlator) tcp(p *Packet, src, dst netip.AddrPort, now time.Time) error {
	at := now.UnixNano()
	data := p.Payload
	cut := int(p.OrigLen) > len(data)
	k := streamKey{cookie: p.SockCookie, egress: p.Egress}
	s := c.streams[k]
	if s != nil {
		switch d := int32(p.TCPSeq - s.next); {
		case d < 0 && int(-d) >= len(data): // a retransmission of bytes seen
			return nil
		case d < 0: // partly seen: take the new bytes
			data = data[-d:]
		case d > 0: // a gap: bytes that were never captured
			err := c.abandon(k, s, p, src, dst, now)
			return errors.Join(err, c.segment(p, src, dst, data, cut, false, at, now))
		}
		if len(s.buf)+len(data) > maxStreamBytes {
			data, cut = data[:maxStreamBytes-len(s.buf)], true
		}
		s.buf = append(s.buf, data...)
		s.next += uint32(len(data))
		s.last = at
		rest, partial, err := c.frames(p, src, dst, s.buf, cut, !cut, now)
		if partial {
			c.stats.TCPStreamsAbandoned++
		}
		if len(rest) == 0 {
			c.endStream(k, s)
		} else {
			s.buf = s.buf[:copy(s.buf, rest)]
		}
		return err
	}
	return c.segment(p, src, dst, data, cut, true, at, now)
}

// segment handles a TCP segment that continues no stream: it is taken to
// start with a message's length prefix (the first bytes a DNS client or
// server sends on a connection). An incomplete last message waits in a new
// stream when the socket is known, the capture was not cut and wait is set
// (not after a gap, where the segment's start is a guess).
func (c *Correlator) segment(p *Packet, src, dst netip.AddrPort, data []byte, cut, wait bool, at int64, now time.Time) error {
	rest, _, err := c.frames(p, src, dst, data, cut, wait && !cut && p.SockCookie != 0, now)
	if len(rest) == 0 {
		return err
	}
	k := streamKey{cookie: p.SockCookie, egress: p.Egress}
	s := c.newStream(k, at, now)
	s.buf = append(s.buf, rest...)
	s.next = p.TCPSeq + uint32(len(p.Payload))
	s.last = at
	return err
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
				errs = errors.Join(errs, p.errorf(src, dst, errors.New("dns: tcp: 1 byte left for a 2-byte length prefix")))
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

// newStream returns an empty stream for k, making room (abandoning the
// stream that waited longest) when maxStreams wait already.
func (c *Correlator) newStream(k streamKey, at int64, now time.Time) *stream {
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
		_ = c.abandon(ok, oldest, nil, netip.AddrPort{}, netip.AddrPort{}, now)
	}
	var s *stream
	if n := len(c.freeStreams); n > 0 {
		s = c.freeStreams[n-1]
		c.freeStreams = c.freeStreams[:n-1]
	} else {
		s = &stream{buf: make([]byte, 0, 512)}
	}
	c.streams[k] = s
	return s
}

// abandon drops stream s of k, counted. With p set, what s holds is parsed
// as a truncated message of p's socket first.
func (c *Correlator) abandon(k streamKey, s *stream, p *Packet, src, dst netip.AddrPort, now time.Time) error {
	var err error
	if p != nil && len(s.buf) > 2 {
		err = c.message(p, src, dst, s.buf[2:], true, now)
	}
	c.stats.TCPStreamsAbandoned++
	c.endStream(k, s)
	return err
}

// endStream removes s, keeping its buffer for the next stream when small.
func (c *Correlator) endStream(k streamKey, s *stream) {
	delete(c.streams, k)
	if cap(s.buf) > 4<<10 {
		s.buf = make([]byte, 0, 512)
	}
	s.buf = s.buf[:0]
	if len(c.freeStreams) < 16 {
		c.freeStreams = append(c.freeStreams, s)
	}
}

// expireStreams abandons the streams that waited longer than streamTimeout.
func (c *Correlator) expireStreams(now time.Time) {
	at := now.UnixNano()
	for k, s := range c.streams {
		if at-s.last >= int64(streamTimeout) {
			c.abandon(k, s, nil, netip.AddrPort{}, netip.AddrPort{}, now)
		}
	}
}
