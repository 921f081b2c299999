// Package bpf holds the kernel programs (compiled by bpf2go and committed) and
// the loader that attaches them in one of four modes and reads their ring buffer.
package bpf

import (
	"errors"
	"fmt"
	"io"
	"os"
	"time"

	"github.com/cilium/ebpf"
	"github.com/cilium/ebpf/ringbuf"

	"github.com/tcpconnect/tcpconnect/internal/event"
)

// Mode is an attach mode of the connect hook.
type Mode string

// The attach modes. Auto tries LSM, fentry, kprobe and cgroup in that order.
const (
	ModeAuto   Mode = "auto"
	ModeLSM    Mode = "lsm"
	ModeFentry Mode = "fentry"
	ModeKprobe Mode = "kprobe"
	ModeCgroup Mode = "cgroup"
)

// AutoOrder returns the modes that ModeAuto tries, in order.
func AutoOrder() []Mode { return []Mode{ModeLSM, ModeFentry, ModeKprobe, ModeCgroup} }

// ParseMode checks a mode name.
func ParseMode(s string) (Mode, error) {
	switch m := Mode(s); m {
	case ModeAuto, ModeLSM, ModeFentry, ModeKprobe, ModeCgroup:
		return m, nil
	}
	return "", fmt.Errorf("unknown attach mode %q (want auto, lsm, fentry, kprobe or cgroup)", s)
}

// Options configure Open.
type Options struct {
	// Mode is the attach mode; empty means ModeAuto.
	Mode Mode
	// CgroupPath is the cgroup v2 directory the cgroup programs attach to.
	// Empty means the first cgroup2 mount in /proc/self/mountinfo.
	CgroupPath string
	// RingBytes is the ring buffer size: a power of two, at least one page.
	RingBytes int
	// WakeupBytes wakes the reader once this much data waits in the ring; below
	// it the kernel submits without a wakeup and the reader polls. 0 means a
	// quarter of the ring.
	WakeupBytes int
	// ExcludeSelf leaves this process's connects out in the kernel. The
	// process is known by the tgid the kernel gave the proof connect, so
	// it is right in a container's own PID namespace too.
	ExcludeSelf bool
	// DNS attaches the cgroup_skb programs that copy DNS packets into the ring.
	DNS bool
	// Filter leaves connects out in the kernel, before they reach the ring.
	Filter Filter
	// Outcome follows each reported socket to its next TCP state and puts
	// an outcome record (event.Outcome) into the ring after its connect.
	Outcome bool
	// OutcomeSockets bounds the sockets followed at once; 0 means
	// DefaultOutcomeSockets.
	OutcomeSockets int
	// Aggregate counts the repeats of a (process, destination) key in the
	// kernel instead of reporting each (aggregate.go); FlushAggregate
	// ends a window.
	Aggregate bool
	// AggregateKeys bounds the keys of one window; 0 means
	// DefaultAggregateKeys.
	AggregateKeys int
	// FirstBytes copies the first bytes each followed socket sends once
	// connected into the ring (event.FirstBytes records, after its
	// connect); needs Outcome. FirstBytesMax bounds them per socket (0:
	// DefaultFirstBytes, at most MaxFirstBytes).
	FirstBytes    bool
	FirstBytesMax int
	// AggregateSkipOutcomes leaves the outcomes of the connects counted in
	// a window uncounted (with Outcome on, they are counted by kind in the
	// AggregateSummary, at the price of following each socket).
	AggregateSkipOutcomes bool
}

// Probe is the loaded and attached set of programs and the ring reader.
type Probe struct {
	mode     Mode
	attempts []Attempt
	events   *ebpf.Map
	counters *ebpf.Map
	// outcomeSocks is the connect object's outcome_socks map, shared
	// with the outcome object; wakeupBytes the ring's wakeup threshold.
	outcomeSocks *ebpf.Map
	wakeupBytes  uint64
	// outcomeProgs are the outcome programs, whose recursion misses
	// Counters reports.
	outcomeProgs []*ebpf.Program
	vars         proofVars
	agg          *aggregator // nil unless Options.Aggregate
	selfTGID     uint32
	progs        []*ebpf.Program
	closers      []io.Closer // links, programs, maps: closed in reverse order
	reader       *ringbuf.Reader
	// firstBytesEgress is the first-bytes egress program (nil when off).
	firstBytesEgress *ebpf.Program
}

