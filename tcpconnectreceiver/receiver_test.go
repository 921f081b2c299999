package tcpconnectreceiver

import (
	"context"
	"errors"
	"runtime"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"go.opentelemetry.io/collector/component/componenttest"
	"go.opentelemetry.io/collector/consumer"
	"go.opentelemetry.io/collector/consumer/consumererror"
	"go.opentelemetry.io/collector/consumer/consumertest"
	"go.opentelemetry.io/collector/pdata/plog"
	"go.opentelemetry.io/collector/receiver/receivertest"
	"go.opentelemetry.io/otel/sdk/metric/metricdata"
	"go.opentelemetry.io/otel/sdk/metric/metricdata/metricdatatest"
	"go.uber.org/zap"

	"github.com/tcpconnect/tcpconnect/tcpconnectreceiver/internal/metadata"
	"github.com/tcpconnect/tcpconnect/tcpconnectreceiver/internal/metadatatest"
)

// testRecord returns the raw record of a connect from pid to port.
func TestLifecycle(t *testing.T) {
	f := newFactory(newReplaySource().opener())
	set := receivertest.NewNopSettings(metadata.Type)
	cfg := f.CreateDefaultConfig()
	r, err := f.CreateLogs(context.Background(), set, cfg, consumertest.NewNop())
	if err != nil {
		t.Fatal(err)
	}
	if err := r.Shutdown(context.Background()); err != nil {
		t.Fatalf("Shutdown without Start: %v", err)
	}
	for i := range 2 {
		src := newReplaySource()
		r, err := newFactory(src.opener()).CreateLogs(context.Background(), set, cfg, consumertest.NewNop())
		if err != nil {
			t.Fatal(err)
		}
		if err := r.Start(context.Background(), componenttest.NewNopHost()); err != nil {
			t.Fatalf("Start %d: %v", i, err)
		}
		if err := r.Shutdown(context.Background()); err != nil {
			t.Fatalf("Shutdown %d: %v", i, err)
		}
		if !src.isClosed() {
			t.Errorf("Shutdown %d left the source open", i)
		}
	}
}

func TestStartError(t *testing.T) {
	open := func(*Config, *zap.Logger) (source, error) {
		return nil, errors.New("attach mode lsm: load programs: operation not permitted")
	}
	r, err := newFactory(open).CreateLogs(context.Background(), receivertest.NewNopSettings(metadata.Type), createDefaultConfig(), consumertest.NewNop())
	if err != nil {
		t.Fatal(err)
	}
	err = r.Start(context.Background(), componenttest.NewNopHost())
	if err == nil || !strings.Contains(err.Error(), "attach mode lsm") {
		t.Fatalf("Start = %v, want the source's error naming the mode", err)
	}
	if err := r.Shutdown(context.Background()); err != nil {
		t.Fatalf("Shutdown after failed Start: %v", err)
	}
}

func TestBatchBySizeAndFlushOnShutdown(t *testing.T) {
	tt := componenttest.NewTelemetry()
	defer tt.Shutdown(context.Background())
	sink := new(consumertest.LogsSink)
	rcv, src := startReplay(t, testConfig(), sink, tt)
	for i := range 7 {
		src.feed(testRecord(uint32(100+i%2), uint16(1000+i)))
	}
	waitFor(t, "two full batches", func() bool { return len(sink.AllLogs()) == 2 })
	if err := rcv.Shutdown(context.Background()); err != nil {
		t.Fatal(err)
	}
	if got := batchSizes(sink.AllLogs()); len(got) != 3 || got[0] != 3 || got[1] != 3 || got[2] != 1 {
		t.Fatalf("batch sizes %v, want [3 3 1] (the last flushed by Shutdown)", got)
	}
	// Two processes in the first batch: two ResourceLogs.
	if n := sink.AllLogs()[0].ResourceLogs().Len(); n != 2 {
		t.Errorf("first batch has %d ResourceLogs, want 2 (one per process)", n)
	}
	if n := counter(t, tt, "receiver_tcpconnect_connects_received"); n != 7 {
		t.Errorf("connects_received = %d, want 7", n)
	}
	if n := counter(t, tt, "receiver_tcpconnect_connects_unnamed"); n != 7 {
		t.Errorf("connects_unnamed = %d, want 7", n)
	}
	metadatatest.AssertEqualReceiverTcpconnectConnectsReceived(t, tt,
		[]metricdata.DataPoint[int64]{{Value: 7}}, metricdatatest.IgnoreTimestamp())
}

