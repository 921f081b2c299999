package tcpconnectreceiver

import (
	"net/netip"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"
	"unicode/utf8"

	"go.opentelemetry.io/collector/pdata/pcommon"
	"go.opentelemetry.io/collector/pdata/plog"

	"github.com/tcpconnect/tcpconnect/internal/event"
	"github.com/tcpconnect/tcpconnect/internal/procinfo"
)

// TestConvertHostileStrings: a process names its threads with prctl and
// chooses its argv and executable's name; none of it need be UTF-8 (OTLP
// requires it), and argv may be megabytes. The record carries them valid,
// capped, marked and counted. The golden file shows the exported form.
func TestConvertHostileStrings(t *testing.T) {
	root := t.TempDir()
	dir := filepath.Join(root, "4242")
	if err := os.MkdirAll(dir, 0o755); err != nil {
		t.Fatal(err)
	}
	files := map[string]string{
		"stat":    "4242 (\xff) S 1 1 1 0 -1 0 0 0 0 0 0 0 0 0 20 0 1 0 500 0 0\n",
		"cmdline": "/tmp/\xc3\x28evil\x00--token=" + strings.Repeat("\xe2\x82\xac", 100) + "\x00",
	}
	for name, data := range files {
		if err := os.WriteFile(filepath.Join(dir, name), []byte(data), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	if err := os.Symlink("/tmp/\xc3\x28evil", filepath.Join(dir, "exe")); err != nil {
		t.Fatal(err)
	}
	const cmdCap = 64
	procs := procinfo.New(procinfo.Config{ProcRoot: root, CommandLine: true, MaxCommandLineBytes: cmdCap})

	cfg := createDefaultConfig()
	cfg.IncludeCommandLine = true
	cfg.MaxCommandLineBytes = cmdCap
	b := newBatcher("host-\xff", "v1.2.3", cfg)
	base := time.Date(2026, 11, 26, 12, 0, 0, 0, time.UTC)
	for i, comm := range []string{"\xff\xfe\xfd", "ok-\xc3", "\xff\xfe\xfd"} {
		var c event.Connect
		raw := connectRec{hook: event.HookCgroup, dst: netip.MustParseAddrPort("10.0.0.1:443"), startNs: 5e9,
			tgid: 4242, tid: 4242 + uint32(i), ppid: 1, uid: 0, comm: comm, exe: "\xc3\x28evil"}.raw()
		if err := event.DecodeConnect(raw, &c); err != nil {
			t.Fatal(err)
		}
		info := procs.Lookup(procinfo.Key{PID: c.TGID, StartTimeNs: c.StartTimeNs}, c.Exe(), c.Comm(), c.UID, 0, base)
		ts := base.Add(time.Duration(i) * time.Millisecond)
		b.add(&c, info, lookup{}, outcomeResult{}, ts, ts)
	}
	// One resource: host name, executable path and name, command line;
	// three records: each thread name needed a replacement.
	sanitized, truncated := b.takeFixes()
	if sanitized != 4+3 || truncated != 1 {
		t.Errorf("sanitized %d, truncated %d; want 7 and 1", sanitized, truncated)
	}
	ld, _ := b.take()
	checkUTF8(t, ld)
	rattrs := ld.ResourceLogs().At(0).Resource().Attributes()
	if cl := strAttr(rattrs, attrProcessCmdLine); len(cl) > cmdCap || !strings.HasSuffix(cl, procinfo.TruncationMarker) {
		t.Errorf("command line %q: %d bytes, want at most %d, ending in %q", cl, len(cl), cmdCap, procinfo.TruncationMarker)
	}
	goldenCompare(t, "connect_hostile_strings.json", ld)
}

// checkUTF8 fails t for every string in ld that is not valid UTF-8.
func checkUTF8(t *testing.T, ld plog.Logs) {
	t.Helper()
	var check func(where string, v pcommon.Value)
	check = func(where string, v pcommon.Value) {
		switch v.Type() {
		case pcommon.ValueTypeStr:
			if !utf8.ValidString(v.Str()) {
				t.Errorf("%s = %q: not valid UTF-8", where, v.Str())
			}
		case pcommon.ValueTypeSlice:
			for _, e := range v.Slice().All() {
				check(where, e)
			}
		case pcommon.ValueTypeMap:
			for k, e := range v.Map().All() {
				check(where+"."+k, e)
			}
		}
	}
	for _, rl := range ld.ResourceLogs().All() {
		for k, v := range rl.Resource().Attributes().All() {
			check(k, v)
		}
		for _, sl := range rl.ScopeLogs().All() {
			for _, s := range []string{sl.Scope().Name(), sl.Scope().Version()} {
				if !utf8.ValidString(s) {
					t.Errorf("scope %q: not valid UTF-8", s)
				}
			}
			for _, lr := range sl.LogRecords().All() {
				for k, v := range lr.Attributes().All() {
					check(k, v)
				}
				check("body", lr.Body())
				if !utf8.ValidString(lr.EventName()) || !utf8.ValidString(lr.SeverityText()) {
					t.Errorf("event name %q or severity %q: not valid UTF-8", lr.EventName(), lr.SeverityText())
				}
			}
		}
	}
}
