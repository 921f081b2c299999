package caps

import (
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"

	"golang.org/x/sys/unix"

	"github.com/tcpconnect/tcpconnect/internal/privtest"
)

func TestCheck(t *testing.T) {
	minimal := Of(unix.CAP_BPF, unix.CAP_PERFMON, unix.CAP_NET_ADMIN, unix.CAP_SYS_PTRACE)
	all := Needs{Cgroup: true, DNS: true}
	tests := []struct {
		name     string
		have     Set
		needs    Needs
		wantErr  []string // substrings; nil: no error
		noErr    []string // must not be in the error
		wantWarn []Cap
	}{
		{"minimal set", minimal, all, nil, nil, nil},
		{"root's full set", ^Set(0), Needs{Cgroup: true, DNS: true, Kprobe: true, PerfEventParanoid: 3}, nil, nil, nil},
		{"nothing", 0, all, []string{"CAP_BPF missing", "CAP_PERFMON missing", "CAP_NET_ADMIN missing: the cgroup programs of attach mode cgroup and DNS capture"}, nil, []Cap{unix.CAP_SYS_PTRACE}},
		{"no CAP_BPF", minimal &^ Of(unix.CAP_BPF), all, []string{"CAP_BPF missing"}, []string{"CAP_PERFMON", "CAP_NET_ADMIN missing"}, nil},
		{"no CAP_PERFMON", minimal &^ Of(unix.CAP_PERFMON), all, []string{"CAP_PERFMON missing"}, []string{"CAP_BPF missing"}, nil},
		{"no CAP_NET_ADMIN, DNS on", minimal &^ Of(unix.CAP_NET_ADMIN), Needs{DNS: true, CgroupFallback: true}, []string{"CAP_NET_ADMIN missing: the cgroup programs of DNS capture (dns.enabled) cannot attach"}, nil, nil},
		{"no CAP_NET_ADMIN, first bytes on", minimal &^ Of(unix.CAP_NET_ADMIN), Needs{FirstBytes: true, CgroupFallback: true}, []string{"CAP_NET_ADMIN missing: the cgroup programs of first bytes (first_bytes, with outcome.enabled) cannot attach"}, nil, nil},
		{"no CAP_NET_ADMIN, DNS and first bytes on", minimal &^ Of(unix.CAP_NET_ADMIN), Needs{DNS: true, FirstBytes: true}, []string{"CAP_NET_ADMIN missing: the cgroup programs of DNS capture (dns.enabled) and first bytes (first_bytes, with outcome.enabled) cannot attach"}, nil, nil},
		{"no CAP_NET_ADMIN, cgroup mode", minimal &^ Of(unix.CAP_NET_ADMIN), Needs{Cgroup: true}, []string{"CAP_NET_ADMIN missing: the cgroup programs of attach mode cgroup cannot load"}, nil, nil},
		{"no CAP_NET_ADMIN, tracing modes only", minimal &^ Of(unix.CAP_NET_ADMIN), Needs{}, nil, nil, nil},
		{"no CAP_NET_ADMIN, auto without DNS", minimal &^ Of(unix.CAP_NET_ADMIN), Needs{CgroupFallback: true}, nil, nil, []Cap{unix.CAP_NET_ADMIN}},
		{"CAP_SYS_ADMIN for CAP_BPF and CAP_PERFMON (kernels before 5.8)", Of(unix.CAP_SYS_ADMIN, unix.CAP_NET_ADMIN, unix.CAP_SYS_PTRACE), all, nil, nil, nil},
		{"CAP_SYS_ADMIN for CAP_NET_ADMIN in cgroup mode", Of(unix.CAP_SYS_ADMIN, unix.CAP_SYS_PTRACE), Needs{Cgroup: true}, nil, nil, nil},
		{"CAP_SYS_ADMIN not for CAP_NET_ADMIN with DNS (6.1)", Of(unix.CAP_SYS_ADMIN, unix.CAP_SYS_PTRACE), all, []string{"CAP_NET_ADMIN missing"}, []string{"CAP_BPF", "CAP_PERFMON"}, nil},
		{"CAP_SYS_ADMIN does not stand in for CAP_SYS_PTRACE", Of(unix.CAP_SYS_ADMIN, unix.CAP_NET_ADMIN), all, nil, nil, []Cap{unix.CAP_SYS_PTRACE}},
		{"no CAP_SYS_PTRACE", minimal &^ Of(unix.CAP_SYS_PTRACE), all, nil, nil, []Cap{unix.CAP_SYS_PTRACE}},
		{"kprobe, paranoid 3, no CAP_SYS_ADMIN", minimal, Needs{Kprobe: true, PerfEventParanoid: 3}, []string{"CAP_SYS_ADMIN missing: attach mode kprobe opens a perf event"}, nil, nil},
		{"kprobe, paranoid 2", minimal, Needs{Kprobe: true, PerfEventParanoid: 2}, nil, nil, nil},
		{"kprobe, paranoid unknown", minimal, Needs{Kprobe: true, PerfEventParanoid: -1}, nil, nil, nil},
		{"kprobe, paranoid 3, CAP_SYS_ADMIN", minimal | Of(unix.CAP_SYS_ADMIN), Needs{Kprobe: true, PerfEventParanoid: 3}, nil, nil, nil},
		{"auto, paranoid 3, no CAP_SYS_ADMIN", minimal, Needs{KprobeFallback: true, CgroupFallback: true, DNS: true, PerfEventParanoid: 3}, nil, nil, []Cap{unix.CAP_SYS_ADMIN}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			warns, err := Check(tt.have, tt.needs)
			if tt.wantErr == nil && err != nil {
				t.Errorf("err = %v, want nil", err)
			}
			if tt.wantErr != nil && err == nil {
				t.Fatalf("err = nil, want one naming %q", tt.wantErr)
			}
			for _, w := range tt.wantErr {
				if !strings.Contains(err.Error(), w) {
					t.Errorf("err = %v, want it to contain %q", err, w)
				}
			}
			for _, w := range tt.noErr {
				if strings.Contains(err.Error(), w) {
					t.Errorf("err = %v, must not contain %q", err, w)
				}
			}
			var got []Cap
			for _, w := range warns {
				got = append(got, w.Cap)
				if !strings.HasPrefix(w.String(), w.Cap.Name()+" missing: ") {
					t.Errorf("warning %q does not start with the capability's name", w)
				}
			}
			if len(got) != len(tt.wantWarn) {
				t.Fatalf("warnings %v, want %v", got, tt.wantWarn)
			}
			for i := range got {
				if got[i] != tt.wantWarn[i] {
					t.Errorf("warnings %v, want %v", got, tt.wantWarn)
				}
			}
		})
	}
}

