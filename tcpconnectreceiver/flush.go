package tcpconnectreceiver

import (
	"context"
	"time"

	"go.opentelemetry.io/collector/pdata/plog"
	"go.opentelemetry.io/otel/metric"
	"go.uber.org/zap"
)

// pendingBatches is how many full batches may wait for the sender before
// the reader blocks (and the kernel ring absorbs the backlog).
const pendingBatches = 2

// plogBatch is a batch handed from the reader to the sender.
type plogBatch struct {
	logs plog.Logs
	n    int
}

// newBatcher returns a batcher for cfg's batch and record bounds.
func newBatcher(hostName, scopeVersion string, cfg *Config) *batcher {
	b := newUnboundedBatcher(hostName, scopeVersion, cfg.IncludeCommandLine)
	b.maxBytes, b.headroom = cfg.Batch.MaxBytes, maxRecordBytes(cfg.recordCaps())
	return b
}

// flusher hands the reader's batch to the sender when it is full or old:
// batch.max_size records, batch.max_bytes, batch.timeout. It waits while
// the sender is behind, so that the kernel ring absorbs the backlog.
type flusher struct {
	batch   *batcher
	maxSize int
	timeout time.Duration
	out     chan<- plogBatch
	dropped metric.Int64Counter // receiver_tcpconnect_records_dropped
	log     *zap.Logger
}

// flushIfFull sends the batch when it holds batch.max_size records or could
// not take one more within batch.max_bytes. Every site that adds records
// calls it after each one.
func (f *flusher) flushIfFull(ctx context.Context) {
	if f.batch.len() >= f.maxSize || f.batch.full() {
		f.flush(ctx)
	}
}

// flushIfOld sends the batch when its first record came batch.timeout
// before now.
func (f *flusher) flushIfOld(ctx context.Context, now time.Time) {
	if f.batch.len() > 0 && now.Sub(f.batch.first) >= f.timeout {
		f.flush(ctx)
	}
}

// flush sends the batch, if it holds records, waiting while the sender is
// behind; when ctx ends first (shutdown timed out) its records are counted
// as dropped.
func (f *flusher) flush(ctx context.Context) {
	if f.batch.len() == 0 {
		return
	}
	ld, n := f.batch.take()
	select {
	case f.out <- plogBatch{logs: ld, n: n}:
	case <-ctx.Done():
		f.dropped.Add(ctx, int64(n))
		f.log.Warn("Dropped log records: shutdown timed out before they were sent", zap.Int("records", n))
	}
}
