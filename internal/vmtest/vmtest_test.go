package vmtest

import (
	"bytes"
	"reflect"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/tcpconnect/tcpconnect/internal/vmtest/guest"
)

func TestPanicText(t *testing.T) {
	tests := []struct {
		line    string
		wantMsg string
		wantOK  bool
	}{
		{"[    6.01] Kernel panic - not syncing: sysrq triggered crash", "sysrq triggered crash", true},
		{"[    6.02] ---[ end Kernel panic - not syncing: Attempted to kill init! exitcode=0x00000100 ]---",
			"Attempted to kill init! exitcode=0x00000100 ]---", true},
		{"--- PASS: TestKernelPanicHandling (0.00s)", "", false},
		{"vmtest: uname -r: 6.1.0-56-cloud-amd64", "", false},
	}
	for _, tt := range tests {
		t.Run(tt.line, func(t *testing.T) {
			msg, ok := PanicText(tt.line)
			if ok != tt.wantOK || msg != tt.wantMsg {
				t.Fatalf("PanicText = %q, %v, want %q, %v", msg, ok, tt.wantMsg, tt.wantOK)
			}
		})
	}
}

func TestConsoleVerdict(t *testing.T) {
	const n = "nonce1"
	cmds := []guest.Command{{Name: "a"}, {Name: "b", WantTests: []string{"TestX", "TestY"}}}
	res := func(name string, exit int) string {
		return guest.FormatResult(n, guest.Result{Name: name, Exit: exit, Seconds: 1})
	}
	tests := []struct {
		name       string
		lines      []string
		wantStatus []Status
		wantErrs   []string // substrings, in order
	}{
		{name: "all pass", lines: []string{"boot", res("a", 0), "--- PASS: TestX (1.00s)", "--- PASS: TestY (0.00s)", res("b", 0), guest.FormatDone(n)},
			wantStatus: []Status{Pass, Pass}},
		{name: "one fails", lines: []string{res("a", 1), "--- PASS: TestX (1.00s)", "--- PASS: TestY (0.00s)", res("b", 0), guest.FormatDone(n)},
			wantStatus: []Status{Fail, Pass}},
		{name: "a wanted test that did not run fails the command", lines: []string{res("a", 0), "--- PASS: TestX (1.00s)", "testing: warning: no tests to run", res("b", 0), guest.FormatDone(n)},
			wantStatus: []Status{Pass, Fail}, wantErrs: []string{"b: TestY: did not run"}},
		{name: "no test ran at all", lines: []string{res("a", 0), "PASS", res("b", 0), guest.FormatDone(n)},
			wantStatus: []Status{Pass, Fail}, wantErrs: []string{"b: TestX: did not run", "b: TestY: did not run"}},
		{name: "a skipped wanted test fails the command", lines: []string{res("a", 0), "--- PASS: TestX (1.00s)", "--- SKIP: TestY (0.00s)", res("b", 0), guest.FormatDone(n)},
			wantStatus: []Status{Pass, Fail}, wantErrs: []string{"b: TestY: SKIP"}},
		{name: "a pass printed by an earlier command does not count", lines: []string{"--- PASS: TestX (1.00s)", "--- PASS: TestY (0.00s)", res("a", 0), res("b", 0), guest.FormatDone(n)},
			wantStatus: []Status{Pass, Fail}, wantErrs: []string{"b: TestX: did not run", "b: TestY: did not run"}},
		{name: "subtest lines are not top-level tests", lines: []string{res("a", 0), "    --- PASS: TestX (1.00s)", "--- PASS: TestY (0.00s)", res("b", 0), guest.FormatDone(n)},
			wantStatus: []Status{Pass, Fail}, wantErrs: []string{"b: TestX: did not run"}},
		{name: "missing result is a failure", lines: []string{res("a", 0), guest.FormatDone(n)},
			wantStatus: []Status{Pass, Missing}},
		{name: "other nonce does not count", lines: []string{res("a", 0), guest.FormatResult("x", guest.Result{Name: "b"}), guest.FormatDone(n)},
			wantStatus: []Status{Pass, Missing}},
		{name: "no done line", lines: []string{res("a", 0), "--- PASS: TestX (1.00s)", "--- PASS: TestY (0.00s)", res("b", 0)},
			wantStatus: []Status{Pass, Pass}, wantErrs: []string{"done line"}},
		{name: "panic", lines: []string{res("a", 0), "Kernel panic - not syncing: boom", "---[ end Kernel panic - not syncing: boom ]---"},
			wantStatus: []Status{Pass, Missing}, wantErrs: []string{"kernel panic: boom", "done line"}},
		{name: "guest setup error", lines: []string{guest.FormatError(n, "load module veth: no such file")},
			wantStatus: []Status{Missing, Missing}, wantErrs: []string{"guest setup failed: load module veth", "done line"}},
		{name: "unplanned and duplicate results", lines: []string{res("a", 0), res("a", 0), "--- PASS: TestX (1.00s)", "--- PASS: TestY (0.00s)", res("b", 0), res("c", 0), guest.FormatDone(n)},
			wantStatus: []Status{Pass, Pass}, wantErrs: []string{"duplicate result for a", "not in the plan: c"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			c := newConsole(n)
			for _, l := range tt.lines {
				c.feed(l)
			}
			results, errs := c.verdict(cmds, nil)
			var got []Status
			for _, r := range results {
				got = append(got, r.Status)
			}
			if !reflect.DeepEqual(got, tt.wantStatus) {
				t.Errorf("statuses = %v, want %v", got, tt.wantStatus)
			}
			if len(errs) != len(tt.wantErrs) {
				t.Fatalf("errors = %q, want %d", errs, len(tt.wantErrs))
			}
			for i, want := range tt.wantErrs {
				if !strings.Contains(errs[i], want) {
					t.Errorf("error %d = %q, want it to contain %q", i, errs[i], want)
				}
			}
			rep := KernelReport{Results: results, Errors: errs}
			wantOK := len(tt.wantErrs) == 0 && !slicesContainsNonPass(tt.wantStatus)
			if rep.OK() != wantOK {
				t.Errorf("OK() = %v, want %v", rep.OK(), wantOK)
			}
		})
	}
}

