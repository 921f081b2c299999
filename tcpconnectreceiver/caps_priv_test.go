package tcpconnectreceiver

import (
	"bufio"
	"bytes"
	"fmt"
	"os"
	"os/exec"
	"slices"
	"strings"
	"syscall"
	"testing"

	"go.uber.org/zap"
	"go.uber.org/zap/zaptest/observer"
	"golang.org/x/sys/unix"

	"github.com/tcpconnect/tcpconnect/internal/caps"
	"github.com/tcpconnect/tcpconnect/internal/privtest"
)

// envChildCaps makes the test binary, re-executed as a child with a reduced
// capability set, open the probe as its value says ("MODE" or "MODE,nodns":
// without DNS capture nor first bytes, the cgroup_skb programs),
// print the outcome and exit (see TestOpenNamesMissingCapability).
const envChildCaps = "TCPCONNECT_TEST_CHILD_CAPS"

func init() {
	// Not state: it reads the environment once and exits.
	if v := os.Getenv(envChildCaps); v != "" {
		mode, opt, _ := strings.Cut(v, ",")
		capsChild(mode, opt != "nodns")
		os.Exit(0)
	}
}

// capsChild opens the probe and prints one line per capability warning
// ("warn: CAP_X") and then "error: ..." or "ok".
func capsChild(mode string, dnsOn bool) {
	// Start from the kernel's default RLIMIT_MEMLOCK (64 KiB before 5.16),
	// not from the parent's: a test before this one may have lifted the
	// test binary's limit (opening a probe does, on kernels that charge BPF
	// memory to it), and a lifted limit is inherited. Lowering needs no
	// capability.
	lim := unix.Rlimit{Cur: 64 << 10, Max: 64 << 10}
	if err := unix.Setrlimit(unix.RLIMIT_MEMLOCK, &lim); err != nil {
		fmt.Println("error: setrlimit(RLIMIT_MEMLOCK):", err)
		return
	}
	cfg := createDefaultConfig()
	cfg.Attach = mode
	cfg.DNS.Enabled = dnsOn
	cfg.FirstBytes.TLS, cfg.FirstBytes.HTTP = dnsOn, dnsOn
	core, logs := observer.New(zap.WarnLevel)
	src, err := openProbe(cfg, zap.New(core))
	for _, e := range logs.All() {
		if c, ok := e.ContextMap()["capability"]; ok {
			fmt.Printf("warn: %v %s\n", c, e.Message)
		}
	}
	if err != nil {
		fmt.Println("error:", strings.ReplaceAll(err.Error(), "\n", "; "))
		return
	}
	if err := src.Close(); err != nil {
		fmt.Println("error: close:", err)
		return
	}
	fmt.Println("ok")
}

