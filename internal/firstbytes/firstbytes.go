// Package firstbytes parses the first bytes a TCP client sent on a socket:
// a TLS ClientHello (server_name, ALPN, whether it carries an
// encrypted_client_hello extension) or an HTTP/1.x request line and its Host
// header. Everything else is recognised as neither, for counting.
//
// The input is untrusted. Every length is checked before it is used, nothing
// panics, and the results are bounded and valid UTF-8: names are plain
// ASCII DNS names (or IP literals) or are rejected, never repaired (see
// NameError). Parsing allocates nothing: a Parser owns the buffers it needs
// and a Result holds sub-slices of the input or of the Parser, valid until
// the next Parse with the same Parser or a change of the input; the caller
// copies what it keeps.
package firstbytes

// Kind is what the first bytes look like.
type Kind uint8

// The kinds.
const (
	// KindOther is neither TLS nor HTTP/1.x: nothing is parsed.
	KindOther Kind = iota
	// KindTLS starts with a TLS handshake record.
	KindTLS
	// KindHTTP starts with an HTTP/1.x request line.
	KindHTTP
)

// String names the kind as a record or a counter says it.
func (k Kind) String() string {
	switch k {
	case KindTLS:
		return "tls"
	case KindHTTP:
		return "http"
	}
	return "other"
}

// Status says how far parsing got.
type Status uint8

// The statuses.
const (
	// StatusNotParsed: KindOther, nothing to parse.
	StatusNotParsed Status = iota
	// StatusOK: the ClientHello, or the request line and headers, are complete and well formed.
	StatusOK
	// StatusNeedMore: the bytes are a well-formed prefix; more are needed to
	// finish. With no more to come (the capture bound was reached, or the
	// client sent no more), the first bytes were truncated. An HTTP
	// request's fields found before the cut are set.
	StatusNeedMore
	// StatusMalformed: the bytes claim to be TLS or HTTP/1.x but break its
	// grammar or a bound of this parser (Result.Reason says which).
	StatusMalformed
)

// String names the status.
func (s Status) String() string {
	switch s {
	case StatusOK:
		return "ok"
	case StatusNeedMore:
		return "need_more"
	case StatusMalformed:
		return "malformed"
	}
	return "not_parsed"
}

// Bounds of what is parsed and kept.
const (
	// MaxName is the longest name kept: a DNS name's 253 characters, or an
	// IPv6 literal with a zone.
	MaxName = 253
	// MaxALPN is the number of ALPN protocols kept; more are counted.
	MaxALPN = 8
	// MaxClientHello bounds a ClientHello reassembled from several TLS
	// records (the capture's default bound). One that fits one record is
	// parsed in place whatever its size.
	MaxClientHello = 16 << 10
	// MaxTarget bounds the HTTP request target kept; a longer one is cut
	// (TargetCut).
	MaxTarget = 1024
	// maxMethod bounds an HTTP method token.
	maxMethod = 16
	// maxTLSRecord is the largest TLS plaintext fragment (RFC 8446 5.1).
	maxTLSRecord = 1 << 14
)

// NameError says why a name the client sent was not kept.
type NameError uint8

// The name errors. A name is rejected, not repaired: a repaired name is one
// the client did not send, and could equal a DNS name it never resolved.
const (
	// NameOK: the name is kept (or there was none).
	NameOK NameError = iota
	// NameEmpty: an empty name, or an empty label ("a..b", a leading dot).
	NameEmpty
	// NameTooLong: longer than MaxName, or a label longer than 63.
	NameTooLong
	// NameBadByte: a byte outside letters, digits, '-', '_' and '.' (and,
	// in an HTTP Host's IP literal, ':' and brackets): control characters,
	// spaces, non-ASCII (an SNI is an A-label, RFC 6066), percent escapes.
	NameBadByte
	// NameBadPort: an HTTP Host whose port is not 1 to 5 digits.
	NameBadPort
)

