package dns

import (
	"bytes"
	"encoding/binary"
	"errors"
	"fmt"
	"math"
	"net/netip"

	"golang.org/x/net/dns/dnsmessage"
)

// Parser bounds.
const (
	// MaxChain bounds the names of one chain: the question name and up to
	// MaxChain-1 CNAME targets. Resolvers give up well before (BIND: 16).
	MaxChain = 16
	// maxRecords bounds the answer records kept per message. A 1536-byte
	// capture holds at most about 100 compressed A records.
	maxRecords = 128
)

// Errors returned by [Parser.Parse], wrapped with context.
var (
	// ErrNoQuestion means the message has no question section.
	ErrNoQuestion = errors.New("no question")
	// ErrBadName means the question name is empty (the root) or holds
	// bytes other than printable ASCII.
	ErrBadName = errors.New("invalid question name")
)

// Message is what [Parser.Parse] extracts from one DNS message. Its slices
// point into the Parser's buffers and stay valid until the next Parse.
type Message struct {
	// ID is the message id.
	ID uint16
	// Response is the QR bit: true for an answer, false for a query.
	Response bool
	// RCode is the response code.
	RCode dnsmessage.RCode
	// Question is the first question's name, lower-cased, without the
	// trailing dot.
	Question []byte
	// QType is the first question's type.
	QType dnsmessage.Type
	// Chain holds the question name, then each CNAME target in the order
	// the chain follows them. Chain[len(Chain)-1] is the name that owns
	// Addrs. Empty for a query.
	Chain [][]byte
	// Addrs holds the A and AAAA records of the chain's last name, in
	// message order.
	Addrs []Addr
	// Truncated reports that the message ended early (a truncated capture
	// or a TCP message split across segments) and that parsing stopped at
	// the last complete record.
	Truncated bool
	// Malformed counts the answer records skipped because their rdata does
	// not have the length their type needs: an A record's rdlength is not
	// 4, an AAAA's not 16, or a CNAME's target does not fill its rdata
	// exactly. Such a record's address or target is never used.
	Malformed int
}

// Addr is one address record of an answer chain.
type Addr struct {
	// IP is the address; IPv4-mapped IPv6 is unmapped to IPv4.
	IP netip.Addr
	// TTL is the smallest TTL, in seconds, over this record and every
	// CNAME of the chain that leads to it: the time the IP -> name
	// association stays valid.
	TTL uint32
}

// nameRef locates a normalized name in Parser.arena.
type nameRef struct{ off, n int }

// record is one A, AAAA or CNAME answer record.
type record struct {
	owner  nameRef
	target nameRef // CNAME only
	typ    dnsmessage.Type
	ttl    uint32
	ip     netip.Addr // A and AAAA only
}

// Parser parses DNS messages. Its buffers are reused, so in steady state
// Parse does not allocate. The zero value is ready to use.
type Parser struct {
	p     dnsmessage.Parser
	raw   []byte // the message being parsed
	off   int    // offset of the next answer record in raw
	arena []byte
	recs  []record
	chain []nameRef
	msg   Message
}

// Parse decodes msg. It never panics. It returns an error for a message
// that is malformed, has no question or whose question name is invalid.
//
// truncated tells that msg is a prefix of the real message (the capture was
// cut, or a TCP message continues in the next segment): an answer record
// cut short then ends parsing without an error and the complete records
// before it are kept. Answer records with invalid owner or target names are
// skipped. Only the question, A, AAAA and CNAME records of class IN are
// looked at.
//
// The returned Message is owned by the Parser and valid until the next call.
func (ps *Parser) Parse(msg []byte, truncated bool) (*Message, error) {
	ps.arena = ps.arena[:0]
	ps.recs = ps.recs[:0]
	ps.chain = ps.chain[:0]
	m := &ps.msg
	*m = Message{Chain: m.Chain[:0], Addrs: m.Addrs[:0]}

	ps.raw, ps.off = msg, 0
	h, err := ps.p.Start(msg)
	if err != nil {
		return nil, fmt.Errorf("dns: parse header: %w", err)
	}
	m.ID, m.Response, m.RCode = h.ID, h.Response, h.RCode
	q, err := ps.p.Question()
	if errors.Is(err, dnsmessage.ErrSectionDone) {
		return nil, fmt.Errorf("dns: parse message %#04x: %w", h.ID, ErrNoQuestion)
	}
	if err != nil {
		return nil, fmt.Errorf("dns: parse question of %#04x: %w", h.ID, err)
	}
	qname, ok := ps.addName(&q.Name)
	if !ok {
		return nil, fmt.Errorf("dns: parse question of %#04x: %w", h.ID, ErrBadName)
	}
	m.Question = ps.name(qname)
	m.QType = q.Type
	if !h.Response {
		return m, nil
	}
	if err := ps.answers(truncated); err != nil {
		return nil, fmt.Errorf("dns: parse answers of %#04x: %w", h.ID, err)
	}
	ps.follow(qname)
	return m, nil
}

