package tcpconnectreceiver

import (
	"context"
	"encoding/binary"
	"net/netip"
	"os"
	"path/filepath"
	"testing"
	"time"

	"go.opentelemetry.io/collector/component/componenttest"
	"go.opentelemetry.io/collector/consumer/consumertest"
	"go.opentelemetry.io/collector/pdata/pcommon"
	"golang.org/x/sys/unix"

	"github.com/tcpconnect/tcpconnect/internal/event"
)

// TestDNSStateFileReplay: with dns.state_file, the cache is written every
// dns.state_interval while the receiver runs (not only at shutdown), and a
// receiver started on the file names a connect from the first receiver's
// answer. A state file that cannot be written is counted, and the receiver
// goes on.
func TestDNSStateFileReplay(t *testing.T) {
	client, server := netip.MustParseAddrPort("10.0.0.2:40000"), netip.MustParseAddrPort("10.0.0.53:53")
	path := filepath.Join(t.TempDir(), "dns.state")
	cfg := testConfig()
	cfg.Batch.MaxSize = 1
	cfg.DNS.StateFile = path
	cfg.DNS.StateInterval = time.Second

	tt := componenttest.NewTelemetry()
	defer tt.Shutdown(context.Background())
	rcv, src := startReplay(t, cfg, new(consumertest.LogsSink), tt)
	// Kernel times of now: the state file keeps wall-clock times, and a
	// name learned at boot would have expired.
	boot := func() uint64 {
		var ts unix.Timespec
		if err := unix.ClockGettime(unix.CLOCK_BOOTTIME, &ts); err != nil {
			t.Fatal(err)
		}
		return uint64(ts.Nano())
	}
	stamp := func(raw []byte) []byte { binary.LittleEndian.PutUint64(raw[16:], boot()); return raw }
	src.feed(
		stamp(dnsFlowRaw(true, client, server, 7, packDNS(t, 1, "kept.test."))),
		stamp(dnsFlowRaw(false, client, server, 7, packDNS(t, 1, "kept.test.", "kept.test. 300 IN A 127.0.0.1"))),
	)
	waitFor(t, "the periodic state file", func() bool {
		fi, err := os.Stat(path)
		return err == nil && fi.Size() > 40
	})
	if err := rcv.Shutdown(context.Background()); err != nil {
		t.Fatal(err)
	}

	sink := new(consumertest.LogsSink)
	tt2 := componenttest.NewTelemetry()
	defer tt2.Shutdown(context.Background())
	rcv2, src2 := startReplay(t, cfg, sink, tt2)
	defer func() { _ = rcv2.Shutdown(context.Background()) }()
	rec := connectRec{hook: event.HookCgroup, dst: netip.MustParseAddrPort("127.0.0.1:443"), bootNs: boot(), startNs: 1, tgid: 1, tid: 1, netns: 4026531840, comm: "c", exe: "c"}
	src2.feed(rec.raw())
	waitFor(t, "the connect record", func() bool { return sink.LogRecordCount() == 1 })
	got := ""
	forEachRecord(sink.AllLogs()[0], func(_, a pcommon.Map) { got = strAttr(a, attrServerAddress) })
	if got != "kept.test" {
		t.Errorf("server.address after the restart = %q, want kept.test", got)
	}

	t.Run("write failure counted", func(t *testing.T) {
		cfg := testConfig()
		cfg.DNS.StateFile = filepath.Join(t.TempDir(), "missing-dir", "dns.state")
		cfg.DNS.StateInterval = time.Second
		tt := componenttest.NewTelemetry()
		defer tt.Shutdown(context.Background())
		rcv, _ := startReplay(t, cfg, new(consumertest.LogsSink), tt)
		waitFor(t, "a failed write", func() bool { return counter(t, tt, "receiver_tcpconnect_dns_state_writes_failed") >= 1 })
		if err := rcv.Shutdown(context.Background()); err != nil {
			t.Fatal(err)
		}
	})
}
