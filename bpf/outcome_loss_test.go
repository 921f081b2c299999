package bpf

import (
	"net/netip"
	"os"
	"runtime"
	"testing"
	"time"

	"github.com/cilium/ebpf"
	"golang.org/x/sys/unix"

	"github.com/tcpconnect/tcpconnect/internal/event"
)

// TestOutcomeLossAccounted is TestLossAccounted with outcome tracking: a
// one-page ring that nobody reads. Non-blocking connects to a destination
// that drops SYNs fill it with connect records (some are lost), then closing
// the sockets makes their outcomes, which find the ring full. Every connect
// record in the ring is followed, and the outcome of each one is either in
// the ring or counted lost: exactly. (The filters keep other processes'
// connects out: only this test's sockets are followed.)
func TestOutcomeLossAccounted(t *testing.T) {
	const sockets = 100 // 100 connect records of 160 bytes: more than a page
	page := os.Getpagesize()
	dst := netip.AddrPortFrom(dropNet.Addr().Next(), uint16(30000+os.Getpid()%20000))
	p := openForTest(t, Options{
		RingBytes:   page,
		WakeupBytes: page,
		Outcome:     true,
		Filter: Filter{
			IncludePorts: []uint16{dst.Port()},
			IncludeCIDRs: []netip.Prefix{dropNet},
		},
	})
	defer p.Close()
	runtime.LockOSThread()
	defer runtime.UnlockOSThread()
	n := newOutcomeNet(t)

	var fds []int
	n.enter(t, func() {
		for range sockets {
			fd, err := unix.Socket(unix.AF_INET, unix.SOCK_STREAM|unix.SOCK_NONBLOCK|unix.SOCK_CLOEXEC, 0)
			if err != nil {
				t.Fatal(err)
			}
			fds = append(fds, fd)
			if err := unix.Connect(fd, &unix.SockaddrInet4{Port: int(dst.Port()), Addr: dst.Addr().As4()}); err != unix.EINPROGRESS {
				t.Fatalf("connect: %v, want EINPROGRESS", err)
			}
		}
	})
	for _, fd := range fds {
		unix.Close(fd) // SYN_SENT -> CLOSE: outcome closed
	}
	type key struct {
		tid uint32
		ts  uint64
	}
	connects := map[key]bool{}
	outcomes, untracked, unmatched := 0, 0, 0
	var c event.Connect
	var o event.Outcome
	end := time.Now().Add(10 * time.Second)
	for time.Now().Before(end) {
		n := drainRound(t, p, 100*time.Millisecond, func(raw []byte) {
			switch event.Type(raw) {
			case event.TypeConnect:
				if err := event.DecodeConnect(raw, &c); err != nil {
					t.Fatal(err)
				}
				if int(c.TGID) != os.Getpid() || c.DstPort != dst.Port() {
					return
				}
				if !c.Tracked {
					untracked++
				}
				connects[key{c.TID, c.BootTimeNs}] = true
			case event.TypeOutcome:
				if err := event.DecodeOutcome(raw, &o); err != nil {
					t.Fatal(err)
				}
				if !connects[key{o.TID, o.ConnectBootNs}] {
					unmatched++
				}
				if o.Kind != event.KindClosed {
					t.Errorf("outcome %s, want closed", o.Kind)
				}
				outcomes++
			}
		})
		if n == 0 {
			break
		}
	}
	counts, err := p.Counters()
	if err != nil {
		t.Fatal(err)
	}
	t.Logf("made %d: connects delivered %d, lost %d; outcomes delivered %d, lost %d", sockets, len(connects), counts.Lost.Connect, outcomes, counts.Lost.Outcome)
	if got := uint64(len(connects)) + counts.Lost.Connect; got != sockets {
		t.Errorf("connects delivered %d + lost %d = %d, want %d", len(connects), counts.Lost.Connect, got, sockets)
	}
	if counts.Lost.Outcome == 0 || outcomes == 0 {
		t.Errorf("outcomes delivered %d, lost %d: a one-page ring holds some and loses some", outcomes, counts.Lost.Outcome)
	}
	if got := uint64(outcomes) + counts.Lost.Outcome; got != uint64(len(connects)) {
		t.Errorf("outcomes delivered %d + lost %d = %d, want one per delivered connect (%d)", outcomes, counts.Lost.Outcome, got, len(connects))
	}
	if untracked != 0 || unmatched != 0 {
		t.Errorf("%d delivered connects not followed, %d outcomes without their connect", untracked, unmatched)
	}
}

// TestOutcomeMapSize checks the sizing of outcome_socks.
func TestOutcomeMapSize(t *testing.T) {
	cpus, err := ebpf.PossibleCPU()
	if err != nil {
		t.Fatal(err)
	}
	for _, n := range []int{1, 8192, 8193, 1 << 20} {
		got := outcomeMapSize(n)
		if got < n || got < cpus*minOutcomeSocketsPerCPU || got%cpus != 0 || got >= max(n, cpus*minOutcomeSocketsPerCPU)+cpus {
			t.Errorf("outcomeMapSize(%d) = %d with %d CPUs: want the least multiple of the CPUs >= max(n, %d per CPU)", n, got, cpus, minOutcomeSocketsPerCPU)
		}
	}
}

// TestProbeOutcomeOff: with outcome tracking off, connects are not followed
// and the ring carries no outcome records: the kernel side is off too.
func TestProbeOutcomeOff(t *testing.T) {
	ap := stormListener(t)
	p := openForTest(t, Options{Filter: Filter{IncludePorts: []uint16{ap.Port()}}})
	defer p.Close()
	ids, err := p.ProgramIDs()
	if err != nil {
		t.Fatal(err)
	}
	if len(p.outcomeProgs) != 0 {
		t.Errorf("%d outcome programs loaded with outcome off", len(p.outcomeProgs))
	}
	makeConnects(t, ap, 10)
	connects, outcomes, tracked := 0, 0, 0
	var c event.Connect
	drainRound(t, p, 200*time.Millisecond, func(raw []byte) {
		switch event.Type(raw) {
		case event.TypeConnect:
			if err := event.DecodeConnect(raw, &c); err != nil {
				t.Fatal(err)
			}
			if c.DstPort == ap.Port() {
				connects++
				if c.Tracked {
					tracked++
				}
			}
		case event.TypeOutcome:
			outcomes++
		}
	})
	if connects != 10 || tracked != 0 || outcomes != 0 {
		t.Errorf("%d connects (%d followed), %d outcome records; want 10, none followed, no outcomes (programs %v)", connects, tracked, outcomes, ids)
	}
}
