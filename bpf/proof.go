package bpf

import (
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"runtime"
	"time"
	"unsafe"

	"github.com/cilium/ebpf"
	"golang.org/x/sys/unix"
)

// proofWait bounds how long the loader waits for its proof connect to be
// seen. Every hook runs inside connect() itself, so the mark is there when
// connect returns; the bound only absorbs a slow machine (under qemu TCG the
// first proof took 84 ms).
const proofWait = time.Second

// proofVars are the connect object's writable globals (see connect.bpf.c):
// the proof's port, nonce and result, and the tgid left out as our own.
type proofVars struct {
	port, comm, tgid, hook, self *ebpf.Variable
}

func (v *proofVars) assign(vars map[string]*ebpf.Variable) error {
	for _, x := range []struct {
		name string
		dst  **ebpf.Variable
	}{{"proof_port", &v.port}, {"proof_comm", &v.comm}, {"proof_tgid", &v.tgid}, {"proof_hook", &v.hook}, {"self_tgid", &v.self}} {
		if *x.dst = vars[x.name]; *x.dst == nil {
			return fmt.Errorf("connect object has no variable %s", x.name)
		}
	}
	return nil
}

// proofResult is what the hook stored for the proof connect.
type proofResult struct {
	tgid uint32 // the loader's tgid as the kernel sees it (host PID namespace)
	hook uint32 // enum tc_hook
}

// proveConnect makes one connect that the attached hook must see: to
// 127.0.0.1 on a port that a socket of ours holds bound but not listening
// (so the connect is refused and no one else can listen there), from a
// thread named with a random nonce. The hook marks it in the connect
// object's globals instead of reporting it. It returns what the hook stored
// and how long after the connect started it was seen, or ErrNotProven.
func proveConnect(v *proofVars) (proofResult, time.Duration, error) {
	hold, port, err := boundLoopbackPort()
	if err != nil {
		return proofResult{}, 0, fmt.Errorf("proof connect: %w", err)
	}
	defer unix.Close(hold)

	var nonce [commLen]byte
	var rnd [5]byte
	if _, err := rand.Read(rnd[:]); err != nil {
		return proofResult{}, 0, fmt.Errorf("proof connect: nonce: %w", err)
	}
	copy(nonce[:], "tcpc-"+hex.EncodeToString(rnd[:]))

	for _, set := range []struct {
		v   *ebpf.Variable
		val any
	}{{v.tgid, uint32(0)}, {v.hook, uint32(0)}, {v.comm, nonce}, {v.port, uint32(port)}} {
		if err := set.v.Set(set.val); err != nil {
			return proofResult{}, 0, fmt.Errorf("proof connect: %w", err)
		}
	}
	defer v.port.Set(uint32(0)) //nolint:errcheck // the port is ours until hold closes

	start := time.Now()
	if err := connectAs(nonce, port); err != nil {
		return proofResult{}, 0, fmt.Errorf("proof connect: %w", err)
	}
	for {
		var r proofResult
		if err := v.tgid.Get(&r.tgid); err != nil {
			return proofResult{}, 0, fmt.Errorf("proof connect: %w", err)
		}
		if r.tgid != 0 {
			if err := v.hook.Get(&r.hook); err != nil {
				return proofResult{}, 0, fmt.Errorf("proof connect: %w", err)
			}
			return r, time.Since(start), nil
		}
		if time.Since(start) > proofWait {
			return proofResult{}, 0, fmt.Errorf("%w (connect to 127.0.0.1:%d, waited %s)", ErrNotProven, port, proofWait)
		}
		time.Sleep(time.Millisecond)
	}
}

// boundLoopbackPort returns a TCP socket bound to 127.0.0.1 on a free port,
// not listening, and the port.
func boundLoopbackPort() (int, int, error) {
	fd, err := unix.Socket(unix.AF_INET, unix.SOCK_STREAM|unix.SOCK_CLOEXEC, 0)
	if err != nil {
		return -1, 0, fmt.Errorf("socket: %w", err)
	}
	if err := unix.Bind(fd, &unix.SockaddrInet4{Addr: [4]byte{127, 0, 0, 1}}); err != nil {
		unix.Close(fd)
		return -1, 0, fmt.Errorf("bind 127.0.0.1:0: %w", err)
	}
	sa, err := unix.Getsockname(fd)
	if err != nil {
		unix.Close(fd)
		return -1, 0, fmt.Errorf("getsockname: %w", err)
	}
	in4, ok := sa.(*unix.SockaddrInet4)
	if !ok {
		unix.Close(fd)
		return -1, 0, errors.New("getsockname: not an IPv4 address")
	}
	return fd, in4.Port, nil
}

// connectAs connects a fresh non-blocking TCP socket to 127.0.0.1:port from
// this goroutine's thread, renamed to comm for the call. The connect's
// result (refused, or in progress) does not matter: the hooks run before it.
func connectAs(comm [commLen]byte, port int) error {
	runtime.LockOSThread()
	defer runtime.UnlockOSThread()
	// Heap buffers: prctl gets their addresses as uintptr, which must not move.
	old, name := new([commLen]byte), new([commLen]byte)
	*name = comm
	defer runtime.KeepAlive(old)
	defer runtime.KeepAlive(name)
	if err := unix.Prctl(unix.PR_GET_NAME, uintptr(unsafe.Pointer(old)), 0, 0, 0); err != nil {
		return fmt.Errorf("read thread name: %w", err)
	}
	if err := unix.Prctl(unix.PR_SET_NAME, uintptr(unsafe.Pointer(name)), 0, 0, 0); err != nil {
		return fmt.Errorf("name thread: %w", err)
	}
	defer unix.Prctl(unix.PR_SET_NAME, uintptr(unsafe.Pointer(old)), 0, 0, 0) //nolint:errcheck // best effort: restore the name

	fd, err := unix.Socket(unix.AF_INET, unix.SOCK_STREAM|unix.SOCK_NONBLOCK|unix.SOCK_CLOEXEC, 0)
	if err != nil {
		return fmt.Errorf("socket: %w", err)
	}
	defer unix.Close(fd)
	err = unix.Connect(fd, &unix.SockaddrInet4{Addr: [4]byte{127, 0, 0, 1}, Port: port})
	if err != nil && !errors.Is(err, unix.ECONNREFUSED) && !errors.Is(err, unix.EINPROGRESS) && !errors.Is(err, unix.ENETUNREACH) {
		return fmt.Errorf("connect 127.0.0.1:%d: %w", port, err)
	}
	return nil
}
