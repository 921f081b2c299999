package receiver

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

	"github.com/tcpconnect/tcpconnect/internal/privtest"
)

// envChildCaps makes the test binary, re-executed as a child with a reduced
// capability set, open the probe in the attach mode it holds, print the
// outcome and exit (see TestOpenNamesMissingCapability).
const envChildCaps = "TCPCONNECT_TEST_CHILD_CAPS"

func init() {
	// Not state: it reads the environment once and exits.
	if mode := os.Getenv(envChildCaps); mode != "" {
		capsChild(mode)
		os.Exit(0)
	}
}

// capsChild opens the probe with DNS capture on and prints one line per
// warning ("warn: CAP_X") and then "error: ..." or "ok".
func capsChild(mode string) {
	cfg := createDefaultConfig()
	cfg.Attach = mode
	core, logs := observer.New(zap.WarnLevel)
	src, err := openProbe(cfg, zap.New(core))
	for _, e := range logs.All() {
		fmt.Printf("warn: %v %s\n", e.ContextMap()["capability"], e.Message)
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

// TestOpenNamesMissingCapability starts the probe (cgroup mode, DNS on) in a
// child that runs as nobody with only the given capabilities (ambient, so
// that they survive the exec): the minimal set loads and attaches, and each
// missing capability is named in the error, or in a warning when optional.
func TestOpenNamesMissingCapability(t *testing.T) {
	privtest.Require(t)
	const (
		bpfCap  = unix.CAP_BPF
		perfmon = unix.CAP_PERFMON
		netAdm  = unix.CAP_NET_ADMIN
		ptrace  = unix.CAP_SYS_PTRACE
		sysAdm  = unix.CAP_SYS_ADMIN
	)
	tests := []struct {
		name     string
		caps     []uintptr
		wantErr  string // "" : opens
		wantWarn []string
	}{
		{"minimal set", []uintptr{bpfCap, perfmon, netAdm, ptrace}, "", nil},
		{"without CAP_SYS_PTRACE a warning", []uintptr{bpfCap, perfmon, netAdm}, "", []string{"CAP_SYS_PTRACE"}},
		{"CAP_SYS_ADMIN for the first three", []uintptr{sysAdm, ptrace}, "", nil},
		{"no CAP_BPF nor CAP_SYS_ADMIN", []uintptr{perfmon, netAdm, ptrace}, "CAP_BPF missing", nil},
		{"no CAP_PERFMON nor CAP_SYS_ADMIN", []uintptr{bpfCap, netAdm, ptrace}, "CAP_PERFMON missing", nil},
		{"no CAP_NET_ADMIN nor CAP_SYS_ADMIN", []uintptr{bpfCap, perfmon, ptrace}, "CAP_NET_ADMIN missing", nil},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			cmd := exec.Command("/proc/self/exe", "-test.run=^$")
			cmd.Env = append(os.Environ(), envChildCaps+"=cgroup")
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
