package bpf

import (
	"errors"
	"fmt"
	"strings"
	"testing"

	"github.com/cilium/ebpf"
	"github.com/cilium/ebpf/asm"
	"github.com/cilium/ebpf/btf"
	"github.com/cilium/ebpf/rlimit"

	"github.com/tcpconnect/tcpconnect/internal/privtest"
)

// fakeProber says "not supported" for what it is told to miss, and
// inconclusive errors for what it cannot probe.
type fakeProber struct {
	noBTF        bool
	noMaps       []ebpf.MapType
	noProgs      []ebpf.ProgramType
	noHelpers    map[ebpf.ProgramType][]asm.BuiltinFunc
	inconclusive bool // every helper probe fails without an answer
}

func (f fakeProber) kernelBTF() error {
	if f.noBTF {
		return fmt.Errorf("no BTF: %w", btf.ErrNotFound)
	}
	return nil
}

func (f fakeProber) mapType(t ebpf.MapType) error {
	for _, m := range f.noMaps {
		if m == t {
			return ebpf.ErrNotSupported
		}
	}
	return nil
}

func (f fakeProber) progType(t ebpf.ProgramType) error {
	for _, p := range f.noProgs {
		if p == t {
			return ebpf.ErrNotSupported
		}
	}
	return nil
}

func (f fakeProber) helper(t ebpf.ProgramType, h asm.BuiltinFunc) error {
	if f.inconclusive {
		return errors.New("no feature probe for this program type")
	}
	for _, x := range f.noHelpers[t] {
		if x == h {
			return fmt.Errorf("program of this type cannot use helper: %w", ebpf.ErrNotSupported)
		}
	}
	return nil
}

func TestFeatureCheck(t *testing.T) {
	connect, err := loadConnect()
	if err != nil {
		t.Fatal(err)
	}
	dns, err := loadDns()
	if err != nil {
		t.Fatal(err)
	}
	tests := []struct {
		name  string
		probe fakeProber
		mode  Mode
		dns   bool
		want  []string // substrings of the error; none: no error
	}{
		{name: "everything there", probe: fakeProber{}, mode: ModeAuto, dns: true},
		{name: "no BTF", probe: fakeProber{noBTF: true}, mode: ModeCgroup,
			want: []string{"lacks the kernel BTF", "every attach mode", "Linux 5.4 or newer"}},
		{name: "no ring buffer", probe: fakeProber{noMaps: []ebpf.MapType{ebpf.RingBuf}}, mode: ModeAuto,
			want: []string{"lacks the BPF ring buffer map", `map "events"`, "Linux 5.8 or newer"}},
		{name: "no LSM program type, asked for", probe: fakeProber{noProgs: []ebpf.ProgramType{ebpf.LSM}}, mode: ModeLSM,
			want: []string{"LSM program type (tc_lsm_connect)", "attach: lsm", "Linux 5.7 or newer"}},
		{name: "no LSM program type, auto falls back", probe: fakeProber{noProgs: []ebpf.ProgramType{ebpf.LSM}}, mode: ModeAuto},
		{name: "a helper missing in the explicit mode",
			probe: fakeProber{noHelpers: map[ebpf.ProgramType][]asm.BuiltinFunc{ebpf.Kprobe: {asm.FnKtimeGetBootNs}}}, mode: ModeKprobe,
			want: []string{"helper bpf_ktime_get_boot_ns in Kprobe programs (tc_kprobe_connect)", "attach: kprobe", "Linux 5.8 or newer"}},
		{name: "auto fails only when every mode lacks something",
			probe: fakeProber{noProgs: []ebpf.ProgramType{ebpf.LSM, ebpf.Tracing, ebpf.Kprobe},
				noHelpers: map[ebpf.ProgramType][]asm.BuiltinFunc{ebpf.CGroupSockAddr: {asm.FnGetCurrentTask}}}, mode: ModeAuto,
			want: []string{"attach: lsm", "attach: fentry", "attach: kprobe", "helper bpf_get_current_task in CGroupSockAddr programs", "Linux 4.8"}},
		{name: "a helper missing for DNS", probe: fakeProber{noHelpers: map[ebpf.ProgramType][]asm.BuiltinFunc{ebpf.CGroupSKB: {asm.FnSkbCgroupId}}},
			mode: ModeCgroup, dns: true, want: []string{"helper bpf_skb_cgroup_id in CGroupSKB programs", "dns capture", "Linux 4.18"}},
		{name: "the same helper gap without DNS", probe: fakeProber{noHelpers: map[ebpf.ProgramType][]asm.BuiltinFunc{ebpf.CGroupSKB: {asm.FnSkbCgroupId}}},
			mode: ModeCgroup},
		{name: "inconclusive probes leave it to the load", probe: fakeProber{inconclusive: true}, mode: ModeAuto, dns: true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			var d *ebpf.CollectionSpec
			if tt.dns {
				d = dns
			}
			err := featureCheck{probe: tt.probe, kernel: "4.19.0-test"}.run(tt.mode, connect, d)
			if len(tt.want) == 0 {
				if err != nil {
					t.Fatalf("error %v, want none", err)
				}
				return
			}
			if err == nil {
				t.Fatalf("no error, want one naming %q", tt.want)
			}
			if !errors.Is(err, ErrMissingFeature) || !errors.Is(err, ebpf.ErrNotSupported) {
				t.Errorf("error %v: want ErrMissingFeature and ebpf.ErrNotSupported", err)
			}
			if !strings.Contains(err.Error(), "kernel 4.19.0-test lacks") {
				t.Errorf("error %q does not name the running kernel", err)
			}
			for _, w := range tt.want {
				if !strings.Contains(err.Error(), w) {
					t.Errorf("error %q does not contain %q", err, w)
				}
			}
		})
	}
}

