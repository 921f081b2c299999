package procinfo

import (
	"maps"
	"os"
	"path/filepath"
	"syscall"
	"testing"
	"time"
)

func inode(t *testing.T, p string) uint64 {
	t.Helper()
	fi, err := os.Lstat(p)
	if err != nil {
		t.Fatal(err)
	}
	return fi.Sys().(*syscall.Stat_t).Ino
}

// TestScanCgroups: every directory below the root, the root itself as "/",
// by inode number; files and symbolic links are no cgroups.
func TestScanCgroups(t *testing.T) {
	root := t.TempDir()
	for _, d := range []string{"a/b/c", "a/d", "e"} {
		if err := os.MkdirAll(filepath.Join(root, d), 0o755); err != nil {
			t.Fatal(err)
		}
	}
	if err := os.WriteFile(filepath.Join(root, "a", "cgroup.procs"), nil, 0o644); err != nil {
		t.Fatal(err)
	}
	if err := os.Symlink(filepath.Join(root, "a"), filepath.Join(root, "link")); err != nil {
		t.Fatal(err)
	}
	want := map[uint64]string{inode(t, root): "/"}
	for _, d := range []string{"a", "a/b", "a/b/c", "a/d", "e"} {
		want[inode(t, filepath.Join(root, d))] = "/" + d
	}
	got, err := scanCgroups(root)
	if err != nil {
		t.Fatal(err)
	}
	if !maps.Equal(got, want) {
		t.Errorf("scanCgroups = %v, want %v", got, want)
	}
	if _, err := scanCgroups(filepath.Join(root, "missing")); err == nil {
		t.Error("scanCgroups of a missing root: no error")
	}
}

// TestCgroupPathWalks: which misses walk the tree. The ids are not in the
// (empty) tree, as for a cgroup removed before its record is read; the walk
// debt is set as if earlier walks had taken that long.
func TestCgroupPathWalks(t *testing.T) {
	c := New(Config{ProcRoot: t.TempDir(), CgroupRoot: t.TempDir(), CgroupRescan: time.Hour})
	t0 := time.Unix(1000, 0)
	payback := func(d time.Duration) time.Duration { return d * walkShare }
	const base = uint64(1) << 62 // far above the temporary root's inode
	steps := []struct {
		name      string
		id        uint64
		at        time.Time
		debt      time.Duration // set before the lookup; 0 leaves it
		walk      bool
		retry     bool
		seenAfter uint64
	}{
		{"first miss walks", base + 100, t0, 0, true, false, base + 100},
		{"an id the walk could have seen waits for the rescan", base + 50, t0.Add(time.Millisecond), 0, false, false, base + 100},
		{"the same id again waits too", base + 100, t0.Add(time.Minute), 0, false, false, base + 100},
		{"a newer id walks at once, inside the rescan time", base + 101, t0.Add(2 * time.Millisecond), 0, true, false, base + 101},
		{"a newer id over the walk budget waits, to be retried", base + 200, t0.Add(3 * time.Millisecond), maxWalkDebt, false, true, base + 101},
		{"still over the budget", base + 200, t0.Add(3 * time.Millisecond), 0, false, true, base + 101},
		{"the budget paid back a little: it walks", base + 200, t0.Add(3*time.Millisecond + payback(time.Millisecond)), 0, true, false, base + 200},
		{"an old id over the budget waits, no retry", base + 150, t0.Add(time.Second), maxWalkDebt, false, false, base + 200},
		{"the rescan is due: it walks whatever the budget", base + 150, t0.Add(2 * time.Hour), maxWalkDebt, true, false, base + 200},
	}
	for _, s := range steps {
		if s.debt != 0 {
			c.walkDebt, c.walkDebtAt = s.debt, s.at
		}
		walks := c.walks
		_, ok, retry := c.cgroupPath(s.id, s.at)
		if ok || retry != s.retry || (c.walks > walks) != s.walk || c.cgroupsSeen != s.seenAfter {
			t.Errorf("%s: found %t, retry %t, walked %t, seen %d; want retry %t, walked %t, seen %d",
				s.name, ok, retry, c.walks > walks, c.cgroupsSeen, s.retry, s.walk, s.seenAfter)
		}
	}
}

// TestWalkDebt: the debt grows by each walk's time and is paid back at
// 1/walkShare of the time that passes, never below zero.
func TestWalkDebt(t *testing.T) {
	c := New(Config{ProcRoot: t.TempDir(), CgroupRoot: t.TempDir(), CgroupRescan: time.Hour})
	t0 := time.Unix(1000, 0)
	c.cgroupPath(1, t0)
	if c.walkDebt <= 0 {
		t.Fatalf("a walk left no debt")
	}
	c.walkDebt = 100 * time.Millisecond
	c.payWalkDebt(t0.Add(walkShare * 40 * time.Millisecond))
	if c.walkDebt != 60*time.Millisecond {
		t.Errorf("debt %v after paying back 40ms of 100ms, want 60ms", c.walkDebt)
	}
	c.payWalkDebt(t0.Add(-time.Hour)) // a clock that went back pays nothing
	c.payWalkDebt(t0.Add(walkShare * time.Second))
	if c.walkDebt != 0 {
		t.Errorf("debt %v after paying back more than it was, want 0", c.walkDebt)
	}
}

// TestLookupRetriesNewCgroup: a gone process whose cgroup id is newer than
// the last walk, when the walk budget refuses a walk, is cached without a
// container for cgroupRetry only: its next record after that walks, and
// finds the container made meanwhile.
func TestLookupRetriesNewCgroup(t *testing.T) {
	root := t.TempDir()
	c := New(Config{ProcRoot: t.TempDir(), CgroupRoot: root, CgroupRescan: time.Hour})
	t0 := time.Unix(1000, 0)
	c.cgroupPath(1, t0) // the first walk
	dir := filepath.Join(root, "kubepods", "besteffort", "pod"+uid, id1)
	if err := os.MkdirAll(dir, 0o755); err != nil {
		t.Fatal(err)
	}
	id := inode(t, dir)
	c.cgroupsSeen = id - 1 // the walk was before the container was made
	c.walkDebt, c.walkDebtAt = maxWalkDebt, t0
	k := Key{PID: 99, StartTimeNs: 1}
	want := Container{ID: id1, PodUID: uid}
	if info := c.Lookup(k, []byte("nc"), nil, 0, id, t0); info.Container != (Container{}) {
		t.Fatalf("over the walk budget: container %+v, want none", info.Container)
	}
	if info := c.Lookup(k, []byte("nc"), nil, 0, id, t0.Add(cgroupRetry/2)); info.Container != (Container{}) {
		t.Errorf("before cgroupRetry: container %+v, want the cached entry's none", info.Container)
	}
	if info := c.Lookup(k, []byte("nc"), nil, 0, id, t0.Add(cgroupRetry)); info.Container != want {
		t.Errorf("after cgroupRetry: container %+v, want %+v", info.Container, want)
	}
	if info := c.Lookup(k, []byte("nc"), nil, 0, id, t0.Add(DefaultTTL-time.Second)); info.Container != want {
		t.Errorf("a later record: container %+v, want %+v", info.Container, want)
	}
}
