package procinfo

import (
	"fmt"
	"strconv"
	"syscall"
	"testing"
	"time"
)

// mkPodTree makes n cgroups below the test cgroup as a node's kubelet
// lays them out (systemd driver): a slice per pod with two container
// scopes (the sandbox's and the app's), three cgroups per pod.
func mkPodTree(b *testing.B, mk func(rel string) (string, uint64), n int) {
	b.Helper()
	mk("kubepods.slice/kubepods-besteffort.slice")
	for made := 2; made < n; made += 3 {
		pod := fmt.Sprintf("%08d_0000_4000_8000_%012d", made, made)
		slice := "kubepods.slice/kubepods-besteffort.slice/kubepods-besteffort-pod" + pod + ".slice"
		mk(slice)
		for c := range 2 {
			mk(slice + "/cri-containerd-" + fmt.Sprintf("%064x", made*2+c) + ".scope")
		}
	}
}

// cpuTime is the process's user and system time so far: on a shared
// machine the CPU a walk takes is steadier than its wall time.
func cpuTime(b *testing.B) time.Duration {
	var ru syscall.Rusage
	if err := syscall.Getrusage(syscall.RUSAGE_SELF, &ru); err != nil {
		b.Fatal(err)
	}
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
}

// BenchmarkScanCgroups is one walk of the whole cgroup v2 tree (what a
// lookup by cgroup id costs on a miss) with n test cgroups in it besides
// the host's own, in wall and CPU time. As root: it makes and removes real
// cgroups.
func BenchmarkScanCgroups(b *testing.B) {
	for _, n := range []int{500, 2000} {
		b.Run(strconv.Itoa(n), func(b *testing.B) {
			root, _, mk := testCgroupBase(b)
			mkPodTree(b, mk, n)
			m, err := scanCgroups(root)
			if err != nil {
				b.Fatal(err)
			}
			cpu := cpuTime(b)
			for b.Loop() {
				if _, err := scanCgroups(root); err != nil {
					b.Fatal(err)
				}
			}
			b.ReportMetric(float64(cpuTime(b)-cpu)/float64(b.N), "cpu-ns/op")
			b.ReportMetric(float64(len(m)), "cgroups")
		})
	}
}
