package procinfo

import (
	"maps"
	"os"
	"path/filepath"
	"syscall"
	"testing"
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
