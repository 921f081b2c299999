package firstbytes

import (
	"bytes"
	"encoding/binary"
	"strings"
	"testing"
	"unicode/utf8"
)

// ext is one TLS extension for helloBytes.
type ext struct {
	typ  uint16
	data []byte
}

// sniExt builds a server_name extension with one host_name.
func sniExt(name string) ext {
	e := []byte{0}
	e = binary.BigEndian.AppendUint16(e, uint16(len(name)))
	e = append(e, name...)
	return ext{extServerName, append(binary.BigEndian.AppendUint16(nil, uint16(len(e))), e...)}
}

// alpnExt builds an ALPN extension.
func alpnExt(protos ...string) ext {
	var l []byte
	for _, p := range protos {
		l = append(l, byte(len(p)))
		l = append(l, p...)
	}
	return ext{extALPN, append(binary.BigEndian.AppendUint16(nil, uint16(len(l))), l...)}
}

// helloBody builds a ClientHello body with the given extensions (none at
// all when exts is nil).
func helloBody(exts []ext) []byte {
	b := []byte{3, 3}
	b = append(b, make([]byte, 32)...) // random
	b = append(b, 0)                   // session id
	b = append(b, 0, 2, 0x13, 0x01)    // one cipher suite
	b = append(b, 1, 0)                // null compression
	if exts == nil {
		return b
	}
	var e []byte
	for _, x := range exts {
		e = binary.BigEndian.AppendUint16(e, x.typ)
		e = binary.BigEndian.AppendUint16(e, uint16(len(x.data)))
		e = append(e, x.data...)
	}
	b = binary.BigEndian.AppendUint16(b, uint16(len(e)))
	return append(b, e...)
}

// helloRecord wraps a ClientHello body in its handshake header and one record.
func helloRecord(body []byte) []byte {
	m := []byte{handshakeHello, byte(len(body) >> 16), byte(len(body) >> 8), byte(len(body))}
	m = append(m, body...)
	rec := []byte{recordHandshake, 3, 1, byte(len(m) >> 8), byte(len(m))}
	return append(rec, m...)
}

func hello(exts ...ext) []byte { return helloRecord(helloBody(exts)) }

type want struct {
	kind    Kind
	status  Status
	name    string
	hasName bool
	nameErr NameError
	isIP    bool
	ech     bool
	alpn    []string
	offered int
	method  string
	target  string
}

