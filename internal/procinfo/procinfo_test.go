package procinfo

import (
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"
	"unicode/utf8"
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
		{"podman cgroupfs", "/libpod_parent/libpod-" + id1, Container{ID: id1}},
		{"crio cgroupfs", "/kubepods/burstable/pod" + uid + "/crio-" + id1, Container{ID: id1, PodUID: uid}},
		{"containerd cgroupfs besteffort", "/kubepods/besteffort/pod" + uid + "/" + id1, Container{ID: id1, PodUID: uid}},
		{"cri-dockerd systemd", "/kubepods.slice/kubepods-burstable.slice/kubepods-burstable-pod" + und + ".slice/docker-" + id1 + ".scope", Container{ID: id1, PodUID: uid}},
		{"containerd plain (nerdctl) systemd", "/system.slice/nerdctl-" + id1 + ".scope", Container{ID: id1}},
		{"containerd plain cgroupfs namespace", "/default/" + id1, Container{ID: id1}},
		// Read from a private cgroup namespace (the collector in a
		// container), /proc/PID/cgroup shows paths relative to its root.
		{"relative to a private cgroupns: other pod", "/../../../kubepods-besteffort-pod" + und + ".slice/cri-containerd-" + id1 + ".scope", Container{ID: id1, PodUID: uid}},
		{"relative to a private cgroupns: host process", "/../../../../system.slice/sshd.service", Container{}},
		{"relative to a private cgroupns: podman sibling", "/../libpod-" + id1 + ".scope/container", Container{ID: id1}},
		{"short hex is no id", "/docker/0123abcd", Container{}},
		{"upper hex is no id", "/docker/" + strings.ToUpper(id1), Container{}},
		{"not a pod", "/system.slice/ipod" + uid + ".slice", Container{}},
		{"bad uuid", "/kubepods/pod" + strings.Replace(uid, "-", "x", 1), Container{}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if got := parseCgroupPath(tt.path); got != tt.want {
				t.Errorf("parseCgroupPath(%q) = %+v, want %+v", tt.path, got, tt.want)
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
			got, err := parseCgroupFile(strings.NewReader(tt.in))
			if err != nil || got != tt.want {
				t.Errorf("got %+v, %v; want %+v", got, err, tt.want)
			}
		})
	}
}

func TestParseStat(t *testing.T) {
	tests := []struct {
		name, in string
		want     Stat
		wantErr  string
	}{
		{"plain", "1234 (curl) S 1 1234 1234 0 -1 4194560 100 0 0 0 17 4 0 0 20 0 1 0 98765 1000 10",
			Stat{Comm: "curl", State: 'S', PPID: 1, Flags: 4194560, UTime: 17, STime: 4, StartTime: 98765}, ""},
		{"kernel thread", "2 (kthreadd) S 0 0 0 0 -1 2129984 0 0 0 0 0 3 0 0 20 0 1 0 0 0 0",
			Stat{Comm: "kthreadd", State: 'S', PPID: 0, Flags: 2129984, STime: 3}, ""},
		{"comm with parens and spaces", "7 (a) b (c)) R 1 7 7 0 -1 0 0 0 0 0 0 0 0 0 20 0 1 0 42 0 0",
			Stat{Comm: "a) b (c)", State: 'R', PPID: 1, StartTime: 42}, ""},
		{"comm that looks like fields", "7 () S 1 2 3 4) Z 9 7 7 0 -1 0 0 0 0 0 5 6 0 0 20 0 1 0 43\n",
			Stat{Comm: ") S 1 2 3 4", State: 'Z', PPID: 9, UTime: 5, STime: 6, StartTime: 43}, ""},
		{"comm not UTF-8", "7 (\xff\xfe) S 1 7 7 0 -1 0 0 0 0 0 0 0 0 0 20 0 1 0 44",
			Stat{Comm: "\xff\xfe", State: 'S', PPID: 1, StartTime: 44}, ""},
		{"short", "7 (x) R 1 2", Stat{}, "fields after comm"},
		{"no comm", "7 x R", Stat{}, "no (comm)"},
		{"parens reversed", "7 )x( R", Stat{}, "no (comm)"},
		{"bad number", "7 (x) R 1 7 7 0 -1 0 0 0 0 0 0 0 0 0 20 0 1 0 4x2", Stat{}, "field 22"},
		{"state not a letter", "7 (x) RR 1 7 7 0 -1 0 0 0 0 0 0 0 0 0 20 0 1 0 42", Stat{}, "state"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, err := ParseStat([]byte(tt.in))
			if tt.wantErr != "" {
				if err == nil || !strings.Contains(err.Error(), tt.wantErr) {
					t.Errorf("ParseStat = %+v, %v; want an error containing %q", got, err, tt.wantErr)
				}
				return
			}
			if err != nil || got != tt.want {
				t.Errorf("ParseStat = %+v, %v; want %+v", got, err, tt.want)
			}
		})
	}
}

