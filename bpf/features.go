package bpf

import (
	"errors"
	"fmt"
	"slices"
	"strings"

	"github.com/cilium/ebpf"
	"github.com/cilium/ebpf/asm"
	"github.com/cilium/ebpf/btf"
	"github.com/cilium/ebpf/features"
	"golang.org/x/sys/unix"
)

// ErrMissingFeature marks an Open that failed because the kernel lacks
// something the programs need; the FeatureError says what and which Linux
// version has it.
var ErrMissingFeature = errors.New("missing kernel feature")

// FeatureError is a kernel feature the probe needs and the running kernel
// lacks. It is found by probing before anything is loaded, so the user gets
// the feature's name and version instead of a verifier log.
type FeatureError struct {
	// Feature names what is missing, e.g. "BPF ring buffer map (BPF_MAP_TYPE_RINGBUF)".
	Feature string
	// Since is the first Linux version that has it ("" when not known).
	Since string
	// NeededBy says what needs it: "every attach mode", "attach: kprobe", "dns capture".
	NeededBy string
	// Kernel is the running kernel's release (uname -r).
	Kernel string
	// Err is the probe's result, wrapping ebpf.ErrNotSupported.
	Err error
}

func (e *FeatureError) Error() string {
	since := "a newer kernel has it"
	if e.Since != "" {
		since = "Linux " + e.Since + " or newer has it"
	}
	return fmt.Sprintf("kernel %s lacks the %s, needed by %s: %s", e.Kernel, e.Feature, e.NeededBy, since)
}

// Unwrap lets errors.Is find ErrMissingFeature and ebpf.ErrNotSupported.
func (e *FeatureError) Unwrap() []error { return []error{ErrMissingFeature, e.Err} }

// Linux versions that introduced each map type, program type and helper the
// objects use (the helper's first kernel; a program type may have gained it
// later). TestFeatureVersionsCoverObjects keeps the tables complete.
var (
	mapTypeSince = map[ebpf.MapType]string{
		ebpf.Hash: "3.19", ebpf.Array: "3.19", ebpf.PerCPUArray: "4.6", ebpf.LPMTrie: "4.11",
		ebpf.RingBuf: "5.8", ebpf.SkStorage: "5.2", ebpf.LRUHash: "4.10", ebpf.LRUCPUHash: "4.10",
		ebpf.ArrayOfMaps: "4.12",
	}
	progTypeSince = map[ebpf.ProgramType]string{
		ebpf.Kprobe: "4.1", ebpf.CGroupSKB: "4.10", ebpf.CGroupSockAddr: "4.17",
		ebpf.Tracing: "5.5", ebpf.LSM: "5.7", ebpf.RawTracepoint: "4.17",
	}
	helperSince = map[asm.BuiltinFunc]string{
		asm.FnMapLookupElem: "3.18", asm.FnMapUpdateElem: "3.18", asm.FnMapDeleteElem: "3.18", asm.FnProbeRead: "4.1", asm.FnKtimeGetNs: "4.1",
		asm.FnGetCurrentPidTgid: "4.2", asm.FnGetCurrentUidGid: "4.2", asm.FnGetCurrentComm: "4.2",
		asm.FnSkbLoadBytes: "4.5", asm.FnGetCurrentTask: "4.8", asm.FnProbeReadStr: "4.11",
		asm.FnGetSocketCookie: "4.12", asm.FnGetCurrentCgroupId: "4.18", asm.FnSkbCgroupId: "4.18",
		asm.FnSkFullsock: "5.1", asm.FnSkStorageGet: "5.2", asm.FnProbeReadKernel: "5.5", asm.FnProbeReadKernelStr: "5.5",
		asm.FnGetNetnsCookie: "5.7", asm.FnRingbufOutput: "5.8", asm.FnRingbufReserve: "5.8",
		asm.FnRingbufSubmit: "5.8", asm.FnRingbufDiscard: "5.8", asm.FnRingbufQuery: "5.8",
		asm.FnKtimeGetBootNs: "5.8", asm.FnSkcToTcpSock: "5.9", asm.FnGetCurrentTaskBtf: "5.11",
	}
)

// modePrograms are the connect object's programs each mode loads.
func modePrograms(m Mode) []string {
	switch m {
	case ModeLSM:
		return []string{"tc_lsm_connect"}
	case ModeFentry:
		return []string{"tc_fentry_connect"}
	case ModeKprobe:
		return []string{"tc_kprobe_connect"}
	case ModeCgroup:
		return []string{"tc_cgroup_connect4", "tc_cgroup_connect6"}
	}
	return nil
}

// featureProber answers the kernel questions; the real one asks the kernel
// (cilium/ebpf's features package), the tests use a fake.
type featureProber interface {
	kernelBTF() error
	mapType(ebpf.MapType) error
	progType(ebpf.ProgramType) error
	helper(ebpf.ProgramType, asm.BuiltinFunc) error
}

type kernelProber struct{}

func (kernelProber) kernelBTF() error {
	_, err := btf.LoadKernelSpec()
	return err
}
func (kernelProber) mapType(t ebpf.MapType) error      { return features.HaveMapType(t) }
func (kernelProber) progType(t ebpf.ProgramType) error { return features.HaveProgramType(t) }
func (kernelProber) helper(t ebpf.ProgramType, h asm.BuiltinFunc) error {
	return features.HaveProgramHelper(t, h)
}

