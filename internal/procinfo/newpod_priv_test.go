package procinfo

import (
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/tcpconnect/tcpconnect/internal/privtest"
)

// TestLookupGoneProcessNewPod: a Kubernetes container made right after a
// walk of the cgroup tree, whose process connects and exits before its
// record is read, is found by its cgroup id on its process's first record:
// the container id and pod UID come from a walk that the new id allows, and
// a later record of the process (the cached Info) has them too. Real
// cgroupfs, a real process in the new cgroup, the kubelet's two cgroup
// drivers' layouts.
func TestLookupGoneProcessNewPod(t *testing.T) {
	privtest.Require(t)
	tests := []struct {
		name string
		rel  func(podUID, id string) string
	}{
		{"systemd driver, containerd", func(podUID, id string) string {
			u := strings.ReplaceAll(podUID, "-", "_")
			return "kubepods.slice/kubepods-besteffort.slice/kubepods-besteffort-pod" + u + ".slice/cri-containerd-" + id + ".scope"
		}},
		{"cgroupfs driver", func(podUID, id string) string {
			return "kubepods/besteffort/pod" + podUID + "/" + id
		}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			root, base, mk := testCgroupBase(t)
			c := New(Config{CgroupRoot: root})
			// A record of a process whose cgroup the cache does not know
			// yet: the first walk.
			_, oldID := mk("old")
			oldPID, _ := runIn(t, filepath.Join(base, "old"))
			t0 := time.Now()
			if info := c.Lookup(Key{PID: uint32(oldPID), StartTimeNs: 1}, []byte("cat"), []byte("cat"), 0, oldID, t0); info.Container != (Container{}) {
				t.Fatalf("a cgroup that names no container gave %+v", info.Container)
			}
			if c.cgroupsScan != t0 {
				t.Fatalf("the first record of an unknown cgroup did not walk the tree")
			}

			// Right after the walk (10 ms: inside the 100 ms that used to
			// be the least time between two walks), a pod and its
			// container are made, the container's process runs and exits.
			dir, id := mk(tt.rel(uid, id1))
			pid, printed := runIn(t, dir)
			if want := strings.TrimPrefix(dir, root); printed != want {
				t.Fatalf("the process ran in cgroup %q, want %q", printed, want)
			}
			if _, err := os.Stat(filepath.Join("/proc", strconv.Itoa(pid))); !os.IsNotExist(err) {
				t.Fatalf("the process %d is not gone: %v", pid, err)
			}
			k := Key{PID: uint32(pid), StartTimeNs: 1}
			want := Container{ID: id1, PodUID: uid}
			t1 := t0.Add(10 * time.Millisecond)
			if info := c.Lookup(k, []byte("cat"), []byte("cat"), 0, id, t1); info.Container != want {
				t.Errorf("first record of the gone process in a new pod cgroup: container %+v, want %+v", info.Container, want)
			}
			// A later record of the same process.
			t2 := t0.Add(time.Second)
			if info := c.Lookup(k, []byte("cat"), []byte("cat"), 0, id, t2); info.Container != want {
				t.Errorf("later record of the gone process in a new pod cgroup: container %+v, want %+v", info.Container, want)
			}
		})
	}
}
