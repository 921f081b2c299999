package receiver

import (
	"context"
	"errors"
	"fmt"
	"os"
	"sync"
	"time"

	"github.com/cilium/ebpf/ringbuf"
	"go.opentelemetry.io/collector/component"
	"go.opentelemetry.io/collector/consumer"
	"go.opentelemetry.io/collector/consumer/consumererror"
	"go.opentelemetry.io/collector/pdata/plog"
	"go.opentelemetry.io/collector/receiver"
	"go.opentelemetry.io/collector/receiver/receiverhelper"
	"go.opentelemetry.io/otel/attribute"
	"go.opentelemetry.io/otel/metric"
	"go.uber.org/zap"
	"golang.org/x/sys/unix"

	"github.com/tcpconnect/tcpconnect/bpf"
	"github.com/tcpconnect/tcpconnect/dns"
	"github.com/tcpconnect/tcpconnect/internal/event"
	"github.com/tcpconnect/tcpconnect/internal/procinfo"
	"github.com/tcpconnect/tcpconnect/receiver/internal/metadata"
)

const (
	// transport names the receiver's "transport" in its obsreport metrics.
	transport = "ebpf"
	// pendingBatches is how many full batches may wait for the sender before
	// the reader blocks (and the kernel ring absorbs the backlog).
	pendingBatches = 2
	// maxNames bounds the names buffer handed to the DNS correlator.
	maxNames = 64
)

// tcpconnectReceiver reads connect records from a source, converts them to
// log records in batches and hands the batches to the next consumer.
//
// Two goroutines: the reader owns the source, the process cache, the DNS
// sink and the batch being built; the sender owns ConsumeLogs and retries.
// A bounded channel between them makes the reader wait when the sender is
// behind, so the kernel ring fills and counts its losses instead of this
// process dropping records silently.
type tcpconnectReceiver struct {
	cfg       *Config
	set       receiver.Settings
	next      consumer.Logs
	open      openSourceFunc
	telemetry *metadata.TelemetryBuilder
	obsrecv   *receiverhelper.ObsReport
	dns       dnsSink   // nil when dns.enabled is false
	state     *dnsState // nil without dns.state_file
	procRoot  string    // procfs for the process cache; "" is cfg.ProcPath (tests use a fake)
	skipPIDNS bool      // tests with a fake procRoot: skip the host PID namespace check

	src     source
	stop    chan struct{}      // closed by Shutdown: stop reading
	batches chan plogBatch     // reader -> sender
	abort   context.CancelFunc // cancels retries and blocked sends on a late Shutdown
	wg      sync.WaitGroup
}

type plogBatch struct {
	logs plog.Logs
	n    int
}

func newReceiver(set receiver.Settings, cfg *Config, next consumer.Logs, open openSourceFunc) (*tcpconnectReceiver, error) {
	tb, err := metadata.NewTelemetryBuilder(set.TelemetrySettings)
	if err != nil {
		return nil, fmt.Errorf("create telemetry: %w", err)
	}
	obs, err := receiverhelper.NewObsReport(receiverhelper.ObsReportSettings{
		ReceiverID:             set.ID,
		Transport:              transport,
		LongLivedCtx:           true,
		ReceiverCreateSettings: set,
	})
	if err != nil {
		return nil, fmt.Errorf("create obsreport: %w", err)
	}
	return &tcpconnectReceiver{cfg: cfg, set: set, next: next, open: open, telemetry: tb, obsrecv: obs}, nil
}

