package tcpconnectreceiver

import (
	"context"
	"net/netip"
	"testing"
	"time"

	"go.opentelemetry.io/collector/component/componenttest"
	"go.opentelemetry.io/collector/consumer"
	"go.opentelemetry.io/collector/pdata/plog"
	"go.opentelemetry.io/otel/sdk/metric/metricdata"

	"github.com/tcpconnect/tcpconnect/internal/event"
	"github.com/tcpconnect/tcpconnect/tcpconnectreceiver/internal/metadatatest"
)

func testRecord(pid uint32, port uint16) []byte {
	return connectRec{hook: event.HookCgroup, dst: netip.AddrPortFrom(netip.MustParseAddr("127.0.0.1"), port),
		bootNs: 1, startNs: 1, tgid: pid, tid: pid, ppid: 1, comm: "replay", exe: "replay"}.raw()
}

// testConfig is a default config with short timers for tests.
func testConfig() *Config {
	cfg := createDefaultConfig()
	cfg.PollInterval = 5 * time.Millisecond
	cfg.Batch = BatchConfig{MaxSize: 3, Timeout: time.Hour}
	cfg.Retry.InitialInterval = time.Millisecond
	cfg.Retry.MaxInterval = 4 * time.Millisecond
	cfg.Retry.MaxElapsedTime = 50 * time.Millisecond
	return cfg
}

// startReplay starts a receiver on a replay source with telemetry tt.
func startReplay(t *testing.T, cfg *Config, next consumer.Logs, tt *componenttest.Telemetry) (*tcpconnectReceiver, *replaySource) {
	t.Helper()
	src := newReplaySource()
	set := metadatatest.NewSettings(tt)
	rcv, err := newFactory(src.opener()).CreateLogs(context.Background(), set, cfg, next)
	if err != nil {
		t.Fatal(err)
	}
	if err := rcv.Start(context.Background(), componenttest.NewNopHost()); err != nil {
		t.Fatal(err)
	}
	return rcv.(*tcpconnectReceiver), src
}

// counter returns the sum of the int64 counter name's data points (0 when
// it was never recorded).
func counter(t *testing.T, tt *componenttest.Telemetry, name string) int64 {
	t.Helper()
	m, err := tt.GetMetric("otelcol_" + name)
	if err != nil {
		return 0
	}
	var n int64
	switch d := m.Data.(type) {
	case metricdata.Sum[int64]:
		for _, dp := range d.DataPoints {
			n += dp.Value
		}
	case metricdata.Gauge[int64]:
		for _, dp := range d.DataPoints {
			n += dp.Value
		}
	}
	return n
}

// waitFor polls cond for up to 5 s.
func waitFor(t *testing.T, what string, cond func() bool) {
	t.Helper()
	for end := time.Now().Add(5 * time.Second); time.Now().Before(end); time.Sleep(5 * time.Millisecond) {
		if cond() {
			return
		}
	}
	t.Fatalf("timed out waiting for %s", what)
}

func batchSizes(logs []plog.Logs) []int {
	var n []int
	for _, l := range logs {
		n = append(n, l.LogRecordCount())
	}
	return n
}

// TestLifecycle is the lifecycle that mdatagen's generated test would run
// (Start, Shutdown, twice, and Shutdown without Start), on a replay source.