// TestFeatureVersionsCoverObjects fails when a program calls a helper, or
// an object uses a map or program type, whose first Linux version the
// tables do not know: the error for a kernel without it could not say.
func TestFeatureVersionsCoverObjects(t *testing.T) {
	for name, load := range map[string]func() (*ebpf.CollectionSpec, error){"connect": loadConnect, "dns": loadDns} {
		spec, err := load()
		if err != nil {
			t.Fatal(err)
		}
		for n, m := range spec.Maps {
			if _, ok := mapTypeSince[m.Type]; !ok && !strings.HasPrefix(n, ".") {
				t.Errorf("%s: map %s: no version for map type %s", name, n, m.Type)
			}
		}
		for n, p := range spec.Programs {
			if _, ok := progTypeSince[p.Type]; !ok {
				t.Errorf("%s: program %s: no version for program type %s", name, n, p.Type)
			}
			for _, h := range programHelpers(p) {
				if _, ok := helperSince[h]; !ok {
					t.Errorf("%s: program %s: no version for helper %s", name, n, helperName(h))
				}
			}
		}
	}
}

func TestHelperName(t *testing.T) {
	tests := []struct {
		h    asm.BuiltinFunc
		want string
	}{
		{asm.FnKtimeGetBootNs, "bpf_ktime_get_boot_ns"},
		{asm.FnGetCurrentPidTgid, "bpf_get_current_pid_tgid"},
		{asm.FnSkbLoadBytes, "bpf_skb_load_bytes"},
		{asm.FnMapLookupElem, "bpf_map_lookup_elem"},
	}
	for _, tt := range tests {
		if got := helperName(tt.h); got != tt.want {
			t.Errorf("helperName(%v) = %q, want %q", tt.h, got, tt.want)
		}
	}
}

// TestCheckFeatures probes the running kernel for the mode under test with
// DNS on: every kernel the project supports must pass.
func TestCheckFeatures(t *testing.T) {
	privtest.Require(t)
	if err := rlimit.RemoveMemlock(); err != nil {
		t.Fatal(err)
	}
	if err := checkFeatures(Options{Mode: Mode(privtest.Mode()), DNS: true}); err != nil {
		t.Fatalf("mode %s: %v", privtest.Mode(), err)
	}
}