func slicesContainsNonPass(ss []Status) bool {
	for _, s := range ss {
		if s != Pass {
			return true
		}
	}
	return false
}

func TestParsePlan(t *testing.T) {
	tests := []struct {
		name    string
		json    string
		wantErr string // from ParsePlan or Validate
		check   func(t *testing.T, p *Plan)
	}{
		{name: "full", json: `{"kernels":["6.1"],"timeout":"90s","memory_mb":2048,"modules":["veth"],
			"env":{"A":"1"},"files":[{"content":"x","guest":"/etc/x"}],
			"commands":[{"name":"t","args":["/tests/t.test","-test.v"],"env":{"B":"2"}}]}`,
			check: func(t *testing.T, p *Plan) {
				d := p.withDefaults()
				if time.Duration(d.Timeout) != 90*time.Second || d.MemoryMB != 2048 || d.CPUs != DefaultCPUs {
					t.Errorf("defaults: %+v", d)
				}
			}},
		{name: "defaults", json: `{"commands":[{"name":"t","args":["/bin/true"]}]}`,
			check: func(t *testing.T, p *Plan) {
				d := p.withDefaults()
				if time.Duration(d.Timeout) != DefaultTimeout || d.MemoryMB != DefaultMemoryMB {
					t.Errorf("defaults: %+v", d)
				}
			}},
		{name: "unknown field", json: `{"comands":[]}`, wantErr: "unknown field"},
		{name: "bad duration", json: `{"timeout":"ten minutes","commands":[]}`, wantErr: "duration"},
		{name: "no commands", json: `{}`, wantErr: "no commands"},
		{name: "relative command", json: `{"commands":[{"name":"t","args":["t.test"]}]}`, wantErr: "absolute guest path"},
		{name: "duplicate name", json: `{"commands":[{"name":"t","args":["/a"]},{"name":"t","args":["/b"]}]}`, wantErr: "duplicate name"},
		{name: "bad name", json: `{"commands":[{"name":"a b","args":["/a"]}]}`, wantErr: "invalid name"},
		{name: "unknown kernel", json: `{"kernels":["5.4"],"commands":[{"name":"t","args":["/a"]}]}`, wantErr: "unknown kernel"},
		{name: "relative guest file", json: `{"files":[{"host":"x","guest":"x"}],"commands":[{"name":"t","args":["/a"]}]}`, wantErr: "not absolute"},
		{name: "bad env", json: `{"env":{"A=B":"1"},"commands":[{"name":"t","args":["/a"]}]}`, wantErr: "environment variable"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			p, err := ParsePlan([]byte(tt.json))
			if err == nil {
				err = p.Validate()
			}
			if tt.wantErr != "" {
				if err == nil || !strings.Contains(err.Error(), tt.wantErr) {
					t.Fatalf("err = %v, want it to contain %q", err, tt.wantErr)
				}
				return
			}
			if err != nil {
				t.Fatalf("unexpected error: %v", err)
			}
			tt.check(t, p)
		})
	}
}

