package procinfo

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// fakePIDNS writes a procfs root whose self link names selfPID and whose
// pid 2 has the stat flags flags ("" for no pid 2).
func fakePIDNS(t *testing.T, selfPID, flags string) string {
	t.Helper()
	root := t.TempDir()
	if selfPID != "" {
		if err := os.Symlink(selfPID, filepath.Join(root, "self")); err != nil {
			t.Fatal(err)
		}
	}
	if flags != "" {
		if err := os.Mkdir(filepath.Join(root, "2"), 0o755); err != nil {
			t.Fatal(err)
		}
		stat := "2 (kthreadd) S 0 0 0 0 -1 " + flags + " 0 0 0 0 0 0 0 0 20 0 1 0 0 0 0\n"
		if err := os.WriteFile(filepath.Join(root, "2", "stat"), []byte(stat), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	return root
}

func TestCheckHostPIDView(t *testing.T) {
	const kthread, user = "2129984", "4194560"
	tests := []struct {
		name     string
		root     func(t *testing.T) string
		selfTGID uint32
		wantErr  string
	}{
		{"proof: self is the kernel's tgid", func(t *testing.T) string { return fakePIDNS(t, "4242", user) }, 4242, ""},
		{"proof: container PID namespace", func(t *testing.T) string { return fakePIDNS(t, "1", kthread) }, 4242, "this process is pid 1, but the kernel's records carry host pids (it is pid 4242 there)"},
		{"proof: not in this procfs", func(t *testing.T) string { return fakePIDNS(t, "", kthread) }, 4242, "is not a procfs this process appears in"},
		{"no proof: pid 2 is kthreadd", func(t *testing.T) string { return fakePIDNS(t, "1", kthread) }, 0, ""},
		{"no proof: pid 2 is a user process", func(t *testing.T) string { return fakePIDNS(t, "1", user) }, 0, "pid 2 (kthreadd) is not a kernel thread"},
		{"no proof: no pid 2", func(t *testing.T) string { return fakePIDNS(t, "1", "") }, 0, "has no pid 2"},
		{"this host's /proc, no proof", func(*testing.T) string { return "/proc" }, 0, ""},
		{"this host's /proc, our pid", func(*testing.T) string { return "" }, uint32(os.Getpid()), ""},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			err := CheckHostPIDView(tt.root(t), tt.selfTGID)
			if (err == nil) != (tt.wantErr == "") || (err != nil && !strings.Contains(err.Error(), tt.wantErr)) {
				t.Fatalf("CheckHostPIDView = %v, want an error containing %q", err, tt.wantErr)
			}
		})
	}
}
