package event

import (
	"encoding/binary"
	"fmt"
	"syscall"

	"golang.org/x/sys/unix"
)

// OutcomeSize is sizeof(struct tc_outcome_event).
const OutcomeSize = 32

// Why an outcome record was written (enum tc_outcome_why).
const (
	// WhyState: the socket left SYN_SENT (or SYN_RECV).
	WhyState = 1
	// WhyDestroyed: the socket was destroyed without ever leaving TCP_CLOSE.
	WhyDestroyed = 2
	// WhyReconnect: the socket was connected again without leaving TCP_CLOSE.
	WhyReconnect = 3
	// WhyMissed: the socket was destroyed after it left TCP_CLOSE, but its
	// state change was not reported (the kernel skipped the program).
	WhyMissed = 4
)

// Outcome is what became of a tracked connect: its kind, as the kernel
// decided it (bpf/outcome.bpf.h tc_outcome_kind), and the facts it was
// decided by.
type Outcome struct {
	Why       uint8
	OldState  uint8
	NewState  uint8
	SockState uint8 // SS_* of the socket, 0xff when it had none
	Kind      Kind
	// Err is the socket's error: sk_err at the change, else sk_err_soft
	// (an ICMP error that came while the socket was locked: a local reject
	// rule answers that fast); a positive errno, 0 for none.
	Err int32
	// TID and ConnectBootNs name the connect record (its TID and BootTimeNs).
	TID           uint32
	ConnectBootNs uint64
	BootTimeNs    uint64 // CLOCK_BOOTTIME of the change
}

// DecodeOutcome fills o from a raw outcome record.
func DecodeOutcome(raw []byte, o *Outcome) error {
	if len(raw) < OutcomeSize {
		return fmt.Errorf("outcome record: %w: %d bytes, want %d", ErrShort, len(raw), OutcomeSize)
	}
	if raw[0] != TypeOutcome {
		return fmt.Errorf("outcome record: type %d", raw[0])
	}
	le := binary.LittleEndian
	o.Why = raw[1]
	o.OldState = raw[2]
	o.NewState = raw[3]
	o.SockState = raw[4]
	o.Kind = Kind(raw[5])
	o.Err = int32(le.Uint32(raw[8:]))
	o.TID = le.Uint32(raw[12:])
	o.ConnectBootNs = le.Uint64(raw[16:])
	o.BootTimeNs = le.Uint64(raw[24:])
	if o.Why < WhyState || o.Why > WhyMissed {
		return fmt.Errorf("outcome record: reason %d", o.Why)
	}
	if o.Kind < KindEstablished || o.Kind > KindPending {
		return fmt.Errorf("outcome record: kind %d", o.Kind)
	}
	return nil
}

// Kind is the outcome of a connect attempt, as on the log record.
type Kind uint8

// The outcomes, numbered as enum tc_outcome_kind (bpf/tcpconnect.h).
// KindNone (0) means outcome tracking is off.
const (
	KindNone Kind = iota
	// KindEstablished: the handshake completed.
	KindEstablished
	// KindRefused: the peer answered with a RST (or ICMP port unreachable).
	KindRefused
	// KindTimeout: no answer to the SYNs (tcp_syn_retries ran out).
	KindTimeout
	// KindUnreachable: an ICMP error (host, network unreachable, prohibited).
	KindUnreachable
	// KindReset: reset during the handshake (after a simultaneous open).
	KindReset
	// KindDenied: no SYN left: denied by an LSM or cgroup program, no route,
	// or no local port.
	KindDenied
	// KindClosed: the application closed or aborted the socket first.
	KindClosed
	// KindPending: no outcome within the wait, or its record was lost.
	KindPending
)

// String returns the outcome's name on the log record ("" for KindNone).
func (k Kind) String() string {
	switch k {
	case KindNone:
		return ""
	case KindEstablished:
		return "established"
	case KindRefused:
		return "refused"
	case KindTimeout:
		return "timeout"
	case KindUnreachable:
		return "unreachable"
	case KindReset:
		return "reset"
	case KindDenied:
		return "denied"
	case KindClosed:
		return "closed"
	case KindPending:
		return "pending"
	}
	return fmt.Sprintf("kind(%d)", uint8(k))
}

// Failed reports whether the outcome is a failure that carries error.type.
func (k Kind) Failed() bool {
	switch k {
	case KindRefused, KindTimeout, KindUnreachable, KindReset, KindDenied:
		return true
	}
	return false
}

// OtherError is error.type for a failure whose errno the kernel did not keep
// (the semantic conventions' fallback value).
const OtherError = "_OTHER"

// ErrorType returns error.type for a failed outcome: the errno's name (e.g.
// ECONNREFUSED), or OtherError when the kernel kept no errno (a connect
// denied before a SYN left). It returns "" when the outcome is no failure.
func (o *Outcome) ErrorType() string {
	if !o.Kind.Failed() {
		return ""
	}
	if o.Err > 0 {
		if name := unix.ErrnoName(syscall.Errno(o.Err)); name != "" {
			return name
		}
	}
	return OtherError
}