func TestTestMatrix(t *testing.T) {
	files, cmds := TestMatrix([]string{"_build/vm/bpf.test", "_build/vm/receiver.test"}, []string{"lsm", "cgroup"}, "TCPCONNECT_ATTACH", []string{"-test.v"}, map[string][]string{"receiver.test": {"TestA", "TestB"}}, nil)
	wantFiles := []File{{Host: "_build/vm/bpf.test", Guest: "/tests/bpf.test"}, {Host: "_build/vm/receiver.test", Guest: "/tests/receiver.test"}}
	if !reflect.DeepEqual(files, wantFiles) {
		t.Errorf("files = %+v", files)
	}
	var names []string
	for _, c := range cmds {
		names = append(names, c.Name+" "+strings.Join(c.Args, " ")+" "+c.Env["TCPCONNECT_ATTACH"])
	}
	want := []string{
		"bpf.test/lsm /tests/bpf.test -test.v lsm", "bpf.test/cgroup /tests/bpf.test -test.v cgroup",
		"receiver.test/lsm /tests/receiver.test -test.v -test.run=^(TestA|TestB)$ lsm", "receiver.test/cgroup /tests/receiver.test -test.v -test.run=^(TestA|TestB)$ cgroup",
	}
	if !reflect.DeepEqual(names, want) {
		t.Errorf("commands = %q, want %q", names, want)
	}
	if cmds[0].WantTests != nil || !reflect.DeepEqual(cmds[3].WantTests, []string{"TestA", "TestB"}) {
		t.Errorf("want tests: %q, %q", cmds[0].WantTests, cmds[3].WantTests)
	}
	_, cmds = TestMatrix([]string{"x.test"}, nil, "K", nil, nil, nil)
	if len(cmds) != 1 || cmds[0].Name != "x.test" || cmds[0].Env != nil {
		t.Errorf("no modes: %+v", cmds)
	}
	_, cmds = TestMatrix([]string{"a.test", "b.test"}, []string{"lsm", "cgroup"}, "K", nil, nil, map[string][]string{"b.test": {"auto"}})
	names = nil
	for _, c := range cmds {
		names = append(names, c.Name)
	}
	if want := []string{"a.test/lsm", "a.test/cgroup", "b.test/auto"}; !reflect.DeepEqual(names, want) {
		t.Errorf("per-binary modes: commands %q, want %q", names, want)
	}
	// One binary under two names: its file once, each name with its own
	// tests and modes.
	files, cmds = TestMatrix([]string{"_build/a.test", "a-once=_build/a.test"}, []string{"lsm", "cgroup"}, "K", nil,
		map[string][]string{"a.test": {"TestModes"}, "a-once": {"TestOnce"}}, map[string][]string{"a-once": {"auto"}})
	if want := []File{{Host: "_build/a.test", Guest: "/tests/a.test"}}; !reflect.DeepEqual(files, want) {
		t.Errorf("alias: files = %+v, want %+v", files, want)
	}
	names = nil
	for _, c := range cmds {
		names = append(names, c.Name+" "+strings.Join(c.Args, " ")+" "+c.Env["K"])
	}
	if want := []string{
		"a.test/lsm /tests/a.test -test.run=^(TestModes)$ lsm", "a.test/cgroup /tests/a.test -test.run=^(TestModes)$ cgroup",
		"a-once/auto /tests/a.test -test.run=^(TestOnce)$ auto",
	}; !reflect.DeepEqual(names, want) {
		t.Errorf("alias: commands %q, want %q", names, want)
	}
}

