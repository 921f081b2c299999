package bpf

import "errors"

// attachDNS loads the cgroup_skb programs that copy DNS packets into the
// shared ring and attaches them to the cgroup v2 root.
func (p *Probe) attachDNS(opts Options) error {
	return errors.New("TODO")
}
