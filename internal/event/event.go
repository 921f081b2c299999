// Package event decodes the fixed-layout records that the kernel programs put
// into the ring buffer (bpf/tcpconnect.h). Decoding reads fields at fixed
// offsets: no reflection and no allocation.
package event

import (
	"encoding/binary"
	"errors"
	"fmt"
	"net/netip"
)

// Record types: the first byte of every record.
const (
	TypeConnect = 1
	TypeDNS     = 2
	TypeOutcome = 3
)

// Address families as the kernel numbers them.
const (
	AFInet  = 2
	AFInet6 = 10
)

// Hook names the kernel program that produced a connect record.
type Hook uint8

// The hooks, as enum tc_hook in bpf/tcpconnect.h.
const (
	HookLSM    Hook = 1
	HookFentry Hook = 2
	HookKprobe Hook = 3
	HookCgroup Hook = 4
)

// String returns the attach mode name of the hook.
func (h Hook) String() string {
	switch h {
	case HookLSM:
		return "lsm"
	case HookFentry:
		return "fentry"
	case HookKprobe:
		return "kprobe"
	case HookCgroup:
		return "cgroup"
	}
	return fmt.Sprintf("hook(%d)", uint8(h))
}

// Sizes of the records (sizeof in C).
const (
	ConnectSize        = 152
	DNSHeaderSize      = 80
	DNSMaxPayload      = 1536
	DNSSize            = DNSHeaderSize + DNSMaxPayload
	commLen            = 16
	exeLen             = 64
	connectCommOffset  = 72
	connectExeOffset   = 88
	connectTracked     = 1 // TC_CONNECT_TRACKED
	connectAggFirst    = 2 // TC_CONNECT_AGG_FIRST
	connectAggOverflow = 4 // TC_CONNECT_AGG_OVERFLOW
	connectAggWindow1  = 8 // TC_CONNECT_AGG_WINDOW1
)

// ErrShort is returned for a record shorter than its type requires.
var ErrShort = errors.New("record too short")

// Connect is one outbound TCP connect attempt.
type Connect struct {
	Hook        Hook
	DstPort     uint16
	Dst         netip.Addr // IPv4 for AF_INET and for v4-mapped IPv6
	BootTimeNs  uint64     // CLOCK_BOOTTIME of the attempt
	CgroupID    uint64
	StartTimeNs uint64 // thread-group leader's start time (boot-based ns)
	TGID        uint32
	TID         uint32
	PPID        uint32
	UID         uint32
	GID         uint32
	NetNS       uint32 // network namespace inode number
	// Tracked is set when the kernel follows the socket: an Outcome record
	// with this TID and BootTimeNs follows in the ring, unless it is lost.
	Tracked bool
	// AggFirst is set with aggregation on for the first connect of its key
	// in window AggWindow (0 or 1): the key's repeats are counted in the
	// kernel and reported at the window's end. AggOverflow is set when the
	// window map was full: this connect is reported on its own.
	AggFirst, AggOverflow bool
	AggWindow             uint8
	// Comm and Exe are views into fixed-size arrays, NUL-trimmed by the accessors.
	comm [commLen]byte
	exe  [exeLen]byte
}

// Comm returns the task's command name (at most 15 bytes) without its NUL
// padding. The slice aliases c.
func (c *Connect) Comm() []byte { return cstr(c.comm[:]) }

// Exe returns the basename of the executable file, without its NUL padding.
// The slice aliases c.
func (c *Connect) Exe() []byte { return cstr(c.exe[:]) }

// Type returns the record type of raw, or 0 when raw is empty.
func Type(raw []byte) uint8 {
	if len(raw) == 0 {
		return 0
	}
	return raw[0]
}

// DecodeConnect fills c from a raw connect record.
func DecodeConnect(raw []byte, c *Connect) error {
	if len(raw) < ConnectSize {
		return fmt.Errorf("connect record: %w: %d bytes, want %d", ErrShort, len(raw), ConnectSize)
	}
	if raw[0] != TypeConnect {
		return fmt.Errorf("connect record: type %d", raw[0])
	}
	le := binary.LittleEndian
	c.Hook = Hook(raw[2])
	c.Tracked = raw[3]&connectTracked != 0
	c.AggFirst = raw[3]&connectAggFirst != 0
	c.AggOverflow = raw[3]&connectAggOverflow != 0
	c.AggWindow = 0
	if raw[3]&connectAggWindow1 != 0 {
		c.AggWindow = 1
	}
	c.DstPort = le.Uint16(raw[4:])
	c.BootTimeNs = le.Uint64(raw[8:])
	c.CgroupID = le.Uint64(raw[16:])
	c.StartTimeNs = le.Uint64(raw[24:])
	c.TGID = le.Uint32(raw[32:])
	c.TID = le.Uint32(raw[36:])
	c.PPID = le.Uint32(raw[40:])
	c.UID = le.Uint32(raw[44:])
	c.GID = le.Uint32(raw[48:])
	c.NetNS = le.Uint32(raw[52:])
	switch raw[1] {
	case AFInet:
		c.Dst = netip.AddrFrom4([4]byte(raw[56:60]))
	case AFInet6:
		c.Dst = netip.AddrFrom16([16]byte(raw[56:72])).Unmap()
	default:
		return fmt.Errorf("connect record: address family %d", raw[1])
	}
	copy(c.comm[:], raw[connectCommOffset:connectCommOffset+commLen])
	copy(c.exe[:], raw[connectExeOffset:connectExeOffset+exeLen])
	return nil
}