// Open loads the programs, attaches them in the requested mode and opens the
// ring reader. In ModeAuto it takes the first mode that loads and attaches;
// Attempts tells why each earlier one failed. An explicitly requested mode
// that fails returns an error naming the mode and the kernel's reason.
func Open(opts Options) (*Probe, error) {
	if opts.Mode == "" {
		opts.Mode = ModeAuto
	}
	if _, err := ParseMode(string(opts.Mode)); err != nil {
		return nil, err
	}
	if opts.RingBytes == 0 {
		opts.RingBytes = 8 << 20
	}
	if opts.RingBytes < os.Getpagesize() || opts.RingBytes&(opts.RingBytes-1) != 0 {
		return nil, fmt.Errorf("ring size %d: must be a power of two and at least %d", opts.RingBytes, os.Getpagesize())
	}
	if opts.WakeupBytes <= 0 || opts.WakeupBytes > opts.RingBytes {
		opts.WakeupBytes = opts.RingBytes / 4
	}
	if opts.FirstBytes && !opts.Outcome {
		return nil, errors.New("first bytes: needs outcome tracking (Options.Outcome)")
	}
	if opts.FirstBytesMax == 0 {
		opts.FirstBytesMax = DefaultFirstBytes
	}
	if opts.FirstBytesMax < 1 || opts.FirstBytesMax > MaxFirstBytes {
		return nil, fmt.Errorf("first bytes bound %d: must be 1 to %d", opts.FirstBytesMax, MaxFirstBytes)
	}
	if opts.OutcomeSockets <= 0 {
		opts.OutcomeSockets = DefaultOutcomeSockets
	}
	if opts.CgroupPath == "" && (opts.Mode == ModeAuto || opts.Mode == ModeCgroup || opts.DNS || opts.FirstBytes) {
		p, err := CgroupV2Mount()
		if err != nil && (opts.Mode == ModeCgroup || opts.DNS || opts.FirstBytes) {
			return nil, err
		}
		opts.CgroupPath = p
	}
	// Kernels before 5.11 charge BPF memory to RLIMIT_MEMLOCK.
	if err := removeMemlock(); err != nil {
		return nil, err
	}
	if err := checkFeatures(opts); err != nil {
		return nil, err
	}

	p := &Probe{}
	var lsm lsmState
	if opts.Mode == ModeAuto || opts.Mode == ModeLSM {
		lsm = readLSMState()
	}
	mode, attempts, err := selectMode(opts.Mode, lsm, &probeAttacher{p: p, opts: opts})
	p.attempts = attempts
	if err != nil {
		return nil, &OpenError{Attempts: attempts, Err: err}
	}
	p.mode = mode
	if opts.Outcome {
		if err := p.attachOutcome(opts); err != nil {
			p.closeAll()
			return nil, fmt.Errorf("connect outcome: %w", err)
		}
	}
	if opts.FirstBytes {
		if err := p.attachFirstBytes(opts); err != nil {
			p.closeAll()
			return nil, fmt.Errorf("first bytes: %w", err)
		}
	}
	if opts.DNS {
		if err := p.attachDNS(opts); err != nil {
			p.closeAll()
			return nil, fmt.Errorf("dns capture: %w", err)
		}
	}
	r, err := ringbuf.NewReader(p.events)
	if err != nil {
		p.closeAll()
		return nil, fmt.Errorf("ring reader: %w", err)
	}
	p.reader = r
	return p, nil
}

// probeAttacher attaches the Probe's connect programs one mode at a time.
type probeAttacher struct {
	p    *Probe
	opts Options
}

func (a *probeAttacher) attach(m Mode) error { return a.p.attachConnect(m, a.opts) }

func (a *probeAttacher) detach() { _ = a.p.closeAll() }

