package vmtest

import (
	"fmt"
	"strings"
)

// Kernel is a pinned Debian kernel image package.
type Kernel struct {
	// Name is the short name used on the command line and in reports ("6.1").
	Name string
	// Package is the Debian binary package that holds /boot/vmlinuz-* and the
	// modules under /lib/modules.
	Package string
	// Version is the exact package version fetched with apt-get download.
	Version string
}

// Kernels returns the pinned kernels, oldest first. This is the one place
// where kernel versions are chosen: both have CONFIG_BPF_LSM=y with bpf in
// the default LSM list, BTF, kprobes and ftrace.
//
// The 6.1 package is the newest 6.1 cloud ABI that bookworm-security served on
// 2026-11-26 (6.1.0-50 / 6.1.176-1 is in bookworm main too, if this one goes).
func Kernels() []Kernel {
	return []Kernel{
		{Name: "6.1", Package: "linux-image-6.1.0-56-cloud-amd64", Version: "6.1.192-2"},
		{Name: "6.12", Package: "linux-image-6.12.117+deb12-cloud-amd64-unsigned", Version: "6.12.117-1~deb12u1"},
	}
}

// SelectKernels resolves a list of kernel names; "all" (or an empty list)
// selects every pinned kernel.
func SelectKernels(names []string) ([]Kernel, error) {
	all := Kernels()
	if len(names) == 0 || (len(names) == 1 && names[0] == "all") {
		return all, nil
	}
	var out []Kernel
	for _, n := range names {
		found := false
		for _, k := range all {
			if k.Name == n {
				out = append(out, k)
				found = true
				break
			}
		}
		if !found {
			known := make([]string, len(all))
			for i, k := range all {
				known[i] = k.Name
			}
			return nil, fmt.Errorf("unknown kernel %q (pinned: %s, or all)", n, strings.Join(known, ", "))
		}
	}
	return out, nil
}
