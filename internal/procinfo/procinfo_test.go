package procinfo

import (
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"
)

const (
	id1 = "0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef"
	uid = "5c8c2f31-6a0e-4b5e-9d8c-1f2e3d4c5b6a"
	und = "5c8c2f31_6a0e_4b5e_9d8c_1f2e3d4c5b6a"
)

func TestParseCgroupPath(t *testing.T) {
	tests := []struct {
		name, path string
		want       Container
	}{
		{"host root", "/", Container{}},
		{"systemd service", "/system.slice/sshd.service", Container{}},
		{"user session", "/user.slice/user-1000.slice/session-3.scope", Container{}},
		{"docker cgroupfs", "/docker/" + id1, Container{ID: id1}},
		{"docker systemd", "/system.slice/docker-" + id1 + ".scope", Container{ID: id1}},
		{"podman root", "/machine.slice/libpod-" + id1 + ".scope/container", Container{ID: id1}},
		{"podman rootless", "/user.slice/user-1000.slice/user@1000.service/user.slice/libpod-" + id1 + ".scope", Container{ID: id1}},
		{"podman conmon", "/machine.slice/libpod-conmon-" + id1 + ".scope", Container{}},
		{"crio systemd", "/kubepods.slice/kubepods-burstable.slice/kubepods-burstable-pod" + und + ".slice/crio-" + id1 + ".scope", Container{ID: id1, PodUID: uid}},
		{"containerd systemd besteffort", "/kubepods.slice/kubepods-besteffort.slice/kubepods-besteffort-pod" + und + ".slice/cri-containerd-" + id1 + ".scope", Container{ID: id1, PodUID: uid}},
		{"containerd systemd guaranteed", "/kubepods.slice/kubepods-pod" + und + ".slice/cri-containerd-" + id1 + ".scope", Container{ID: id1, PodUID: uid}},
		{"kubelet cgroupfs burstable", "/kubepods/burstable/pod" + uid + "/" + id1, Container{ID: id1, PodUID: uid}},
		{"kubelet cgroupfs guaranteed", "/kubepods/pod" + uid + "/" + id1, Container{ID: id1, PodUID: uid}},
		{"pod slice only", "/kubepods/besteffort/pod" + uid, Container{PodUID: uid}},
		{"short hex is no id", "/docker/0123abcd", Container{}},
		{"upper hex is no id", "/docker/" + strings.ToUpper(id1), Container{}},
		{"not a pod", "/system.slice/ipod" + uid + ".slice", Container{}},
		{"bad uuid", "/kubepods/pod" + strings.Replace(uid, "-", "x", 1), Container{}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if got := ParseCgroupPath(tt.path); got != tt.want {
				t.Errorf("ParseCgroupPath(%q) = %+v, want %+v", tt.path, got, tt.want)
			}
		})
	}
}

func TestParseCgroupFile(t *testing.T) {
	tests := []struct {
		name, in string
		want     Container
	}{
		{"v2", "0::/system.slice/docker-" + id1 + ".scope\n", Container{ID: id1}},
		{"hybrid, v1 shows the container", "12:pids:/docker/" + id1 + "\n1:name=systemd:/docker/" + id1 + "\n0::/\n", Container{ID: id1}},
		{"host", "0::/init.scope\n", Container{}},
		{"garbage", "nonsense\n::\n", Container{}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, err := ParseCgroupFile(strings.NewReader(tt.in))
			if err != nil || got != tt.want {
				t.Errorf("got %+v, %v; want %+v", got, err, tt.want)
			}
		})
	}
}

func TestParseStatStart(t *testing.T) {
	tests := []struct {
		name, in string
		want     uint64
		wantErr  bool
	}{
		{"plain", "1234 (curl) S 1 1234 1234 0 -1 4194560 100 0 0 0 0 0 0 0 20 0 1 0 98765 1000 10", 98765, false},
		{"comm with parens and spaces", "7 (a) b (c)) R 1 7 7 0 -1 0 0 0 0 0 0 0 0 0 20 0 1 0 42 0 0", 42, false},
		{"short", "7 (x) R 1 2", 0, true},
		{"no comm", "7 x R", 0, true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, err := parseStatStart([]byte(tt.in))
			if (err != nil) != tt.wantErr || got != tt.want {
				t.Errorf("got %d, %v; want %d, err=%v", got, err, tt.want, tt.wantErr)
			}
		})
	}
}

