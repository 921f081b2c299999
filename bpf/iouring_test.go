package bpf

import (
	"encoding/binary"
	"fmt"
	"net"
	"os"
	"runtime"
	"sync/atomic"
	"testing"
	"time"
	"unsafe"

	"golang.org/x/sys/unix"

	"github.com/tcpconnect/tcpconnect/internal/event"
)

// io_uring ABI (include/uapi/linux/io_uring.h), just what one connect needs.
const (
	ioringOpConnect       = 16
	ioringEnterGetevents  = 1
	ioringOffSQRing       = 0
	ioringOffCQRing       = 0x8000000
	ioringOffSQEs         = 0x10000000
	ioURingParamsSize     = 120
	ioURingSQESize        = 64
	ioURingCQESize        = 16
	sqOffHead, sqOffTail  = 40, 44
	sqOffMask, sqOffArray = 48, 64
	cqOffHead, cqOffTail  = 80, 84
	cqOffMask, cqOffCQEs  = 88, 100
	paramsSQEntries       = 0
	paramsCQEntries       = 4
)

// ioURingConnect connects fd to sa (raw sockaddr bytes) with one
// IORING_OP_CONNECT on a fresh ring and returns the operation's result.
func ioURingConnect(fd int, sa []byte) error {
	var params [ioURingParamsSize]byte
	ringFD, _, errno := unix.Syscall(unix.SYS_IO_URING_SETUP, 4, uintptr(unsafe.Pointer(&params[0])), 0)
	if errno != 0 {
		return fmt.Errorf("io_uring_setup: %w", errno)
	}
	defer unix.Close(int(ringFD))
	le := binary.LittleEndian
	u32 := func(off int) uint32 { return le.Uint32(params[off:]) }
	sqEntries, cqEntries := u32(paramsSQEntries), u32(paramsCQEntries)

	sq, err := unix.Mmap(int(ringFD), ioringOffSQRing, int(u32(sqOffArray)+4*sqEntries), unix.PROT_READ|unix.PROT_WRITE, unix.MAP_SHARED|unix.MAP_POPULATE)
	if err != nil {
		return fmt.Errorf("mmap sq ring: %w", err)
	}
	defer unix.Munmap(sq)
	cq, err := unix.Mmap(int(ringFD), ioringOffCQRing, int(u32(cqOffCQEs)+ioURingCQESize*cqEntries), unix.PROT_READ|unix.PROT_WRITE, unix.MAP_SHARED|unix.MAP_POPULATE)
	if err != nil {
		return fmt.Errorf("mmap cq ring: %w", err)
	}
	defer unix.Munmap(cq)
	sqes, err := unix.Mmap(int(ringFD), ioringOffSQEs, ioURingSQESize*int(sqEntries), unix.PROT_READ|unix.PROT_WRITE, unix.MAP_SHARED|unix.MAP_POPULATE)
	if err != nil {
		return fmt.Errorf("mmap sqes: %w", err)
	}
	defer unix.Munmap(sqes)

	word := func(b []byte, off uint32) *uint32 { return (*uint32)(unsafe.Pointer(&b[off])) }
	// One SQE at index 0: connect(fd, sa, len(sa)).
	sqe := sqes[:ioURingSQESize]
	clear(sqe)
	sqe[0] = ioringOpConnect
	le.PutUint32(sqe[4:], uint32(fd))
	le.PutUint64(sqe[8:], uint64(len(sa)))
	le.PutUint64(sqe[16:], uint64(uintptr(unsafe.Pointer(&sa[0]))))
	le.PutUint64(sqe[32:], 42)
	tail := atomic.LoadUint32(word(sq, u32(sqOffTail)))
	mask := atomic.LoadUint32(word(sq, u32(sqOffMask)))
	*word(sq, u32(sqOffArray)+4*(tail&mask)) = 0
	atomic.StoreUint32(word(sq, u32(sqOffTail)), tail+1)

	// Submit, then wait for the completion; a signal (Go's preemption)
	// interrupts the wait, not the submitted connect.
	_, _, errno = unix.Syscall6(unix.SYS_IO_URING_ENTER, ringFD, 1, 1, ioringEnterGetevents, 0, 0)
	for errno == unix.EINTR {
		_, _, errno = unix.Syscall6(unix.SYS_IO_URING_ENTER, ringFD, 0, 1, ioringEnterGetevents, 0, 0)
	}
	runtime.KeepAlive(sa)
	if errno != 0 {
		return fmt.Errorf("io_uring_enter: %w", errno)
	}
	head := atomic.LoadUint32(word(cq, u32(cqOffHead)))
	if head == atomic.LoadUint32(word(cq, u32(cqOffTail))) {
		return fmt.Errorf("io_uring: no completion")
	}
	cqe := cq[u32(cqOffCQEs)+ioURingCQESize*(head&atomic.LoadUint32(word(cq, u32(cqOffMask)))):]
	res := int32(le.Uint32(cqe[8:]))
	atomic.StoreUint32(word(cq, u32(cqOffHead)), head+1)
	if le.Uint64(cqe[0:]) != 42 {
		return fmt.Errorf("io_uring: completion for another request")
	}
	if res < 0 {
		return unix.Errno(-res)
	}
	return nil
}

// TestProbeIOURingConnect connects through io_uring (IORING_OP_CONNECT), a
// path that never enters the connect system call: syscall tracers miss it,
// the LSM hook and the cgroup hooks do not.
func TestProbeIOURingConnect(t *testing.T) {
	p := openForTest(t, Options{})
	defer p.Close()
	ln, err := net.Listen("tcp4", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	ap := ln.Addr().(*net.TCPAddr).AddrPort()

	fd, err := unix.Socket(unix.AF_INET, unix.SOCK_STREAM|unix.SOCK_CLOEXEC, 0)
	if err != nil {
		t.Fatal(err)
	}
	defer unix.Close(fd)
	// struct sockaddr_in: family, port (network order), address, zero pad.
	sa := make([]byte, 16)
	binary.LittleEndian.PutUint16(sa[0:], unix.AF_INET)
	binary.BigEndian.PutUint16(sa[2:], ap.Port())
	a4 := ap.Addr().As4()
	copy(sa[4:], a4[:])
	if err := ioURingConnect(fd, sa); err != nil {
		t.Fatalf("io_uring connect: %v", err)
	}
	got := readConnects(t, p, 3*time.Second, func(c *event.Connect) bool {
		return c.DstPort == ap.Port() && int(c.TGID) == os.Getpid()
	}, 1)
	if len(got) != 1 || got[0].Dst != ap.Addr() {
		t.Fatalf("records for the io_uring connect: %+v, want exactly one to %s", got, ap)
	}
	t.Logf("io_uring connect reported from tid %d (%s)", got[0].TID, got[0].Comm())
}
