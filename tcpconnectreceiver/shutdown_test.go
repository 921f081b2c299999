package tcpconnectreceiver

import (
	"context"
	"errors"
	"os"
	"sync"
	"testing"

	"github.com/cilium/ebpf/ringbuf"
	"go.opentelemetry.io/collector/component/componenttest"
	"go.opentelemetry.io/collector/consumer/consumertest"
	"go.uber.org/zap"

	"github.com/tcpconnect/tcpconnect/bpf"
	"github.com/tcpconnect/tcpconnect/tcpconnectreceiver/internal/metadatatest"
)

// emptyHookSource is a replay source that calls onEmpty (once) when a read
// finds it empty, before it reports the deadline.
type emptyHookSource struct {
	*replaySource
	once    sync.Once
	onEmpty func()
}

func (s *emptyHookSource) ReadInto(rec *ringbuf.Record) error {
	err := s.replaySource.ReadInto(rec)
	if errors.Is(err, os.ErrDeadlineExceeded) {
		s.once.Do(s.onEmpty)
	}
	return err
}

// shutdownWithBacklog starts a receiver with cfg on a source that, once the
// reader found it empty, starts Shutdown and then, while the reader sits
// between two reads, feeds recs: records the kernel submitted before
// Shutdown that are still in the ring when the reader learns of it. It
// returns when Shutdown did.
func shutdownWithBacklog(t *testing.T, cfg *Config, sink *consumertest.LogsSink, tt *componenttest.Telemetry, recs [][]byte) {
	t.Helper()
	var rcv *tcpconnectReceiver
	shutdown := make(chan error, 1)
	src := &emptyHookSource{replaySource: newReplaySource()}
	src.onEmpty = func() {
		go func() { shutdown <- rcv.Shutdown(context.Background()) }()
		<-rcv.stop
		src.feed(recs...)
	}
	open := func(*Config, *zap.Logger) (source, error) { return src, nil }
	r, err := newFactory(open).CreateLogs(context.Background(), metadatatest.NewSettings(tt), cfg, sink)
	if err != nil {
		t.Fatal(err)
	}
	rcv = r.(*tcpconnectReceiver)
	if err := rcv.Start(context.Background(), componenttest.NewNopHost()); err != nil {
		t.Fatal(err)
	}
	if err := <-shutdown; err != nil {
		t.Fatal(err)
	}
}

// TestShutdownDrainsTheRing: records the kernel submitted before Shutdown,
// still in the ring when the reader learns of it, are read and sent.
func TestShutdownDrainsTheRing(t *testing.T) {
	tt := componenttest.NewTelemetry()
	defer tt.Shutdown(context.Background())
	sink := new(consumertest.LogsSink)
	cfg := testConfig()
	cfg.Batch.MaxSize = 1000
	const n = 5
	var recs [][]byte
	for i := range n {
		recs = append(recs, testRecord(1, uint16(1000+i)))
	}
	shutdownWithBacklog(t, cfg, sink, tt, recs)
	if got := sink.LogRecordCount(); got != n {
		t.Errorf("%d records sent, want the %d left in the ring at shutdown", got, n)
	}
	if got := counter(t, tt, "receiver_tcpconnect_connects_received"); got != n {
		t.Errorf("connects_received = %d, want %d", got, n)
	}
}

// TestShutdownDrainKeepsMaxBytes: the records drained from the ring at
// shutdown are batched within batch.max_bytes, as every other batch is,
// however many of them batch.max_size would allow.
func TestShutdownDrainKeepsMaxBytes(t *testing.T) {
	tt := componenttest.NewTelemetry()
	defer tt.Shutdown(context.Background())
	sink := new(consumertest.LogsSink)
	cfg := testConfig()
	cfg.Batch.MaxSize = 1000
	cfg.Batch.MaxBytes = 2 * maxRecordBytes(cfg.recordCaps())
	if err := cfg.Validate(); err != nil {
		t.Fatal(err)
	}
	// One process each: every record brings its resource, so a few dozen
	// records are past the bound.
	const n = 200
	var recs [][]byte
	for i := range n {
		recs = append(recs, testRecord(uint32(1000+i), uint16(1000+i)))
	}
	shutdownWithBacklog(t, cfg, sink, tt, recs)
	if got := sink.LogRecordCount(); got != n {
		t.Fatalf("%d records sent, want the %d left in the ring at shutdown", got, n)
	}
	for i, ld := range sink.AllLogs() {
		if size := otlpSize(t, ld); size > cfg.Batch.MaxBytes {
			t.Errorf("batch %d: %d records, %d bytes: over batch.max_bytes %d", i, ld.LogRecordCount(), size, cfg.Batch.MaxBytes)
		}
	}
}

// TestFilteredCounter: the kernel's count of connects the filters left out
// is exported, as deltas of the cumulative counter.
func TestFilteredCounter(t *testing.T) {
	tt := componenttest.NewTelemetry()
	defer tt.Shutdown(context.Background())
	rcv, src := startReplay(t, testConfig(), consumertest.NewNop(), tt)
	src.setCounters(bpf.Counters{Filtered: 3})
	waitFor(t, "the filtered count", func() bool { return counter(t, tt, "receiver_tcpconnect_connects_filtered") == 3 })
	src.setCounters(bpf.Counters{Filtered: 10, Lost: bpf.Lost{Connect: 1}})
	waitFor(t, "the filtered delta", func() bool { return counter(t, tt, "receiver_tcpconnect_connects_filtered") == 10 })
	if err := rcv.Shutdown(context.Background()); err != nil {
		t.Fatal(err)
	}
	if got := counter(t, tt, "receiver_tcpconnect_connects_lost"); got != 1 {
		t.Errorf("connects_lost = %d, want 1 (filtered connects are not losses)", got)
	}
}
