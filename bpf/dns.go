package bpf

import (
	"fmt"

	"github.com/cilium/ebpf"
	"github.com/cilium/ebpf/link"
)

// attachDNS loads the cgroup_skb programs that copy DNS packets into the
// shared ring (the connect object's "events" and "lost" maps) and attaches
// them to the cgroup v2 root.
func (p *Probe) attachDNS(opts Options) error {
	spec, err := loadDns()
	if err != nil {
		return fmt.Errorf("load spec: %w", err)
	}
	if err := spec.Variables["wakeup_bytes"].Set(uint64(opts.WakeupBytes)); err != nil {
		return fmt.Errorf("set wakeup_bytes: %w", err)
	}
	// The DNS programs write into the connect object's ring and counters.
	// Their spec's maps take the sizes of the maps they replace, so the
	// replacement holds whatever ring size the loader chose.
	shared := map[string]*ebpf.Map{"events": p.events, "lost": p.lost}
	for name, m := range shared {
		ms, ok := spec.Maps[name]
		if !ok {
			return fmt.Errorf("dns object has no map %q", name)
		}
		ms.MaxEntries = m.MaxEntries()
	}
	var objs dnsPrograms
	err = spec.LoadAndAssign(&objs, &ebpf.CollectionOptions{MapReplacements: shared})
	if err != nil {
		return fmt.Errorf("load programs: %w", err)
	}
	p.progs = append(p.progs, objs.TcDnsIngress, objs.TcDnsEgress)
	p.closers = append(p.closers, objs.TcDnsIngress, objs.TcDnsEgress)
	for _, a := range []struct {
		name string // AttachCGroupInetIngress is 0, which AttachType.String calls "None"
		prog *ebpf.Program
		at   ebpf.AttachType
	}{
		{"cgroup_skb/ingress", objs.TcDnsIngress, ebpf.AttachCGroupInetIngress},
		{"cgroup_skb/egress", objs.TcDnsEgress, ebpf.AttachCGroupInetEgress},
	} {
		l, err := link.AttachCgroup(link.CgroupOptions{Path: opts.CgroupPath, Attach: a.at, Program: a.prog})
		if err != nil {
			return fmt.Errorf("attach %s to %s: %w", a.name, opts.CgroupPath, err)
		}
		p.closers = append(p.closers, l)
	}
	return nil
}
