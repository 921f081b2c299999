package dns

import (
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
//
// It is written by hand for the few things the correlator needs (the
// header, the first question, and the A, AAAA and CNAME records of the
// answer section) and walks the wire format once: names are decompressed
// straight into a reused arena, lower-cased and checked as they are copied.
// FuzzParseReference checks it against miekg/dns.
type Parser struct {
	arena []byte
	seen  []seenName // names decoded so far, by wire offset
	recs  []record
	chain []nameRef
	msg   Message
}

// Parser limits and wire-format constants.
const (
	// maxPointers bounds the compression pointers followed in one name, as
	// miekg/dns does: (255+1)/2-2. A name of 255 bytes has at most 127
	// labels, so a real name never needs more; a loop stops here.
	maxPointers = 126
	// maxNamePresentation is the longest name with its trailing dot: 255
	// wire bytes.
	maxNamePresentation = 254
	headerLen           = 12
	classINET           = 1
)

// Errors of the wire walk, wrapped with what was being read.
var (
	errShort     = errors.New("message too short")
	errWalkName  = errors.New("name runs past the message or has a bad label")
	errPointers  = errors.New("too many compression pointers")
	errNameLong  = errors.New("name longer than 255 bytes")
	errRdataPast = errors.New("rdata runs past the end of the message")
)

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
	ps.seen = ps.seen[:0]
	ps.recs = ps.recs[:0]
	ps.chain = ps.chain[:0]
	m := &ps.msg
	*m = Message{Chain: m.Chain[:0], Addrs: m.Addrs[:0]}

	if len(msg) < headerLen {
		return nil, fmt.Errorf("dns: parse header: %w", errShort)
	}
	m.ID = binary.BigEndian.Uint16(msg)
	flags := binary.BigEndian.Uint16(msg[2:])
	m.Response, m.RCode = flags&0x8000 != 0, dnsmessage.RCode(flags&0x000f)
	qd, an := int(binary.BigEndian.Uint16(msg[4:])), int(binary.BigEndian.Uint16(msg[6:]))
	if qd == 0 {
		return nil, fmt.Errorf("dns: parse message %#04x: %w", m.ID, ErrNoQuestion)
	}
	qname, off, ok, err := ps.readName(msg, headerLen)
	if err == nil && off+4 > len(msg) {
		err = errShort
	}
	if err != nil {
		return nil, fmt.Errorf("dns: parse question of %#04x: %w", m.ID, err)
	}
	if !ok {
		return nil, fmt.Errorf("dns: parse question of %#04x: %w", m.ID, ErrBadName)
	}
	m.Question = ps.name(qname)
	m.QType = dnsmessage.Type(binary.BigEndian.Uint16(msg[off:]))
	if !m.Response {
		return m, nil
	}
	off += 4
	for range qd - 1 {
		if off = skipName(msg, off); off < 0 || off+4 > len(msg) {
			return ps.done(qname, truncated, "skip questions", errWalkName)
		}
		off += 4
	}
	for range an {
		if len(ps.recs) == maxRecords {
			break
		}
		var err error
		if off, err = ps.answer(msg, off); err != nil {
			return ps.done(qname, truncated, "parse answers", err)
		}
	}
	return ps.done(qname, truncated, "", nil)
}

// done ends a response: with err set and truncated, the answers end
// quietly at the last complete record and the message is marked truncated;
// with err set otherwise, Parse fails. The chain is then followed.
func (ps *Parser) done(qname nameRef, truncated bool, what string, err error) (*Message, error) {
	if err != nil {
		if !truncated {
			return nil, fmt.Errorf("dns: %s of %#04x: %w", what, ps.msg.ID, err)
		}
		ps.msg.Truncated = true
	}
	ps.follow(qname)
	return &ps.msg, nil
}

// answer reads the answer record at off and returns the offset of the next
// one. An IN A, AAAA or CNAME record with valid names and the rdata length
// its type needs goes into ps.recs; a wrong rdata length is counted in
// Message.Malformed. The error reports a record that runs past the message
// or a name that cannot be decompressed.
func (ps *Parser) answer(msg []byte, off int) (int, error) {
	mark, seen := len(ps.arena), len(ps.seen)
	owner, off, ownerOK, err := ps.readName(msg, off)
	if err != nil {
		return 0, err
	}
	if off+10 > len(msg) {
		return 0, errShort
	}
	typ := dnsmessage.Type(binary.BigEndian.Uint16(msg[off:]))
	class := binary.BigEndian.Uint16(msg[off+2:])
	r := record{owner: owner, typ: typ, ttl: binary.BigEndian.Uint32(msg[off+4:])}
	start := off + 10
	end := start + int(binary.BigEndian.Uint16(msg[off+8:]))
	if end > len(msg) {
		return 0, errRdataPast
	}
	keep := false
	if class == classINET {
		switch rdata := msg[start:end]; {
		case typ == dnsmessage.TypeA && len(rdata) == 4:
			r.ip, keep = netip.AddrFrom4([4]byte(rdata)), ownerOK
		case typ == dnsmessage.TypeAAAA && len(rdata) == 16:
			r.ip, keep = netip.AddrFrom16([16]byte(rdata)).Unmap(), ownerOK
		case typ == dnsmessage.TypeA || typ == dnsmessage.TypeAAAA:
			ps.msg.Malformed++
		case typ == dnsmessage.TypeCNAME:
			target, tend, ok, err := ps.readName(msg, start)
			switch {
			case err != nil:
				return 0, err
			case tend != end:
				ps.msg.Malformed++
			default:
				r.target, keep = target, ok && ownerOK
			}
		}
	}
	if !keep {
		// Forget the names this record decoded: their arena goes.
		ps.arena, ps.seen = ps.arena[:mark], ps.seen[:seen]
		return end, nil
	}
	ps.recs = append(ps.recs, r)
	return end, nil
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
