package bpf

import (
	"fmt"
	"net"
	"net/netip"
	"strconv"
	"testing"
	"time"

	"golang.org/x/sys/unix"

	"github.com/tcpconnect/tcpconnect/internal/event"
)

// stressPlan maps each connect to a destination and back: connect n of
// worker w goes to 127.(w+1).(n>>8).(n&255) at a port that says n>>16 and
// the kind, so that a record's destination and tid name its connect.
type stressPlan struct {
	perWorker int
	open      []uint16 // listener port by page (n>>16)
	closed    []uint16 // port with no listener by page
	hang      uint16   // the listener whose accept queue is full
	page      map[uint16]int
	tids      []uint32 // by worker; the hang worker is the last
}

func (s *stressPlan) dst(w, n int, k stressKind) netip.AddrPort {
	a := netip.AddrFrom4([4]byte{127, byte(w + 1), byte(n >> 8), byte(n)})
	switch k {
	case stressBlockingRefused, stressNonblockingRefused:
		return netip.AddrPortFrom(a, s.closed[n>>16])
	case stressHang:
		return netip.AddrPortFrom(a, s.hang)
	}
	return netip.AddrPortFrom(a, s.open[n>>16])
}

// index returns the slot of the connect that c records, or -1.
func (s *stressPlan) index(c *event.Connect) int {
	w := -1
	for i, tid := range s.tids {
		if tid == c.TID {
			w = i
		}
	}
	a := c.Dst.As4()
	if w < 0 || !c.Dst.Is4() || a[0] != 127 || int(a[1]) != w+1 {
		return -1
	}
	n := int(a[2])<<8 | int(a[3])
	if c.DstPort != s.hang {
		page, ok := s.page[c.DstPort]
		if !ok {
			return -1
		}
		n |= page << 16
	}
	if n >= s.perWorker {
		return -1
	}
	return w*s.perWorker + n
}

// stressConnect makes connect n of kind k to dst and returns how many times
// a signal interrupted it (EINTR). A blocking socket gets a send timeout:
// with one, a signal ends the wait with EINTR instead of restarting the
// call in the kernel, so the retry is this process's own second connect.
func stressConnect(dst netip.AddrPort, k stressKind) (int, error) {
	nonblocking := k == stressNonblocking || k == stressNonblockingRefused
	typ := unix.SOCK_STREAM | unix.SOCK_CLOEXEC
	if nonblocking {
		typ |= unix.SOCK_NONBLOCK
	}
	fd, err := unix.Socket(unix.AF_INET, typ, 0)
	if err != nil {
		return 0, fmt.Errorf("socket: %w", err)
	}
	// Linger 0: the close resets, so a million connects leave no TIME_WAIT.
	_ = unix.SetsockoptLinger(fd, unix.SOL_SOCKET, unix.SO_LINGER, &unix.Linger{Onoff: 1})
	defer unix.Close(fd)
	if !nonblocking {
		tv := unix.NsecToTimeval((30 * time.Second).Nanoseconds())
		if err := unix.SetsockoptTimeval(fd, unix.SOL_SOCKET, unix.SO_SNDTIMEO, &tv); err != nil {
			return 0, fmt.Errorf("SO_SNDTIMEO: %w", err)
		}
	}
	sa := &unix.SockaddrInet4{Port: int(dst.Port()), Addr: dst.Addr().As4()}
	eintr := 0
	err = unix.Connect(fd, sa)
	for err == unix.EINTR {
		eintr++
		if k == stressHang && eintr >= stressHangRetries {
			return eintr, nil // closed while connecting
		}
		err = unix.Connect(fd, sa)
	}
	if nonblocking && err == unix.EINPROGRESS {
		for {
			pfd := []unix.PollFd{{Fd: int32(fd), Events: unix.POLLOUT}}
			n, perr := unix.Poll(pfd, 10000)
			if perr == unix.EINTR {
				continue
			}
			if perr != nil || n == 0 {
				return eintr, fmt.Errorf("poll: %d, %v", n, perr)
			}
			break
		}
		// The result, as many clients read it: connect again.
		err = unix.Connect(fd, sa)
	}
	switch k {
	case stressBlocking, stressNonblocking:
		if err != nil {
			return eintr, fmt.Errorf("connect to %s: %w", dst, err)
		}
	case stressBlockingRefused, stressNonblockingRefused:
		if err != unix.ECONNREFUSED {
			return eintr, fmt.Errorf("connect to %s: %v, want ECONNREFUSED", dst, err)
		}
	case stressHang:
		return eintr, fmt.Errorf("connect to %s with a full accept queue: %v, want EINTR %d times", dst, err, stressHangRetries)
	}
	return eintr, nil
}

// stressConnectMarker connects to ap, once.
func stressConnectMarker(ap netip.AddrPort) error {
	c, err := net.DialTimeout("tcp4", ap.String(), 10*time.Second)
	if err != nil {
		return fmt.Errorf("marker connect: %w", err)
	}
	return c.Close()
}

// stressPorts returns n ports of listeners on 0.0.0.0 that accept and close
// until the test ends, and n ports bound but not listening (refused).
func stressPorts(t *testing.T, n int) (open, closed []uint16) {
	t.Helper()
	for range n {
		open = append(open, closingListener(t, "0.0.0.0:0").Port())
		fd, err := unix.Socket(unix.AF_INET, unix.SOCK_STREAM|unix.SOCK_CLOEXEC, 0)
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { unix.Close(fd) })
		if err := unix.Bind(fd, &unix.SockaddrInet4{}); err != nil {
			t.Fatal(err)
		}
		sa, err := unix.Getsockname(fd)
		if err != nil {
			t.Fatal(err)
		}
		closed = append(closed, uint16(sa.(*unix.SockaddrInet4).Port))
	}
	return open, closed
}

// fullListener returns the port of a listener on 0.0.0.0 with a backlog of
// 0 whose one queued connection is never accepted: its accept queue is
// full, so it drops every further SYN and a connect to it waits.
func fullListener(t *testing.T) uint16 {
	t.Helper()
	fd, err := unix.Socket(unix.AF_INET, unix.SOCK_STREAM|unix.SOCK_CLOEXEC, 0)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { unix.Close(fd) })
	if err := unix.Bind(fd, &unix.SockaddrInet4{}); err != nil {
		t.Fatal(err)
	}
	if err := unix.Listen(fd, 0); err != nil {
		t.Fatal(err)
	}
	sa, err := unix.Getsockname(fd)
	if err != nil {
		t.Fatal(err)
	}
	port := sa.(*unix.SockaddrInet4).Port
	c, err := net.DialTimeout("tcp4", "127.0.0.1:"+strconv.Itoa(port), 5*time.Second)
	if err != nil {
		t.Fatalf("fill the accept queue: %v", err)
	}
	t.Cleanup(func() { c.Close() })
	return uint16(port)
}