func TestBatchTimeout(t *testing.T) {
	tt := componenttest.NewTelemetry()
	defer tt.Shutdown(context.Background())
	cfg := testConfig()
	cfg.Batch = BatchConfig{MaxSize: 1000, Timeout: 20 * time.Millisecond}
	sink := new(consumertest.LogsSink)
	rcv, src := startReplay(t, cfg, sink, tt)
	defer rcv.Shutdown(context.Background())
	src.feed(testRecord(1, 1), testRecord(1, 2))
	waitFor(t, "the timed-out batch", func() bool { return sink.LogRecordCount() == 2 })
	if got := batchSizes(sink.AllLogs()); len(got) != 1 {
		t.Errorf("batch sizes %v, want one batch of 2", got)
	}
}

// flakyLogs fails its first n calls with err, then delegates to next.
type flakyLogs struct {
	consumertest.Consumer
	mu    sync.Mutex
	n     int
	err   error
	calls int
	next  *consumertest.LogsSink
}

func (f *flakyLogs) ConsumeLogs(ctx context.Context, ld plog.Logs) error {
	f.mu.Lock()
	f.calls++
	fail := f.calls <= f.n
	f.mu.Unlock()
	if fail {
		return f.err
	}
	return f.next.ConsumeLogs(ctx, ld)
}

func TestConsumerErrors(t *testing.T) {
	tests := []struct {
		name        string
		next        func(sink *consumertest.LogsSink) consumer.Logs
		retry       bool
		wantRecords int
		wantDropped int64
		wantRetries int64 // -1: at least one
	}{
		{"transient error retried", func(s *consumertest.LogsSink) consumer.Logs {
			return &flakyLogs{n: 2, err: errors.New("memory limiter: try later"), next: s}
		}, true, 3, 0, 2},
		{"permanent error dropped at once", func(*consumertest.LogsSink) consumer.Logs {
			return consumertest.NewErr(consumererror.NewPermanent(errors.New("bad data")))
		}, true, 0, 3, 0},
		{"retries exhausted", func(*consumertest.LogsSink) consumer.Logs {
			return consumertest.NewErr(errors.New("down"))
		}, true, 0, 3, -1},
		{"retry disabled", func(*consumertest.LogsSink) consumer.Logs {
			return consumertest.NewErr(errors.New("down"))
		}, false, 0, 3, 0},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			tt := componenttest.NewTelemetry()
			defer tt.Shutdown(context.Background())
			sink := new(consumertest.LogsSink)
			cfg := testConfig()
			cfg.Retry.Enabled = tc.retry
			rcv, src := startReplay(t, cfg, tc.next(sink), tt)
			src.feed(testRecord(1, 1), testRecord(1, 2), testRecord(1, 3))
			waitFor(t, "the batch to be consumed or dropped", func() bool {
				return sink.LogRecordCount() == tc.wantRecords &&
					counter(t, tt, "receiver_tcpconnect_records_dropped") == tc.wantDropped
			})
			if err := rcv.Shutdown(context.Background()); err != nil {
				t.Fatal(err)
			}
			retries := counter(t, tt, "receiver_tcpconnect_send_retries")
			if (tc.wantRetries < 0 && retries == 0) || (tc.wantRetries >= 0 && retries != tc.wantRetries) {
				t.Errorf("send_retries = %d, want %d (-1: some)", retries, tc.wantRetries)
			}
			if sink.LogRecordCount() != tc.wantRecords {
				t.Errorf("delivered %d records, want %d", sink.LogRecordCount(), tc.wantRecords)
			}
			if d := counter(t, tt, "receiver_tcpconnect_records_dropped"); d != tc.wantDropped {
				t.Errorf("records_dropped = %d, want %d", d, tc.wantDropped)
			}
		})
	}
}

// TestBackpressure: a consumer that blocks stops the reader (the replay's
// queue, standing in for the kernel ring, keeps the rest), and nothing is
// dropped; Shutdown with an expired context abandons the blocked send.
func TestBackpressure(t *testing.T) {
	tt := componenttest.NewTelemetry()
	defer tt.Shutdown(context.Background())
	release := make(chan struct{})
	blocking := &blockingLogs{release: release, sink: new(consumertest.LogsSink)}
	cfg := testConfig()
	cfg.Batch.MaxSize = 1
	rcv, src := startReplay(t, cfg, blocking, tt)
	for i := range 20 {
		src.feed(testRecord(1, uint16(i+1)))
	}
	// 1 in ConsumeLogs, pendingBatches in the channel, 1 in the reader's
	// hand: the reader waits in flush until the sender takes a batch, and
	// reads nothing meanwhile.
	waitFor(t, "the reader to wait for the sender", func() bool { return parkedIn("(*flusher).flush") })
	if n := len(src.recs); n != 20-(2+pendingBatches) {
		t.Fatalf("reader kept reading while the sender was blocked: %d records left, want %d", n, 20-(2+pendingBatches))
	}
	close(release)
	waitFor(t, "every record", func() bool { return blocking.sink.LogRecordCount() == 20 })
	if err := rcv.Shutdown(context.Background()); err != nil {
		t.Fatal(err)
	}
	if d := counter(t, tt, "receiver_tcpconnect_records_dropped"); d != 0 {
		t.Errorf("records_dropped = %d, want 0", d)
	}
}

