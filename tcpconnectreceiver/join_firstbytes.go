package tcpconnectreceiver

import (
	"github.com/tcpconnect/tcpconnect/internal/event"
	"github.com/tcpconnect/tcpconnect/internal/firstbytes"
)

// maxAssemblies bounds the reassembly buffers (first_bytes.max_bytes each)
// for first bytes that come in more than one record: most come in one, and
// the pieces of one socket come back to back.
const maxAssemblies = 64

// fbJoin is the join's first-bytes state: the parser, the reassembly
// buffers (allocated at start) and the interned names. Reader goroutine only.
type fbJoin struct {
	tls, http bool
	parser    firstbytes.Parser
	res       firstbytes.Result
	asms      []firstbytes.Assembly
	free      []int32 // indexes of free asms
	names     map[string]string
	alpns     map[string][]string
	key       []byte // an ALPN list's key, built to look it up
}

// newFBJoin returns the first-bytes state of cfg for a wait queue of
// maxWaiting records; nil when no source is on.
func newFBJoin(cfg FirstBytesConfig, maxWaiting int) *fbJoin {
	if !cfg.on() {
		return nil
	}
	n := min(maxWaiting, maxAssemblies)
	f := &fbJoin{tls: cfg.TLS, http: cfg.HTTP, asms: make([]firstbytes.Assembly, n), free: make([]int32, 0, n),
		names: make(map[string]string), alpns: make(map[string][]string), key: make([]byte, 0, 256)}
	for i := range f.asms {
		f.asms[i].Grow(cfg.MaxBytes)
		f.free = append(f.free, int32(i))
	}
	return f
}

// add takes piece p of the first bytes of waiting record s. It reports
// whether s has them all now (or will get no more); then s.fb is set.
// lost is counted when the pieces cannot be put together.
func (f *fbJoin) add(s *waitingRecord, p *event.FirstBytes, c *counts) bool {
	if s.asm == 0 && p.Offset == 0 && (p.Last || p.Closed) {
		f.parse(s, p.Data, c) // the common case: one piece, parsed in place
		return true
	}
	if s.asm == 0 {
		if len(f.free) == 0 || p.Offset != 0 {
			c.fbLost++ // no buffer free, or the first piece was lost
			f.parse(s, nil, c)
			return true
		}
		s.asm = f.free[len(f.free)-1] + 1
		f.free = f.free[:len(f.free)-1]
	}
	a := &f.asms[s.asm-1]
	if !p.Closed && !a.Add(int(p.Offset), int(p.Want), p.Data) {
		c.fbLost++ // a piece between was lost
	}
	if !a.Complete() && !a.Broken() && !p.Closed {
		return false
	}
	f.finish(s, c)
	return true
}

// finish parses what s has of its first bytes (none, or its reassembly
// buffer's) and frees its buffer; s.fb is set.
func (f *fbJoin) finish(s *waitingRecord, c *counts) {
	if s.asm == 0 {
		f.parse(s, nil, c)
		return
	}
	a := &f.asms[s.asm-1]
	f.parse(s, a.Bytes(), c)
	a.Reset()
	f.free = append(f.free, s.asm-1)
	s.asm = 0
}

// parse parses first bytes b of s into s.fb and counts the result.
func (f *fbJoin) parse(s *waitingRecord, b []byte, c *counts) {
	s.fbDone = true
	s.fb = fbResult{}
	if len(b) == 0 {
		c.fb[fbNone]++
		return
	}
	r := &f.res
	switch f.parser.Parse(b, r) {
	case firstbytes.StatusNotParsed:
		c.fb[fbOther]++
		return
	case firstbytes.StatusMalformed:
		c.fb[fbMalformed]++
		return
	case firstbytes.StatusNeedMore:
		c.fb[fbTruncated]++ // no more come: what was found before the cut is kept
	default:
		if r.Kind == firstbytes.KindTLS {
			c.fb[fbTLS]++
		} else {
			c.fb[fbHTTP]++
		}
	}
	if (r.Kind == firstbytes.KindTLS && !f.tls) || (r.Kind == firstbytes.KindHTTP && !f.http) {
		return
	}
	s.fb.kind = r.Kind
	if name := r.Name(); len(name) > 0 {
		s.fb.name, s.fb.nameIsIP = f.intern(name), r.NameIsIP
	}
	s.fb.ech = r.ECH
	if alpn := r.ALPN(); len(alpn) > 0 {
		s.fb.alpn = f.alpnList(alpn)
	}
}

// intern returns b as a string, made once per distinct name (at most
// maxInterned of them; then the cache is emptied).
func (f *fbJoin) intern(b []byte) string {
	if s, ok := f.names[string(b)]; ok {
		return s
	}
	if len(f.names) >= maxInterned {
		clear(f.names)
	}
	s := string(b)
	f.names[s] = s
	return s
}

// alpnList returns protos as a shared slice, made once per distinct list.
func (f *fbJoin) alpnList(protos [][]byte) []string {
	k := f.key[:0]
	for _, p := range protos {
		k = append(k, byte(len(p)))
		k = append(k, p...)
	}
	f.key = k
	if l, ok := f.alpns[string(k)]; ok {
		return l
	}
	if len(f.alpns) >= maxInterned {
		clear(f.alpns)
	}
	l := make([]string, len(protos))
	for i, p := range protos {
		l[i] = f.intern(p)
	}
	f.alpns[string(k)] = l
	return l
}