func TestParse(t *testing.T) {
	long := strings.Repeat("a", 60) + "."
	for _, tc := range []struct {
		name string
		in   []byte
		want want
	}{
		{"tls_sni_alpn", hello(sniExt("Example.COM."), alpnExt("h2", "http/1.1")),
			want{kind: KindTLS, status: StatusOK, name: "example.com", hasName: true, alpn: []string{"h2", "http/1.1"}, offered: 2}},
		{"tls_extensions_reordered", hello(ext{extECH, []byte{0}}, alpnExt("h3"), ext{0x1234, nil}, sniExt("a.example")),
			want{kind: KindTLS, status: StatusOK, name: "a.example", hasName: true, ech: true, alpn: []string{"h3"}, offered: 1}},
		{"tls_no_extensions", helloRecord(helloBody(nil)), want{kind: KindTLS, status: StatusOK}},
		{"tls_no_sni", hello(alpnExt("h2")), want{kind: KindTLS, status: StatusOK, alpn: []string{"h2"}, offered: 1}},
		{"tls_sni_utf8", hello(sniExt("bücher.example")), want{kind: KindTLS, status: StatusOK, hasName: true, nameErr: NameBadByte}},
		{"tls_sni_invalid_utf8", hello(sniExt("a\xff\xfe.example")), want{kind: KindTLS, status: StatusOK, hasName: true, nameErr: NameBadByte}},
		{"tls_sni_nul", hello(sniExt("a\x00.example")), want{kind: KindTLS, status: StatusOK, hasName: true, nameErr: NameBadByte}},
		{"tls_sni_newline", hello(sniExt("a.example\n")), want{kind: KindTLS, status: StatusOK, hasName: true, nameErr: NameBadByte}},
		{"tls_sni_too_long", hello(sniExt(strings.Repeat(long, 5))), want{kind: KindTLS, status: StatusOK, hasName: true, nameErr: NameTooLong}},
		{"tls_sni_label_too_long", hello(sniExt(strings.Repeat("b", 64) + ".example")), want{kind: KindTLS, status: StatusOK, hasName: true, nameErr: NameTooLong}},
		{"tls_sni_empty_label", hello(sniExt("a..example")), want{kind: KindTLS, status: StatusOK, hasName: true, nameErr: NameEmpty}},
		{"tls_sni_dot", hello(sniExt(".")), want{kind: KindTLS, status: StatusOK, hasName: true, nameErr: NameEmpty}},
		{"tls_sni_max_length", hello(sniExt(strings.Repeat(long, 4) + "abcdefghi")), want{kind: KindTLS, status: StatusOK, hasName: true,
			name: strings.Repeat(long, 4) + "abcdefghi"}},
		{"tls_alpn_binary_dropped", hello(alpnExt("h2", "\x00\xff", "x y")), want{kind: KindTLS, status: StatusOK, alpn: []string{"h2"}, offered: 3}},
		{"tls_two_sni", hello(sniExt("a.example"), sniExt("b.example")), want{kind: KindTLS, status: StatusMalformed}},
		{"tls_two_ech", hello(ext{extECH, nil}, ext{extECH, nil}), want{kind: KindTLS, status: StatusMalformed}},
		{"tls_ext_overflow", func() []byte {
			b := hello(sniExt("a.example"))
			b[len(b)-len("a.example")-5-4+3]++ // the extension's length
			return b
		}(), want{kind: KindTLS, status: StatusMalformed}},
		{"tls_sni_name_overflow", hello(ext{extServerName, []byte{0, 5, 0, 0, 9, 'a', 'b'}}), want{kind: KindTLS, status: StatusMalformed}},
		{"tls_alpn_empty_proto", hello(ext{extALPN, []byte{0, 2, 0, 0}}), want{kind: KindTLS, status: StatusMalformed}},
		{"tls_session_id_too_long", func() []byte {
			b := hello()
			b[5+4+2+32] = 33
			return b
		}(), want{kind: KindTLS, status: StatusMalformed}},
		{"tls_record_version", []byte{0x16, 2, 0, 0, 5}, want{kind: KindTLS, status: StatusMalformed}},
		{"tls_record_too_long", []byte{0x16, 3, 1, 0x40, 1}, want{kind: KindTLS, status: StatusMalformed}},
		{"tls_not_client_hello", []byte{0x16, 3, 3, 0, 4, 2, 0, 0, 0}, want{kind: KindTLS, status: StatusMalformed}},
		{"tls_trailing_data", append(hello(sniExt("a.example"))[:0:0], func() []byte {
			b := hello(sniExt("a.example"))
			b = append(b, 0)
			b[4]++
			return b
		}()...), want{kind: KindTLS, status: StatusMalformed}},
		{"tls_header_only", []byte{0x16, 3, 1}, want{kind: KindTLS, status: StatusNeedMore}},
		{"tls_half", hello(sniExt("a.example"))[:40], want{kind: KindTLS, status: StatusNeedMore}},
		{"tls_split_records", fragmentRecords(t, hello(sniExt("split.example"), alpnExt("h2")), 7),
			want{kind: KindTLS, status: StatusOK, name: "split.example", hasName: true, alpn: []string{"h2"}, offered: 1}},
		{"tls_split_interrupted", func() []byte {
			b := fragmentRecords(t, hello(sniExt("split.example")), 30)
			b[35] = 0x17 // the second record: application data
			return b
		}(), want{kind: KindTLS, status: StatusMalformed}},

		{"http_get", []byte("GET /x?y HTTP/1.1\r\nUser-Agent: t\r\nhOsT: Example.COM.:8080\r\n\r\n"),
			want{kind: KindHTTP, status: StatusOK, name: "example.com", hasName: true, method: "GET", target: "/x?y"}},
		{"http_lf_only", []byte("POST / HTTP/1.0\nHost: a.example\n\nbody"),
			want{kind: KindHTTP, status: StatusOK, name: "a.example", hasName: true, method: "POST", target: "/"}},
		{"http_ipv6_host", []byte("GET / HTTP/1.1\r\nHost: [2001:DB8::1]:80\r\n\r\n"),
			want{kind: KindHTTP, status: StatusOK, name: "[2001:db8::1]", hasName: true, isIP: true, method: "GET", target: "/"}},
		{"http_ipv4_host", []byte("GET / HTTP/1.1\r\nHost: 127.0.0.1:80\r\n\r\n"),
			want{kind: KindHTTP, status: StatusOK, name: "127.0.0.1", hasName: true, isIP: true, method: "GET", target: "/"}},
		{"http_no_host", []byte("GET / HTTP/1.0\r\n\r\n"), want{kind: KindHTTP, status: StatusOK, method: "GET", target: "/"}},
		{"http_host_space", []byte("GET / HTTP/1.1\r\nHost: a b\r\n\r\n"),
			want{kind: KindHTTP, status: StatusOK, hasName: true, nameErr: NameBadByte, method: "GET", target: "/"}},
		{"http_host_non_ascii", []byte("GET / HTTP/1.1\r\nHost: \xc3\xa9.example\r\n\r\n"),
			want{kind: KindHTTP, status: StatusOK, hasName: true, nameErr: NameBadByte, method: "GET", target: "/"}},
		{"http_host_bad_port", []byte("GET / HTTP/1.1\r\nHost: a:123456\r\n\r\n"),
			want{kind: KindHTTP, status: StatusOK, hasName: true, nameErr: NameBadPort, method: "GET", target: "/"}},
		{"http_host_unbracketed_v6", []byte("GET / HTTP/1.1\r\nHost: ::1\r\n\r\n"),
			want{kind: KindHTTP, status: StatusOK, hasName: true, nameErr: NameBadByte, method: "GET", target: "/"}},
		{"http_host_empty", []byte("GET / HTTP/1.1\r\nHost:\r\n\r\n"),
			want{kind: KindHTTP, status: StatusOK, hasName: true, nameErr: NameEmpty, method: "GET", target: "/"}},
		{"http_two_hosts", []byte("GET / HTTP/1.1\r\nHost: a\r\nHost: b\r\n\r\n"), want{kind: KindHTTP, status: StatusMalformed}},
		{"http_obs_fold", []byte("GET / HTTP/1.1\r\nX: a\r\n b\r\n\r\n"), want{kind: KindHTTP, status: StatusMalformed}},
		{"http_space_before_colon", []byte("GET / HTTP/1.1\r\nHost : a\r\n\r\n"), want{kind: KindHTTP, status: StatusMalformed}},
		{"http_no_colon", []byte("GET / HTTP/1.1\r\nHost\r\n\r\n"), want{kind: KindHTTP, status: StatusMalformed}},
		{"http_junk_after_version", []byte("GET / HTTP/1.1x\r\n\r\n"), want{kind: KindHTTP, status: StatusMalformed}},
		{"http_headers_cut", []byte("GET /p HTTP/1.1\r\nHost: cut.example\r\nAccept: */*\r\n"),
			want{kind: KindHTTP, status: StatusNeedMore, name: "cut.example", hasName: true, method: "GET", target: "/p"}},
		{"http_method_prefix", []byte("GE"), want{kind: KindHTTP, status: StatusNeedMore}},
		{"http_target_prefix", []byte("GET /abc"), want{kind: KindHTTP, status: StatusNeedMore, method: "GET", target: "/abc"}},
		{"http_version_prefix", []byte("GET / HTT"), want{kind: KindHTTP, status: StatusNeedMore, method: "GET", target: "/"}},
		{"http2_preface", []byte("PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n"), want{kind: KindOther}},
		{"http09", []byte("GET /\r\n"), want{kind: KindOther}},
		{"smtp", []byte("EHLO mail.example\r\n"), want{kind: KindOther}},
		{"ssh", []byte("SSH-2.0-OpenSSH_9.2\r\n"), want{kind: KindOther}},
		{"lowercase_method", []byte("get / HTTP/1.1\r\n\r\n"), want{kind: KindOther}},
		{"binary", []byte{0, 1, 2, 3}, want{kind: KindOther}},
		{"target_binary", []byte("GET /\xff HTTP/1.1\r\n\r\n"), want{kind: KindOther}},
		{"empty", nil, want{kind: KindOther, status: StatusNeedMore}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			var p Parser
			var r Result
			s := p.Parse(tc.in, &r)
			var alpn []string
			for _, a := range r.ALPN() {
				alpn = append(alpn, string(a))
			}
			got := want{kind: r.Kind, status: s, name: string(r.Name()), hasName: r.HasName, nameErr: r.NameErr, isIP: r.NameIsIP,
				ech: r.ECH, alpn: alpn, offered: r.ALPNOffered, method: string(r.Method), target: string(r.Target)}
			if s != r.Status {
				t.Errorf("returned %s, Result says %s", s, r.Status)
			}
			if (s == StatusMalformed) != (r.Reason != "") {
				t.Errorf("status %s with reason %q", s, r.Reason)
			}
			if !equalWant(got, tc.want) {
				t.Errorf("got  %+v (%s)\nwant %+v", got, r.Reason, tc.want)
			}
			checkBounded(t, &r)
		})
	}
}

