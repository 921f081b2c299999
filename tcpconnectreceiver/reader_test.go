package tcpconnectreceiver

import (
	"context"
	"net/netip"
	"os"
	"path/filepath"
	"testing"

	"go.opentelemetry.io/collector/component/componenttest"
	"go.opentelemetry.io/collector/consumer/consumertest"

	"github.com/tcpconnect/tcpconnect/bpf"
	"github.com/tcpconnect/tcpconnect/internal/event"
)

func TestDecodeErrorsLossAndDNS(t *testing.T) {
	tt := componenttest.NewTelemetry()
	defer tt.Shutdown(context.Background())
	sink := new(consumertest.LogsSink)
	rcv, src := startReplay(t, testConfig(), sink, tt)
	short := testRecord(1, 1)[:40]
	badFamily := testRecord(1, 1)
	badFamily[1] = 99
	src.feed(short, badFamily, []byte{0x7f, 1, 2}, dnsRaw([]byte{1, 2, 3, 4}), testRecord(1, 1))
	src.setCounters(bpf.Counters{Lost: bpf.Lost{Connect: 5, DNS: 2}})
	waitFor(t, "the counters", func() bool {
		return counter(t, tt, "receiver_tcpconnect_decode_errors") == 3 && counter(t, tt, "receiver_tcpconnect_connects_lost") == 5 &&
			counter(t, tt, "receiver_tcpconnect_dns_parse_errors") == 1
	})
	src.setCounters(bpf.Counters{Lost: bpf.Lost{Connect: 7, DNS: 2}})
	waitFor(t, "the loss delta", func() bool { return counter(t, tt, "receiver_tcpconnect_connects_lost") == 7 })
	if err := rcv.Shutdown(context.Background()); err != nil {
		t.Fatal(err)
	}
	for name, want := range map[string]int64{
		"receiver_tcpconnect_dns_packets_lost":     2,
		"receiver_tcpconnect_dns_packets_received": 1,
		"receiver_tcpconnect_connects_received":    1,
	} {
		if got := counter(t, tt, name); got != want {
			t.Errorf("%s = %d, want %d", name, got, want)
		}
	}
	if sink.LogRecordCount() != 1 {
		t.Errorf("%d records delivered, want 1", sink.LogRecordCount())
	}
}

// TestProcPathPIDNamespace: a proc_path that shows another PID namespace (a
// container without host PID and without the host's /proc) is not read, so
// pid 1000 of that namespace never lends its executable to the kernel's
// pid 1000; the host's procfs (pid 2 a kernel thread) is read.
func TestProcPathPIDNamespace(t *testing.T) {
	const kthread, user = "2129984", "4194560"
	tests := []struct {
		name     string
		pid2     string // stat flags of pid 2
		wantPath bool
	}{
		{"host PID namespace", kthread, true},
		{"container PID namespace", user, false},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			root := t.TempDir()
			for pid, stat := range map[string]string{
				"2":    "2 (kthreadd) S 0 0 0 0 -1 " + tc.pid2 + " 0 0 0 0 0 0 0 0 20 0 1 0 0 0 0\n",
				"1000": "1000 (curl) S 1 1 1 0 -1 4194560 0 0 0 0 0 0 0 0 20 0 1 0 500 0 0\n",
			} {
				if err := os.Mkdir(filepath.Join(root, pid), 0o755); err != nil {
					t.Fatal(err)
				}
				if err := os.WriteFile(filepath.Join(root, pid, "stat"), []byte(stat), 0o644); err != nil {
					t.Fatal(err)
				}
			}
			if err := os.Symlink("/usr/bin/curl", filepath.Join(root, "1000", "exe")); err != nil {
				t.Fatal(err)
			}
			tt := componenttest.NewTelemetry()
			defer tt.Shutdown(context.Background())
			sink := new(consumertest.LogsSink)
			cfg := testConfig()
			cfg.Batch.MaxSize = 1
			cfg.ProcPath = root
			rcv, src := startReplay(t, cfg, sink, tt)
			defer rcv.Shutdown(context.Background())
			src.feed(connectRec{hook: event.HookCgroup, dst: netip.MustParseAddrPort("10.0.0.1:443"), startNs: 5e9,
				tgid: 1000, tid: 1000, ppid: 1, comm: "curl", exe: "curl"}.raw())
			waitFor(t, "the record", func() bool { return sink.LogRecordCount() == 1 })
			res := sink.AllLogs()[0].ResourceLogs().At(0).Resource().Attributes()
			p, ok := res.Get("process.executable.path")
			if ok != tc.wantPath || (ok && p.Str() != "/usr/bin/curl") {
				t.Errorf("process.executable.path = %v (present %t), want present %t", p.AsString(), ok, tc.wantPath)
			}
			if n, _ := res.Get("process.executable.name"); n.Str() != "curl" {
				t.Errorf("process.executable.name = %q, want the kernel's curl", n.Str())
			}
		})
	}
}
