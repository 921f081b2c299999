package apiserver

import (
	"bufio"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"io/fs"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"

	"golang.org/x/sys/unix"
)

// cgroup2Root returns the cgroup v2 mount point (/sys/fs/cgroup on a
// unified host, /sys/fs/cgroup/unified on a hybrid one), where the agent
// finds a record's cgroup path.
func cgroup2Root(t testing.TB) string {
	t.Helper()
	f, err := os.Open("/proc/self/mountinfo")
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		// ID PARENT MAJ:MIN ROOT MOUNTPOINT OPTIONS [OPTIONAL...] - FSTYPE SOURCE SUPER
		fields := strings.Fields(sc.Text())
		for i, f := range fields {
			if f == "-" && i+1 < len(fields) && fields[i+1] == "cgroup2" && len(fields) > 4 {
				return fields[4]
			}
		}
	}
	skipOrFail(t, "no cgroup v2 mount: the agent takes a record's pod from its cgroup v2 path")
	return ""
}

// The kubelet's two cgroup drivers and how each names a BestEffort pod's
// container (containerd's CRI plugin as the runtime).
const (
	systemdDriver  = "systemd"
	cgroupfsDriver = "cgroupfs"
)

// containerCgroup is the cgroup path, below the v2 root, that the kubelet
// and containerd give the container id of the pod uid under driver.
func containerCgroup(driver, uid, id string) string {
	if driver == systemdDriver {
		u := strings.ReplaceAll(uid, "-", "_")
		return "kubepods.slice/kubepods-besteffort.slice/kubepods-besteffort-pod" + u + ".slice/cri-containerd-" + id + ".scope"
	}
	return "kubepods/besteffort/pod" + uid + "/" + id
}

// containerID is a new container id as containerd makes them: 64 hex digits.
func containerID(t testing.TB) string {
	t.Helper()
	b := make([]byte, 32)
	if _, err := rand.Read(b); err != nil {
		t.Fatal(err)
	}
	return hex.EncodeToString(b)
}

// makeCgroup creates the cgroup rel below root (and each missing parent)
// and returns an open descriptor of it. What it created is removed when the
// test ends, innermost first, once its processes have exited.
func makeCgroup(t testing.TB, root, rel string) int {
	t.Helper()
	dir := root
	for _, elem := range strings.Split(rel, "/") {
		dir = filepath.Join(dir, elem)
		err := os.Mkdir(dir, 0o755)
		if errors.Is(err, fs.ErrExist) {
			continue
		}
		if err != nil {
			t.Fatalf("make cgroup: %v", err)
		}
		made := dir
		t.Cleanup(func() {
			err := os.Remove(made)
			switch {
			case err == nil:
			case errors.Is(err, unix.EBUSY) && hasSubdir(made):
				// A parent (kubepods.slice, kubepods/besteffort) that a
				// concurrent run of this test on the same host made
				// cgroups under. It may stay behind, empty, once both
				// runs end; the next run reuses it.
				t.Logf("cgroup %s left in place: another run's cgroups are below it", made)
			default:
				t.Errorf("remove cgroup: %v", err)
			}
		})
	}
	fd, err := unix.Open(dir, unix.O_RDONLY|unix.O_DIRECTORY|unix.O_CLOEXEC, 0)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { unix.Close(fd) })
	return fd
}

// hasSubdir reports whether directory dir holds a directory (a child cgroup).
func hasSubdir(dir string) bool {
	entries, err := os.ReadDir(dir)
	if err != nil {
		return false
	}
	for _, e := range entries {
		if e.IsDir() {
			return true
		}
	}
	return false
}

// listen accepts and closes connections on a loopback port until the test
// ends, and returns the port.
func listen(t testing.TB) int {
	t.Helper()
	ln, err := net.Listen("tcp4", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { ln.Close() })
	go func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			c.Close()
		}
	}()
	return ln.Addr().(*net.TCPAddr).Port
}

// connectFrom starts a process in the cgroup cgroupFD (from its first
// instruction: clone3 with CLONE_INTO_CGROUP) that makes one TCP connect to
// 127.0.0.1:port, and returns its pid once it has connected. The process
// stays, as a container's process does, until the test ends: the agent
// reads its cgroup from /proc/PID/cgroup.
func connectFrom(t testing.TB, cgroupFD, port int) int {
	t.Helper()
	bash := binary(t, "", "bash")
	cmd := exec.Command(bash, "-c", "exec 3<>/dev/tcp/127.0.0.1/"+strconv.Itoa(port)+" && echo connected && read -r _")
	cmd.SysProcAttr = &syscall.SysProcAttr{UseCgroupFD: true, CgroupFD: cgroupFD, Pdeathsig: syscall.SIGKILL}
	stdin, err := cmd.StdinPipe()
	if err != nil {
		t.Fatal(err)
	}
	stdout, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := cmd.Start(); err != nil {
		t.Fatalf("start a process in a pod's cgroup: %v", err)
	}
	t.Cleanup(func() {
		stdin.Close()
		_ = cmd.Wait()
	})
	line, err := bufio.NewReader(stdout).ReadString('\n')
	if line != "connected\n" {
		t.Fatalf("connect from a pod's cgroup: %q, %v", line, err)
	}
	return cmd.Process.Pid
}