func TestSelectKernels(t *testing.T) {
	all := Kernels()
	tests := []struct {
		names   []string
		want    int
		wantErr bool
	}{
		{nil, len(all), false}, {[]string{"all"}, len(all), false},
		{[]string{"6.12"}, 1, false}, {[]string{"6.1", "6.12"}, 2, false}, {[]string{"4.19"}, 0, true},
		{[]string{"5.10", "6.1-arm64", "6.12-arm64"}, 3, false},
	}
	for _, tt := range tests {
		got, err := SelectKernels(tt.names)
		if (err != nil) != tt.wantErr || len(got) != tt.want {
			t.Errorf("SelectKernels(%q) = %v, %v", tt.names, got, err)
		}
	}
}

// readNewc parses a newc archive into name -> (mode, rdev major:minor, data).
func readNewc(t *testing.T, b []byte) map[string]string {
	t.Helper()
	out := map[string]string{}
	for off := 0; ; {
		if string(b[off:off+6]) != "070701" {
			t.Fatalf("bad magic at %d: %q", off, b[off:off+6])
		}
		field := func(i int) int {
			v, err := strconv.ParseUint(string(b[off+6+8*i:off+14+8*i]), 16, 32)
			if err != nil {
				t.Fatal(err)
			}
			return int(v)
		}
		mode, size, rmaj, rmin, namesize := field(1), field(6), field(9), field(10), field(11)
		name := string(b[off+110 : off+110+namesize-1])
		off += 110 + namesize
		off += int(pad4(int64(off)))
		data := string(b[off : off+size])
		off += size
		off += int(pad4(int64(off)))
		if name == "TRAILER!!!" {
			if off != len(b) {
				t.Fatalf("%d bytes after trailer", len(b)-off)
			}
			return out
		}
		out[name] = strconv.FormatInt(int64(mode), 8) + " " + strconv.Itoa(rmaj) + ":" + strconv.Itoa(rmin) + " " + data
	}
}

func TestCPIOWriter(t *testing.T) {
	var buf bytes.Buffer
	c := newCPIOWriter(&buf)
	c.CharDev("/dev/console", 0o600, 5, 1)
	c.File("/tests/a/b.test", 0o755, 5, strings.NewReader("hello"))
	c.Symlink("/bin/sh", "busybox")
	c.Dir("/tests") // exists already: fine
	if err := c.Close(); err != nil {
		t.Fatal(err)
	}
	got := readNewc(t, buf.Bytes())
	want := map[string]string{
		"dev":            "40755 0:0 ",
		"dev/console":    "20600 5:1 ",
		"tests":          "40755 0:0 ",
		"tests/a":        "40755 0:0 ",
		"tests/a/b.test": "100755 0:0 hello",
		"bin":            "40755 0:0 ",
		"bin/sh":         "120777 0:0 busybox",
	}
	if !reflect.DeepEqual(got, want) {
		t.Errorf("archive = %q\nwant %q", got, want)
	}

	c = newCPIOWriter(&bytes.Buffer{})
	c.File("/x", 0o644, 1, strings.NewReader("x"))
	c.File("/x", 0o644, 1, strings.NewReader("x"))
	if err := c.Close(); err == nil || !strings.Contains(err.Error(), "duplicate") {
		t.Errorf("duplicate entry: err = %v", err)
	}
	c = newCPIOWriter(&bytes.Buffer{})
	c.File("/short", 0o644, 10, strings.NewReader("x"))
	if err := c.Close(); err == nil || !strings.Contains(err.Error(), "short read") {
		t.Errorf("short file: err = %v", err)
	}
}