// Start opens the source (loads and attaches the eBPF programs) and starts
// the reader and sender goroutines.
func (r *tcpconnectReceiver) Start(_ context.Context, _ component.Host) error {
	if r.src != nil {
		return errors.New("tcpconnect receiver: already started")
	}
	src, err := r.open(r.cfg, r.set.Logger)
	if err != nil {
		return fmt.Errorf("tcpconnect receiver: %w", err)
	}
	r.src = src
	r.reportAttach(src.Attempts())
	if r.cfg.DNS.Enabled {
		c, err := dns.New(r.cfg.DNS)
		if err != nil {
			_ = src.Close()
			r.src = nil
			return fmt.Errorf("tcpconnect receiver: dns correlator: %w", err)
		}
		r.dns = correlator{c}
		if r.cfg.DNS.StateFile != "" {
			r.state = startDNSState(r, c, time.Now())
		}
	}
	hostName, err := os.Hostname()
	if err != nil {
		r.set.Logger.Warn("No host name: host.name left out", zap.Error(err))
	}
	procRoot := r.procRoot
	if procRoot == "" {
		procRoot = r.cfg.ProcPath
	}
	noProc := false
	if !r.skipPIDNS {
		if err := procinfo.CheckHostPIDView(procRoot, src.SelfTGID()); err != nil {
			noProc = true
			r.set.Logger.Warn("proc_path does not show the host's PID namespace: /proc is not read, so process.executable.path, "+
				"process.command_line and the cgroup from /proc are left out (the kernel's executable name, pid and cgroup id remain). "+
				"Run with the host's PID namespace (hostPID: true, --pid=host) or mount the host's /proc and set proc_path to it",
				zap.String("proc_path", procRoot), zap.Error(err))
		}
	}
	procs := procinfo.New(procinfo.Config{ProcRoot: procRoot, NoProc: noProc, CgroupRoot: src.CgroupRoot(),
		CommandLine: r.cfg.IncludeCommandLine, MaxCommandLineBytes: r.cfg.MaxCommandLineBytes})
	rd := &reader{
		r:     r,
		procs: procs,
		batch: newBatcher(hostName, r.set.BuildInfo.Version, r.cfg),
		mode:  src.Mode(),
		names: make([]string, 0, maxNames),
	}
	if r.cfg.Outcome.Enabled {
		rd.wait = newOutcomeWait(r.cfg.Outcome.MaxWaiting, r.cfg.Outcome.MaxWait)
	}
	if r.cfg.Aggregation.Enabled {
		if rd.agg, err = newAggregation(src, r.cfg.Aggregation, r.cfg.Outcome.Enabled && r.cfg.Aggregation.CountOutcomes, time.Now()); err != nil {
			_ = src.Close()
			r.src = nil
			return fmt.Errorf("tcpconnect receiver: %w", err)
		}
	}
	ctx, cancel := context.WithCancel(context.Background())
	r.abort = cancel
	r.stop = make(chan struct{})
	r.batches = make(chan plogBatch, pendingBatches)
	r.wg.Add(2)
	go func() {
		defer r.wg.Done()
		defer close(r.batches)
		rd.run(ctx)
	}()
	go func() {
		defer r.wg.Done()
		for b := range r.batches {
			r.consume(ctx, b)
		}
	}()
	return nil
}

// reportAttach records the attach modes left at start and whether the one
// in use was proven.
func (r *tcpconnectReceiver) reportAttach(attempts []bpf.Attempt) {
	ctx := context.Background()
	for _, a := range attempts {
		mode := metric.WithAttributes(attribute.String("mode", string(a.Mode)))
		switch {
		case a.Err != nil:
			r.telemetry.ReceiverTcpconnectAttachModesLeft.Add(ctx, 1, mode)
		case a.ProofSkipped != "":
			r.telemetry.ReceiverTcpconnectAttachProven.Record(ctx, 0, mode)
		default:
			r.telemetry.ReceiverTcpconnectAttachProven.Record(ctx, 1, mode)
		}
	}
}

// Shutdown stops reading, sends the last batch, waits for the goroutines and
// closes the source: no program or link of ours stays in the kernel. It ends
// within shutdown_timeout (or ctx, when that ends first) whatever the next
// consumer does: a batch waiting for a retry is not retried once Shutdown
// started, the last batches get one attempt each, and when the bound passes
// the attempt in flight is cancelled. Every record not delivered is counted
// in receiver_tcpconnect_records_dropped.
func (r *tcpconnectReceiver) Shutdown(ctx context.Context) error {
	defer r.telemetry.Shutdown()
	if r.src == nil {
		return nil
	}
	bound := r.cfg.ShutdownTimeout
	if bound <= 0 { // a Config not from createDefaultConfig (Validate refuses it)
		bound = defaultShutdownTimeout
	}
	ctx, cancel := context.WithTimeout(ctx, bound)
	defer cancel()
	close(r.stop)
	done := make(chan struct{})
	go func() { r.wg.Wait(); close(done) }()
	select {
	case <-done:
	case <-ctx.Done():
		r.abort()
		<-done
	}
	r.abort()
	err := r.src.Close()
	r.src = nil
	if err != nil {
		return fmt.Errorf("tcpconnect receiver: close source: %w", err)
	}
	return nil
}

