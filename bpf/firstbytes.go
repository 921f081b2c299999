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
	Egress *ebpf.Program `ebpf:"tc_fb_egress"`
}

// fbMaxSegs is how many data segments a socket may have sent before a packet
// for the egress program still to look it up: max_bytes in segments of 256
// bytes, and a few more.
func fbMaxSegs(maxBytes int) uint32 { return uint32(maxBytes/256 + 4) }

// attachFirstBytes loads firstbytes.bpf.c: a cgroup_skb egress program that
// copies the first bytes of each socket the connect hook follows (its
// outcome_socks entry, marked because attachConnect set fb_enabled) into the
// shared ring (event.FirstBytes records, keyed by the connect record's tid
// and ts_ns). Call after the connect and outcome programs are attached.
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
	if err := spec.Variables["fb_max_segs"].Set(fbMaxSegs(opts.FirstBytesMax)); err != nil {
		return fmt.Errorf("set fb_max_segs: %w", err)
	}
	spec.Maps["events"].MaxEntries = p.events.MaxEntries()
	spec.Maps["outcome_socks"].MaxEntries = p.outcomeSocks.MaxEntries()
	replace := map[string]*ebpf.Map{"events": p.events, "counters": p.counters, "outcome_socks": p.outcomeSocks}
	var objs firstBytesSet
	if err := spec.LoadAndAssign(&objs, &ebpf.CollectionOptions{MapReplacements: replace}); err != nil {
		return fmt.Errorf("load programs: %w", err)
	}
	p.progs = append(p.progs, objs.Egress)
	p.closers = append(p.closers, objs.Egress)
	l, err := link.AttachCgroup(link.CgroupOptions{Path: opts.CgroupPath, Attach: ebpf.AttachCGroupInetEgress, Program: objs.Egress})
	if err != nil {
		return fmt.Errorf("attach cgroup_skb/egress to %s: %w", opts.CgroupPath, err)
	}
	p.closers = append(p.closers, l)
	p.firstBytesEgress = objs.Egress
	return nil
}

// FirstBytesProgram returns the cgroup_skb egress program that every
// packet passes (nil when first bytes are not captured), for its run-time
// statistics.
func (p *Probe) FirstBytesProgram() *ebpf.Program { return p.firstBytesEgress }