// checkFeatures probes, before anything is loaded, what opts needs: kernel
// BTF and the map types for everything, the program types and helpers of
// the requested mode (for auto: of at least one mode) and, with DNS on, of
// the DNS programs. Only a conclusive "not supported" fails; a probe that
// cannot tell (no probe for LSM and tracing helpers, a refused probe
// program) leaves it to the load.
func checkFeatures(opts Options) error {
	connect, err := loadConnect()
	if err != nil {
		return fmt.Errorf("load connect spec: %w", err)
	}
	var dns *ebpf.CollectionSpec
	if opts.DNS {
		if dns, err = loadDns(); err != nil {
			return fmt.Errorf("load dns spec: %w", err)
		}
	}
	return featureCheck{probe: kernelProber{}, kernel: kernelRelease()}.run(opts.Mode, connect, dns)
}

type featureCheck struct {
	probe  featureProber
	kernel string
}

func (c featureCheck) run(mode Mode, connect, dns *ebpf.CollectionSpec) error {
	if err := c.probe.kernelBTF(); err != nil && !errors.Is(err, btf.ErrNotFound) && !errors.Is(err, ebpf.ErrNotSupported) {
		return fmt.Errorf("read kernel BTF: %w", err)
	} else if err != nil {
		return &FeatureError{Feature: "kernel BTF (/sys/kernel/btf/vmlinux, CONFIG_DEBUG_INFO_BTF=y) for CO-RE", Since: "5.4",
			NeededBy: "every attach mode", Kernel: c.kernel, Err: fmt.Errorf("%w: %w", ebpf.ErrNotSupported, err)}
	}
	if err := c.maps(connect, "every attach mode"); err != nil {
		return err
	}
	modes := []Mode{mode}
	if mode == ModeAuto {
		modes = AutoOrder()
	}
	var errs []error
	for _, m := range modes {
		err := c.programs(connect, modePrograms(m), "attach: "+string(m))
		if err == nil {
			errs = nil
			break
		}
		errs = append(errs, err)
	}
	if len(errs) > 0 {
		return errors.Join(errs...)
	}
	if dns == nil {
		return nil
	}
	if err := c.maps(dns, "dns capture"); err != nil {
		return err
	}
	names := make([]string, 0, len(dns.Programs))
	for n := range dns.Programs {
		names = append(names, n)
	}
	slices.Sort(names)
	return c.programs(dns, names, "dns capture")
}

// maps checks the type of every map in spec.
func (c featureCheck) maps(spec *ebpf.CollectionSpec, neededBy string) error {
	names := make([]string, 0, len(spec.Maps))
	for n := range spec.Maps {
		names = append(names, n)
	}
	slices.Sort(names)
	for _, n := range names {
		t := spec.Maps[n].Type
		if t == ebpf.Array && strings.HasPrefix(n, ".") {
			continue // .bss/.rodata: global data, part of the BTF check
		}
		if err := c.probe.mapType(t); errors.Is(err, ebpf.ErrNotSupported) {
			return &FeatureError{Feature: fmt.Sprintf("BPF %s map (%s, map %q)", mapTypeName(t), t, n), Since: mapTypeSince[t],
				NeededBy: neededBy, Kernel: c.kernel, Err: err}
		}
	}
	return nil
}

// programs checks the type of each named program and every helper it calls.
func (c featureCheck) programs(spec *ebpf.CollectionSpec, names []string, neededBy string) error {
	for _, n := range names {
		ps := spec.Programs[n]
		if ps == nil {
			return fmt.Errorf("%s: no program %q in the object", neededBy, n)
		}
		if err := c.probe.progType(ps.Type); errors.Is(err, ebpf.ErrNotSupported) {
			return &FeatureError{Feature: fmt.Sprintf("%s program type (%s)", ps.Type, n), Since: progTypeSince[ps.Type],
				NeededBy: neededBy, Kernel: c.kernel, Err: err}
		}
		for _, h := range programHelpers(ps) {
			if err := c.probe.helper(ps.Type, h); errors.Is(err, ebpf.ErrNotSupported) {
				return &FeatureError{Feature: fmt.Sprintf("helper %s in %s programs (%s)", helperName(h), ps.Type, n),
					Since: helperSince[h], NeededBy: neededBy, Kernel: c.kernel, Err: err}
			}
		}
	}
	return nil
}

// programHelpers returns the helpers a program calls, in call order, once each.
func programHelpers(ps *ebpf.ProgramSpec) []asm.BuiltinFunc {
	var out []asm.BuiltinFunc
	for _, ins := range ps.Instructions {
		if ins.IsBuiltinCall() {
			if h := asm.BuiltinFunc(ins.Constant); !slices.Contains(out, h) {
				out = append(out, h)
			}
		}
	}
	return out
}

// helperName turns asm's FnKtimeGetBootNs into the C name bpf_ktime_get_boot_ns.
func helperName(h asm.BuiltinFunc) string {
	s, ok := strings.CutPrefix(h.String(), "Fn")
	if !ok {
		return h.String()
	}
	var b strings.Builder
	b.WriteString("bpf")
	for i, r := range s {
		if r >= 'A' && r <= 'Z' {
			b.WriteByte('_')
			r += 'a' - 'A'
		} else if i == 0 {
			b.WriteByte('_')
		}
		b.WriteRune(r)
	}
	return b.String()
}

// mapTypeName is the map type in words, e.g. "ring buffer" for RingBuf.
func mapTypeName(t ebpf.MapType) string {
	switch t {
	case ebpf.RingBuf:
		return "ring buffer"
	case ebpf.LPMTrie:
		return "LPM trie"
	case ebpf.PerCPUArray:
		return "per-CPU array"
	}
	return strings.ToLower(t.String())
}

// kernelRelease is uname -r, or "(unknown)".
func kernelRelease() string {
	var u unix.Utsname
	if err := unix.Uname(&u); err != nil {
		return "(unknown)"
	}
	return unix.ByteSliceToString(u.Release[:])
}