func TestEffective(t *testing.T) {
	s, err := Effective()
	if err != nil {
		t.Fatal(err)
	}
	// /proc/self/status shows the same set (of the thread group leader; the
	// Go runtime keeps all threads alike).
	want, err := statusCapEff()
	if err != nil {
		t.Fatal(err)
	}
	if s != want {
		t.Errorf("Effective() = %#x, /proc/self/status CapEff = %#x", uint64(s), uint64(want))
	}
}

// statusCapEff reads CapEff from /proc/self/status: an independent reading
// of the set that Effective gets from capget.
func statusCapEff() (Set, error) {
	b, err := os.ReadFile("/proc/self/status")
	if err != nil {
		return 0, err
	}
	for _, line := range strings.Split(string(b), "\n") {
		if v, ok := strings.CutPrefix(line, "CapEff:"); ok {
			n, err := strconv.ParseUint(strings.TrimSpace(v), 16, 64)
			return Set(n), err
		}
	}
	return 0, errors.New("no CapEff line")
}

// TestRaiseEffective runs a helper (testdata/raise, built without cgo) as
// uid 65534 from a binary with file capabilities in its permitted set only,
// as the image's collector is: the capabilities the kernel grants start
// permitted but not effective, and RaiseEffective makes them effective.
func TestRaiseEffective(t *testing.T) {
	privtest.Require(t)
	setcap := privtest.LookPath(t, "setcap", "libcap2-bin")
	dir, err := os.MkdirTemp("", "caps-raise-")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { os.RemoveAll(dir) })
	if err := os.Chmod(dir, 0o755); err != nil {
		t.Fatal(err)
	}
	bin := filepath.Join(dir, "raise")
	build := exec.Command("go", "build", "-o", bin, "./testdata/raise")
	build.Env = append(os.Environ(), "CGO_ENABLED=0")
	if out, err := build.CombinedOutput(); err != nil {
		t.Fatalf("build the helper: %v\n%s", err, out)
	}
	want := Of(unix.CAP_NET_ADMIN, unix.CAP_SYS_PTRACE)
	tests := []struct {
		name, fcaps string
		want        string
	}{
		{"no file capabilities", "", "before=0x0 after=0x0 other=0x0"},
		{"permitted only", "cap_net_admin,cap_sys_ptrace+p", fmt.Sprintf("before=0x0 after=%#x other=%#x", uint64(want), uint64(want))},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			args := []string{tt.fcaps, bin}
			if tt.fcaps == "" {
				args = []string{"-r", bin}
			}
			if out, err := exec.Command(setcap, args...).CombinedOutput(); err != nil && tt.fcaps != "" {
				t.Fatalf("setcap %v: %v\n%s", args, err, out)
			}
			cmd := exec.Command(bin)
			cmd.SysProcAttr = &syscall.SysProcAttr{Credential: &syscall.Credential{Uid: 65534, Gid: 65534}}
			out, err := cmd.CombinedOutput()
			if err != nil {
				t.Fatalf("helper: %v\n%s", err, out)
			}
			if got := strings.TrimSpace(string(out)); got != tt.want {
				t.Errorf("helper printed %q, want %q", got, tt.want)
			}
		})
	}
}
