package firstbytes

// TLS constants (RFC 8446, RFC 6066, RFC 7301, draft-ietf-tls-esni).
const (
	recordHandshake    = 0x16
	handshakeHello     = 1
	extServerName      = 0
	extALPN            = 16
	extECH             = 0xfe0d
	serverNameHostName = 0
	recordHeaderLen    = 5
	handshakeHeaderLen = 4
)

// u16 reads a big-endian uint16 at b[0:2]; the caller checked the length.
func u16(b []byte) int { return int(b[0])<<8 | int(b[1]) }

// reader reads length-prefixed fields of a handshake message; any read past
// its end sets bad and yields nothing, so a parse checks bad once per field.
type reader struct {
	b   []byte
	bad bool
}

func (d *reader) skip(n int) {
	if d.bad || n > len(d.b) {
		d.bad = true
		return
	}
	d.b = d.b[n:]
}

func (d *reader) u8() int {
	if d.bad || len(d.b) < 1 {
		d.bad = true
		return 0
	}
	v := int(d.b[0])
	d.b = d.b[1:]
	return v
}

func (d *reader) u16() int {
	if d.bad || len(d.b) < 2 {
		d.bad = true
		return 0
	}
	v := u16(d.b)
	d.b = d.b[2:]
	return v
}

// vec reads a vector of n bytes.
func (d *reader) vec(n int) []byte {
	if d.bad || n > len(d.b) {
		d.bad = true
		return nil
	}
	v := d.b[:n:n]
	d.b = d.b[n:]
	return v
}

// parseTLS parses the ClientHello that b (starting with a handshake record)
// carries, reassembling it when it spans several records.
func (p *Parser) parseTLS(b []byte, r *Result) Status {
	// The first record: its header, then the handshake header in its fragment.
	if len(b) < recordHeaderLen {
		if len(b) >= 2 && b[1] != 3 {
			return r.malformed("tls: record version")
		}
		return StatusNeedMore
	}
	if b[1] != 3 {
		return r.malformed("tls: record version")
	}
	n := u16(b[3:])
	if n == 0 || n > maxTLSRecord {
		return r.malformed("tls: record length")
	}
	frag := b[recordHeaderLen:]
	if len(frag) >= 1 && frag[0] != handshakeHello {
		return r.malformed("tls: first handshake message is not a ClientHello")
	}
	// The common case: the whole ClientHello in the first record, parsed in place.
	if len(frag) >= handshakeHeaderLen && n >= handshakeHeaderLen {
		hlen := int(frag[1])<<16 | u16(frag[2:])
		if handshakeHeaderLen+hlen < n {
			return r.malformed("tls: data after the ClientHello in its record")
		}
		if handshakeHeaderLen+hlen == n {
			if len(frag) < handshakeHeaderLen+hlen {
				return StatusNeedMore
			}
			return parseClientHello(frag[handshakeHeaderLen:handshakeHeaderLen+hlen], r)
		}
	}
	// Split across records: gather the handshake message into p.hello.
	var got, want int
	want = -1
	for len(b) > 0 {
		if len(b) < recordHeaderLen {
			return StatusNeedMore
		}
		if b[0] != recordHandshake {
			return r.malformed("tls: ClientHello interrupted by another record type")
		}
		if b[1] != 3 {
			return r.malformed("tls: record version")
		}
		n := u16(b[3:])
		if n == 0 || n > maxTLSRecord {
			return r.malformed("tls: record length")
		}
		b = b[recordHeaderLen:]
		take := min(n, len(b))
		if want >= 0 {
			take = min(take, want-got)
		}
		if got+take > len(p.hello) {
			return r.malformed("tls: ClientHello longer than the reassembly bound")
		}
		copy(p.hello[got:], b[:take])
		got += take
		if want < 0 && got >= handshakeHeaderLen {
			want = handshakeHeaderLen + (int(p.hello[1])<<16 | u16(p.hello[2:]))
			if want > len(p.hello) {
				return r.malformed("tls: ClientHello longer than the reassembly bound")
			}
			if got > want {
				// The message ended inside this record, followed by another
				// handshake message: a client sends nothing after its hello.
				return r.malformed("tls: data after the ClientHello in its record")
			}
		}
		if want >= 0 && got == want {
			if take < n && take < len(b) {
				return r.malformed("tls: data after the ClientHello in its record")
			}
			return parseClientHello(p.hello[handshakeHeaderLen:want], r)
		}
		if take < n {
			return StatusNeedMore // the record goes on past the bytes we have
		}
		b = b[n:]
	}
	return StatusNeedMore
}

