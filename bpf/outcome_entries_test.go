package bpf

import (
	"net"
	"net/netip"
	"testing"
	"time"
	"unsafe"

	"golang.org/x/sys/unix"

	"github.com/tcpconnect/tcpconnect/internal/event"
)

// outcomeEntries counts the sockets outcome_socks follows.
func outcomeEntries(t *testing.T, p *Probe) int {
	t.Helper()
	var k uint64
	var v []byte
	n := 0
	it := p.outcomeSocks.Iterate()
	for it.Next(&k, &v) {
		n++
	}
	if err := it.Err(); err != nil {
		t.Fatalf("iterate outcome_socks: %v", err)
	}
	return n
}

// ringLog is what the ring said of the connects to one port: their connect
// records, and the outcome and closed first-bytes record of each.
type ringLog struct {
	port     uint16
	conns    []event.Connect
	outcomes map[waitKey]event.Kind
	closed   map[waitKey]uint32 // the closed record's offset
}

func newRingLog(port uint16) *ringLog {
	return &ringLog{port: port, outcomes: map[waitKey]event.Kind{}, closed: map[waitKey]uint32{}}
}

// add decodes one ring record into l.
func (l *ringLog) add(t *testing.T, raw []byte) {
	switch event.Type(raw) {
	case event.TypeConnect:
		var c event.Connect
		if err := event.DecodeConnect(raw, &c); err != nil {
			t.Fatal(err)
		}
		if c.DstPort == l.port {
			l.conns = append(l.conns, c)
		}
	case event.TypeOutcome:
		var o event.Outcome
		if err := event.DecodeOutcome(raw, &o); err != nil {
			t.Fatal(err)
		}
		l.outcomes[waitKey{o.TID, o.ConnectBootNs}] = o.Kind
	case event.TypeFirstBytes:
		var f event.FirstBytes
		if err := event.DecodeFirstBytes(raw, &f); err != nil {
			t.Fatal(err)
		}
		if f.Closed {
			l.closed[waitKey{f.TID, f.ConnectBootNs}] = f.Offset
		}
	}
}

// key is the outcome key of the i-th connect record.
func (l *ringLog) key(i int) waitKey { return waitKey{l.conns[i].TID, l.conns[i].BootTimeNs} }

// readUntil reads the ring into l until done says so, for at most 5 s.
func (l *ringLog) readUntil(t *testing.T, p *Probe, done func() bool) {
	t.Helper()
	for end := time.Now().Add(5 * time.Second); time.Now().Before(end) && !done(); {
		drainRound(t, p, 50*time.Millisecond, func(raw []byte) { l.add(t, raw) })
	}
}

// waitOutcome reads the ring until the connect to dst's port has its
// outcome record, and returns its kind.
func waitOutcome(t *testing.T, p *Probe, dst netip.AddrPort) event.Kind {
	t.Helper()
	l := newRingLog(dst.Port())
	l.readUntil(t, p, func() bool {
		if len(l.conns) == 0 {
			return false
		}
		_, ok := l.outcomes[l.key(0)]
		return ok
	})
	if len(l.conns) != 1 {
		t.Fatalf("%d connect records to %s, want 1", len(l.conns), dst)
	}
	k, ok := l.outcomes[l.key(0)]
	if !ok {
		t.Fatalf("no outcome record for the connect to %s", dst)
	}
	return k
}