// answers reads the answer section into ps.recs. With truncated set, an
// error ends the section quietly and marks the message truncated.
//
// dnsmessage reads an A record's 4 bytes (an AAAA's 16, a CNAME's name)
// wherever they are, whatever the record's rdlength says, and moves on by
// rdlength. So Parser walks the records itself too, in step with
// dnsmessage, and checks each record's rdata bounds against its type
// before it takes anything from it (see [Message.Malformed]).
func (ps *Parser) answers(truncated bool) error {
	p := &ps.p
	if err := p.SkipAllQuestions(); err != nil {
		return ps.cut(truncated, "skip questions", err)
	}
	if err := ps.skipQuestions(); err != nil {
		return ps.cut(truncated, "skip questions", err)
	}
	for len(ps.recs) < maxRecords {
		hdr, err := p.AnswerHeader()
		if errors.Is(err, dnsmessage.ErrSectionDone) {
			return nil
		}
		if err != nil {
			return ps.cut(truncated, "record header", err)
		}
		start, end, err := ps.rdata()
		if err != nil {
			return ps.cut(truncated, "record data", err)
		}
		ps.off = end
		rdata := ps.raw[start:end]
		if hdr.Class != dnsmessage.ClassINET {
			if err := p.SkipAnswer(); err != nil {
				return ps.cut(truncated, "skip record", err)
			}
			continue
		}
		r := record{typ: hdr.Type, ttl: hdr.TTL}
		switch hdr.Type {
		case dnsmessage.TypeA, dnsmessage.TypeAAAA:
			if err := p.SkipAnswer(); err != nil {
				return ps.cut(truncated, "skip record", err)
			}
			switch {
			case hdr.Type == dnsmessage.TypeA && len(rdata) == 4:
				r.ip = netip.AddrFrom4([4]byte(rdata))
			case hdr.Type == dnsmessage.TypeAAAA && len(rdata) == 16:
				r.ip = netip.AddrFrom16([16]byte(rdata)).Unmap()
			default:
				ps.msg.Malformed++
				continue
			}
		case dnsmessage.TypeCNAME:
			c, err := p.CNAMEResource()
			if err != nil {
				return ps.cut(truncated, "parse CNAME record", err)
			}
			if skipName(ps.raw, start) != end {
				ps.msg.Malformed++
				continue
			}
			var ok bool
			if r.target, ok = ps.addName(&c.CNAME); !ok {
				continue
			}
		default:
			if err := p.SkipAnswer(); err != nil {
				return ps.cut(truncated, "skip record", err)
			}
			continue
		}
		var ok bool
		if r.owner, ok = ps.addName(&hdr.Name); !ok {
			continue
		}
		ps.recs = append(ps.recs, r)
	}
	return nil
}

// Errors of the record walk, wrapped by [Parser.Parse].
var (
	errWalkName  = errors.New("name runs past the message or has a bad label")
	errRdataPast = errors.New("rdata runs past the end of the message")
)

// skipQuestions sets ps.off past the question section.
func (ps *Parser) skipQuestions() error {
	if len(ps.raw) < 12 {
		return errWalkName
	}
	off := 12
	for range binary.BigEndian.Uint16(ps.raw[4:6]) {
		if off = skipName(ps.raw, off); off < 0 || off+4 > len(ps.raw) {
			return errWalkName
		}
		off += 4 // type, class
	}
	ps.off = off
	return nil
}

