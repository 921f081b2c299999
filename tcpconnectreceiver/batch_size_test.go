package tcpconnectreceiver

import (
	"context"
	"fmt"
	"net/netip"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"
	"unicode/utf8"

	"go.opentelemetry.io/collector/component/componenttest"
	"go.opentelemetry.io/collector/consumer/consumertest"
	"go.opentelemetry.io/collector/pdata/plog"
	"go.opentelemetry.io/collector/pdata/plog/plogotlp"

	"github.com/tcpconnect/tcpconnect/dns"
	"github.com/tcpconnect/tcpconnect/internal/event"
	"github.com/tcpconnect/tcpconnect/internal/procinfo"
	"github.com/tcpconnect/tcpconnect/tcpconnectreceiver/internal/metadatatest"
)

// otlpLimit is the request limit of a default OTLP/gRPC receiver.
const otlpLimit = 4 << 20

// otlpSize is the size of the OTLP export request that carries ld.
func otlpSize(t testing.TB, ld plog.Logs) int {
	t.Helper()
	b, err := plogotlp.NewExportRequestFromLogs(ld).MarshalProto()
	if err != nil {
		t.Fatal(err)
	}
	return len(b)
}

// TestBatchBytesBound checks the batcher's size bound against the exact
// size of the OTLP request: never below it, and not far above it for
// ordinary records (else batches would be cut small for nothing).
func TestBatchBytesBound(t *testing.T) {
	cid := strings.Repeat("ab", 32)
	app := &procinfo.Info{ExePath: "/app/server", ExeName: "server", Owner: "root", CommandLine: "/app/server --port 8080", Container: procinfo.Container{ID: cid, PodUID: "5c8c2f31-6a0e-4b5e-9d8c-1f2e3d4c5b6a"}}
	big := &procinfo.Info{ExePath: "/" + strings.Repeat("d", procinfo.MaxExePathBytes-1), ExeName: strings.Repeat("n", procinfo.MaxExeNameBytes),
		Owner: strings.Repeat("o", procinfo.MaxOwnerBytes), CommandLine: strings.Repeat("€", (1<<20)/3)}
	many := make([]string, dns.MaxMaxNamesPerIP)
	for i := range many {
		many[i] = strings.Repeat(string(rune('a'+i%26)), maxDNSNameBytes)
	}
	tests := []struct {
		name      string
		processes int
		records   int
		info      *procinfo.Info
		dns       lookup
		comm      string
		maxRatio  float64 // bound / exact at most
	}{
		{"one process, many records", 1, 1024, app, lookup{}, "worker", 1.5},
		{"many processes", 500, 2, app, lookup{}, "worker", 1.5},
		{"names", 10, 100, app, lookup{names: []string{"www.example.com", "example.com-v4.edgesuite.net"}, best: "www.example.com", age: time.Second}, "curl", 1.5},
		{"largest strings", 3, 2, big, lookup{names: many, best: many[0], age: time.Second}, "\xffa\xffa\xffa\xffa\xffa\xffa\xffa\xff", 1.1},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			cfg := createDefaultConfig()
			cfg.IncludeCommandLine = true
			b := newUnboundedBatcher("host-1", "v1.2.3", true)
			now := time.Now()
			for p := range tt.processes {
				for r := range tt.records {
					var c event.Connect
					dst := netip.AddrPortFrom(netip.AddrFrom16([16]byte{0: 0x20, 1: 1, 14: byte(r >> 8), 15: byte(r)}), 443)
					raw := connectRec{hook: event.HookCgroup, dst: dst, startNs: 1, tgid: uint32(1000 + p), tid: uint32(2000 + r), ppid: 1, uid: 1000, comm: tt.comm, exe: "x"}.raw()
					if err := event.DecodeConnect(raw, &c); err != nil {
						t.Fatal(err)
					}
					b.add(&c, tt.info, tt.dns, outcomeResult{}, now, now)
				}
			}
			bound := b.bytes
			ld, _ := b.take()
			exact := otlpSize(t, ld)
			if size := (&plog.ProtoMarshaler{}).LogsSize(ld); size != exact {
				t.Fatalf("LogsSize %d, request %d", size, exact)
			}
			t.Logf("bound %d, exact %d (%.2f)", bound, exact, float64(bound)/float64(exact))
			if bound < exact {
				t.Errorf("bound %d below the exact size %d", bound, exact)
			}
			if float64(bound) > tt.maxRatio*float64(exact) {
				t.Errorf("bound %d over %.1f times the exact size %d", bound, tt.maxRatio, exact)
			}
		})
	}
}