// String names the error.
func (e NameError) String() string {
	switch e {
	case NameOK:
		return "ok"
	case NameEmpty:
		return "empty"
	case NameTooLong:
		return "too_long"
	case NameBadByte:
		return "bad_byte"
	case NameBadPort:
		return "bad_port"
	}
	return "unknown"
}

// Result is what Parse found. Sub-slices point into the input or into the
// Parser: copy what you keep.
type Result struct {
	Kind   Kind
	Status Status
	// Reason says why the bytes are malformed (a constant; empty otherwise).
	Reason string

	// name is the server name, normalised (lowercase, no trailing dot).
	name    [MaxName]byte
	nameLen uint8
	// HasName: the client sent a name (TLS server_name host_name, HTTP
	// Host), kept in Name unless NameErr says why not.
	HasName bool
	// NameErr says why a name sent was not kept.
	NameErr NameError
	// NameIsIP: the name is an IP literal (an HTTP Host such as
	// 192.0.2.1:8080 or [2001:db8::1]), never a DNS name.
	NameIsIP bool

	// ECH: the ClientHello carries an encrypted_client_hello extension.
	// The real server name is encrypted; Name is the ECH config's public
	// name (or, for a client that sends a GREASE ECH extension without a
	// config, the real name: the two cannot be told apart on the wire).
	ECH bool
	// ALPN holds the first MaxALPN protocols offered that are printable
	// ASCII (sub-slices); ALPNOffered counts all of them, so ALPNOffered >
	// len(ALPN) says some were left out.
	alpn        [MaxALPN][]byte
	alpnLen     uint8
	ALPNOffered int

	// Method and Target are the HTTP request line's (sub-slices, printable
	// ASCII); TargetCut says Target was cut at MaxTarget.
	Method    []byte
	Target    []byte
	TargetCut bool
	// HTTPMinor is the request's HTTP/1.x minor version.
	HTTPMinor uint8
}

// Name returns the normalised server name (empty when none was kept): a
// sub-slice of r, valid until r changes.
func (r *Result) Name() []byte { return r.name[:r.nameLen] }

// ALPN returns the kept ALPN protocols.
func (r *Result) ALPN() [][]byte { return r.alpn[:r.alpnLen] }

// NameSource says where the name came from: "tls", "http", or "" when no
// name was kept.
func (r *Result) NameSource() string {
	if r.nameLen == 0 {
		return ""
	}
	return r.Kind.String()
}

// Parser parses first bytes. Its zero value is ready; reuse one to parse
// without allocating. Not safe for concurrent use.
type Parser struct {
	// hello reassembles a ClientHello split across TLS records.
	hello [MaxClientHello]byte
}

// Parse parses b, the first bytes the client sent, in order, into r (which
// it resets). It returns r.Status.
func (p *Parser) Parse(b []byte, r *Result) Status {
	*r = Result{}
	switch {
	case len(b) == 0:
		r.Kind, r.Status = KindOther, StatusNeedMore
	case b[0] == recordHandshake:
		r.Kind = KindTLS
		r.Status = p.parseTLS(b, r)
	default:
		r.Kind = KindHTTP
		r.Status = parseHTTP(b, r)
	}
	if r.Status == StatusNotParsed {
		*r = Result{Kind: KindOther}
	}
	if r.Status == StatusMalformed {
		r.nameLen, r.HasName, r.NameErr, r.NameIsIP = 0, false, NameOK, false
		r.alpnLen, r.ALPNOffered, r.ECH = 0, 0, false
		r.Method, r.Target, r.TargetCut = nil, nil, false
	}
	return r.Status
}

// malformed sets the reason and returns StatusMalformed.
func (r *Result) malformed(reason string) Status {
	r.Reason = reason
	return StatusMalformed
}

