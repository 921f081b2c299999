package tcpconnectreceiver

import (
	"context"
	"errors"
	"math"
	"os"
	"time"

	"github.com/cilium/ebpf/ringbuf"
	"go.uber.org/zap"
	"golang.org/x/sys/unix"

	"github.com/tcpconnect/tcpconnect/internal/event"
	"github.com/tcpconnect/tcpconnect/internal/procinfo"
	"github.com/tcpconnect/tcpconnect/tcpconnectreceiver/internal/metadata"
)

// drainBudget bounds how long the reader drains the ring at shutdown: the
// programs stay attached until the source closes, so a busy host never
// empties the ring.
const drainBudget = time.Second

// readerDeps is what the reader goroutine is given by Start.
type readerDeps struct {
	cfg   *Config
	src   source
	log   *zap.Logger
	tel   *metadata.TelemetryBuilder
	dns   dnsSink      // nil when dns.enabled is false
	state *dnsState    // nil without dns.state_file
	agg   *aggregation // nil when aggregation.enabled is false
	procs *procinfo.Cache
	batch *batcher
	out   chan<- plogBatch // to the sender
	stop  <-chan struct{}  // closed by Shutdown: stop reading
}

// reader is the state of the reader goroutine: it reads the ring, decodes
// each record and hands it on by type (connects to the outcome join or
// straight to the batch, outcomes to the join, DNS packets to the
// correlator), and does the once-per-poll-interval work.
type reader struct {
	src         source
	log         *zap.Logger
	stop        <-chan struct{}
	poll        time.Duration
	ringRecords int // the most connect records the ring holds
	dns         dnsSink
	state       *dnsState
	agg         *aggregation
	out         *emitter
	flush       *flusher
	join        *join // nil when outcome.enabled is false
	meter       meter

	rec      ringbuf.Record
	conn     event.Connect
	dnsRec   event.DNS
	outRec   event.Outcome
	fbRec    event.FirstBytes
	bootWall int64     // CLOCK_REALTIME - CLOCK_BOOTTIME, ns
	clock    time.Time // time.Now() at the last tick; see readTime
	// recordTime's: the read time shared by records that were in the ring
	// when it was taken, how many ring bytes they may still take, and how
	// many more records may share it.
	readAt    time.Time
	readBytes int
	readLeft  int
	next      time.Time
	sweep     time.Time // next DNS cache sweep
	ticks     int       // ticks done: the kernel counters are read every kernelCountersEvery
	c         counts
}

func newReader(d readerDeps) *reader {
	rd := &reader{
		src: d.src, log: d.log, stop: d.stop, poll: d.cfg.PollInterval,
		ringRecords: d.cfg.RingBufferSize / event.ConnectSize,
		dns:         d.dns, state: d.state, agg: d.agg,
		flush: &flusher{batch: d.batch, maxSize: d.cfg.Batch.MaxSize, timeout: d.cfg.Batch.Timeout, out: d.out,
			dropped: d.tel.ReceiverTcpconnectRecordsDropped, log: d.log},
		meter: meter{t: d.tel, log: d.log},
	}
	rd.out = &emitter{dns: d.dns, procs: d.procs, batch: d.batch, agg: d.agg, names: make([]string, 0, maxNames), c: &rd.c}
	if d.cfg.Outcome.Enabled {
		rd.join = newJoin(d.cfg.Outcome, d.cfg.FirstBytes, rd.out, rd.flush, &rd.c)
	}
	return rd
}

// run reads until Shutdown closes stop: one SetDeadline per poll round,
// then every record until the ring is empty and the deadline passed. The
// batch timeout, loss counters and clock offset are checked once per poll
// interval, in the round or between records when the ring never runs dry.
func (rd *reader) run(ctx context.Context) {
	rd.bootWall = bootToWall()
	rd.clock = time.Now()
	rd.next = rd.clock.Add(rd.poll)
	for {
		rd.src.SetDeadline(time.Now().Add(rd.poll))
		for {
			err := rd.src.ReadInto(&rd.rec)
			if err != nil {
				if errors.Is(err, os.ErrDeadlineExceeded) {
					break
				}
				if errors.Is(err, ringbuf.ErrClosed) {
					rd.finish(ctx)
					return
				}
				rd.log.Error("Reading the ring buffer failed", zap.Error(err))
				select {
				case <-rd.stop:
				case <-time.After(rd.poll):
				}
				break
			}
			now := rd.take(ctx)
			if now.After(rd.next) {
				if rd.tick(ctx, now) {
					return
				}
			}
		}
		if rd.tick(ctx, time.Now()) {
			return
		}
	}
}

// readTime returns the time a record is read: its ObservedTimestamp, and the
// reader's clock for the process cache and the batch timeout. It is the wall
// clock of the last tick plus the monotonic time since, exact to the
// nanosecond but for a clock step or slew since that tick (at most one poll
// interval ago, like bootWall), and half the cost of time.Now, which reads
// both clocks.
func (rd *reader) readTime() time.Time {
	return rd.clock.Add(time.Since(rd.clock))
}