// TestReadStatSelf reads this process's own stat: the oracle is what the
// process knows of itself.
func TestReadStatSelf(t *testing.T) {
	st, err := ReadStat("", os.Getpid())
	if err != nil {
		t.Fatal(err)
	}
	// /proc/self/stat is the thread-group leader's state: running, or
	// asleep while another thread of the test reads it.
	if st.PPID != os.Getppid() || (st.State != 'R' && st.State != 'S') || st.StartTime == 0 {
		t.Errorf("ReadStat(self) = %+v, want ppid %d, state R or S, a start time", st, os.Getppid())
	}
	if _, err := ReadStat(t.TempDir(), 1); err == nil || !strings.Contains(err.Error(), "/1/stat") {
		t.Errorf("ReadStat of a missing pid: %v, want an error naming the file", err)
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
			Info{ExePath: "/usr/bin/curl", ExeName: "curl", CommandLine: "curl -s http://x/", Container: Container{ID: id1}}},
		{"deleted executable", Key{200, start}, "wget", "wget",
			Info{ExePath: "/usr/bin/wget", ExeName: "wget"}},
		{"pid reused: start time differs", Key{100, start + uint64(time.Second)}, "curl", "curl",
			Info{ExeName: "curl"}},
		{"gone: kernel exe", Key{300, start}, "nc", "nc", Info{ExeName: "nc"}},
		{"gone: comm when no exe", Key{301, start}, "", "kworker", Info{ExeName: "kworker"}},
		{"exec raced: kernel exe wins", Key{100, start}, "sh", "sh", Info{ExeName: "sh",
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
	if c.lru.Len() != 2 || len(c.entries) != 2 {
		t.Errorf("%d entries (%d in the map), want the cap 2", c.lru.Len(), len(c.entries))
	}
	// A hit returns the same Info; expiry reloads it.
	a := c.Lookup(Key{100, start}, []byte("sh"), nil, 0, 0, now)
	if b := c.Lookup(Key{100, start}, []byte("sh"), nil, 0, 0, now.Add(time.Second)); a != b {
		t.Error("fresh entry was not reused")
	}
	if b := c.Lookup(Key{100, start}, []byte("sh"), nil, 0, 0, now.Add(DefaultTTL+time.Second)); a == b {
		t.Error("expired entry was reused")
	}
	// Back-to-back lookups of one process (the last-entry fast path) still
	// see an exec, and another process in between does not confuse it.
	later := now.Add(DefaultTTL + 2*time.Second)
	sh := c.Lookup(Key{100, start}, []byte("sh"), nil, 0, 0, later)
	if b := c.Lookup(Key{100, start}, []byte("bash"), nil, 0, 0, later); b == sh || b.kernelExe != "bash" {
		t.Errorf("after an exec: entry built for %q, want a new one for bash", b.kernelExe)
	}
	nc := c.Lookup(Key{300, start}, []byte("nc"), nil, 0, 0, later)
	if b := c.Lookup(Key{100, start}, []byte("bash"), nil, 0, 0, later); b == nc || b.kernelExe != "bash" {
		t.Errorf("after another process: entry built for %q, want bash's", b.kernelExe)
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
	m, err := scanCgroups(root)
	if err != nil {
		t.Fatal(err)
	}
	if want := "/system.slice/docker-" + id1 + ".scope"; m[ino] != want {
		t.Fatalf("scanCgroups[%d] = %q, want %q", ino, m[ino], want)
	}
	c := New(Config{ProcRoot: t.TempDir(), CgroupRoot: root})
	got := c.Lookup(Key{PID: 99, StartTimeNs: 1}, []byte("app"), nil, 0, ino, time.Now())
	if got.Container.ID != id1 || got.ExePath != "" {
		t.Errorf("gone process in a container: got %+v, want container %s", got, id1)
	}
}

// TestLookupHostileStrings: a process chooses its executable's name and its
// argv freely, none of it need be UTF-8, and argv may be megabytes long.
// What Lookup returns is valid UTF-8 within the caps, counted.
func TestLookupHostileStrings(t *testing.T) {
	root := t.TempDir()
	arg := strings.Repeat("\xff\xfe-secret-", 1<<17) // 1.4 MB, not UTF-8
	fakeProc(t, root, "100", "500", "/opt/\xc0\xaf/x\xff", "0::/\n", "evil\x00"+arg+"\x00")
	fakeProc(t, root, "101", "500", "/usr/bin/€", "0::/\n", "€\x00"+strings.Repeat("€", 2000)+"\x00")
	start := uint64(5 * time.Second)
	now := time.Unix(1000, 0)
	const maxCmd = 1000

	tests := []struct {
		name          string
		key           Key
		exe, comm     string
		wantExePath   string
		wantExeName   string
		wantCmdPrefix string
		wantSanitized uint8
		wantTruncated uint8
	}{
		{"invalid path and huge invalid argv", Key{100, start}, "x\xff", "x\xff",
			"/opt/\uFFFD/x\uFFFD", "x\uFFFD", "evil \uFFFD-secret-\uFFFD-secret-", 3, 1},
		{"valid multibyte argv cut on a rune", Key{101, start}, "€", "€",
			"/usr/bin/€", "€", "€ €€€", 0, 1},
		{"gone: kernel exe and comm not UTF-8", Key{300, start}, "", "\xffcomm\xfe",
			"", "\uFFFDcomm\uFFFD", "", 1, 0},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			c := New(Config{ProcRoot: root, CommandLine: true, MaxCommandLineBytes: maxCmd})
			got := c.Lookup(tt.key, []byte(tt.exe), []byte(tt.comm), 0, 0, now)
			for _, s := range []string{got.ExePath, got.ExeName, got.Owner, got.CommandLine} {
				if !utf8.ValidString(s) {
					t.Errorf("%q is not valid UTF-8", s)
				}
			}
			if got.ExePath != tt.wantExePath || got.ExeName != tt.wantExeName {
				t.Errorf("exe %q %q, want %q %q", got.ExePath, got.ExeName, tt.wantExePath, tt.wantExeName)
			}
			if !strings.HasPrefix(got.CommandLine, tt.wantCmdPrefix) || len(got.CommandLine) > maxCmd {
				t.Errorf("command line %d bytes %.40q..., want at most %d starting %q", len(got.CommandLine), got.CommandLine, maxCmd, tt.wantCmdPrefix)
			}
			if tt.wantTruncated > 0 && (!strings.HasSuffix(got.CommandLine, TruncationMarker) || len(got.CommandLine) < maxCmd-utf8.UTFMax-len(TruncationMarker)) {
				t.Errorf("truncated command line %d bytes, ends %q: want about %d, ending in %q", len(got.CommandLine), got.CommandLine[max(0, len(got.CommandLine)-8):], maxCmd, TruncationMarker)
			}
			if got.Sanitized != tt.wantSanitized || got.Truncated != tt.wantTruncated {
				t.Errorf("Sanitized %d Truncated %d, want %d %d", got.Sanitized, got.Truncated, tt.wantSanitized, tt.wantTruncated)
			}
		})
	}
}

func TestParseMemory(t *testing.T) {
	tests := []struct {
		name, in string
		want     Memory
		wantErr  bool
	}{
		{"process", "Name:\tx\nVmPeak:\t  9000 kB\nVmHWM:\t    2048 kB\nVmRSS:\t    1024 kB\nThreads:\t1\n", Memory{RSS: 1 << 20, PeakRSS: 2 << 20}, false},
		{"kernel thread", "Name:\tkworker/0:1\nThreads:\t1\n", Memory{}, false},
		{"not kB", "VmRSS:\t1024 MB\n", Memory{}, true},
		{"not a number", "VmHWM:\tx kB\n", Memory{}, true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, err := ParseMemory([]byte(tt.in))
			if (err != nil) != tt.wantErr || got != tt.want {
				t.Errorf("ParseMemory = %+v, %v; want %+v, error %v", got, err, tt.want, tt.wantErr)
			}
		})
	}
	m, err := ReadMemory("", os.Getpid())
	if err != nil || m.RSS == 0 || m.PeakRSS < m.RSS {
		t.Errorf("ReadMemory(self) = %+v, %v; want a resident set below its peak", m, err)
	}
}
