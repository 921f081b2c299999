package bpf

import (
	"errors"
	"fmt"

	"github.com/cilium/ebpf"
	"github.com/cilium/ebpf/link"
)

// connectSet is what one attach mode needs from the connect object.
type connectSet struct {
	Events      *ebpf.Map `ebpf:"events"`
	Counters    *ebpf.Map `ebpf:"counters"`
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

// attachConnect loads the connect object with the programs of mode m only,
// sizes and fills its maps from opts, and attaches the programs. The maps
// the other objects share (the ring, the counters, outcome_socks) and the
// aggregation maps stay open in p.
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
	// First bytes (firstbytes.go) live in the outcome entry the hook makes.
	fb := uint32(0)
	if opts.FirstBytes {
		fb = 1
	}
	if err := spec.Variables["fb_enabled"].Set(fb); err != nil {
		return fmt.Errorf("set fb_enabled: %w", err)
	}
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
	p.events, p.counters, p.outcomeSocks = set.Events, set.Counters, set.OutcomeSocks
	p.wakeupBytes = uint64(opts.WakeupBytes)
	p.closers = append(p.closers, set.Events, set.Counters, set.OutcomeSocks)
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
