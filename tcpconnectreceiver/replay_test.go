package tcpconnectreceiver

import (
	"encoding/binary"
	"net/netip"
	"os"
	"sync"
	"testing"
	"time"

	"github.com/cilium/ebpf/ringbuf"
	"go.uber.org/zap"

	"github.com/tcpconnect/tcpconnect/bpf"
	"github.com/tcpconnect/tcpconnect/internal/event"
)

// replaySource is a source that replays raw ring-buffer records, as the
// kernel would lay them out, so the receiver's loops run without privileges.
type replaySource struct {
	mode     string
	recs     chan []byte
	closed   chan struct{}
	once     sync.Once
	deadline time.Time // reader goroutine only

	mu       sync.Mutex
	counters bpf.Counters
	// reports counts the reader's calls of Counters: one per report of its
	// counters, made after it added its own counts to the metrics.
	reports int
}

func newReplaySource() *replaySource {
	return &replaySource{mode: "cgroup", recs: make(chan []byte, 1024), closed: make(chan struct{})}
}

// opener returns an openSourceFunc that hands out s.
func (s *replaySource) opener() openSourceFunc {
	return func(*Config, *zap.Logger) (source, error) { return s, nil }
}

func (s *replaySource) feed(raw ...[]byte) {
	for _, r := range raw {
		s.recs <- r
	}
}

func (s *replaySource) setCounters(c bpf.Counters) { s.mu.Lock(); s.counters = c; s.mu.Unlock() }

func (s *replaySource) isClosed() bool {
	select {
	case <-s.closed:
		return true
	default:
		return false
	}
}

func (s *replaySource) Mode() string            { return s.mode }
func (s *replaySource) Attempts() []bpf.Attempt { return nil }
func (s *replaySource) SelfTGID() uint32        { return 0 }
func (s *replaySource) CgroupRoot() string      { return "" }
func (s *replaySource) SetDeadline(t time.Time) { s.deadline = t }

func (s *replaySource) ReadInto(rec *ringbuf.Record) error {
	select {
	case raw := <-s.recs:
		rec.RawSample = append(rec.RawSample[:0], raw...)
		return nil
	case <-s.closed:
		return ringbuf.ErrClosed
	default:
	}
	d := time.Until(s.deadline)
	if d <= 0 {
		return os.ErrDeadlineExceeded
	}
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case raw := <-s.recs:
		rec.RawSample = append(rec.RawSample[:0], raw...)
		return nil
	case <-t.C:
		return os.ErrDeadlineExceeded
	case <-s.closed:
		return ringbuf.ErrClosed
	}
}

func (s *replaySource) Counters() (bpf.Counters, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.reports++
	return s.counters, nil
}

// reported returns how many times the reader reported its counters.
func (s *replaySource) reported() int { s.mu.Lock(); defer s.mu.Unlock(); return s.reports }

// waitReport waits until the reader completed a report of its counters that
// started after this call: every count it gathered before then is in the
// metrics.
func (s *replaySource) waitReport(t *testing.T) {
	t.Helper()
	n := s.reported()
	waitFor(t, "two reports", func() bool { return s.reported() >= n+2 })
}

func (s *replaySource) Close() error { s.once.Do(func() { close(s.closed) }); return nil }

// connectRec describes a connect record to encode.
type connectRec struct {
	hook            event.Hook
	dst             netip.AddrPort
	bootNs, startNs uint64
	cgroupID        uint64
	tgid, tid, ppid uint32
	uid, gid, netns uint32
	comm, exe       string
	family          uint8 // 0: from dst
	tracked         bool  // TC_CONNECT_TRACKED: an outcome record follows
}

// raw encodes r at the offsets of struct tc_connect_event (bpf/tcpconnect.h).
func (r connectRec) raw() []byte {
	b := make([]byte, event.ConnectSize)
	le := binary.LittleEndian
	b[0] = event.TypeConnect
	b[1] = r.family
	if b[1] == 0 {
		b[1] = event.AFInet6
		if r.dst.Addr().Is4() {
			b[1] = event.AFInet
		}
	}
	b[2] = byte(r.hook)
	if r.tracked {
		b[3] = 1
	}
	le.PutUint16(b[4:], r.dst.Port())
	le.PutUint64(b[8:], r.bootNs)
	le.PutUint64(b[16:], r.cgroupID)
	le.PutUint64(b[24:], r.startNs)
	le.PutUint32(b[32:], r.tgid)
	le.PutUint32(b[36:], r.tid)
	le.PutUint32(b[40:], r.ppid)
	le.PutUint32(b[44:], r.uid)
	le.PutUint32(b[48:], r.gid)
	le.PutUint32(b[52:], r.netns)
	if r.dst.Addr().Is4() {
		a := r.dst.Addr().As4()
		copy(b[56:], a[:])
	} else {
		a := r.dst.Addr().As16()
		copy(b[56:], a[:])
	}
	copy(b[72:87], r.comm)
	copy(b[88:151], r.exe)
	return b
}

// dnsRaw encodes a minimal DNS record (struct tc_dns_event) with payload.
func dnsRaw(payload []byte) []byte {
	b := make([]byte, event.DNSHeaderSize+len(payload))
	b[0] = event.TypeDNS
	b[2] = 4
	b[3] = 17
	binary.LittleEndian.PutUint16(b[4:], 53)
	binary.LittleEndian.PutUint16(b[8:], uint16(len(payload)))
	copy(b[event.DNSHeaderSize:], payload)
	return b
}