// stopping reports whether Shutdown has started.
func (r *tcpconnectReceiver) stopping() bool {
	select {
	case <-r.stop:
		return true
	default:
		return false
	}
}

// consume hands one batch to the next consumer, retrying non-permanent
// errors with bounded exponential backoff until Shutdown starts.
func (r *tcpconnectReceiver) consume(ctx context.Context, b plogBatch) {
	opCtx := r.obsrecv.StartLogsOp(ctx)
	err := r.next.ConsumeLogs(opCtx, b.logs)
	rc := r.cfg.Retry
	if err != nil && !consumererror.IsPermanent(err) && rc.Enabled && !r.stopping() {
		deadline := time.Now().Add(rc.MaxElapsedTime)
		wait := rc.InitialInterval
		timer := time.NewTimer(0)
		<-timer.C
	retry:
		for err != nil && !consumererror.IsPermanent(err) {
			if time.Now().Add(wait).After(deadline) {
				break
			}
			timer.Reset(wait)
			select {
			case <-timer.C:
			case <-r.stop:
				timer.Stop()
				break retry
			case <-ctx.Done():
				timer.Stop()
				break retry
			}
			r.telemetry.ReceiverTcpconnectSendRetries.Add(ctx, 1)
			err = r.next.ConsumeLogs(opCtx, b.logs)
			wait = min(2*wait, rc.MaxInterval)
		}
	}
	r.obsrecv.EndLogsOp(opCtx, transport, b.n, err)
	if err != nil {
		r.telemetry.ReceiverTcpconnectRecordsDropped.Add(context.Background(), int64(b.n))
		r.set.Logger.Warn("Dropped log records: the next consumer refused them",
			zap.Int("records", b.n), zap.Bool("permanent", consumererror.IsPermanent(err)),
			zap.Bool("shutting_down", r.stopping()), zap.Error(err))
	}
}

// counts are the reader's counters, added to the metrics once per tick so
// that the per-record path does not touch the metrics SDK.
type counts struct {
	connects, named, unnamed, decodeErrors, dnsReceived, dnsIgnored int64
	// outcomePending: records sent without an outcome; outcomeWaitFull: of
	// those, sent early because the wait queue was full; outcomeUnmatched:
	// outcome records that found no waiting connect.
	outcomePending, outcomeWaitFull, outcomeUnmatched int64
}

// reader is the state of the reader goroutine.
type reader struct {
	r     *tcpconnectReceiver
	procs *procinfo.Cache
	batch *batcher
	mode  string
	names []string

	rec      ringbuf.Record
	conn     event.Connect
	dnsRec   event.DNS
	outRec   event.Outcome
	wait     *outcomeWait // nil when outcome.enabled is false
	agg      *aggregation // nil when aggregation.enabled is false
	bootWall int64        // CLOCK_REALTIME - CLOCK_BOOTTIME, ns
	clock    time.Time    // time.Now() at the last tick; see readTime
	next     time.Time
	sweep    time.Time // next DNS cache sweep
	c        counts
	kernel   bpf.Counters // the kernel counters at the last tick
	dnsPrev  dnsStats
}

