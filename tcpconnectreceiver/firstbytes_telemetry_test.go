package tcpconnectreceiver

import (
	"context"
	"testing"
	"time"

	"go.opentelemetry.io/collector/component/componenttest"
	"go.opentelemetry.io/collector/consumer/consumertest"
	"go.opentelemetry.io/otel/attribute"
	"go.opentelemetry.io/otel/sdk/metric/metricdata"

	"github.com/tcpconnect/tcpconnect/bpf"
	"github.com/tcpconnect/tcpconnect/internal/event"
)

// counterBy returns the data points of counter name by the value of attribute key.
func counterBy(t *testing.T, tt *componenttest.Telemetry, name, key string) map[string]int64 {
	t.Helper()
	m, err := tt.GetMetric("otelcol_" + name)
	if err != nil {
		return nil
	}
	out := map[string]int64{}
	if d, ok := m.Data.(metricdata.Sum[int64]); ok {
		for _, dp := range d.DataPoints {
			v, _ := dp.Attributes.Value(attribute.Key(key))
			out[v.AsString()] += dp.Value
		}
	}
	return out
}

// TestFirstBytesTelemetry replays connects with first bytes of each kind
// through a started receiver and checks the counters by result, the lost
// ones (kernel and receiver) and the unmatched ones.
func TestFirstBytesTelemetry(t *testing.T) {
	const ms = uint64(time.Millisecond)
	cfg := testConfig()
	cfg.Batch.MaxSize = 1
	cfg.Outcome.MaxWait = 10 * time.Second // nothing may go out by waiting
	tel := componenttest.NewTelemetry()
	defer tel.Shutdown(context.Background()) //nolint:errcheck
	sink := new(consumertest.LogsSink)
	rcv, src := startReplay(t, cfg, sink, tel)
	src.setCounters(bpf.Counters{Lost: bpf.Lost{FirstBytes: 2}})
	hello := clientHello(t, "a.example", "h2")
	conn := func(tid uint32, port uint16) [][]byte {
		boot := uint64(tid) * ms
		return [][]byte{trackedRecord(tid, port, boot, true), outcomeRaw(tid, boot, boot+ms, event.KindEstablished, 0)}
	}
	var feed [][]byte
	add := func(tid uint32, fb ...[]byte) {
		feed = append(feed, conn(tid, uint16(8000+tid))...)
		feed = append(feed, fb...)
	}
	add(1, fbPieces(1, 1*ms, hello, 2048)...)
	add(2, fbPieces(2, 2*ms, []byte("GET / HTTP/1.1\r\nHost: b.example\r\n\r\n"), 2048)...)
	add(3, fbPieces(3, 3*ms, []byte("SSH-2.0-x\r\n"), 2048)...)
	add(4, fbPieces(4, 4*ms, hello[:100], 2048)...) // a capture cut at the bound
	add(5, fbPieces(5, 5*ms, []byte{0x16, 3, 1, 0, 4, 1, 0xff, 0xff, 0xff}, 2048)...)
	add(6, fbRaw(6, 6*ms, fbFlagClosed, 0, 0, nil))
	add(7, fbPieces(7, 7*ms, hello, 700)[1:]...) // its first piece lost: the second is unmatched
	feed = append(feed, fbRaw(99, 99*ms, fbFlagClosed, 0, 0, nil))
	src.feed(feed...)
	waitFor(t, "the records", func() bool { return sink.LogRecordCount() == 7 })
	waitFor(t, "the kernel's lost count", func() bool { return counter(t, tel, "receiver_tcpconnect_first_bytes_lost") == 3 })
	if err := rcv.Shutdown(context.Background()); err != nil {
		t.Fatal(err)
	}
	got := counterBy(t, tel, "receiver_tcpconnect_first_bytes", "result")
	want := map[string]int64{"tls": 1, "http": 1, "other": 1, "truncated": 1, "malformed": 1, "none": 2}
	for k, v := range want {
		if got[k] != v {
			t.Errorf("first_bytes{result=%s} = %d, want %d (all: %v)", k, got[k], v, got)
		}
	}
	if len(got) != len(want) {
		t.Errorf("first_bytes results %v, want %v", got, want)
	}
	if n := counter(t, tel, "receiver_tcpconnect_first_bytes_unmatched"); n != 2 {
		t.Errorf("first_bytes_unmatched = %d, want 2", n)
	}
}

// TestFirstBytesConfig checks the first_bytes section's validation.
func TestFirstBytesConfig(t *testing.T) {
	tests := []struct {
		name    string
		mod     func(*Config)
		wantErr string
	}{
		{"default", func(*Config) {}, ""},
		{"bound zero", func(c *Config) { c.FirstBytes.MaxBytes = 0 }, "first_bytes.max_bytes"},
		{"bound above the kernel's", func(c *Config) { c.FirstBytes.MaxBytes = bpf.MaxFirstBytes + 1 }, "first_bytes.max_bytes"},
		{"bound at the kernel's", func(c *Config) { c.FirstBytes.MaxBytes = bpf.MaxFirstBytes }, ""},
		{"off: not checked", func(c *Config) { c.FirstBytes = FirstBytesConfig{} }, ""},
		{"outcome off: no error", func(c *Config) { c.Outcome.Enabled = false }, ""},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			cfg := createDefaultConfig()
			tt.mod(cfg)
			wantErr(t, "Validate", cfg.Validate(), tt.wantErr)
		})
	}
}