// rdata returns the bounds of the rdata of the answer record at ps.off.
func (ps *Parser) rdata() (start, end int, err error) {
	off := skipName(ps.raw, ps.off)
	if off < 0 || off+10 > len(ps.raw) {
		return 0, 0, errWalkName
	}
	start = off + 10 // type, class, TTL, rdlength
	end = start + int(binary.BigEndian.Uint16(ps.raw[off+8:]))
	if end > len(ps.raw) {
		return 0, 0, errRdataPast
	}
	return start, end, nil
}

// skipName returns the offset just past the wire-format name at off in
// msg: past its zero label or its compression pointer. It returns -1 for a
// name that runs past msg or has a reserved label type.
func skipName(msg []byte, off int) int {
	for off >= 0 && off < len(msg) {
		switch l := int(msg[off]); {
		case l == 0:
			return off + 1
		case l&0xc0 == 0xc0:
			if off+2 > len(msg) {
				return -1
			}
			return off + 2
		case l&0xc0 == 0:
			off += 1 + l
		default:
			return -1
		}
	}
	return -1
}

// cut ends the answers quietly for a truncated message, and otherwise
// returns err wrapped with what was being read.
func (ps *Parser) cut(truncated bool, what string, err error) error {
	if truncated {
		ps.msg.Truncated = true
		return nil
	}
	return fmt.Errorf("%s: %w", what, err)
}

// follow walks the CNAME chain from the question name and collects the
// address records of its last name into ps.msg.
func (ps *Parser) follow(qname nameRef) {
	m := &ps.msg
	ps.chain = append(ps.chain, qname)
	ttl := uint32(math.MaxUint32)
	cur := qname
	for len(ps.chain) < MaxChain {
		next, cttl, ok := ps.cname(cur)
		if !ok || ps.inChain(next) {
			break
		}
		ps.chain = append(ps.chain, next)
		ttl = min(ttl, cttl)
		cur = next
	}
	for i := range ps.recs {
		r := &ps.recs[i]
		if (r.typ == dnsmessage.TypeA || r.typ == dnsmessage.TypeAAAA) && ps.equal(r.owner, cur) {
			m.Addrs = append(m.Addrs, Addr{IP: r.ip, TTL: min(ttl, r.ttl)})
		}
	}
	for _, n := range ps.chain {
		m.Chain = append(m.Chain, ps.name(n))
	}
}

// cname returns the target and TTL of the first CNAME record owned by owner.
func (ps *Parser) cname(owner nameRef) (nameRef, uint32, bool) {
	for i := range ps.recs {
		r := &ps.recs[i]
		if r.typ == dnsmessage.TypeCNAME && ps.equal(r.owner, owner) {
			return r.target, r.ttl, true
		}
	}
	return nameRef{}, 0, false
}

// inChain reports whether n is already in ps.chain (a CNAME loop).
func (ps *Parser) inChain(n nameRef) bool {
	for _, c := range ps.chain {
		if ps.equal(c, n) {
			return true
		}
	}
	return false
}

func (ps *Parser) equal(a, b nameRef) bool {
	return bytes.Equal(ps.name(a), ps.name(b))
}

func (ps *Parser) name(n nameRef) []byte {
	return ps.arena[n.off : n.off+n.n : n.off+n.n]
}

// addName appends n to the arena, lower-cased and without the trailing dot.
// It reports false for the root name and for names with bytes outside
// printable ASCII (0x21-0x7e): such names cannot be exported as attribute
// strings safely (OTLP requires UTF-8) and no real host name has them.
func (ps *Parser) addName(n *dnsmessage.Name) (nameRef, bool) {
	data := n.Data[:min(int(n.Length), len(n.Data))]
	if l := len(data); l > 0 && data[l-1] == '.' {
		data = data[:l-1]
	}
	if len(data) == 0 {
		return nameRef{}, false
	}
	off := len(ps.arena)
	ps.arena = append(ps.arena, data...)
	name := ps.arena[off:]
	for i, c := range name {
		switch {
		case c-'A' < 26:
			name[i] = c + ('a' - 'A')
		case c < 0x21 || c > 0x7e:
			ps.arena = ps.arena[:off]
			return nameRef{}, false
		}
	}
	return nameRef{off: off, n: len(name)}, true
}