// TestOutcomeEntriesLeave: an established socket's outcome_socks entry
// leaves with its outcome when first bytes are off, and stays for the
// capture when they are on (until the socket sends or closes). Once every
// socket has closed, whichever way (data then FIN, FIN without data, RST
// without data, refused), no entry is left behind.
func TestOutcomeEntriesLeave(t *testing.T) {
	for _, fb := range []bool{false, true} {
		t.Run(map[bool]string{false: "first_bytes_off", true: "first_bytes_on"}[fb], func(t *testing.T) {
			dst := netip.MustParseAddrPort(discardListener(t))
			refusedLn, err := net.Listen("tcp4", "127.0.0.1:0")
			if err != nil {
				t.Fatal(err)
			}
			refused := refusedLn.Addr().(*net.TCPAddr).AddrPort()
			refusedLn.Close()
			p := openForTest(t, Options{Outcome: true, FirstBytes: fb,
				Filter: Filter{IncludePorts: []uint16{dst.Port(), refused.Port()}}})
			defer p.Close()

			// Established and silent: its entry stays only for a capture.
			silent, err := net.Dial("tcp4", dst.String())
			if err != nil {
				t.Fatal(err)
			}
			if k := waitOutcome(t, p, dst); k != event.KindEstablished {
				t.Fatalf("outcome %s, want established", k)
			}
			want := map[bool]int{false: 0, true: 1}[fb]
			if n := outcomeEntries(t, p); n != want {
				t.Fatalf("%d entries after the established outcome of a socket that sent nothing, want %d", n, want)
			}
			silent.Close()

			for _, how := range []string{"data", "fin", "rst"} {
				c, err := net.Dial("tcp4", dst.String())
				if err != nil {
					t.Fatal(err)
				}
				switch how {
				case "data":
					if _, err := c.Write([]byte("GET / HTTP/1.0\r\nHost: entries.example\r\n\r\n")); err != nil {
						t.Fatal(err)
					}
				case "rst":
					if err := c.(*net.TCPConn).SetLinger(0); err != nil {
						t.Fatal(err)
					}
				}
				c.Close()
			}
			if _, err := net.Dial("tcp4", refused.String()); err == nil {
				t.Fatalf("a connect to %s that nobody listens on succeeded", refused)
			}
			n := 0
			for end := time.Now().Add(5 * time.Second); time.Now().Before(end); {
				drainRound(t, p, 50*time.Millisecond, func([]byte) {})
				if n = outcomeEntries(t, p); n == 0 {
					return
				}
			}
			t.Fatalf("%d outcome_socks entries left 5 s after every followed socket closed", n)
		})
	}
}

// TestFirstBytesReconnect: a socket that connects, sends nothing, is
// disconnected (connect with AF_UNSPEC) and connects again. Its first
// connect's capture ends with a closed record at offset 0 (the disconnect's
// RST; were it not seen, the second connect's taking the outcome_socks entry
// would end it the same way), and the second connect is followed to its own
// outcome, its capture still open.
func TestFirstBytesReconnect(t *testing.T) {
	dst := netip.MustParseAddrPort(discardListener(t))
	p := openForTest(t, Options{Outcome: true, FirstBytes: true, Filter: Filter{IncludePorts: []uint16{dst.Port()}}})
	defer p.Close()
	fd, err := unix.Socket(unix.AF_INET, unix.SOCK_STREAM|unix.SOCK_CLOEXEC, 0)
	if err != nil {
		t.Fatal(err)
	}
	defer unix.Close(fd)
	sa := &unix.SockaddrInet4{Port: int(dst.Port()), Addr: dst.Addr().As4()}
	if err := unix.Connect(fd, sa); err != nil {
		t.Fatalf("first connect: %v", err)
	}
	var unspec [16]byte // struct sockaddr with sa_family AF_UNSPEC: disconnect
	if _, _, errno := unix.Syscall(unix.SYS_CONNECT, uintptr(fd), uintptr(unsafe.Pointer(&unspec[0])), uintptr(len(unspec))); errno != 0 {
		t.Fatalf("connect AF_UNSPEC: %v", errno)
	}
	if err := unix.Connect(fd, sa); err != nil {
		t.Fatalf("second connect: %v", err)
	}
	l := newRingLog(dst.Port())
	l.readUntil(t, p, func() bool { return len(l.conns) == 2 && len(l.outcomes) == 2 && len(l.closed) == 1 })
	if len(l.conns) != 2 {
		t.Fatalf("%d connect records, want 2", len(l.conns))
	}
	first, second := l.key(0), l.key(1)
	if l.outcomes[first] != event.KindEstablished || l.outcomes[second] != event.KindEstablished {
		t.Fatalf("outcomes %s and %s, want established twice", l.outcomes[first], l.outcomes[second])
	}
	if off, ok := l.closed[first]; !ok || off != 0 {
		t.Fatalf("first connect's closed record: %v at offset %d, want one at 0", ok, off)
	}
	if _, ok := l.closed[second]; ok {
		t.Fatal("the second connect, still open, has a closed record")
	}
}
