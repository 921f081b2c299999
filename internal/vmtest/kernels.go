package vmtest

import (
	"fmt"
	"strings"
)

// Kernel is a pinned Debian kernel image package.
type Kernel struct {
	// Name is the short name used on the command line and in reports ("6.1",
	// "6.1-arm64").
	Name string
	// Package is the Debian binary package that holds /boot/vmlinuz-* and the
	// modules under /lib/modules.
	Package string
	// Version is the exact package version fetched with apt-get download.
	Version string
	// Arch is the Debian (and Go) architecture of the kernel: "amd64" or
	// "arm64". It picks the qemu binary, the console and the GOARCH of the
	// guest /init; the test binaries must match it.
	Arch string
	// Source names the apt source (see Sources) that serves the package; ""
	// is the host's own apt configuration.
	Source string
	// BPFLSM says whether bpf is in the kernel's default active LSM list;
	// when it is not, BPF LSM programs load and attach but never run unless
	// the kernel is booted with an lsm= list that names bpf.
	BPFLSM bool
}

// Architectures the runner boots.
const (
	ArchAMD64 = "amd64"
	ArchARM64 = "arm64"
)

// Kernels returns the pinned kernels, oldest first per architecture. This is
// the one place where kernel versions are chosen: all have CONFIG_BPF_LSM=y,
// BTF, kprobes and ftrace.
//
// The amd64 6.1 package is the newest 6.1 cloud ABI that bookworm-security
// served on 2026-11-26 (6.1.0-50 / 6.1.176-1 is in bookworm main too, if this
// one goes). 5.10 comes from bullseye-security: 5.10.0-43 is the newest ABI
// whose package downloads here (-44 to -46 are listed, but answer 404); its
// default LSM list (lockdown,capability,yama,apparmor,tomoyo) lacks bpf.
func Kernels() []Kernel {
	return []Kernel{
		{Name: "5.10", Package: "linux-image-5.10.0-43-cloud-amd64-unsigned", Version: "5.10.251-5", Arch: ArchAMD64, Source: "bullseye-security"},
		{Name: "6.1", Package: "linux-image-6.1.0-56-cloud-amd64", Version: "6.1.192-2", Arch: ArchAMD64, BPFLSM: true},
		{Name: "6.12", Package: "linux-image-6.12.117+deb12-cloud-amd64-unsigned", Version: "6.12.117-1~deb12u1", Arch: ArchAMD64, BPFLSM: true},
		{Name: "6.1-arm64", Package: "linux-image-6.1.0-57-cloud-arm64-unsigned", Version: "6.1.192-3", Arch: ArchARM64, Source: "bookworm-arm64", BPFLSM: true},
		{Name: "6.12-arm64", Package: "linux-image-6.12.117+deb12-cloud-arm64-unsigned", Version: "6.12.117-1~deb12u1", Arch: ArchARM64, Source: "bookworm-arm64", BPFLSM: true},
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

// arch returns the kernel's architecture, amd64 when unset.
func (k Kernel) arch() string {
	if k.Arch == "" {
		return ArchAMD64
	}
	return k.Arch
}

// debSpec is the apt-get download argument: name:arch=version.
func (k Kernel) debSpec() string {
	return k.Package + ":" + k.arch() + "=" + k.Version
}