func equalWant(a, b want) bool {
	return a.kind == b.kind && a.status == b.status && a.name == b.name && a.hasName == b.hasName &&
		a.nameErr == b.nameErr && a.isIP == b.isIP && a.ech == b.ech && equalStrings(a.alpn, b.alpn) &&
		a.offered == b.offered && a.method == b.method && a.target == b.target
}

// checkBounded checks what every Result must hold, whatever the input.
func checkBounded(t testing.TB, r *Result) {
	t.Helper()
	name := r.Name()
	if len(name) > MaxName || !printableOrEmpty(name) || !utf8.Valid(name) {
		t.Fatalf("name %q", name)
	}
	if bytes.ContainsAny(name, "ABCDEFGHIJKLMNOPQRSTUVWXYZ") || bytes.HasSuffix(name, []byte(".")) {
		t.Fatalf("name %q not normalised", name)
	}
	if len(name) > 0 && (!r.HasName || r.NameErr != NameOK) {
		t.Fatalf("name %q kept with HasName %v, NameErr %s", name, r.HasName, r.NameErr)
	}
	if r.NameErr != NameOK && len(name) != 0 {
		t.Fatalf("name %q kept though %s", name, r.NameErr)
	}
	if len(r.ALPN()) > MaxALPN || len(r.ALPN()) > r.ALPNOffered {
		t.Fatalf("%d ALPN kept of %d", len(r.ALPN()), r.ALPNOffered)
	}
	for _, a := range r.ALPN() {
		if len(a) == 0 || !printable(a) {
			t.Fatalf("ALPN %q", a)
		}
	}
	if len(r.Method) > maxMethod || len(r.Target) > MaxTarget || !printableOrEmpty(r.Method) || !printableOrEmpty(r.Target) {
		t.Fatalf("request line %q %q", r.Method, r.Target)
	}
	if r.Kind == KindOther && (r.Status == StatusOK || r.Status == StatusMalformed || len(name) > 0 || r.HasName) {
		t.Fatalf("other bytes with status %s, name %q", r.Status, name)
	}
}