// parseClientHello parses a ClientHello message body (RFC 8446 4.1.2).
func parseClientHello(m []byte, r *Result) Status {
	d := reader{b: m}
	if v := d.u16(); !d.bad && v>>8 != 3 {
		return r.malformed("tls: ClientHello version")
	}
	d.skip(32)    // random
	sid := d.u8() // legacy_session_id
	if sid > 32 {
		return r.malformed("tls: session id length")
	}
	d.skip(sid)
	cs := d.u16() // cipher_suites
	if !d.bad && (cs < 2 || cs%2 != 0) {
		return r.malformed("tls: cipher suites length")
	}
	d.skip(cs)
	cm := d.u8() // legacy_compression_methods
	if !d.bad && cm < 1 {
		return r.malformed("tls: compression methods length")
	}
	d.skip(cm)
	if d.bad {
		return r.malformed("tls: ClientHello shorter than its fields")
	}
	if len(d.b) == 0 {
		return StatusOK // no extensions (before TLS 1.3, allowed)
	}
	ext := d.vec(d.u16())
	if d.bad || len(d.b) != 0 {
		return r.malformed("tls: extensions length")
	}
	var seenSNI, seenALPN bool
	for len(ext) > 0 {
		e := reader{b: ext}
		typ := e.u16()
		data := e.vec(e.u16())
		if e.bad {
			return r.malformed("tls: extension overruns the extensions")
		}
		ext = e.b
		switch typ {
		case extServerName:
			if seenSNI {
				return r.malformed("tls: two server_name extensions")
			}
			seenSNI = true
			if s := parseServerName(data, r); s != StatusOK {
				return s
			}
		case extALPN:
			if seenALPN {
				return r.malformed("tls: two ALPN extensions")
			}
			seenALPN = true
			if s := parseALPN(data, r); s != StatusOK {
				return s
			}
		case extECH:
			if r.ECH {
				return r.malformed("tls: two encrypted_client_hello extensions")
			}
			r.ECH = true
		}
	}
	return StatusOK
}

// parseServerName parses a server_name extension (RFC 6066 3): the first
// host_name is the name; other name types are skipped.
func parseServerName(data []byte, r *Result) Status {
	d := reader{b: data}
	list := d.vec(d.u16())
	if d.bad || len(d.b) != 0 {
		// An empty extension is what a server answers, never a client.
		return r.malformed("tls: server_name list length")
	}
	for len(list) > 0 {
		e := reader{b: list}
		typ := e.u8()
		name := e.vec(e.u16())
		if e.bad {
			return r.malformed("tls: server_name entry overruns its list")
		}
		list = e.b
		if typ == serverNameHostName {
			if r.HasName {
				return r.malformed("tls: two host_name entries")
			}
			r.setName(name)
		}
	}
	return StatusOK
}

// parseALPN parses an application_layer_protocol_negotiation extension (RFC 7301 3.1).
func parseALPN(data []byte, r *Result) Status {
	d := reader{b: data}
	list := d.vec(d.u16())
	if d.bad || len(d.b) != 0 || len(list) < 2 {
		return r.malformed("tls: ALPN list length")
	}
	for len(list) > 0 {
		e := reader{b: list}
		proto := e.vec(e.u8())
		if e.bad || len(proto) == 0 {
			return r.malformed("tls: ALPN protocol length")
		}
		list = e.b
		r.ALPNOffered++
		if int(r.alpnLen) < MaxALPN && printable(proto) {
			r.alpn[r.alpnLen] = proto
			r.alpnLen++
		}
	}
	return StatusOK
}

// printable says whether b is all printable ASCII (0x21 to 0x7e).
func printable(b []byte) bool {
	for _, c := range b {
		if c < 0x21 || c > 0x7e {
			return false
		}
	}
	return true
}