// run reads until Shutdown closes r.stop: one SetDeadline per poll round,
// then every record until the ring is empty and the deadline passed. The
// batch timeout, loss counters and clock offset are checked once per poll
// interval, in the round or between records when the ring never runs dry.
func (rd *reader) run(ctx context.Context) {
	r := rd.r
	poll := r.cfg.PollInterval
	rd.bootWall = bootToWall()
	rd.clock = time.Now()
	rd.next = rd.clock.Add(poll)
	for {
		r.src.SetDeadline(time.Now().Add(poll))
		for {
			err := r.src.ReadInto(&rd.rec)
			if err != nil {
				if errors.Is(err, os.ErrDeadlineExceeded) {
					break
				}
				if errors.Is(err, ringbuf.ErrClosed) {
					rd.finish(ctx)
					return
				}
				r.set.Logger.Error("Reading the ring buffer failed", zap.Error(err))
				select {
				case <-r.stop:
				case <-time.After(poll):
				}
				break
			}
			now := rd.readTime()
			rd.handle(rd.rec.RawSample, now)
			if rd.batch.len() >= r.cfg.Batch.MaxSize || rd.batch.full() {
				rd.flush(ctx)
			}
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

// tick does the once-per-poll-interval work; it reports true when Shutdown
// asked the reader to stop (after the last batch was flushed).
func (rd *reader) tick(ctx context.Context, now time.Time) bool {
	r := rd.r
	rd.next = now.Add(r.cfg.PollInterval)
	rd.bootWall = bootToWall()
	rd.clock = time.Now()
	if rd.agg != nil {
		rd.endWindow(ctx, now, false)
	}
	if rd.batch.len() > 0 && now.Sub(rd.batch.first) >= r.cfg.Batch.Timeout {
		rd.flush(ctx)
	}
	rd.expireWaiting(ctx, now, false)
	rd.report(ctx)
	if r.dns != nil && now.After(rd.sweep) {
		r.dns.Sweep(now)
		rd.sweep = now.Add(sweepInterval)
	}
	if r.state != nil {
		r.state.tick(now)
	}
	select {
	case <-r.stop:
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
	rd.drain(ctx)
	rd.expireWaiting(ctx, time.Now(), true)
	rd.flush(ctx)
	rd.report(ctx)
	if rd.r.state != nil {
		rd.r.state.final(rd.readTime())
	}
}

// drainBudget bounds how long drain reads at shutdown: the programs stay
// attached until the source closes, so a busy host never empties the ring.
const drainBudget = time.Second

// drain reads the records the kernel submitted before Shutdown that are
// still in the ring, until it is empty (or the source closed, or the budget
// ran out, which is logged), so that they are sent, not dropped unseen.
func (rd *reader) drain(ctx context.Context) {
	r := rd.r
	end := time.Now().Add(drainBudget)
	r.src.SetDeadline(time.Now()) // past: read what is there, then ErrDeadlineExceeded
	for n := 1; ; n++ {
		if err := r.src.ReadInto(&rd.rec); err != nil {
			if !errors.Is(err, os.ErrDeadlineExceeded) && !errors.Is(err, ringbuf.ErrClosed) {
				r.set.Logger.Debug("Draining the ring buffer at shutdown failed", zap.Error(err))
			}
			return
		}
		rd.handle(rd.rec.RawSample, rd.readTime())
		if rd.batch.len() >= r.cfg.Batch.MaxSize {
			rd.flush(ctx)
		}
		if n%256 == 0 && (time.Now().After(end) || ctx.Err() != nil) {
			r.set.Logger.Warn("Shutdown: the ring buffer still held records after draining it; the rest are not sent",
				zap.Int("drained", n), zap.Duration("budget", drainBudget))
			return
		}
	}
}

// flush sends the batch to the sender, waiting while the sender is behind.
func (rd *reader) flush(ctx context.Context) {
	if rd.batch.len() == 0 {
		return
	}
	ld, n := rd.batch.take()
	select {
	case rd.r.batches <- plogBatch{logs: ld, n: n}:
	case <-ctx.Done():
		rd.r.telemetry.ReceiverTcpconnectRecordsDropped.Add(ctx, int64(n))
		rd.r.set.Logger.Warn("Dropped log records: shutdown timed out before they were sent", zap.Int("records", n))
	}
}

// report adds the counters gathered since the last report to the metrics,
// with the kernel's loss counters and the DNS correlator's.
func (rd *reader) report(ctx context.Context) {
	t := rd.r.telemetry
	c := rd.c
	rd.c = counts{}
	addIf(ctx, t.ReceiverTcpconnectConnectsReceived, c.connects)
	addIf(ctx, t.ReceiverTcpconnectConnectsNamed, c.named)
	addIf(ctx, t.ReceiverTcpconnectConnectsUnnamed, c.unnamed)
	addIf(ctx, t.ReceiverTcpconnectDecodeErrors, c.decodeErrors)
	addIf(ctx, t.ReceiverTcpconnectDNSPacketsReceived, c.dnsReceived)
	addIf(ctx, t.ReceiverTcpconnectDNSPacketsIgnored, c.dnsIgnored)
	sanitized, truncated := rd.batch.takeFixes()
	addIf(ctx, t.ReceiverTcpconnectStringsSanitized, sanitized)
	addIf(ctx, t.ReceiverTcpconnectStringsTruncated, truncated)
	addIf(ctx, t.ReceiverTcpconnectOutcomesPending, c.outcomePending)
	addIf(ctx, t.ReceiverTcpconnectOutcomeWaitFull, c.outcomeWaitFull)
	addIf(ctx, t.ReceiverTcpconnectOutcomesUnmatched, c.outcomeUnmatched)

	if k, err := rd.r.src.Counters(); err != nil {
		rd.r.set.Logger.Debug("Reading the kernel counters failed", zap.Error(err))
	} else {
		l, prev := k.Lost, rd.kernel.Lost
		if l.Connect > prev.Connect {
			n := l.Connect - prev.Connect
			t.ReceiverTcpconnectConnectsLost.Add(ctx, int64(n))
			rd.r.set.Logger.Warn("Kernel ring buffer full: connect records lost", zap.Uint64("lost", n), zap.Uint64("lost_total", l.Connect))
		}
		if l.DNS > prev.DNS {
			t.ReceiverTcpconnectDNSPacketsLost.Add(ctx, int64(l.DNS-prev.DNS))
		}
		if l.DNSCopy > prev.DNSCopy {
			t.ReceiverTcpconnectDNSPacketsCopyFailed.Add(ctx, int64(l.DNSCopy-prev.DNSCopy))
		}
		if k.Filtered > rd.kernel.Filtered {
			t.ReceiverTcpconnectConnectsFiltered.Add(ctx, int64(k.Filtered-rd.kernel.Filtered))
		}
		if l.Outcome > prev.Outcome {
			t.ReceiverTcpconnectOutcomesLost.Add(ctx, int64(l.Outcome-prev.Outcome))
		}
		if l.OutcomeMissed > prev.OutcomeMissed {
			t.ReceiverTcpconnectOutcomesMissed.Add(ctx, int64(l.OutcomeMissed-prev.OutcomeMissed))
		}
		rd.reportAggregation(ctx, k, rd.kernel)
		rd.kernel = k
	}

	if rd.r.dns != nil {
		s := rd.r.dns.Stats()
		p := rd.dnsPrev
		addIf(ctx, t.ReceiverTcpconnectDNSAnswersParsed, int64(s.AnswersParsed-p.AnswersParsed))
		addIf(ctx, t.ReceiverTcpconnectDNSAnswersCached, int64(s.AnswersCached-p.AnswersCached))
		addIf(ctx, t.ReceiverTcpconnectDNSParseErrors, int64(s.ParseErrors-p.ParseErrors))
		addIf(ctx, t.ReceiverTcpconnectDNSRecordsMalformed, int64(s.RecordsMalformed-p.RecordsMalformed))
		addIf(ctx, t.ReceiverTcpconnectDNSPacketsIgnored, int64(s.Ignored-p.Ignored))
		addIf(ctx, t.ReceiverTcpconnectDNSAnswersUnsolicited, int64(s.AnswersUnsolicited-p.AnswersUnsolicited))
		addIf(ctx, t.ReceiverTcpconnectDNSAnswersTranslated, int64(s.AnswersTranslated-p.AnswersTranslated))
		addIf(ctx, t.ReceiverTcpconnectDNSTCPStreamsAbandoned, int64(s.TCPAbandoned-p.TCPAbandoned))
		addIf(ctx, t.ReceiverTcpconnectDNSCacheEvictions, int64(s.Evictions-p.Evictions))
		t.ReceiverTcpconnectDNSCacheEntries.Record(ctx, s.Entries)
		rd.dnsPrev = s
	}
}

// addIf adds v to the counter when there is something to add.
func addIf(ctx context.Context, c metric.Int64Counter, v int64) {
	if v > 0 {
		c.Add(ctx, v)
	}
}

// handle decodes one raw record and dispatches it by type.
func (rd *reader) handle(raw []byte, now time.Time) {
	switch event.Type(raw) {
	case event.TypeConnect:
		c := &rd.conn
		if err := event.DecodeConnect(raw, c); err != nil {
			rd.c.decodeErrors++
			rd.r.set.Logger.Debug("Undecodable connect record", zap.Error(err))
			return
		}
		rd.c.connects++
		ts := time.Unix(0, int64(c.BootTimeNs)+rd.bootWall)
		if rd.wait != nil {
			rd.waitOutcome(c, ts, now)
			return
		}
		// The process cache is asked only for a process new to the batch:
		// its Info is read once, for the resource, and later records of
		// the process in the batch share that resource.
		var info *procinfo.Info
		if key := (procinfo.Key{PID: c.TGID, StartTimeNs: c.StartTimeNs}); !rd.batch.hasProcess(key) {
			info = rd.procs.Lookup(key, c.Exe(), c.Comm(), c.UID, c.CgroupID, now)
		}
		rd.emit(c, info, outcomeResult{}, ts, now)
	case event.TypeOutcome:
		o := &rd.outRec
		if err := event.DecodeOutcome(raw, o); err != nil {
			rd.c.decodeErrors++
			rd.r.set.Logger.Debug("Undecodable outcome record", zap.Error(err))
			return
		}
		rd.handleOutcome(o, now)
	case event.TypeDNS:
		d := &rd.dnsRec
		if err := event.DecodeDNS(raw, d); err != nil {
			rd.c.decodeErrors++
			rd.r.set.Logger.Debug("Undecodable DNS record", zap.Error(err))
			return
		}
		rd.c.dnsReceived++
		if rd.r.dns == nil {
			rd.c.dnsIgnored++
			return
		}
		rd.r.dns.HandleDNS(d, time.Unix(0, int64(d.BootTimeNs)+rd.bootWall))
	default:
		rd.c.decodeErrors++
		rd.r.set.Logger.Debug("Unknown record type", zap.Uint8("type", event.Type(raw)), zap.Int("bytes", len(raw)))
	}
}

// emit names connect c (process info, DNS) and adds its log record to the
// batch. info may be nil when the process has a resource in the batch.
func (rd *reader) emit(c *event.Connect, info *procinfo.Info, res outcomeResult, ts, now time.Time) {
	var l lookup
	if rd.r.dns != nil {
		scope := dns.Scope{NetNS: c.NetNS, TGID: c.TGID, CgroupID: c.CgroupID}
		l.names, l.best, l.age, l.source = rd.r.dns.Lookup(c.Dst, scope, ts, rd.names[:0])
	}
	if rd.agg != nil && c.AggFirst && rd.r.dns != nil {
		rd.agg.remember(c, l)
	}
	if len(l.names) > 0 {
		rd.c.named++
	} else {
		rd.c.unnamed++
	}
	rd.batch.add(c, info, l, res, ts, now)
}

// waitOutcome queues connect c until its outcome comes (outcome.enabled).
// Its process is looked up now, while it surely lives. A record the kernel
// does not follow goes out at once as pending; when the queue is full, its
// oldest record goes out as pending to make room.
func (rd *reader) waitOutcome(c *event.Connect, ts, now time.Time) {
	info := rd.procs.Lookup(procinfo.Key{PID: c.TGID, StartTimeNs: c.StartTimeNs}, c.Exe(), c.Comm(), c.UID, c.CgroupID, now)
	if !c.Tracked {
		rd.c.outcomePending++
		rd.emit(c, info, pendingResult(), ts, now)
		return
	}
	q := rd.wait
	if q.full() {
		if s := q.front(); !s.done {
			rd.c.outcomePending++
			rd.c.outcomeWaitFull++
			rd.emit(&s.conn, s.info, pendingResult(), s.ts, now)
		}
		q.pop()
	}
	q.push(c, info, ts, now)
}

// handleOutcome sends the record that waited for outcome o.
func (rd *reader) handleOutcome(o *event.Outcome, now time.Time) {
	q := rd.wait
	if q == nil {
		rd.c.outcomeUnmatched++
		return
	}
	s := q.take(o)
	if s == nil {
		rd.c.outcomeUnmatched++
		return
	}
	res := resultOf(&s.conn, o)
	if res.kind == event.KindPending {
		rd.c.outcomePending++ // its state change was not reported
	}
	rd.emit(&s.conn, s.info, res, s.ts, now)
	for f := q.front(); f != nil && f.done; f = q.front() {
		q.pop()
	}
}

// expireWaiting pops the records at the front of the wait queue that are
// sent or have waited outcome.max_wait (all of them when all is set),
// sending the waiting ones as pending.
func (rd *reader) expireWaiting(ctx context.Context, now time.Time, all bool) {
	q := rd.wait
	if q == nil {
		return
	}
	for s := q.front(); s != nil; s = q.front() {
		if !s.done {
			if !all && !q.expired(s, now) {
				return
			}
			rd.c.outcomePending++
			rd.emit(&s.conn, s.info, pendingResult(), s.ts, now)
		}
		q.pop()
		if rd.batch.len() >= rd.r.cfg.Batch.MaxSize || rd.batch.full() {
			rd.flush(ctx)
		}
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
