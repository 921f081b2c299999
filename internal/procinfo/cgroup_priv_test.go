package procinfo

import (
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/tcpconnect/tcpconnect/bpf"
	"github.com/tcpconnect/tcpconnect/internal/privtest"
)

// TestCgroupPathNewCgroup: a cgroup made after the last walk of the tree (a
// new container whose process is gone before its record is read) is found
// at once, right after that walk, not after CgroupRescan; an unknown id
// that is not newer waits for the rescan. Real cgroupfs: its ids increase
// as cgroups are made.
func TestCgroupPathNewCgroup(t *testing.T) {
	privtest.Require(t)
	root, base, mk := testCgroupBase(t)
	c := New(Config{CgroupRoot: root, CgroupRescan: time.Hour})
	now := time.Now()
	_, old := mk("old")
	if p, ok, _ := c.cgroupPath(old, now); !ok || filepath.Base(p) != "old" {
		t.Fatalf("first walk: cgroupPath(old) = %q, %t", p, ok)
	}
	later := now.Add(time.Millisecond)
	_, fresh := mk("fresh")
	if p, ok, _ := c.cgroupPath(fresh, later); !ok || filepath.Base(p) != "fresh" {
		t.Errorf("a cgroup made after the walk: cgroupPath = %q, %t; want it found at once", p, ok)
	}
	// A file's inode in the old cgroup: an id below the walk's largest that
	// names no cgroup.
	fi, err := os.Stat(filepath.Join(base, "old", "cgroup.procs"))
	if err != nil {
		t.Fatal(err)
	}
	notCgroup := fi.Sys().(*syscall.Stat_t).Ino
	walked := c.cgroupsScan
	if _, ok, retry := c.cgroupPath(notCgroup, later.Add(time.Second)); ok || retry || c.cgroupsScan != walked {
		t.Errorf("an unknown id that is not newer walked the tree again before CgroupRescan")
	}
}

// testCgroupBase makes a cgroup for one test below the cgroup v2 root,
// removed (with what the test made below it, deepest first) at its end.
// mk makes a path of cgroups below it (those not made yet) and returns the
// last one's directory and id.
func testCgroupBase(t testing.TB) (root, base string, mk func(rel string) (string, uint64)) {
	t.Helper()
	privtest.Require(t)
	cr, err := bpf.FindCgroupRoot()
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = cr.Close() })
	base, err = os.MkdirTemp(cr.Path, "tcpconnect-procinfo-")
	if err != nil {
		t.Fatalf("make a test cgroup below %s: %v", cr.Path, err)
	}
	var made []string
	t.Cleanup(func() {
		for i := len(made) - 1; i >= 0; i-- {
			if err := os.Remove(made[i]); err != nil {
				t.Errorf("remove test cgroup: %v", err)
			}
		}
		if err := os.Remove(base); err != nil {
			t.Errorf("remove test cgroup: %v", err)
		}
	})
	mk = func(rel string) (string, uint64) {
		t.Helper()
		p := base
		for _, elem := range strings.Split(rel, "/") {
			p = filepath.Join(p, elem)
			err := os.Mkdir(p, 0o755)
			if os.IsExist(err) {
				continue
			}
			if err != nil {
				t.Fatalf("make cgroup %s: %v", p, err)
			}
			made = append(made, p)
		}
		fi, err := os.Stat(p)
		if err != nil {
			t.Fatal(err)
		}
		return p, fi.Sys().(*syscall.Stat_t).Ino
	}
	return cr.Path, base, mk
}

// runIn runs a short-lived process (cat /proc/self/cgroup) born in the
// cgroup dir (clone3 CLONE_INTO_CGROUP), waits for it to exit and be
// reaped, and returns its pid and the cgroup v2 path it printed.
func runIn(t testing.TB, dir string) (int, string) {
	t.Helper()
	fd, err := os.Open(dir)
	if err != nil {
		t.Fatal(err)
	}
	defer fd.Close()
	cmd := exec.Command("cat", "/proc/self/cgroup")
	cmd.SysProcAttr = &syscall.SysProcAttr{UseCgroupFD: true, CgroupFD: int(fd.Fd())}
	out, err := cmd.Output()
	if err != nil {
		t.Fatalf("run a process in cgroup %s: %v", dir, err)
	}
	for _, line := range strings.Split(string(out), "\n") {
		if p, ok := strings.CutPrefix(line, "0::"); ok {
			return cmd.Process.Pid, p
		}
	}
	t.Fatalf("the process in %s printed no cgroup v2 line: %q", dir, out)
	return 0, ""
}
