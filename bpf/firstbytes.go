package bpf

import (
	"fmt"

	"github.com/cilium/ebpf"
	"github.com/cilium/ebpf/link"
)

// DefaultFirstBytes is the most bytes captured per socket by default: a
// ClientHello with post-quantum key shares is about 2 KiB, a request head
// rarely more than a few.
const DefaultFirstBytes = 16 << 10

// MaxFirstBytes bounds Options.FirstBytesMax: what one segment can fill
// (TC_FB_CHUNK * TC_FB_SEG_CHUNKS in firstbytes.bpf.c).
const MaxFirstBytes = 64 << 10

// firstBytesSet is what the loader keeps of the first-bytes object.
type firstBytesSet struct {
	Connect4 *ebpf.Program `ebpf:"tc_fb_connect4"`
	Connect6 *ebpf.Program `ebpf:"tc_fb_connect6"`
	Egress   *ebpf.Program `ebpf:"tc_fb_egress"`
}

// attachFirstBytes loads firstbytes.bpf.c: cgroup connect4/6 programs that
// mark each socket the connect hook follows to its outcome, and a
// cgroup_skb egress program that copies a marked socket's first bytes into
// the shared ring (event.FirstBytes records, keyed by the connect record's
// tid and ts_ns). Call after the connect and outcome programs are attached:
// the mark looks the socket up in outcome_socks, and in cgroup mode the
// connect program must run first (programs on one cgroup run in attach
// order).
func (p *Probe) attachFirstBytes(opts Options) error {
	spec, err := loadFirstbytes()
	if err != nil {
		return fmt.Errorf("load spec: %w", err)
	}
	if err := spec.Variables["wakeup_bytes"].Set(p.wakeupBytes); err != nil {
		return fmt.Errorf("set wakeup_bytes: %w", err)
	}
	if err := spec.Variables["max_bytes"].Set(uint32(opts.FirstBytesMax)); err != nil {
		return fmt.Errorf("set max_bytes: %w", err)
	}
	spec.Maps["events"].MaxEntries = p.events.MaxEntries()
	spec.Maps["outcome_socks"].MaxEntries = p.outcomeSocks.MaxEntries()
	replace := map[string]*ebpf.Map{"events": p.events, "counters": p.counters, "outcome_socks": p.outcomeSocks}
	var objs firstBytesSet
	if err := spec.LoadAndAssign(&objs, &ebpf.CollectionOptions{MapReplacements: replace}); err != nil {
		return fmt.Errorf("load programs: %w", err)
	}
	progs := []*ebpf.Program{objs.Connect4, objs.Connect6, objs.Egress}
	p.progs = append(p.progs, progs...)
	for _, prog := range progs {
		p.closers = append(p.closers, prog)
	}
	for _, a := range []struct {
		name string
		prog *ebpf.Program
		at   ebpf.AttachType
	}{
		{"cgroup/connect4", objs.Connect4, ebpf.AttachCGroupInet4Connect},
		{"cgroup/connect6", objs.Connect6, ebpf.AttachCGroupInet6Connect},
		{"cgroup_skb/egress", objs.Egress, ebpf.AttachCGroupInetEgress},
	} {
		l, err := link.AttachCgroup(link.CgroupOptions{Path: opts.CgroupPath, Attach: a.at, Program: a.prog})
		if err != nil {
			return fmt.Errorf("attach %s to %s: %w", a.name, opts.CgroupPath, err)
		}
		p.closers = append(p.closers, l)
	}
	p.firstBytesEgress = objs.Egress
	return nil
}

// FirstBytesProgram returns the cgroup_skb egress program that every
// packet passes (nil when first bytes are not captured), for its run-time
// statistics.
func (p *Probe) FirstBytesProgram() *ebpf.Program { return p.firstBytesEgress }
