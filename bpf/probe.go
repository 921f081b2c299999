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
	"github.com/cilium/ebpf/link"
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
	lost     *ebpf.Map
	// outcomeSocks is the connect object's outcome_socks map, shared
	// with the outcome object; wakeupBytes the ring's wakeup threshold.
	outcomeSocks *ebpf.Map
	wakeupBytes  uint64
	// outcomeProgs are the outcome programs, whose recursion misses Lost
	// reports.
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

// connectSet is what one attach mode needs from the connect object.
type connectSet struct {
	Events      *ebpf.Map `ebpf:"events"`
	Lost        *ebpf.Map `ebpf:"lost"`
	IncludeCIDR *ebpf.Map `ebpf:"include_cidr"`
	ExcludeCIDR *ebpf.Map `ebpf:"exclude_cidr"`
	Ports       *ebpf.Map `ebpf:"ports"`
	Comms       *ebpf.Map `ebpf:"comms"`
	// OutcomeSocks is shared with the outcome object (outcome.go).
	OutcomeSocks *ebpf.Map `ebpf:"outcome_socks"`
	// The aggregation window maps (aggregate.go).
	AggWindows *ebpf.Map `ebpf:"agg_windows"`
	AggWin0    *ebpf.Map `ebpf:"agg_win0"`
	AggWin1    *ebpf.Map `ebpf:"agg_win1"`
	AggState   *ebpf.Map `ebpf:"agg_state"`
}