// clockEvery is the most records read back to back that share one read
// time (recordTime).
const clockEvery = 16

// recordTime returns the read time of the record just read into rd.rec. The
// clock is read for a record, and the records after it share that time
// while they lie in the ring bytes that were there when it was read
// (rd.rec.Remaining: they were in the ring at that time, so it is never
// before their kernel timestamp) and at most clockEvery records: a time
// at most a few tens of microseconds before each one's actual read, for
// one clock read per clockEvery records in a storm instead of one each.
// (A DNS record the kernel discarded is skipped by the ring reader
// unseen; its bytes are counted as if still ahead, so a record after
// one may share a time taken just before it was written.)
func (rd *reader) recordTime() time.Time {
	rd.readBytes -= ringRecordBytes(len(rd.rec.RawSample))
	if rd.readLeft > 0 && rd.readBytes >= 0 {
		rd.readLeft--
		return rd.readAt
	}
	rd.readAt = rd.readTime()
	rd.readBytes = rd.rec.Remaining
	rd.readLeft = clockEvery - 1
	return rd.readAt
}

// take hands on the record just read into rd.rec, at its read time, and
// flushes the batch if that filled it; it returns the read time. Every read
// of the ring (run, readRing) takes its records through it.
func (rd *reader) take(ctx context.Context) time.Time {
	now := rd.recordTime()
	rd.handle(rd.rec.RawSample, now)
	rd.flush.flushIfFull(ctx)
	return now
}

// wall returns the wall time of kernel timestamp bootNs
// (bpf_ktime_get_boot_ns), by the offset of the last tick.
func (rd *reader) wall(bootNs uint64) time.Time {
	return time.Unix(0, int64(bootNs)+rd.bootWall)
}

// ringRecordBytes is what a sample of n bytes takes in a BPF ring buffer:
// its 8-byte header and the data padded to 8 bytes.
func ringRecordBytes(n int) int { return 8 + (n+7)&^7 }

// tick does the once-per-poll-interval work; it reports true when Shutdown
// asked the reader to stop (after the last batch was flushed).
func (rd *reader) tick(ctx context.Context, now time.Time) bool {
	rd.next = now.Add(rd.poll)
	rd.bootWall = bootToWall()
	rd.clock = time.Now()
	if rd.agg != nil && rd.agg.due(now) {
		rd.endWindow(ctx, now, false)
	}
	rd.flush.flushIfOld(ctx, now)
	if rd.join != nil {
		rd.join.expire(ctx, now, false)
	}
	rd.report(ctx, rd.ticks%kernelCountersEvery == 0)
	rd.ticks++
	if rd.dns != nil && now.After(rd.sweep) {
		rd.dns.Sweep(now)
		rd.sweep = now.Add(sweepInterval)
	}
	if rd.state != nil {
		rd.state.tick(now)
	}
	select {
	case <-rd.stop:
		rd.finish(ctx)
		return true
	default:
		return false
	}
}

// finish reads what the ring still holds, sends the records still waiting
// for an outcome as pending, flushes what is left, reports the last
// counters and saves the DNS state file (with the answers just drained):
// nothing waits past shutdown.
func (rd *reader) finish(ctx context.Context) {
	if rd.agg != nil {
		rd.endWindow(ctx, time.Now(), true) // stop aggregating; nothing counted stays behind
	}
	if n, cut := rd.readRing(ctx, math.MaxInt, drainBudget); cut {
		rd.log.Warn("Shutdown: the ring buffer still held records after draining it; the rest are not sent",
			zap.Int("drained", n), zap.Duration("budget", drainBudget))
	}
	if rd.join != nil {
		rd.join.expire(ctx, time.Now(), true)
	}
	rd.flush.flush(ctx)
	rd.report(ctx, true)
	if rd.state != nil {
		rd.state.final(rd.readTime())
	}
}

// readRing reads what the ring holds now, at most maxRecords records and,
// with a budget, for about that long (or until ctx ends); it returns how
// many it read and whether the budget cut it short.
func (rd *reader) readRing(ctx context.Context, maxRecords int, budget time.Duration) (n int, cut bool) {
	end := time.Now().Add(budget)
	rd.src.SetDeadline(time.Now()) // past: read what is there, then ErrDeadlineExceeded
	for n < maxRecords {
		if err := rd.src.ReadInto(&rd.rec); err != nil {
			if !errors.Is(err, os.ErrDeadlineExceeded) && !errors.Is(err, ringbuf.ErrClosed) {
				rd.log.Debug("Reading what the ring buffer holds failed", zap.Error(err))
			}
			return n, false
		}
		n++
		rd.take(ctx)
		if budget > 0 && n%256 == 0 && (time.Now().After(end) || ctx.Err() != nil) {
			return n, true
		}
	}
	return n, false
}

