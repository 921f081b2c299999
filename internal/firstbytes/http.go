package firstbytes

import "bytes"

// methodByte says whether c may be in a method token as clients send them
// (uppercase letters, '-' and '_'). Narrower than RFC 9110's token, so that
// the first bytes of other protocols are not taken for HTTP.
func methodByte(c byte) bool { return c >= 'A' && c <= 'Z' || c == '-' || c == '_' }

// parseHTTP parses an HTTP/1.x request line and its Host header (RFC 9112).
// It returns StatusNotParsed for bytes that are not an HTTP/1.x request.
func parseHTTP(b []byte, r *Result) Status {
	// Method SP
	i := 0
	for i < len(b) && i <= maxMethod && methodByte(b[i]) {
		i++
	}
	switch {
	case i == len(b) && i <= maxMethod:
		return StatusNeedMore // a prefix of a method
	case i == 0 || i > maxMethod || b[i] != ' ':
		return StatusNotParsed
	}
	method := b[:i]
	rest := b[i+1:]
	// request-target SP
	i = 0
	for i < len(rest) && rest[i] != ' ' {
		if c := rest[i]; c < 0x21 || c > 0x7e {
			return StatusNotParsed // a line end (HTTP/0.9, SMTP, ...) or binary
		}
		i++
	}
	if i == 0 && len(rest) > 0 {
		return StatusNotParsed
	}
	target := rest[:i]
	if len(target) > MaxTarget {
		target = target[:MaxTarget:MaxTarget]
		r.TargetCut = true
	}
	r.Method, r.Target = method[:len(method):len(method)], target
	if i == len(rest) {
		return StatusNeedMore
	}
	rest = rest[i+1:]
	// HTTP-version CRLF
	const version = "HTTP/1."
	if len(rest) < len(version)+1 {
		if version[:len(rest)] == string(rest) {
			return StatusNeedMore
		}
		return StatusNotParsed
	}
	if string(rest[:len(version)]) != version || rest[len(version)] < '0' || rest[len(version)] > '9' {
		return StatusNotParsed // HTTP/2's preface (PRI * HTTP/2.0), or not HTTP
	}
	r.HTTPMinor = rest[len(version)] - '0'
	rest = rest[len(version)+1:]
	line, rest, ok := cutLine(rest)
	if !ok {
		if len(rest) == 0 || len(rest) == 1 && rest[0] == '\r' {
			return StatusNeedMore
		}
		return r.malformed("http: request line does not end after its version")
	}
	if len(line) != 0 {
		return r.malformed("http: request line does not end after its version")
	}
	// Header fields, up to the empty line.
	for {
		line, rest, ok = cutLine(rest)
		if !ok {
			return StatusNeedMore
		}
		if len(line) == 0 {
			return StatusOK
		}
		if line[0] == ' ' || line[0] == '\t' {
			return r.malformed("http: obsolete line folding")
		}
		colon := bytes.IndexByte(line, ':')
		if colon <= 0 {
			return r.malformed("http: header line without a field name and colon")
		}
		name := line[:colon]
		for _, c := range name {
			if c <= ' ' || c > 0x7e {
				return r.malformed("http: header field name")
			}
		}
		if len(name) != 4 || !bytes.EqualFold(name, []byte("host")) {
			continue
		}
		if r.HasName {
			return r.malformed("http: two Host headers")
		}
		r.setHost(bytes.Trim(line[colon+1:], " \t"))
	}
}

// cutLine cuts b at its first LF; the line loses a CR before it. ok is
// false when b holds no LF.
func cutLine(b []byte) (line, rest []byte, ok bool) {
	i := bytes.IndexByte(b, '\n')
	if i < 0 {
		return nil, b, false
	}
	line = b[:i]
	if n := len(line); n > 0 && line[n-1] == '\r' {
		line = line[:n-1]
	}
	return line, b[i+1:], true
}

// setHost keeps a Host header's host (RFC 9110 7.2: uri-host [":" port]).
func (r *Result) setHost(v []byte) {
	host := v
	var port []byte
	hasPort := false
	if len(v) > 0 && v[0] == '[' {
		end := bytes.IndexByte(v, ']')
		if end < 0 {
			r.HasName, r.NameErr = true, NameBadByte
			return
		}
		host = v[:end+1]
		switch after := v[end+1:]; {
		case len(after) == 0:
		case after[0] == ':':
			port, hasPort = after[1:], true
		default:
			r.HasName, r.NameErr = true, NameBadByte
			return
		}
	} else if i := bytes.LastIndexByte(v, ':'); i >= 0 {
		host, port, hasPort = v[:i], v[i+1:], true
	}
	if hasPort && !validPort(port) {
		r.HasName, r.NameErr = true, NameBadPort
		return
	}
	if len(host) > 0 && host[0] == '[' {
		r.setIPLiteral(host)
		return
	}
	r.setName(host)
	if r.nameLen > 0 && isIPv4(r.Name()) {
		r.NameIsIP = true
	}
}

// validPort says whether p is 1 to 5 digits (RFC 9110 allows an empty
// port; clients never send one, and a server would treat it as absent: not
// a name's concern, so it is refused here).
func validPort(p []byte) bool {
	if len(p) == 0 || len(p) > 5 {
		return false
	}
	for _, c := range p {
		if c < '0' || c > '9' {
			return false
		}
	}
	return true
}