// setName checks name (from the wire) and keeps it normalised: ASCII
// letters lowercased, a trailing dot dropped. ipChars admits an HTTP IP
// literal's ':' and '[' ']' (checked by the caller).
func (r *Result) setName(name []byte) {
	r.HasName = true
	if n := len(name); n > 0 && name[n-1] == '.' {
		name = name[:n-1]
	}
	if len(name) == 0 {
		r.NameErr = NameEmpty
		return
	}
	if len(name) > MaxName {
		r.NameErr = NameTooLong
		return
	}
	label := 0
	for i, c := range name {
		switch {
		case c == '.':
			if label == 0 {
				r.NameErr = NameEmpty
				return
			}
			label = 0
			r.name[i] = c
			continue
		case c >= 'A' && c <= 'Z':
			c += 'a' - 'A'
		case c >= 'a' && c <= 'z', c >= '0' && c <= '9', c == '-', c == '_':
		default:
			r.NameErr = NameBadByte
			return
		}
		label++
		if label > 63 {
			r.NameErr = NameTooLong
			return
		}
		r.name[i] = c
	}
	r.nameLen = uint8(len(name))
}

// setIPLiteral keeps an HTTP Host's bracketed IPv6 literal (brackets
// included) after checking its bytes: hex digits, ':' and '.' (a v4 tail).
func (r *Result) setIPLiteral(lit []byte) {
	r.HasName = true
	if len(lit) < 4 || len(lit) > 2+45 {
		r.NameErr = NameTooLong
		if len(lit) < 4 {
			r.NameErr = NameEmpty
		}
		return
	}
	for i, c := range lit {
		switch {
		case i == 0 && c == '[', i == len(lit)-1 && c == ']':
		case c >= '0' && c <= '9', c >= 'a' && c <= 'f', c == ':', c == '.':
		case c >= 'A' && c <= 'F':
			c += 'a' - 'A'
		default:
			r.NameErr = NameBadByte
			return
		}
		r.name[i] = c
	}
	r.nameLen = uint8(len(lit))
	r.NameIsIP = true
}

// isIPv4 says whether a kept name is a dotted-quad IPv4 address.
func isIPv4(name []byte) bool {
	dots, digits := 0, 0
	for _, c := range name {
		switch {
		case c == '.':
			if digits == 0 {
				return false
			}
			dots, digits = dots+1, 0
		case c >= '0' && c <= '9':
			digits++
			if digits > 3 {
				return false
			}
		default:
			return false
		}
	}
	return dots == 3 && digits > 0
}

// Assembly puts the pieces of one socket's first bytes back in order. Pieces
// come in stream order (the kernel copies segments as they leave); a gap or
// an overlap means a piece was lost, and the assembly stops there. Its zero
// value is ready; Reset reuses it.
type Assembly struct {
	buf  []byte
	want int
	done bool
	bad  bool
}

// Reset empties a for another socket, keeping its buffer.
func (a *Assembly) Reset() { *a = Assembly{buf: a.buf[:0]} }

// Grow makes room for n bytes in all, so that adding them allocates nothing.
func (a *Assembly) Grow(n int) {
	if cap(a.buf) < n {
		a.buf = append(make([]byte, 0, n), a.buf...)
	}
}

// Add appends data found at offset in a capture of want bytes in all. It
// returns false when the piece does not continue the bytes so far (a piece
// was lost): the assembly keeps what it has and takes nothing more.
func (a *Assembly) Add(offset, want int, data []byte) bool {
	if a.bad || a.done || offset != len(a.buf) || want <= 0 || offset+len(data) > want || (a.want != 0 && want != a.want) {
		a.bad = true
		return false
	}
	a.want = want
	a.buf = append(a.buf, data...)
	a.done = len(a.buf) == want
	return true
}

// Bytes returns the bytes so far, in order.
func (a *Assembly) Bytes() []byte { return a.buf }

// Complete says whether every byte the capture took has arrived.
func (a *Assembly) Complete() bool { return a.done }

// Broken says whether a piece was lost (a gap or an overlap).
func (a *Assembly) Broken() bool { return a.bad }
