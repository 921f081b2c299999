package bpf

import (
	"fmt"
	"net/netip"

	"github.com/cilium/ebpf"
)

// Filter selects connects in the kernel. Empty include lists keep everything;
// an exclude match always drops. Filtered connects are counted (Counters.Filtered).
type Filter struct {
	IncludeCIDRs []netip.Prefix
	ExcludeCIDRs []netip.Prefix
	IncludePorts []uint16
	ExcludePorts []uint16
	// Process names are matched against the thread-group leader's comm
	// (the process's, not the calling thread's): at most 15 bytes.
	IncludeComms []string
	ExcludeComms []string
}

// Bits of filter_flags (enum tc_filter_flag) and port/comm marks.
const (
	filterIncludeCIDR = 1 << 0
	filterIncludePort = 1 << 1
	filterExcludePort = 1 << 2
	filterIncludeComm = 1 << 3
	filterExcludeComm = 1 << 4
	filterExcludeCIDR = 1 << 5
	markInclude       = 1
	markExclude       = 2
	commLen           = 16
)

func (f *Filter) flags() uint32 {
	var v uint32
	for _, b := range []struct {
		on  bool
		bit uint32
	}{
		{len(f.IncludeCIDRs) > 0, filterIncludeCIDR}, {len(f.ExcludeCIDRs) > 0, filterExcludeCIDR},
		{len(f.IncludePorts) > 0, filterIncludePort}, {len(f.ExcludePorts) > 0, filterExcludePort},
		{len(f.IncludeComms) > 0, filterIncludeComm}, {len(f.ExcludeComms) > 0, filterExcludeComm},
	} {
		if b.on {
			v |= b.bit
		}
	}
	return v
}

// cidrKey is struct tc_cidr_key: IPv4 prefixes are stored v4-mapped.
type cidrKey struct {
	PrefixLen uint32
	Addr      [16]byte
}

func newCIDRKey(p netip.Prefix) cidrKey {
	p = p.Masked()
	bits := p.Bits()
	if p.Addr().Is4() {
		bits += 96
	}
	return cidrKey{PrefixLen: uint32(bits), Addr: p.Addr().As16()}
}

func commKey(s string) [commLen]byte {
	var k [commLen]byte
	copy(k[:commLen-1], s)
	return k
}

// fill writes the filter into the kernel maps.
func (f *Filter) fill(set *connectSet) error {
	one := uint8(1)
	for _, c := range []struct {
		m     *ebpf.Map
		cidrs []netip.Prefix
	}{{set.IncludeCIDR, f.IncludeCIDRs}, {set.ExcludeCIDR, f.ExcludeCIDRs}} {
		for _, p := range c.cidrs {
			if !p.IsValid() {
				return fmt.Errorf("filter: invalid prefix %v", p)
			}
			if err := c.m.Put(newCIDRKey(p), one); err != nil {
				return fmt.Errorf("filter: add %s: %w", p, err)
			}
		}
	}
	for _, l := range []struct {
		ports []uint16
		mark  uint8
	}{{f.IncludePorts, markInclude}, {f.ExcludePorts, markExclude}} {
		for _, port := range l.ports {
			if err := set.Ports.Put(port, l.mark); err != nil {
				return fmt.Errorf("filter: add port %d: %w", port, err)
			}
		}
	}
	for _, l := range []struct {
		comms []string
		mark  uint8
	}{{f.IncludeComms, markInclude}, {f.ExcludeComms, markExclude}} {
		for _, c := range l.comms {
			if len(c) == 0 || len(c) > commLen-1 {
				return fmt.Errorf("filter: process name %q: must be 1 to %d bytes (the kernel's comm)", c, commLen-1)
			}
			if err := set.Comms.Put(commKey(c), l.mark); err != nil {
				return fmt.Errorf("filter: add process name %q: %w", c, err)
			}
		}
	}
	return nil
}