// countingLogs counts the calls of ConsumeLogs.
type countingLogs struct {
	consumer.Logs
	calls atomic.Int64
}

func (c *countingLogs) ConsumeLogs(ctx context.Context, ld plog.Logs) error {
	c.calls.Add(1)
	return c.Logs.ConsumeLogs(ctx, ld)
}

// parkedIn reports whether a goroutine waits in a select statement of
// function fn, as runtime stacks name it ("(*flusher).flush").
func parkedIn(fn string) bool {
	buf := make([]byte, 1<<20)
	buf = buf[:runtime.Stack(buf, true)]
	for _, g := range strings.Split(string(buf), "\n\n") {
		lines := strings.Split(g, "\n")
		// "goroutine N [select]:", then the innermost frame shown (the
		// runtime's own are left out).
		if len(lines) >= 2 && strings.Contains(lines[0], " [select") && strings.Contains(lines[1], fn+"(") {
			return true
		}
	}
	return false
}

type blockingLogs struct {
	consumertest.Consumer
	release chan struct{}
	sink    *consumertest.LogsSink
}

func (b *blockingLogs) ConsumeLogs(ctx context.Context, ld plog.Logs) error {
	select {
	case <-b.release:
	case <-ctx.Done():
		return ctx.Err()
	}
	return b.sink.ConsumeLogs(ctx, ld)
}

func (b *blockingLogs) Capabilities() consumer.Capabilities { return consumer.Capabilities{} }

func TestShutdownTimeoutAbandonsRetries(t *testing.T) {
	tt := componenttest.NewTelemetry()
	defer tt.Shutdown(context.Background())
	cfg := testConfig()
	cfg.Retry.InitialInterval = time.Hour
	cfg.Retry.MaxInterval = time.Hour
	cfg.Retry.MaxElapsedTime = 10 * time.Hour
	rcv, src := startReplay(t, cfg, consumertest.NewErr(errors.New("down")), tt)
	src.feed(testRecord(1, 1), testRecord(1, 2), testRecord(1, 3))
	waitFor(t, "the first attempt", func() bool { return counter(t, tt, "receiver_refused_log_records") > 0 || len(src.recs) == 0 })
	ctx, cancel := context.WithTimeout(context.Background(), 50*time.Millisecond)
	defer cancel()
	start := time.Now()
	if err := rcv.Shutdown(ctx); err != nil {
		t.Fatal(err)
	}
	if d := time.Since(start); d > 2*time.Second {
		t.Errorf("Shutdown took %s despite its context's 50ms deadline", d)
	}
	if d := counter(t, tt, "receiver_tcpconnect_records_dropped"); d != 3 {
		t.Errorf("records_dropped = %d, want 3", d)
	}
}

// TestShutdownBounded: with the next hop down and the default retry budget
// (5 minutes), Shutdown with a context that never ends returns within
// shutdown_timeout and counts every record it could not deliver: those
// waiting for a retry, those the reader still held, and those of an attempt
// that blocks until it is cancelled.
func TestShutdownBounded(t *testing.T) {
	tests := []struct {
		name string
		next consumer.Logs
	}{
		{"next hop refuses", consumertest.NewErr(errors.New("connection refused"))},
		{"next hop hangs", &blockingLogs{release: make(chan struct{}), sink: new(consumertest.LogsSink)}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			tt := componenttest.NewTelemetry()
			defer tt.Shutdown(context.Background())
			cfg := testConfig()
			cfg.Retry = createDefaultConfig().Retry // 1s, doubling, for 5 minutes
			cfg.ShutdownTimeout = 500 * time.Millisecond
			next := &countingLogs{Logs: tc.next}
			rcv, src := startReplay(t, cfg, next, tt)
			for i := range 7 { // two full batches of 3, one record left in the reader
				src.feed(testRecord(1, uint16(i+1)))
			}
			waitFor(t, "the reader to read every record and the sender to try the first batch", func() bool {
				return counter(t, tt, "receiver_tcpconnect_connects_received") == 7 && next.calls.Load() > 0
			})
			start := time.Now()
			if err := rcv.Shutdown(context.Background()); err != nil {
				t.Fatal(err)
			}
			if d := time.Since(start); d > cfg.ShutdownTimeout+time.Second {
				t.Errorf("Shutdown took %s, want at most shutdown_timeout %s (and a little)", d, cfg.ShutdownTimeout)
			}
			if d := counter(t, tt, "receiver_tcpconnect_records_dropped"); d != 7 {
				t.Errorf("records_dropped = %d, want 7", d)
			}
		})
	}
}
