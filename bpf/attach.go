package bpf

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"time"

	"golang.org/x/sys/unix"
)

// ErrNotProven marks a mode that loaded and attached but whose hook did not
// report the loader's proof connect: it would record nothing.
var ErrNotProven = errors.New("attached, but the hook did not report the proof connect")

// ErrLSMInactive marks the lsm mode on a kernel where bpf is not an active
// LSM: its programs attach there but never run.
var ErrLSMInactive = errors.New("bpf is not an active LSM")

// Attempt is one mode that Open tried, with the reason it failed (nil: used).
type Attempt struct {
	Mode Mode
	Err  error
	// Proof is how long the proof connect took to be reported, for the mode
	// in use; 0 when the proof was skipped (ProofSkipped says why).
	Proof time.Duration
	// ProofSkipped, for the mode in use, says why it was not proven.
	ProofSkipped string
}

// OpenError is Open's error when no attach mode could be used; Attempts
// says why each mode tried was left.
type OpenError struct {
	Attempts []Attempt
	Err      error
}

func (e *OpenError) Error() string { return e.Err.Error() }

// Unwrap returns the cause, so errors.Is finds ErrLSMInactive and
// ErrNotProven.
func (e *OpenError) Unwrap() error { return e.Err }

// modeAttacher attaches one mode at a time; selectMode drives it. The real
// one is the Probe; the tests use a fake.
type modeAttacher interface {
	// attach loads and attaches m.
	attach(m Mode) error
	// prove makes a connect the attached hook must report and waits a short
	// bound for it. skipped is non-empty when it cannot be proven here
	// (and then err is nil).
	prove(m Mode) (took time.Duration, skipped string, err error)
	// detach undoes attach, leaving nothing loaded.
	detach()
}

// lsmState is what the kernel says about its active LSMs.
type lsmState struct {
	list string // /sys/kernel/security/lsm, e.g. "lockdown,capability,bpf"
	err  error  // why the list could not be read; the proof still decides
}

// bpfInactive reports whether bpf is known to be missing from the active
// list (false when the list is unknown).
func (s lsmState) bpfInactive() bool {
	return s.err == nil && s.list != "" && !slices.Contains(strings.Split(s.list, ","), "bpf")
}

// inactiveError explains how to make the lsm mode work.
func (s lsmState) inactiveError() error {
	return fmt.Errorf("%w (active: %s): boot with lsm=%s,bpf or use attach: fentry",
		ErrLSMInactive, s.list, s.list)
}

// selectMode tries the requested mode (or, for ModeAuto, each mode of
// AutoOrder) until one attaches and proves that it fires. The lsm mode is
// skipped without loading anything when bpf is not an active LSM. It returns
// every attempt in order; the last one has a nil Err when a mode was chosen.
func selectMode(requested Mode, lsm lsmState, a modeAttacher) (Mode, []Attempt, error) {
	modes := []Mode{requested}
	if requested == ModeAuto {
		modes = AutoOrder()
	}
	var attempts []Attempt
	for _, m := range modes {
		at := Attempt{Mode: m}
		at.Err = tryMode(m, lsm, a, &at)
		attempts = append(attempts, at)
		if at.Err == nil {
			return m, attempts, nil
		}
		if requested != ModeAuto {
			return "", attempts, fmt.Errorf("attach mode %s: %w", m, at.Err)
		}
	}
	var errs []error
	for _, at := range attempts {
		errs = append(errs, fmt.Errorf("%s: %w", at.Mode, at.Err))
	}
	return "", attempts, fmt.Errorf("attach mode auto: no mode attached and fired: %w", errors.Join(errs...))
}

func tryMode(m Mode, lsm lsmState, a modeAttacher, at *Attempt) error {
	if m == ModeLSM && lsm.bpfInactive() {
		return lsm.inactiveError()
	}
	if err := a.attach(m); err != nil {
		a.detach()
		return err
	}
	took, skipped, err := a.prove(m)
	if err != nil {
		a.detach()
		if m == ModeLSM && lsm.err != nil {
			return fmt.Errorf("%w (active LSM list unreadable: %v)", err, lsm.err)
		}
		return err
	}
	at.Proof, at.ProofSkipped = took, skipped
	return nil
}

// securityFS is where the kernel's LSM list is read.
const securityFS = "/sys/kernel/security"

// readLSMState reads the active LSM list. When securityfs is not mounted
// there, it mounts it on a private temporary folder for the one read (needs
// CAP_SYS_ADMIN and the host's user namespace), so the host's mounts are not
// changed. When it cannot be read, the proof connect alone decides.
func readLSMState() lsmState {
	if b, err := os.ReadFile(filepath.Join(securityFS, "lsm")); err == nil {
		return lsmState{list: strings.TrimSpace(string(b))}
	}
	dir, err := os.MkdirTemp("", "tcpconnect-securityfs-")
	if err != nil {
		return lsmState{err: fmt.Errorf("read %s/lsm: securityfs not mounted, and no folder to mount it: %w", securityFS, err)}
	}
	defer os.Remove(dir)
	if err := unix.Mount("securityfs", dir, "securityfs", unix.MS_NOSUID|unix.MS_NODEV|unix.MS_NOEXEC|unix.MS_RDONLY, ""); err != nil {
		return lsmState{err: fmt.Errorf("read %s/lsm: securityfs not mounted, and mounting it failed: %w", securityFS, err)}
	}
	defer unix.Unmount(dir, unix.MNT_DETACH)
	b, err := os.ReadFile(filepath.Join(dir, "lsm"))
	if err != nil {
		return lsmState{err: fmt.Errorf("read securityfs lsm: %w", err)}
	}
	return lsmState{list: strings.TrimSpace(string(b))}
}