// TestMaxRecordBytes checks that maxRecordBytes bounds a record at every
// cap, and that it grows with the command line cap only when command lines
// are exported.
func TestMaxRecordBytes(t *testing.T) {
	cfg := createDefaultConfig()
	without := maxRecordBytes(cfg.recordCaps())
	cfg.IncludeCommandLine = true
	with := maxRecordBytes(cfg.recordCaps())
	cfg.MaxCommandLineBytes = 1 << 20
	largest := maxRecordBytes(cfg.recordCaps())
	t.Logf("largest record: %d bytes without command line, %d with 4096, %d with 1 MiB", without, with, largest)
	if with-without < procinfo.DefaultMaxCommandLineBytes || largest-with != 1<<20-procinfo.DefaultMaxCommandLineBytes {
		t.Errorf("bounds %d, %d, %d do not follow the command line cap", without, with, largest)
	}
	if largest > otlpLimit/2 {
		t.Errorf("largest record %d bytes: over half the OTLP limit", largest)
	}
}

// fakeProcs writes n /proc/PID directories (pids from 1000) whose
// cmdline is a link to one file holding cmdline, and returns the procfs
// root. Their stat start time is 5 s after boot (startNs 5e9).
func fakeProcs(t *testing.T, n int, cmdline string) string {
	t.Helper()
	root := t.TempDir()
	shared := filepath.Join(root, "cmdline")
	if err := os.WriteFile(shared, []byte(cmdline), 0o644); err != nil {
		t.Fatal(err)
	}
	for i := range n {
		pid := fmt.Sprint(1000 + i)
		dir := filepath.Join(root, pid)
		if err := os.Mkdir(dir, 0o755); err != nil {
			t.Fatal(err)
		}
		stat := pid + " (x) S 1 1 1 0 -1 0 0 0 0 0 0 0 0 0 20 0 1 0 500 0 0\n"
		if err := os.WriteFile(filepath.Join(dir, "stat"), []byte(stat), 0o644); err != nil {
			t.Fatal(err)
		}
		if err := os.Symlink(shared, filepath.Join(dir, "cmdline")); err != nil {
			t.Fatal(err)
		}
		if err := os.Symlink("/usr/bin/x\xff", filepath.Join(dir, "exe")); err != nil {
			t.Fatal(err)
		}
	}
	return root
}