// fakeProc writes a /proc/PID directory with a stat start time, an exe link
// and a cgroup file.
func fakeProc(t *testing.T, root string, pid string, startTicks string, exe, cgroup, cmdline string) {
	t.Helper()
	dir := filepath.Join(root, pid)
	if err := os.MkdirAll(dir, 0o755); err != nil {
		t.Fatal(err)
	}
	stat := pid + " (x) S 1 1 1 0 -1 0 0 0 0 0 0 0 0 0 20 0 1 0 " + startTicks + " 0 0\n"
	for name, data := range map[string]string{"stat": stat, "cgroup": cgroup, "cmdline": cmdline} {
		if err := os.WriteFile(filepath.Join(dir, name), []byte(data), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	if err := os.Symlink(exe, filepath.Join(dir, "exe")); err != nil {
		t.Fatal(err)
	}
}

func TestLookup(t *testing.T) {
	root := t.TempDir()
	fakeProc(t, root, "100", "500", "/usr/bin/curl", "0::/docker/"+id1+"\n", "curl\x00-s\x00http://x/\x00")
	fakeProc(t, root, "200", "500", "/usr/bin/wget (deleted)", "0::/\n", "")
	c := New(Config{ProcRoot: root, CommandLine: true, MaxEntries: 2})
	now := time.Unix(1000, 0)
	start := uint64(5 * time.Second) // 500 ticks

	tests := []struct {
		name      string
		key       Key
		exe, comm string
		want      Info
	}{
		{"live process", Key{100, start}, "curl", "curl",
			Info{ExePath: "/usr/bin/curl", ExeName: "curl", CommandLine: "curl -s http://x/", Container: Container{ID: id1}, FromProc: true}},
		{"deleted executable", Key{200, start}, "wget", "wget",
			Info{ExePath: "/usr/bin/wget", ExeName: "wget", FromProc: true}},
		{"pid reused: start time differs", Key{100, start + uint64(time.Second)}, "curl", "curl",
			Info{ExeName: "curl"}},
		{"gone: kernel exe", Key{300, start}, "nc", "nc", Info{ExeName: "nc"}},
		{"gone: comm when no exe", Key{301, start}, "", "kworker", Info{ExeName: "kworker"}},
		{"exec raced: kernel exe wins", Key{100, start}, "sh", "sh", Info{ExeName: "sh", FromProc: true,
			CommandLine: "curl -s http://x/", Container: Container{ID: id1}}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got := c.Lookup(tt.key, []byte(tt.exe), []byte(tt.comm), 0, 0, now)
			g := *got
			g.Owner, g.kernelExe = "", ""
			if g != tt.want {
				t.Errorf("Lookup = %+v, want %+v", g, tt.want)
			}
			if got.kernelExe != tt.exe {
				t.Errorf("entry built for exe %q, want %q", got.kernelExe, tt.exe)
			}
		})
	}
	if c.Len() != 2 {
		t.Errorf("Len = %d, want the cap 2", c.Len())
	}
	// A hit returns the same Info; expiry reloads it.
	a := c.Lookup(Key{100, start}, []byte("sh"), nil, 0, 0, now)
	if b := c.Lookup(Key{100, start}, []byte("sh"), nil, 0, 0, now.Add(time.Second)); a != b {
		t.Error("fresh entry was not reused")
	}
	if b := c.Lookup(Key{100, start}, []byte("sh"), nil, 0, 0, now.Add(DefaultTTL+time.Second)); a == b {
		t.Error("expired entry was reused")
	}
}

func TestUserName(t *testing.T) {
	c := New(Config{})
	if got := c.userName(0); got != "root" {
		t.Errorf("userName(0) = %q, want root", got)
	}
	if got := c.userName(4000000000); got != "" {
		t.Errorf("userName(unknown) = %q, want empty", got)
	}
}

func TestCgroupIDFallback(t *testing.T) {
	root := t.TempDir()
	dir := filepath.Join(root, "system.slice", "docker-"+id1+".scope")
	if err := os.MkdirAll(dir, 0o755); err != nil {
		t.Fatal(err)
	}
	fi, err := os.Stat(dir)
	if err != nil {
		t.Fatal(err)
	}
	ino := fi.Sys().(*syscall.Stat_t).Ino
	m, err := ScanCgroups(root)
	if err != nil {
		t.Fatal(err)
	}
	if want := "/system.slice/docker-" + id1 + ".scope"; m[ino] != want {
		t.Fatalf("ScanCgroups[%d] = %q, want %q", ino, m[ino], want)
	}
	c := New(Config{ProcRoot: t.TempDir(), CgroupRoot: root})
	got := c.Lookup(Key{PID: 99, StartTimeNs: 1}, []byte("app"), nil, 0, ino, time.Now())
	if got.Container.ID != id1 || got.FromProc {
		t.Errorf("gone process in a container: got %+v, want container %s", got, id1)
	}
}
