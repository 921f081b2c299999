package bpf

import (
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"

	"golang.org/x/sys/unix"

	"github.com/tcpconnect/tcpconnect/internal/privtest"
)

// envCgroupRootCase makes the test binary run one FindCgroupRoot case in the
// mount (and cgroup) namespace it was started in, print the outcome and exit.
const envCgroupRootCase = "TCPCONNECT_TEST_CGROUP_ROOT"

// cgroupRootChild prepares the namespace's mounts for a case, calls
// FindCgroupRoot and prints "path=P ino=N mounted=B" or "error=E".
//
//	keep:     leave the mounts as they are
//	none:     unmount every cgroup2 mount (a cgroup-v1-only host)
//	own:      unmount them and mount this cgroup namespace's own view
func cgroupRootChild(c string) string {
	if c == "none" || c == "own" {
		f, err := os.Open("/proc/self/mountinfo")
		if err != nil {
			return "error=" + err.Error()
		}
		mounts, err := cgroup2Mounts(f)
		f.Close()
		if err != nil {
			return "error=" + err.Error()
		}
		for i := len(mounts) - 1; i >= 0; i-- {
			if err := unix.Unmount(mounts[i], unix.MNT_DETACH); err != nil {
				return fmt.Sprintf("error=unmount %s: %v", mounts[i], err)
			}
		}
	}
	if c == "own" {
		dir, err := os.MkdirTemp("", "own-cgroup2-")
		if err != nil {
			return "error=" + err.Error()
		}
		defer os.Remove(dir)
		if err := unix.Mount("cgroup2", dir, "cgroup2", 0, ""); err != nil {
			return "error=mount own: " + err.Error()
		}
		defer unix.Unmount(dir, unix.MNT_DETACH) //nolint:errcheck // the namespace ends with this process
	}
	root, err := FindCgroupRoot()
	if err != nil {
		return "error=" + err.Error()
	}
	ino, err := rootIno(root.Path)
	if err != nil {
		return "error=" + err.Error()
	}
	mounted := root.Mounted
	out := fmt.Sprintf("path=%s ino=%d mounted=%t", root.Path, ino, mounted)
	if err := root.Close(); err != nil {
		return "error=" + err.Error()
	}
	if _, err := os.Stat(root.Path); mounted && err == nil {
		return "error=" + root.Path + " left behind by Close"
	}
	return out
}

// TestFindCgroupRoot runs FindCgroupRoot on the host and, in a child with its
// own mount namespace, on a host without cgroup2 mounts (it mounts one) and in
// a private cgroup namespace below the root (it finds the host's mount, or
// refuses the subtree naming the mount to add).
func TestFindCgroupRoot(t *testing.T) {
	privtest.Require(t)
	host, err := FindCgroupRoot()
	if err != nil {
		t.Fatalf("on the host: %v", err)
	}
	if host.Mounted {
		t.Fatalf("on the host: mounted its own cgroup2 at %s though one is mounted", host.Path)
	}
	// A cgroup below the root for the private cgroup namespace cases.
	sub := filepath.Join(host.Path, fmt.Sprintf("tcpconnect-test-%d", os.Getpid()))
	if err := os.Mkdir(sub, 0o755); err != nil {
		t.Fatalf("make cgroup %s: %v", sub, err)
	}
	defer os.Remove(sub)
	subFD, err := unix.Open(sub, unix.O_RDONLY|unix.O_DIRECTORY, 0)
	if err != nil {
		t.Fatal(err)
	}
	defer unix.Close(subFD)

	tests := []struct {
		name     string
		c        string
		cgroupNS bool
		want     string // prefix of the child's output
	}{
		{"host's mount", "keep", false, fmt.Sprintf("path=%s ino=1 mounted=false", host.Path)},
		{"cgroup v1 only: mounts its own", "none", false, "path=" + filepath.Join(os.TempDir(), "tcpconnect-cgroup2-")},
		{"private cgroupns: host tree still mounted", "keep", true, fmt.Sprintf("path=%s ino=1 mounted=false", host.Path)},
		{"private cgroupns: own subtree only", "own", true, "error=the cgroup2 mounts here"},
		{"private cgroupns: nothing mounted", "none", true, "error=the cgroup2 mounts here"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			cmd := exec.Command(os.Args[0], "-test.run=^$")
			cmd.Env = append(os.Environ(), envCgroupRootCase+"="+tc.c)
			cmd.SysProcAttr = &syscall.SysProcAttr{Unshareflags: syscall.CLONE_NEWNS}
			if tc.cgroupNS {
				cmd.SysProcAttr.Unshareflags |= syscall.CLONE_NEWCGROUP
				cmd.SysProcAttr.UseCgroupFD = true
				cmd.SysProcAttr.CgroupFD = subFD
			}
			out, err := cmd.CombinedOutput()
			got := strings.TrimSpace(string(out))
			if err != nil {
				t.Fatalf("child: %v: %s", err, got)
			}
			if !strings.HasPrefix(got, tc.want) {
				t.Fatalf("got %q, want it to start with %q", got, tc.want)
			}
			if tc.c == "none" && !tc.cgroupNS && !strings.Contains(got, "ino=1 mounted=true") {
				t.Fatalf("got %q, want the root (ino 1) mounted by the receiver", got)
			}
		})
	}
}
