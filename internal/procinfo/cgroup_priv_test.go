package procinfo

import (
	"os"
	"path/filepath"
	"strconv"
	"syscall"
	"testing"
	"time"

	"github.com/tcpconnect/tcpconnect/bpf"
	"github.com/tcpconnect/tcpconnect/internal/privtest"
)

// TestCgroupPathNewCgroup: a cgroup made after the last walk of the tree (a
// new container whose process is gone before its record is read) is found
// at once, not after CgroupRescan; an unknown id that is not newer waits
// for the rescan. Real cgroupfs: its ids increase as cgroups are made.
func TestCgroupPathNewCgroup(t *testing.T) {
	privtest.Require(t)
	root, err := bpf.FindCgroupRoot()
	if err != nil {
		t.Fatal(err)
	}
	defer root.Close()
	base := filepath.Join(root.Path, "tcpconnect-procinfo-"+strconv.Itoa(os.Getpid()))
	mk := func(name string) uint64 {
		t.Helper()
		p := filepath.Join(base, name)
		if err := os.MkdirAll(p, 0o755); err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { _ = os.Remove(p) })
		fi, err := os.Stat(p)
		if err != nil {
			t.Fatal(err)
		}
		return fi.Sys().(*syscall.Stat_t).Ino
	}
	t.Cleanup(func() { _ = os.Remove(base) })

	c := New(Config{CgroupRoot: root.Path, CgroupRescan: time.Hour})
	now := time.Now()
	old := mk("old")
	if p, ok := c.cgroupPath(old, now); !ok || filepath.Base(p) != "old" {
		t.Fatalf("first walk: cgroupPath(old) = %q, %t", p, ok)
	}
	later := now.Add(2 * minCgroupRescan)
	fresh := mk("fresh")
	if p, ok := c.cgroupPath(fresh, later); !ok || filepath.Base(p) != "fresh" {
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
	if _, ok := c.cgroupPath(notCgroup, later.Add(4*minCgroupRescan)); ok || c.cgroupsScan != walked {
		t.Errorf("an unknown id that is not newer walked the tree again before CgroupRescan")
	}
}