// DNS is one DNS packet captured by the kernel: the fields of struct
// tc_dns_event with the addresses decoded and the payload cut to
// payload_len. The DNS correlator takes it as it is (dns.Packet is this
// type). Payload aliases the raw record: copy it if it must outlive the
// ring-buffer read.
type DNS struct {
	// Egress is true for a packet leaving a local socket (a query), false
	// for one arriving (an answer).
	Egress bool
	// IPVersion is 4 or 6; informational, Src and Dst carry the addresses.
	IPVersion uint8
	// L4Proto is the transport protocol: 17 UDP, 6 TCP.
	L4Proto uint8
	// SrcPort and DstPort are the ports, host byte order.
	SrcPort, DstPort uint16
	// OrigLen is the L4 payload length in the packet; more than
	// len(Payload) when the capture was cut.
	OrigLen uint16
	// TGID is the sending process of a UDP query, 0 otherwise (a TCP
	// segment may leave in softirq, on no process of its socket).
	TGID uint32
	// NetNS is the network namespace inode of the packet's socket, 0 when
	// unknown.
	NetNS uint32
	// TCPSeq is a TCP segment's sequence number (0 for UDP): DNS over TCP
	// is reassembled by it, per socket.
	TCPSeq uint32
	// BootTimeNs is the kernel timestamp (CLOCK_BOOTTIME).
	BootTimeNs uint64
	// CgroupID is the cgroup v2 id of the socket.
	CgroupID uint64
	// SockCookie is the socket cookie, 0 when unknown.
	SockCookie uint64
	// Src and Dst are the source and destination addresses; IPv4-mapped
	// IPv6 is taken as IPv4.
	Src, Dst netip.Addr
	// Payload is the captured L4 payload (payload_len bytes). For TCP it
	// starts with the 2-byte length prefix of a DNS message.
	Payload []byte
}

// DecodeDNS fills d from a raw DNS record.
func DecodeDNS(raw []byte, d *DNS) error {
	if len(raw) < DNSHeaderSize {
		return fmt.Errorf("dns record: %w: %d bytes, want at least %d", ErrShort, len(raw), DNSHeaderSize)
	}
	if raw[0] != TypeDNS {
		return fmt.Errorf("dns record: type %d", raw[0])
	}
	le := binary.LittleEndian
	d.Egress = raw[1] == 1
	d.IPVersion = raw[2]
	d.L4Proto = raw[3]
	d.SrcPort = le.Uint16(raw[4:])
	d.DstPort = le.Uint16(raw[6:])
	n := int(le.Uint16(raw[8:]))
	d.OrigLen = le.Uint16(raw[10:])
	d.TGID = le.Uint32(raw[12:])
	d.BootTimeNs = le.Uint64(raw[16:])
	d.CgroupID = le.Uint64(raw[24:])
	d.SockCookie = le.Uint64(raw[32:])
	d.NetNS = le.Uint32(raw[40:])
	d.TCPSeq = le.Uint32(raw[44:])
	switch d.IPVersion {
	case 4:
		d.Src = netip.AddrFrom4([4]byte(raw[48:52]))
		d.Dst = netip.AddrFrom4([4]byte(raw[64:68]))
	case 6:
		d.Src = netip.AddrFrom16([16]byte(raw[48:64])).Unmap()
		d.Dst = netip.AddrFrom16([16]byte(raw[64:80])).Unmap()
	default:
		return fmt.Errorf("dns record: ip version %d", d.IPVersion)
	}
	if n > DNSMaxPayload || DNSHeaderSize+n > len(raw) {
		return fmt.Errorf("dns record: payload length %d exceeds record (%d bytes)", n, len(raw))
	}
	d.Payload = raw[DNSHeaderSize : DNSHeaderSize+n]
	return nil
}

func cstr(b []byte) []byte {
	for i, c := range b {
		if c == 0 {
			return b[:i]
		}
	}
	return b
}
