package tcpconnectreceiver

import (
	"bytes"
	"encoding/json"
	"flag"
	"net/netip"
	"os"
	"path/filepath"
	"testing"
	"time"

	"go.opentelemetry.io/collector/pdata/plog"

	"github.com/tcpconnect/tcpconnect/dns"
	"github.com/tcpconnect/tcpconnect/internal/event"
	"github.com/tcpconnect/tcpconnect/internal/procinfo"
)

var update = flag.Bool("update", false, "rewrite the golden files in testdata/receiver")

const goldenDir = "../testdata/receiver"

// goldenCompare compares got with the golden file name (indented JSON from
// plog.JSONMarshaler), or rewrites it with -update.
func goldenCompare(t *testing.T, name string, got plog.Logs) {
	t.Helper()
	raw, err := (&plog.JSONMarshaler{}).MarshalLogs(got)
	if err != nil {
		t.Fatal(err)
	}
	var buf bytes.Buffer
	if err := json.Indent(&buf, raw, "", "  "); err != nil {
		t.Fatal(err)
	}
	buf.WriteByte('\n')
	path := filepath.Join(goldenDir, name)
	if *update {
		if err := os.WriteFile(path, buf.Bytes(), 0o644); err != nil {
			t.Fatal(err)
		}
		return
	}
	want, err := os.ReadFile(path)
	if err != nil {
		t.Fatalf("%v (run go test -update to create it)", err)
	}
	if !bytes.Equal(buf.Bytes(), want) {
		t.Errorf("logs differ from %s (go test -update rewrites it):\n%s", path, buf.String())
	}
	// The golden file must also read back into the same logs.
	back, err := (&plog.JSONUnmarshaler{}).UnmarshalLogs(want)
	if err != nil {
		t.Fatalf("unmarshal %s: %v", path, err)
	}
	if back.LogRecordCount() != got.LogRecordCount() {
		t.Errorf("%s holds %d records, want %d", path, back.LogRecordCount(), got.LogRecordCount())
	}
}