// TestHugeCommandLines is the attack of issue 8: processes with 1.8 MB
// command lines (not UTF-8) connect; once one batch exceeded the next
// collector's 4 MiB limit, and the whole batch, other processes' records
// included, was refused. Now every batch fits, no record is lost, and each
// command line is valid UTF-8 within its cap, marked as cut and counted.
func TestHugeCommandLines(t *testing.T) {
	const perProcess = 3
	arg := strings.Repeat("A\xff", 1800000/2/16)
	cmdline := "evil" + strings.Repeat("\x00"+arg, 16) + "\x00"
	root := fakeProcs(t, 200, cmdline)
	tests := []struct {
		name     string
		procs    int
		cmdCap   int
		maxBytes int
	}{
		{"defaults", 200, procinfo.DefaultMaxCommandLineBytes, defaultBatchMaxBytes},
		// Fewer processes: cleaning 1 MiB per process is slow under -race,
		// and 12 MiB of command lines need several batches already.
		{"largest cap, OTLP-sized batches", 12, maxCommandLineBytesCap, otlpLimit},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			cfg := testConfig()
			cfg.Batch.MaxSize = 1024
			cfg.Batch.Timeout = 20 * time.Millisecond
			cfg.IncludeCommandLine = true
			cfg.MaxCommandLineBytes = tt.cmdCap
			cfg.Batch.MaxBytes = tt.maxBytes
			if err := cfg.Validate(); err != nil {
				t.Fatal(err)
			}
			sink := new(consumertest.LogsSink)
			tel := componenttest.NewTelemetry()
			defer func() { _ = tel.Shutdown(context.Background()) }()
			r, src := newReplayReceiver(t, cfg, sink, tel, root)
			for i := range tt.procs * perProcess {
				src.feed(connectRec{hook: event.HookCgroup, dst: netip.MustParseAddrPort("10.0.0.1:443"), startNs: 5e9,
					tgid: uint32(1000 + i%tt.procs), tid: uint32(1000 + i%tt.procs), ppid: 1, comm: "evil", exe: "x\xff"}.raw())
			}
			// Not waitFor's 5 s: cleaning megabytes is slow under -race on
			// a busy machine.
			for end := time.Now().Add(time.Minute); sink.LogRecordCount() < tt.procs*perProcess && time.Now().Before(end); {
				time.Sleep(10 * time.Millisecond)
			}
			if err := r.Shutdown(context.Background()); err != nil {
				t.Fatal(err)
			}
			for i, ld := range sink.AllLogs() {
				if n := otlpSize(t, ld); n > tt.maxBytes || n > otlpLimit {
					t.Errorf("batch %d: %d records, %d bytes: over batch.max_bytes %d or the OTLP limit", i, ld.LogRecordCount(), n, tt.maxBytes)
				}
				for _, rl := range ld.ResourceLogs().All() {
					cl := strAttr(rl.Resource().Attributes(), attrProcessCmdLine)
					if !utf8.ValidString(cl) || len(cl) > tt.cmdCap || !strings.HasPrefix(cl, "evil A\uFFFDA\uFFFD") || !strings.HasSuffix(cl, procinfo.TruncationMarker) {
						t.Fatalf("command line %d bytes, %.30q...%q: want valid UTF-8, at most %d bytes, marked as cut", len(cl), cl, cl[max(0, len(cl)-10):], tt.cmdCap)
					}
				}
			}
			if got := sink.LogRecordCount(); got != tt.procs*perProcess {
				t.Errorf("%d records, want %d", got, tt.procs*perProcess)
			}
			resources := 0
			for _, ld := range sink.AllLogs() {
				resources += ld.ResourceLogs().Len()
			}
			t.Logf("%d batches, %d resources", len(sink.AllLogs()), resources)
			// Each resource carries a cut command line and an executable
			// path and name with invalid bytes.
			if got := counter(t, tel, "receiver_tcpconnect_strings_truncated"); got != int64(resources) {
				t.Errorf("strings_truncated %d, want %d (one per resource)", got, resources)
			}
			if got := counter(t, tel, "receiver_tcpconnect_strings_sanitized"); got != 3*int64(resources) {
				t.Errorf("strings_sanitized %d, want %d (three per resource)", got, 3*resources)
			}
		})
	}
}

// newReplayReceiver starts a receiver on a replay source, its process cache
// on procfs root procRoot, with telemetry tel.
func newReplayReceiver(t *testing.T, cfg *Config, sink *consumertest.LogsSink, tel *componenttest.Telemetry, procRoot string) (*tcpconnectReceiver, *replaySource) {
	t.Helper()
	src := newReplaySource()
	rcv, err := newFactory(src.opener()).CreateLogs(context.Background(), metadatatest.NewSettings(tel), cfg, sink)
	if err != nil {
		t.Fatal(err)
	}
	r := rcv.(*tcpconnectReceiver)
	r.procRoot = procRoot
	r.skipPIDNS = true
	if err := r.Start(context.Background(), componenttest.NewNopHost()); err != nil {
		t.Fatal(err)
	}
	return r, src
}