func printableOrEmpty(b []byte) bool { return len(b) == 0 || printable(b) }

// TestParseAllocs: a reused Parser parses the common cases without allocating.
func TestParseAllocs(t *testing.T) {
	for name, in := range map[string][]byte{
		"tls":        hello(sniExt("a.example"), alpnExt("h2", "http/1.1")),
		"tls_split":  fragmentRecords(t, hello(sniExt("a.example"), alpnExt("h2")), 50),
		"http":       []byte("GET / HTTP/1.1\r\nHost: a.example\r\nAccept: */*\r\n\r\n"),
		"other":      []byte("SSH-2.0-x\r\n"),
		"need_more":  []byte("GET / HTTP/1.1\r\nHost: a"),
		"malformed":  []byte("GET / HTTP/1.1\r\nHost: a\r\nHost: b\r\n\r\n"),
		"http_ipv6":  []byte("GET / HTTP/1.1\r\nHost: [::1]:8080\r\n\r\n"),
		"tls_header": {0x16, 3, 1},
	} {
		p := new(Parser)
		r := new(Result)
		if n := testing.AllocsPerRun(100, func() { p.Parse(in, r) }); n != 0 {
			t.Errorf("%s: %.1f allocations per parse", name, n)
		}
	}
}

func BenchmarkParse(b *testing.B) {
	for name, in := range map[string][]byte{
		"tls":  hello(sniExt("www.example.com"), alpnExt("h2", "http/1.1"), ext{0x33, make([]byte, 1250)}),
		"http": []byte("GET /index.html HTTP/1.1\r\nHost: www.example.com\r\nUser-Agent: curl/7.88.1\r\nAccept: */*\r\n\r\n"),
	} {
		b.Run(name, func(b *testing.B) {
			var p Parser
			var r Result
			b.ReportAllocs()
			for b.Loop() {
				p.Parse(in, &r)
			}
		})
	}
}