func TestQEMUArgs(t *testing.T) {
	tests := []struct {
		arch, cmdline, want string
	}{
		{ArchAMD64, "", "-accel tcg,thread=single -cpu max -m 1024 -smp 2 -nographic -no-reboot -nic none -kernel /k/vmlinuz -initrd /i.cpio -append console=ttyS0 quiet panic=-1"},
		{ArchAMD64, "lsm=capability,yama", "-accel tcg,thread=single -cpu max -m 1024 -smp 2 -nographic -no-reboot -nic none -kernel /k/vmlinuz -initrd /i.cpio -append console=ttyS0 quiet panic=-1 lsm=capability,yama"},
		{ArchARM64, "", "-machine virt -accel tcg -cpu max,pauth-impdef=on -m 1024 -smp 2 -nographic -no-reboot -nic none -kernel /k/vmlinuz -initrd /i.cpio -append console=ttyAMA0 quiet panic=-1"},
	}
	for _, tt := range tests {
		got := strings.Join(QEMUArgs(tt.arch, "/k/vmlinuz", "/i.cpio", 1024, 2, tt.cmdline), " ")
		if got != tt.want {
			t.Errorf("QEMUArgs(%s, %q) = %q, want %q", tt.arch, tt.cmdline, got, tt.want)
		}
	}
}

func TestWriteSummary(t *testing.T) {
	k := Kernel{Name: "6.1"}
	tests := []struct {
		name    string
		reports []KernelReport
		wantOK  bool
		want    string
	}{
		{"pass", []KernelReport{{Kernel: k, Results: []CommandResult{{Name: "a", Status: Pass}}}}, true, "1 passed, 0 failed"},
		{"missing", []KernelReport{{Kernel: k, Results: []CommandResult{{Name: "a", Status: Missing}}, Errors: []string{"timeout"}}}, false, "0 passed, 2 failed"},
		{"boot error with passing commands", []KernelReport{{Kernel: k, Results: []CommandResult{{Name: "a", Status: Pass}}, Errors: []string{"no done"}}}, false, "1 passed, 1 failed"},
		{"nothing ran", nil, false, "0 passed, 0 failed"},
		{"panic shows the console's tail", []KernelReport{{Kernel: k, Errors: []string{"kernel panic: x"}, ConsoleTail: []string{"RIP: bpf_prog_x", "Kernel panic"}}}, false,
			"[6.1] | RIP: bpf_prog_x\nvmtest: [6.1] | Kernel panic\nvmtest: 0 passed, 1 failed"},
		{"a failed command shows its failed tests' output", []KernelReport{{Kernel: k, Results: []CommandResult{{Name: "r", Status: Fail, Exit: 1, Failures: []string{"--- FAIL: TestX/y", "    x_test.go:3: wrong"}}}}}, false,
			"[6.1] r failed; the output of its failed tests:\nvmtest: [6.1] ! --- FAIL: TestX/y\nvmtest: [6.1] !     x_test.go:3: wrong\nvmtest: 0 passed, 1 failed"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			var buf bytes.Buffer
			ok, err := WriteSummary(&buf, tt.reports)
			if err != nil || ok != tt.wantOK || !strings.Contains(buf.String(), "vmtest: "+tt.want+"\n") {
				t.Errorf("WriteSummary = %v, %v:\n%s", ok, err, buf.String())
			}
		})
	}
}

func TestConsoleTail(t *testing.T) {
	for _, n := range []int{0, 1, ConsoleTailLines - 1, ConsoleTailLines, ConsoleTailLines + 1, 3*ConsoleTailLines + 7} {
		t.Run(strconv.Itoa(n), func(t *testing.T) {
			c := newConsole("nonce")
			var all []string
			for i := range n {
				l := "line " + strconv.Itoa(i)
				all = append(all, l)
				c.feed(l)
			}
			want := all[max(0, n-ConsoleTailLines):]
			if got := c.lastLines(); !reflect.DeepEqual(got, want) && (len(got) > 0 || len(want) > 0) {
				t.Fatalf("lastLines after %d lines = %q, want %q", n, got, want)
			}
		})
	}
}
