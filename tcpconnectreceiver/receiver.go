package tcpconnectreceiver

import (
	"context"
	"errors"
	"fmt"
	"os"
	"sync"
	"time"

	"go.opentelemetry.io/collector/component"
	"go.opentelemetry.io/collector/consumer"
	"go.opentelemetry.io/collector/consumer/consumererror"
	"go.opentelemetry.io/collector/receiver"
	"go.opentelemetry.io/collector/receiver/receiverhelper"
	"go.uber.org/zap"

	"github.com/tcpconnect/tcpconnect/dns"
	"github.com/tcpconnect/tcpconnect/internal/procinfo"
	"github.com/tcpconnect/tcpconnect/tcpconnectreceiver/internal/metadata"
)

// transport names the receiver's "transport" in its obsreport metrics.
const transport = "ebpf"

// tcpconnectReceiver reads connect records from a source, converts them to
// log records in batches and hands the batches to the next consumer.
//
// Two goroutines: the reader (reader.go) owns the source, the process
// cache, the DNS correlator and the batch being built; the sender (consume,
// here) owns ConsumeLogs and retries. A bounded channel between them makes
// the reader wait when the sender is behind, so the kernel ring fills and
// counts its losses instead of this process dropping records silently.
type tcpconnectReceiver struct {
	cfg       *Config
	set       receiver.Settings
	next      consumer.Logs
	open      openSourceFunc
	telemetry *metadata.TelemetryBuilder
	obsrecv   *receiverhelper.ObsReport
	procRoot  string // procfs for the process cache; "" is cfg.ProcPath (tests use a fake)
	skipPIDNS bool   // tests with a fake procRoot: skip the host PID namespace check

	src   source
	stop  chan struct{}      // closed by Shutdown: stop reading
	abort context.CancelFunc // cancels retries and blocked sends on a late Shutdown
	wg    sync.WaitGroup
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
	reportAttach(r.telemetry, src.Attempts())
	r.stop = make(chan struct{})
	batches := make(chan plogBatch, pendingBatches)
	rd, err := r.newReader(src, batches)
	if err != nil {
		_ = src.Close()
		return fmt.Errorf("tcpconnect receiver: %w", err)
	}
	r.src = src
	ctx, cancel := context.WithCancel(context.Background())
	r.abort = cancel
	if rd.state != nil {
		rd.state.start(&r.wg)
	}
	r.wg.Add(2)
	go func() {
		defer r.wg.Done()
		defer close(batches)
		rd.run(ctx)
	}()
	go func() {
		defer r.wg.Done()
		for b := range batches {
			r.consume(ctx, b)
		}
	}()
	return nil
}

// newReader builds the reader of src, which sends its batches to out: the
// DNS correlator (and its state file), the process cache, the batch and the
// aggregation windows.
func (r *tcpconnectReceiver) newReader(src source, out chan<- plogBatch) (*reader, error) {
	d := readerDeps{cfg: r.cfg, src: src, log: r.set.Logger, tel: r.telemetry, out: out, stop: r.stop}
	if r.cfg.DNS.Enabled {
		c, err := dns.New(r.cfg.DNS)
		if err != nil {
			return nil, fmt.Errorf("dns correlator: %w", err)
		}
		d.dns = correlator{c}
		if r.cfg.DNS.StateFile != "" {
			d.state = loadDNSState(c, r.cfg.DNS.StateFile, r.cfg.DNS.StateInterval, r.set.Logger, r.telemetry, time.Now())
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
	d.procs = procinfo.New(procinfo.Config{ProcRoot: procRoot, NoProc: noProc, CgroupRoot: src.CgroupRoot(),
		CommandLine: r.cfg.IncludeCommandLine, MaxCommandLineBytes: r.cfg.MaxCommandLineBytes})
	d.batch = newBatcher(hostName, r.set.BuildInfo.Version, r.cfg)
	if r.cfg.Aggregation.Enabled {
		if d.agg, err = newAggregation(src, r.cfg.Aggregation, r.cfg.Outcome.Enabled && r.cfg.Aggregation.CountOutcomes, time.Now()); err != nil {
			return nil, err
		}
	}
	return newReader(d), nil
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
