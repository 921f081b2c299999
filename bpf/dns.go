package bpf

import (
	"fmt"

	"github.com/cilium/ebpf"
	"github.com/cilium/ebpf/link"
)

// attachDNS loads the cgroup_skb programs that copy DNS packets into the
// shared ring (the connect object's "events" and "counters" maps) and the cgroup
// sock_addr programs that mark the sockets an application points at port 53
// (connect4/6, sendmsg4/6), and attaches them to the cgroup v2 root. The
// sock_addr programs attach first, so that a socket is marked before its
// packets can be looked at.
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
	shared := map[string]*ebpf.Map{"events": p.events, "counters": p.counters}
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
	progs := []*ebpf.Program{objs.TcDnsConnect4, objs.TcDnsConnect6, objs.TcDnsSendmsg4, objs.TcDnsSendmsg6,
		objs.TcDnsIngress, objs.TcDnsEgress}
	p.progs = append(p.progs, progs...)
	for _, prog := range progs {
		p.closers = append(p.closers, prog)
	}
	for _, a := range []struct {
		name string // AttachCGroupInetIngress is 0, which AttachType.String calls "None"
		prog *ebpf.Program
		at   ebpf.AttachType
	}{
		{"cgroup/connect4", objs.TcDnsConnect4, ebpf.AttachCGroupInet4Connect},
		{"cgroup/connect6", objs.TcDnsConnect6, ebpf.AttachCGroupInet6Connect},
		{"cgroup/sendmsg4", objs.TcDnsSendmsg4, ebpf.AttachCGroupUDP4Sendmsg},
		{"cgroup/sendmsg6", objs.TcDnsSendmsg6, ebpf.AttachCGroupUDP6Sendmsg},
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