// endWindow ends the kernel's aggregation window (with stop, stops
// aggregating) and sends one summary record per key that counted connects.
// The ring is read first, up to what the window's programs put there, so
// that the first records (and their names) go out before their summaries.
func (rd *reader) endWindow(ctx context.Context, now time.Time, stop bool) {
	summaries, err := rd.agg.end(now, stop)
	if err != nil {
		rd.log.Error("Ending the aggregation window failed; its counts stay in the kernel until the next one", zap.Error(err))
	}
	rd.readRing(ctx, rd.ringRecords, 0)
	var c event.Connect
	for i := range summaries {
		s := &summaries[i]
		if err := event.DecodeConnect(s.First[:], &c); err != nil {
			// Counted as connects of the window all the same.
			rd.c.decodeErrors++
			rd.log.Debug("Undecodable first record of an aggregation summary", zap.Error(err))
			continue
		}
		first := rd.wall(c.BootTimeNs)
		last := rd.wall(s.LastNs)
		rd.out.summary(&c, s, first, last, now)
		rd.flush.flushIfFull(ctx)
	}
	rd.agg.forget(stop)
}

// handle decodes one raw record and hands it on by type.
func (rd *reader) handle(raw []byte, now time.Time) {
	switch event.Type(raw) {
	case event.TypeConnect:
		c := &rd.conn
		if err := event.DecodeConnect(raw, c); err != nil {
			rd.c.decodeErrors++
			rd.log.Debug("Undecodable connect record", zap.Error(err))
			return
		}
		rd.c.connects++
		ts := rd.wall(c.BootTimeNs)
		if rd.join != nil {
			rd.join.connect(c, ts, now)
			return
		}
		rd.out.emit(c, rd.out.newProcess(c, now), outcomeResult{}, ts, now)
	case event.TypeOutcome:
		o := &rd.outRec
		if err := event.DecodeOutcome(raw, o); err != nil {
			rd.c.decodeErrors++
			rd.log.Debug("Undecodable outcome record", zap.Error(err))
			return
		}
		if rd.join == nil {
			rd.c.outcomeUnmatched++
			return
		}
		rd.join.outcome(o, now)
	case event.TypeFirstBytes:
		f := &rd.fbRec
		if err := event.DecodeFirstBytes(raw, f); err != nil {
			rd.c.decodeErrors++
			rd.log.Debug("Undecodable first-bytes record", zap.Error(err))
			return
		}
		if rd.join == nil {
			rd.c.fbUnmatched++
			return
		}
		rd.join.firstBytes(f, now)
	case event.TypeDNS:
		d := &rd.dnsRec
		if err := event.DecodeDNS(raw, d); err != nil {
			rd.c.decodeErrors++
			rd.log.Debug("Undecodable DNS record", zap.Error(err))
			return
		}
		rd.c.dnsReceived++
		if rd.dns == nil {
			rd.c.dnsIgnored++
			return
		}
		rd.dns.HandleDNS(d, rd.wall(d.BootTimeNs))
	default:
		rd.c.decodeErrors++
		rd.log.Debug("Unknown record type", zap.Uint8("type", event.Type(raw)), zap.Int("bytes", len(raw)))
	}
}

// kernelCountersEvery is how many ticks pass between two readings of the
// kernel's counters (a second at the default poll interval): each reading
// is a dozen bpf syscalls, 4% of the collector's CPU in a connect storm when
// it was done every tick.
const kernelCountersEvery = 10

// report adds the counters gathered since the last report to the metrics,
// with the DNS correlator's and, with kernel, the kernel's.
func (rd *reader) report(ctx context.Context, kernel bool) {
	rd.c.sanitized, rd.c.truncated = rd.flush.batch.takeFixes()
	rd.meter.addCounts(ctx, rd.c)
	rd.c = counts{}
	if kernel {
		if k, err := rd.src.Counters(); err != nil {
			rd.log.Debug("Reading the kernel counters failed", zap.Error(err))
		} else {
			rd.meter.addKernel(ctx, k)
		}
	}
	if rd.dns != nil {
		rd.meter.addDNS(ctx, rd.dns.Stats())
	}
}

// bootToWall returns CLOCK_REALTIME - CLOCK_BOOTTIME in ns: added to a kernel
// timestamp (bpf_ktime_get_boot_ns) it gives wall time. Recomputed every poll
// interval, so it follows clock steps (NTP, settimeofday).
func bootToWall() int64 {
	var rt, bt unix.Timespec
	if err := unix.ClockGettime(unix.CLOCK_BOOTTIME, &bt); err != nil {
		return 0
	}
	if err := unix.ClockGettime(unix.CLOCK_REALTIME, &rt); err != nil {
		return 0
	}
	return rt.Nano() - bt.Nano()
}
