package bpf

import (
	"fmt"

	"github.com/cilium/ebpf"
	"github.com/cilium/ebpf/link"
)

// DefaultOutcomeSockets bounds the sockets followed at once for their
// outcome (the LRU map outcome_socks). A socket pushed out by newer ones
// leaves its connect pending.
const DefaultOutcomeSockets = 16384

// minOutcomeSocketsPerCPU is the least share of outcome_socks each CPU gets:
// its LRU lists are per CPU, and a CPU whose share is full evicts its oldest
// entry (that connect goes out pending).
const minOutcomeSocketsPerCPU = 1024

// outcomeMapSize is the size of outcome_socks for n sockets: n, but at least
// minOutcomeSocketsPerCPU per possible CPU, and a multiple of the CPUs (the
// kernel rounds a per-CPU LRU map up to one, and the outcome object's spec
// must match the map it shares).
func outcomeMapSize(n int) int {
	cpus, err := ebpf.PossibleCPU()
	if err != nil || cpus < 1 {
		cpus = 1
	}
	n = max(n, cpus*minOutcomeSocketsPerCPU)
	return (n + cpus - 1) / cpus * cpus
}

// attachOutcome loads the programs that report what became of each
// reported connect (outcome.bpf.c) into the shared ring and attaches them
// to the raw tracepoints sock:inet_sock_set_state and tcp:tcp_destroy_sock.
// Raw tracepoints need no tracefs, and work in every attach mode.
func (p *Probe) attachOutcome(opts Options) error {
	spec, err := loadOutcome()
	if err != nil {
		return fmt.Errorf("load spec: %w", err)
	}
	if err := spec.Variables["wakeup_bytes"].Set(p.wakeupBytes); err != nil {
		return fmt.Errorf("set wakeup_bytes: %w", err)
	}
	// Replacement maps must match the specs: sizes as the loader set them.
	spec.Maps["events"].MaxEntries = p.events.MaxEntries()
	spec.Maps["outcome_socks"].MaxEntries = p.outcomeSocks.MaxEntries()
	// The outcomes of aggregated connects are counted in the window maps.
	if err := setAggregateSpec(spec, opts); err != nil {
		return err
	}
	replace := map[string]*ebpf.Map{"events": p.events, "counters": p.counters, "outcome_socks": p.outcomeSocks}
	if a := p.agg; a != nil {
		replace["agg_windows"], replace["agg_win0"], replace["agg_win1"], replace["agg_state"] = a.windows, a.maps[0], a.maps[1], a.state
	}
	var objs outcomePrograms
	err = spec.LoadAndAssign(&objs, &ebpf.CollectionOptions{MapReplacements: replace})
	if err != nil {
		return fmt.Errorf("load programs: %w", err)
	}
	p.progs = append(p.progs, objs.TcOutcomeState, objs.TcOutcomeDestroy)
	p.outcomeProgs = []*ebpf.Program{objs.TcOutcomeState, objs.TcOutcomeDestroy}
	p.closers = append(p.closers, objs.TcOutcomeState, objs.TcOutcomeDestroy)
	for _, a := range []struct {
		name string
		prog *ebpf.Program
	}{
		{"inet_sock_set_state", objs.TcOutcomeState},
		{"tcp_destroy_sock", objs.TcOutcomeDestroy},
	} {
		l, err := link.AttachRawTracepoint(link.RawTracepointOptions{Name: a.name, Program: a.prog})
		if err != nil {
			return fmt.Errorf("attach raw tracepoint %s: %w", a.name, err)
		}
		p.closers = append(p.closers, l)
	}
	return nil
}