// TestOpenNamesMissingCapability opens the probe (in the mode under test,
// cgroup for auto) in a child that runs as nobody with only the given
// capabilities (ambient, so that they survive the exec): the minimal set
// loads and attaches, and each missing capability is named in the error, or
// in a warning when optional. The cases that open prove the kernel accepts
// the set; the VM runs them on 6.1 and 6.12 in every mode.
func TestOpenNamesMissingCapability(t *testing.T) {
	privtest.Require(t)
	mode := privtest.Mode()
	if mode == "auto" {
		mode = "cgroup" // what auto ends in natively; explicit, so the outcome does not depend on the host
	}
	const (
		bpfCap  = unix.CAP_BPF
		perfmon = unix.CAP_PERFMON
		netAdm  = unix.CAP_NET_ADMIN
		ptrace  = unix.CAP_SYS_PTRACE
		sysAdm  = unix.CAP_SYS_ADMIN
	)
	type capsCase struct {
		name     string
		caps     []uintptr
		noDNS    bool
		wantErr  string // "" : opens
		wantWarn []string
	}
	// Attach mode kprobe where kernel.perf_event_paranoid is 3 (Debian's
	// kernels) needs CAP_SYS_ADMIN on top of the minimal set.
	kprobeAdmin := mode == "kprobe" && caps.PerfEventParanoid() >= 3
	needAdmin := func(c capsCase) capsCase {
		if kprobeAdmin && !slices.Contains(c.caps, sysAdm) && c.wantErr == "" {
			c.wantErr = "CAP_SYS_ADMIN missing: attach mode kprobe opens a perf event"
		}
		return c
	}
	// Kernels before 5.11 charge BPF memory to RLIMIT_MEMLOCK, whose hard
	// limit (64 KiB by default there) only CAP_SYS_RESOURCE lifts: every
	// set that opens needs it on top (README, Requirements).
	charged := memlockCharged(t)
	needResource := func(c capsCase) capsCase {
		if charged && c.wantErr == "" {
			c.caps = append(slices.Clone(c.caps), unix.CAP_SYS_RESOURCE)
		}
		return c
	}
	tests := []capsCase{
		needAdmin(capsCase{"minimal set", []uintptr{bpfCap, perfmon, netAdm, ptrace}, false, "", nil}),
		needAdmin(capsCase{"without CAP_SYS_PTRACE a warning", []uintptr{bpfCap, perfmon, netAdm}, false, "", []string{"CAP_SYS_PTRACE"}}),
		{"CAP_SYS_ADMIN for CAP_BPF and CAP_PERFMON", []uintptr{sysAdm, netAdm, ptrace}, false, "", nil},
		{"CAP_SYS_ADMIN not for CAP_NET_ADMIN with DNS", []uintptr{sysAdm, ptrace}, false, "CAP_NET_ADMIN missing", nil},
		{"no CAP_BPF nor CAP_SYS_ADMIN", []uintptr{perfmon, netAdm, ptrace}, false, "CAP_BPF missing", nil},
		{"no CAP_PERFMON nor CAP_SYS_ADMIN", []uintptr{bpfCap, netAdm, ptrace}, false, "CAP_PERFMON missing", nil},
		{"no CAP_NET_ADMIN nor CAP_SYS_ADMIN", []uintptr{bpfCap, perfmon, ptrace}, false, "CAP_NET_ADMIN missing", nil},
	}
	if mode == "cgroup" {
		tests = append(tests, capsCase{"CAP_SYS_ADMIN for CAP_NET_ADMIN in cgroup mode without DNS", []uintptr{sysAdm, ptrace}, true, "", nil})
	} else {
		tests = append(tests, needAdmin(capsCase{"tracing mode without DNS needs no CAP_NET_ADMIN", []uintptr{bpfCap, perfmon, ptrace}, true, "", nil}))
	}
	for i := range tests {
		tests[i] = needResource(tests[i])
	}
	if charged {
		tests = append(tests, needAdmin(capsCase{"memlock charged: no CAP_SYS_RESOURCE", []uintptr{bpfCap, perfmon, netAdm, ptrace, sysAdm}, false, "CAP_SYS_RESOURCE", nil}))
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			arg := mode
			if tt.noDNS {
				arg += ",nodns"
			}
			cmd := exec.Command("/proc/self/exe", "-test.run=^$")
			cmd.Env = append(os.Environ(), envChildCaps+"="+arg)
			cmd.SysProcAttr = &syscall.SysProcAttr{
				Credential:  &syscall.Credential{Uid: 65534, Gid: 65534},
				AmbientCaps: tt.caps,
			}
			var stderr bytes.Buffer
			cmd.Stderr = &stderr
			out, err := cmd.Output()
			if err != nil {
				t.Fatalf("child: %v\n%s", err, stderr.String())
			}
			var warns []string
			result := ""
			for s := bufio.NewScanner(bytes.NewReader(out)); s.Scan(); {
				line := s.Text()
				if w, ok := strings.CutPrefix(line, "warn: "); ok {
					warns = append(warns, strings.Fields(w)[0])
					continue
				}
				result = line
			}
			t.Logf("child: %s; warnings %v", result, warns)
			if tt.wantErr == "" && result != "ok" {
				t.Errorf("child = %q, want ok", result)
			}
			if tt.wantErr != "" && !(strings.HasPrefix(result, "error: ") && strings.Contains(result, tt.wantErr)) {
				t.Errorf("child = %q, want an error naming %q", result, tt.wantErr)
			}
			if !slices.Equal(warns, tt.wantWarn) {
				t.Errorf("warnings %v, want %v", warns, tt.wantWarn)
			}
		})
	}
}

// memlockCharged reports whether the running kernel charges BPF memory to
// RLIMIT_MEMLOCK (before 5.11, when memory cgroup accounting replaced it).
func memlockCharged(t *testing.T) bool {
	t.Helper()
	var u unix.Utsname
	if err := unix.Uname(&u); err != nil {
		t.Fatalf("uname: %v", err)
	}
	rel := unix.ByteSliceToString(u.Release[:])
	var major, minor int
	if _, err := fmt.Sscanf(rel, "%d.%d", &major, &minor); err != nil {
		t.Fatalf("kernel release %q: %v", rel, err)
	}
	return major < 5 || major == 5 && minor < 11
}