// FuzzParseTLS: hostile ClientHellos. Beyond never panicking and bounded
// results: the same bytes re-framed into smaller records parse the same,
// and every proper prefix of a hello that parses needs more.
func FuzzParseTLS(f *testing.F) {
	f.Add(hello(sniExt("a.example"), alpnExt("h2", "http/1.1"), ext{extECH, []byte{0}}), uint8(40))
	f.Add(helloRecord(helloBody(nil)), uint8(3))
	f.Add(fragmentRecords(f, hello(sniExt("split.example")), 9), uint8(200))
	f.Add(hello(sniExt("\xff.example"), alpnExt("\x00")), uint8(1))
	f.Fuzz(func(t *testing.T, in []byte, frag uint8) {
		var p Parser
		var r Result
		s := p.Parse(in, &r)
		checkBounded(t, &r)
		if s != StatusOK || r.Kind != KindTLS {
			return
		}
		// Keep the result, then parse the re-framed bytes.
		name, ech, offered := string(r.Name()), r.ECH, r.ALPNOffered
		var alpn []string
		for _, a := range r.ALPN() {
			alpn = append(alpn, string(a))
		}
		// The checks below take a hello in one record (the fast path).
		if len(in) < 9 || 4+(int(in[6])<<16|u16(in[7:])) != u16(in[3:]) {
			return
		}
		in = in[:5+u16(in[3:])]
		if frag > 0 {
			re := fragmentRecords(t, in, int(frag))
			var r2 Result
			if s2 := p.Parse(re, &r2); s2 != StatusOK || string(r2.Name()) != name || r2.ECH != ech || r2.ALPNOffered != offered || len(r2.ALPN()) != len(alpn) {
				t.Fatalf("re-framed in %d-byte records: %s (%s) %q %v %d; in one record %q %v %d", frag, s2, r2.Reason, r2.Name(), r2.ECH, r2.ALPNOffered, name, ech, offered)
			}
		}
		for _, n := range []int{0, 1, 4, 5, 9, len(in) / 2, len(in) - 1} {
			if n < len(in) {
				var r3 Result
				if s3 := p.Parse(in[:n], &r3); s3 != StatusNeedMore {
					t.Fatalf("prefix %d of %d: %s (%s)", n, len(in), s3, r3.Reason)
				}
			}
		}
	})
}

// FuzzParseHTTP: hostile request heads; bounded results, and a request that
// parses needs more at every proper prefix.
func FuzzParseHTTP(f *testing.F) {
	f.Add([]byte("GET /x HTTP/1.1\r\nHost: Example.COM.:8080\r\n\r\n"))
	f.Add([]byte("POST / HTTP/1.0\nHost: [::1]\n\n"))
	f.Add([]byte("GET / HTTP/1.1\r\nHost: \xff\r\nHost: b\r\n\r\n"))
	f.Add([]byte("PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n"))
	f.Fuzz(func(t *testing.T, in []byte) {
		var p Parser
		var r Result
		s := p.Parse(in, &r)
		checkBounded(t, &r)
		if s != StatusOK || r.Kind != KindHTTP {
			return
		}
		end := bytes.Index(in, []byte("\n\r\n"))
		if e := bytes.Index(in, []byte("\n\n")); end < 0 || e >= 0 && e < end {
			end = e
		}
		for n := range end + 1 {
			var r2 Result
			if s2 := p.Parse(in[:n], &r2); s2 != StatusNeedMore {
				t.Fatalf("prefix %q: %s (%s)", in[:n], s2, r2.Reason)
			}
		}
	})
}

// TestAssembly: pieces in order complete the bytes; a gap, an overlap, a
// change of the total or a piece after the end breaks the assembly.
func TestAssembly(t *testing.T) {
	var a Assembly
	if !a.Add(0, 6, []byte("ab")) || a.Complete() || !a.Add(2, 6, []byte("cdef")) || !a.Complete() || string(a.Bytes()) != "abcdef" {
		t.Fatalf("in order: %q complete %v", a.Bytes(), a.Complete())
	}
	if a.Add(6, 6, []byte("g")) || !a.Broken() {
		t.Fatal("a piece after the end was taken")
	}
	for name, pieces := range map[string][]struct {
		off, want int
		data      string
	}{
		"gap":         {{0, 6, "ab"}, {3, 6, "def"}},
		"overlap":     {{0, 6, "abc"}, {2, 6, "cdef"}},
		"want_change": {{0, 6, "ab"}, {2, 7, "cdefg"}},
		"past_want":   {{0, 2, "abc"}},
	} {
		a.Reset()
		ok := true
		for _, p := range pieces {
			ok = a.Add(p.off, p.want, []byte(p.data)) && ok
		}
		if ok || !a.Broken() || a.Complete() {
			t.Errorf("%s: taken (%q, complete %v)", name, a.Bytes(), a.Complete())
		}
	}
}