func TestConvertGolden(t *testing.T) {
	const pod = "5c8c2f31-6a0e-4b5e-9d8c-1f2e3d4c5b6a"
	cid := "0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef"
	curl := &procinfo.Info{ExePath: "/usr/bin/curl", ExeName: "curl", Owner: "alice", CommandLine: "curl -s https://example.com/"}
	gone := &procinfo.Info{ExeName: "wget"}
	app := &procinfo.Info{ExePath: "/app/server", ExeName: "server", Owner: "root", Container: procinfo.Container{ID: cid, PodUID: pod}}
	base := time.Date(2026, 11, 26, 12, 0, 0, 0, time.UTC)

	type in struct {
		rec  connectRec
		info *procinfo.Info
		dns  lookup
		res  outcomeResult
	}
	tests := []struct {
		name        string
		commandLine bool
		ins         []in
	}{
		{"connect_ipv4_no_names.json", false, []in{
			{connectRec{hook: event.HookCgroup, dst: netip.MustParseAddrPort("93.184.215.14:443"), startNs: 1, tgid: 4242, tid: 4243, ppid: 1, uid: 1000, comm: "curl", exe: "curl"}, curl, lookup{}, outcomeResult{}},
		}},
		{"connect_ipv6_names_cmdline.json", true, []in{
			{connectRec{hook: event.HookLSM, dst: netip.MustParseAddrPort("[2606:2800:21f:cb07:6820:80da:af6b:8b2c]:443"), startNs: 1, tgid: 4242, tid: 4242, ppid: 1, uid: 1000, comm: "curl", exe: "curl"}, curl,
				lookup{names: []string{"www.example.com", "example.com-v4.edgesuite.net"}, best: "www.example.com", age: 1500 * time.Millisecond, source: dns.SourceProcess}, outcomeResult{}},
		}},
		{"connect_outcomes.json", false, []in{
			{connectRec{hook: event.HookLSM, dst: netip.MustParseAddrPort("93.184.215.14:443"), startNs: 1, tgid: 4242, tid: 4243, ppid: 1, uid: 1000, comm: "curl", exe: "curl"}, curl,
				lookup{names: []string{"example.com"}, best: "example.com", age: time.Second, source: dns.SourceProcess}, outcomeResult{kind: event.KindEstablished, duration: 23500 * time.Microsecond}},
			{connectRec{hook: event.HookLSM, dst: netip.MustParseAddrPort("127.0.0.1:9"), startNs: 1, tgid: 4242, tid: 4243, ppid: 1, uid: 1000, comm: "curl", exe: "curl"}, curl,
				lookup{}, outcomeResult{kind: event.KindRefused, errType: "ECONNREFUSED", duration: 64 * time.Microsecond}},
			{connectRec{hook: event.HookLSM, dst: netip.MustParseAddrPort("10.1.2.3:80"), startNs: 1, tgid: 4242, tid: 4243, ppid: 1, uid: 1000, comm: "curl", exe: "curl"}, curl,
				lookup{}, outcomeResult{kind: event.KindDenied, errType: event.OtherError, duration: 9 * time.Microsecond}},
			{connectRec{hook: event.HookLSM, dst: netip.MustParseAddrPort("10.1.2.4:80"), startNs: 1, tgid: 4242, tid: 4243, ppid: 1, uid: 1000, comm: "curl", exe: "curl"}, curl,
				lookup{}, pendingResult()},
		}},
		{"batch_three_processes.json", false, []in{
			{connectRec{hook: event.HookFentry, dst: netip.MustParseAddrPort("10.0.0.7:5432"), startNs: 7, tgid: 100, tid: 101, ppid: 99, comm: "worker-1", exe: "server"}, app, lookup{}, outcomeResult{}},
			{connectRec{hook: event.HookFentry, dst: netip.MustParseAddrPort("127.0.0.1:8080"), startNs: 9, tgid: 200, tid: 200, ppid: 1, uid: 65534, comm: "wget", exe: "wget"}, gone, lookup{}, outcomeResult{}},
			{connectRec{hook: event.HookFentry, dst: netip.MustParseAddrPort("10.0.0.8:5432"), startNs: 7, tgid: 100, tid: 102, ppid: 99, comm: "worker-2", exe: "server"}, app, lookup{}, outcomeResult{}},
			// Same pid, other start time: a new incarnation, its own resource.
			{connectRec{hook: event.HookKprobe, dst: netip.MustParseAddrPort("[::1]:22"), startNs: 8, tgid: 100, tid: 100, ppid: 1, comm: "ssh", exe: "ssh"}, &procinfo.Info{ExeName: "ssh"}, lookup{}, outcomeResult{}},
		}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			cfg := createDefaultConfig()
			cfg.IncludeCommandLine = tt.commandLine
			b := newBatcher("host-1", "v1.2.3", cfg)
			for i, x := range tt.ins {
				var c event.Connect
				if err := event.DecodeConnect(x.rec.raw(), &c); err != nil {
					t.Fatal(err)
				}
				ts := base.Add(time.Duration(i) * time.Millisecond)
				b.add(&c, x.info, x.dns, x.res, ts, ts.Add(50*time.Millisecond))
			}
			if b.len() != len(tt.ins) {
				t.Fatalf("batch len %d, want %d", b.len(), len(tt.ins))
			}
			ld, n := b.take()
			if n != len(tt.ins) || ld.LogRecordCount() != n || b.len() != 0 {
				t.Fatalf("take: n=%d records=%d left=%d", n, ld.LogRecordCount(), b.len())
			}
			goldenCompare(t, tt.name, ld)
		})
	}
}

// BenchmarkConvert measures decode, process cache hit and record build, the
// per-connect work of the reader.
func BenchmarkConvert(b *testing.B) {
	raw := connectRec{hook: event.HookCgroup, dst: netip.MustParseAddrPort("93.184.215.14:443"), startNs: 1, tgid: 4242, tid: 4243, ppid: 1, comm: "curl", exe: "curl"}.raw()
	procs := procinfo.New(procinfo.Config{ProcRoot: b.TempDir()})
	bt := newBatcher("host-1", "v1", createDefaultConfig())
	now := time.Now()
	var c event.Connect
	b.ReportAllocs()
	for i := 0; b.Loop(); i++ {
		if err := event.DecodeConnect(raw, &c); err != nil {
			b.Fatal(err)
		}
		info := procs.Lookup(procinfo.Key{PID: c.TGID, StartTimeNs: c.StartTimeNs}, c.Exe(), c.Comm(), c.UID, c.CgroupID, now)
		bt.add(&c, info, lookup{}, outcomeResult{}, now, now)
		if bt.len() == 1024 {
			bt.take()
		}
	}
}