// prove runs the proof connect. In cgroup mode it is proven only when the
// programs sit on a cgroup2 mount's root, which holds every process of that
// cgroup namespace, this one too; a cgroup_path below it need not hold the
// collector. On success it sets self_tgid when the options ask for it.
func (a *probeAttacher) prove(m Mode) (time.Duration, string, error) {
	if m == ModeCgroup {
		root, err := isCgroup2MountPoint(a.opts.CgroupPath)
		if err != nil {
			return 0, "", err
		}
		if !root {
			// Unproven, exclude_self falls back to our PID as this PID
			// namespace sees it (right on the host, not in a container).
			if a.opts.ExcludeSelf {
				if err := a.p.vars.self.Set(uint32(os.Getpid())); err != nil {
					return 0, "", fmt.Errorf("set self_tgid: %w", err)
				}
			}
			return 0, fmt.Sprintf("cgroup_path %s is not a cgroup2 mount root, so it need not hold the collector", a.opts.CgroupPath), nil
		}
	}
	r, took, err := proveConnect(&a.p.vars)
	if err != nil {
		return 0, "", err
	}
	if got := event.Hook(r.hook).String(); got != string(m) {
		return 0, "", fmt.Errorf("proof connect reported by hook %s, want %s", got, m)
	}
	a.p.selfTGID = r.tgid
	if a.opts.ExcludeSelf {
		if err := a.p.vars.self.Set(r.tgid); err != nil {
			return 0, "", fmt.Errorf("set self_tgid: %w", err)
		}
	}
	return took, "", nil
}

// Mode returns the attach mode in use.
func (p *Probe) Mode() Mode { return p.mode }

// Attempts returns each mode tried, in order, with its error (nil: in use).
func (p *Probe) Attempts() []Attempt { return p.attempts }

// SelfTGID is this process's tgid as the kernel reported it for the proof
// connect (its PID in the host's PID namespace), or 0 when the mode in use
// was not proven.
func (p *Probe) SelfTGID() uint32 { return p.selfTGID }

// ProgramIDs returns the kernel IDs of the loaded programs.
func (p *Probe) ProgramIDs() ([]ebpf.ProgramID, error) {
	ids := make([]ebpf.ProgramID, 0, len(p.progs))
	for _, prog := range p.progs {
		info, err := prog.Info()
		if err != nil {
			return nil, fmt.Errorf("program info: %w", err)
		}
		id, ok := info.ID()
		if !ok {
			return nil, errors.New("program info: kernel gives no ID")
		}
		ids = append(ids, id)
	}
	return ids, nil
}

// SetDeadline bounds how long ReadInto waits for data. Records submitted
// without a wakeup are returned once the deadline passes.
func (p *Probe) SetDeadline(t time.Time) { p.reader.SetDeadline(t) }

// ReadInto reads the next record into rec, reusing its buffer. It returns
// os.ErrDeadlineExceeded when the deadline passed and the ring is empty, and
// an error wrapping ringbuf.ErrClosed after Close.
func (p *Probe) ReadInto(rec *ringbuf.Record) error { return p.reader.ReadInto(rec) }

// Close detaches every program and frees every map and the reader. It also
// interrupts a blocked ReadInto.
func (p *Probe) Close() error {
	var errs []error
	if p.reader != nil {
		if err := p.reader.Close(); err != nil {
			errs = append(errs, fmt.Errorf("close ring reader: %w", err))
		}
		p.reader = nil
	}
	if err := p.closeAll(); err != nil {
		errs = append(errs, err)
	}
	return errors.Join(errs...)
}

func (p *Probe) closeAll() error {
	var errs []error
	for i := len(p.closers) - 1; i >= 0; i-- {
		if err := p.closers[i].Close(); err != nil {
			errs = append(errs, err)
		}
	}
	p.closers, p.progs, p.events, p.counters, p.outcomeSocks, p.outcomeProgs, p.vars, p.agg = nil, nil, nil, nil, nil, nil, proofVars{}, nil
	return errors.Join(errs...)
}
