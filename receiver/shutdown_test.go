package receiver

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
	"github.com/tcpconnect/tcpconnect/receiver/internal/metadatatest"
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

// TestShutdownDrainsTheRing: records the kernel submitted before Shutdown,
// still in the ring when the reader learns of it, are read and sent.
func TestShutdownDrainsTheRing(t *testing.T) {
	tt := componenttest.NewTelemetry()
	defer tt.Shutdown(context.Background())
	sink := new(consumertest.LogsSink)
	cfg := testConfig()
	cfg.Batch.MaxSize = 1000
	const n = 5

	var rcv *tcpconnectReceiver
	shutdown := make(chan error, 1)
	src := &emptyHookSource{replaySource: newReplaySource()}
	src.onEmpty = func() {
		// Shutdown starts while the reader sits between two reads; then
		// the kernel submits n more records.
		go func() { shutdown <- rcv.Shutdown(context.Background()) }()
		<-rcv.stop
		for i := range n {
			src.feed(testRecord(1, uint16(1000+i)))
		}
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
	if got := sink.LogRecordCount(); got != n {
		t.Errorf("%d records sent, want the %d left in the ring at shutdown", got, n)
	}
	if got := counter(t, tt, "receiver_tcpconnect_connects_received"); got != n {
		t.Errorf("connects_received = %d, want %d", got, n)
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