func (p *Probe) attachConnect(m Mode, opts Options) error {
	spec, err := loadConnect()
	if err != nil {
		return fmt.Errorf("load spec: %w", err)
	}
	spec.Maps["events"].MaxEntries = uint32(opts.RingBytes)
	if err := spec.Variables["wakeup_bytes"].Set(uint64(opts.WakeupBytes)); err != nil {
		return fmt.Errorf("set wakeup_bytes: %w", err)
	}
	if err := spec.Variables["filter_flags"].Set(opts.Filter.flags()); err != nil {
		return fmt.Errorf("set filter_flags: %w", err)
	}
	// Off, the tracking code is dead and the verifier drops it; the map
	// still exists (the programs name it) but holds one entry.
	outcome, sockets := uint32(0), uint32(1)
	if opts.Outcome {
		outcome, sockets = 1, uint32(outcomeMapSize(opts.OutcomeSockets))
	}
	if err := spec.Variables["outcome_enabled"].Set(outcome); err != nil {
		return fmt.Errorf("set outcome_enabled: %w", err)
	}
	spec.Maps["outcome_socks"].MaxEntries = sockets
	if err := setAggregateSpec(spec, opts); err != nil {
		return err
	}
	var names []string
	switch m {
	case ModeLSM:
		names = []string{"tc_lsm_connect"}
	case ModeFentry:
		names = []string{"tc_fentry_connect"}
	case ModeKprobe:
		names = []string{"tc_kprobe_connect"}
	case ModeCgroup:
		if opts.CgroupPath == "" {
			return errors.New("no cgroup v2 mount found (mount cgroup2 or set cgroup_path)")
		}
		names = []string{"tc_cgroup_connect4", "tc_cgroup_connect6"}
	default:
		return fmt.Errorf("unknown mode %q", m)
	}
	// Load only the programs this mode needs: the others may be refused here.
	keep := make(map[string]*ebpf.ProgramSpec, len(names))
	for _, n := range names {
		keep[n] = spec.Programs[n]
	}
	spec.Programs = keep
	coll, err := ebpf.NewCollection(spec)
	if err != nil {
		return fmt.Errorf("load programs: %w", err)
	}
	var set connectSet
	if err := coll.Assign(&set); err != nil {
		coll.Close()
		return fmt.Errorf("assign maps: %w", err)
	}
	if err := p.vars.assign(coll.Variables); err != nil {
		coll.Close()
		return err
	}
	progs := make([]*ebpf.Program, len(names))
	for i, n := range names {
		progs[i] = coll.DetachProgram(n)
	}
	// Assign gave us the maps; the programs hold their own references to the
	// filter maps, so those are closed right after filling.
	coll.Close()
	p.events, p.lost, p.outcomeSocks = set.Events, set.Lost, set.OutcomeSocks
	p.wakeupBytes = uint64(opts.WakeupBytes)
	p.closers = append(p.closers, set.Events, set.Lost, set.OutcomeSocks)
	if opts.Aggregate {
		p.agg = &aggregator{windows: set.AggWindows, maps: [2]*ebpf.Map{set.AggWin0, set.AggWin1}, state: set.AggState}
		p.closers = append(p.closers, set.AggWindows, set.AggWin0, set.AggWin1, set.AggState)
	} else {
		for _, m := range []*ebpf.Map{set.AggWindows, set.AggWin0, set.AggWin1, set.AggState} {
			m.Close()
		}
	}
	for _, prog := range progs {
		p.progs = append(p.progs, prog)
		p.closers = append(p.closers, prog)
	}
	err = opts.Filter.fill(&set)
	for _, m := range []*ebpf.Map{set.IncludeCIDR, set.ExcludeCIDR, set.Ports, set.Comms} {
		m.Close()
	}
	if err != nil {
		return err
	}

	switch m {
	case ModeLSM:
		l, err := link.AttachLSM(link.LSMOptions{Program: progs[0]})
		if err != nil {
			return fmt.Errorf("attach lsm/socket_connect: %w", err)
		}
		p.closers = append(p.closers, l)
	case ModeFentry:
		l, err := link.AttachTracing(link.TracingOptions{Program: progs[0]})
		if err != nil {
			return fmt.Errorf("attach fentry/security_socket_connect: %w", err)
		}
		p.closers = append(p.closers, l)
	case ModeKprobe:
		l, err := link.Kprobe("security_socket_connect", progs[0], nil)
		if err != nil {
			return fmt.Errorf("attach kprobe/security_socket_connect: %w", err)
		}
		p.closers = append(p.closers, l)
	case ModeCgroup:
		for i, at := range []ebpf.AttachType{ebpf.AttachCGroupInet4Connect, ebpf.AttachCGroupInet6Connect} {
			l, err := link.AttachCgroup(link.CgroupOptions{Path: opts.CgroupPath, Attach: at, Program: progs[i]})
			if err != nil {
				return fmt.Errorf("attach %s to %s: %w", names[i], opts.CgroupPath, err)
			}
			p.closers = append(p.closers, l)
		}
	}
	return nil
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

// Lost is the number of records that found the ring full, summed over CPUs.
type Lost struct {
	Connect uint64
	DNS     uint64
	// Filtered counts connects the user's filters left out: not a loss.
	Filtered uint64
	// DNSCopy counts DNS records dropped because copying the packet's
	// payload into the record failed.
	DNSCopy uint64
	// Outcome counts outcome records lost: their connects go out pending.
	Outcome uint64
	// AggregateOverflow counts connects that found the aggregation window
	// map full and were reported one by one, flagged: not a loss.
	AggregateOverflow uint64
	// AggregateLateOutcome counts outcomes of connects that aggregation
	// counted, which came after their window had ended: those connects
	// went out in their summary as pending, and the late outcome is only
	// counted here.
	AggregateLateOutcome uint64
	// OutcomeMissed counts runs of the outcome programs that the kernel
	// skipped because the program was already running on that CPU (a
	// softirq's state change while it ran for another socket): state
	// changes not reported. Kernels before 5.12 do not count them.
	OutcomeMissed uint64
}

// Lost reads the kernel's loss counters.
func (p *Probe) Lost() (Lost, error) {
	var l Lost
	// Indexes as enum tc_lost_index: 0 connect, 1 DNS, 2 filtered, 3 outcome,
	// 4 DNS payload copy, 5 aggregation overflow, 6 late aggregated outcome.
	for _, c := range [...]struct {
		i   uint32
		dst *uint64
	}{{0, &l.Connect}, {1, &l.DNS}, {2, &l.Filtered}, {3, &l.Outcome}, {4, &l.DNSCopy}, {5, &l.AggregateOverflow}, {6, &l.AggregateLateOutcome}} {
		var perCPU []uint64
		if err := p.lost.Lookup(c.i, &perCPU); err != nil {
			return Lost{}, fmt.Errorf("read loss counter %d: %w", c.i, err)
		}
		for _, v := range perCPU {
			*c.dst += v
		}
	}
	for _, prog := range p.outcomeProgs {
		s, err := prog.Stats()
		if err != nil {
			return Lost{}, fmt.Errorf("read outcome program stats: %w", err)
		}
		l.OutcomeMissed += s.RecursionMisses
	}
	return l, nil
}

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
	p.closers, p.progs, p.events, p.lost, p.outcomeSocks, p.outcomeProgs, p.vars, p.agg = nil, nil, nil, nil, nil, nil, proofVars{}, nil
	return errors.Join(errs...)
}
