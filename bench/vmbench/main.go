// Command vmbench is the guest side of bench/vm.sh: the connect-storm A/B
// benchmark inside a vmtest VM (static, CGO_ENABLED=0; the guest has busybox
// but no bash, so every step is here).
//
// Per pair, in alternating order (A B, then B A, ...):
//
//   - A: bench/storm alone (-t threads -d seconds, loopback only).
//   - B: the collector runs with -config (tcpconnect, attach -attach, ->
//     file exporter), started before the storm and ready (its health check
//     answers); the same storm; then the output file has to stay unchanged
//     for -quiet; the collector's utime+stime (/proc/PID/stat) and receiver
//     metrics are read just before the storm and after the quiet; then it is
//     stopped (SIGTERM) and its records are counted: those whose resource
//     process.pid is the storm's pid and whose network.peer.port is its
//     listener port.
//
// It prints one "vmbench: pair ..." line per pair and a summary: the B/A
// connect-rate ratio per pair and their median, connects made vs records
// delivered, the receiver's kernel loss counter, and collector CPU seconds per
// million events (receiver_tcpconnect_connects_received, every connect in the
// VM during the window). It exits 1 when a record is missing that the loss
// counter does not account for. Every wait is bounded.
package main

import (
	"bufio"
	"bytes"
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"math"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"syscall"
	"time"

	"go.opentelemetry.io/collector/pdata/plog"

	"github.com/tcpconnect/tcpconnect/internal/procinfo"
)

type options struct {
	storm, collector, config, attach, dir string
	pairs, threads, seconds               int
	healthPort, metricsPort               int
	startTimeout, quiet, drainTimeout     time.Duration
	settle, idle                          time.Duration
}

func main() {
	var o options
	flag.StringVar(&o.storm, "storm", "/bench/storm", "static bench/storm binary")
	flag.StringVar(&o.collector, "collector", "/bin/otelcol-tcpconnect", "collector binary")
	flag.StringVar(&o.config, "config", "/bench/vm.yaml", "collector config (bench/configs/vm.yaml)")
	flag.StringVar(&o.attach, "attach", "lsm", "receiver attach mode (BENCH_ATTACH)")
	flag.StringVar(&o.dir, "dir", "/tmp/vmbench", "work folder for outputs and logs")
	flag.IntVar(&o.pairs, "pairs", 5, "A/B pairs (1..50)")
	flag.IntVar(&o.threads, "threads", 2, "storm client threads (1..64)")
	flag.IntVar(&o.seconds, "seconds", 5, "storm duration per run (1..120)")
	flag.IntVar(&o.healthPort, "health-port", 23133, "health_check port")
	flag.IntVar(&o.metricsPort, "metrics-port", 28888, "collector Prometheus port")
	flag.DurationVar(&o.startTimeout, "start-timeout", 2*time.Minute, "bound on the collector's start (health check ready)")
	flag.DurationVar(&o.quiet, "quiet", 2*time.Second, "the output must stay unchanged this long after the storm")
	flag.DurationVar(&o.drainTimeout, "drain-timeout", time.Minute, "bound on the wait for the quiet output")
	flag.DurationVar(&o.settle, "settle", 2*time.Second, "wait after the collector is ready, before measuring")
	flag.DurationVar(&o.idle, "idle", 3*time.Second, "window measuring the idle collector's CPU before the storm")
	flag.Parse()
	if o.pairs < 1 || o.pairs > 50 || o.threads < 1 || o.threads > 64 || o.seconds < 1 || o.seconds > 120 ||
		o.settle < 0 || o.settle > time.Minute || o.idle <= 0 || o.idle > time.Minute {
		fatalf("need 1 <= pairs <= 50, 1 <= threads <= 64, 1 <= seconds <= 120, 0 <= settle <= 1m, 0 < idle <= 1m")
	}
	if err := run(o); err != nil {
		fatalf("%v", err)
	}
}

func fatalf(format string, a ...any) {
	fmt.Fprintf(os.Stderr, "vmbench: "+format+"\n", a...)
	os.Exit(1)
}

// stormResult is storm's output line.
type stormResult struct {
	connects, errors, pid, port int64
	rate, seconds               float64
	cpu                         float64 // the storm's own user+system seconds
}

// bResult is what a B run measured besides the storm.
type bResult struct {
	ready                time.Duration // collector start to health check ready
	cpu                  float64       // collector CPU seconds, storm start to quiet
	idleCPU              float64       // the idle collector's CPU seconds per second, before the storm
	window               time.Duration // storm start to quiet
	received, kernelLost int64         // receiver metric deltas over the same window
	records, delivered   int64         // records in the file; the storm's among them
	drain                time.Duration // storm end to quiet output
	hwmMiB               float64
}

// netCPU is the collector's CPU over the window minus what it spent idle
// (its idle rate over the same time): the cost of the events.
func (m bResult) netCPU() float64 {
	return m.cpu - m.idleCPU*m.window.Seconds()
}

type pair struct {
	n    int
	a, b stormResult
	m    bResult
}

func run(o options) error {
	if err := os.MkdirAll(o.dir, 0o755); err != nil {
		return err
	}
	var uts syscall.Utsname
	release := "?"
	if err := syscall.Uname(&uts); err == nil {
		release = utsString(uts.Release[:])
	}
	ncpu := numCPU()
	if ncpu < 1 {
		return errors.New("no CPU count in /sys/devices/system/cpu/online")
	}
	fmt.Printf("vmbench: kernel %s, %d CPUs, attach %s, %d pairs x %d s, %d storm threads\n",
		release, ncpu, o.attach, o.pairs, o.seconds, o.threads)
	start := time.Now()
	var pairs []pair
	for n := 1; n <= o.pairs; n++ {
		p := pair{n: n}
		var err error
		if n%2 == 1 {
			if p.a, err = runStorm(o); err == nil {
				p.b, p.m, err = runB(o, n)
			}
		} else {
			if p.b, p.m, err = runB(o, n); err == nil {
				p.a, err = runStorm(o)
			}
		}
		if err != nil {
			return fmt.Errorf("pair %d: %w", n, err)
		}
		fmt.Printf("vmbench: pair %d: A %.0f/s B %.0f/s B/A %.3f | B made %d delivered %d (file records %d) kernel_lost %d | collector ready %.1fs, idle %.3f CPU, cpu %.2fs in %.1fs for %d events (%.0f s/M, net of idle %.0f s/M), drain %.1fs, VmHWM %.1f MiB | storm cpu A %.2fs (%.0f s/M connects) B %.2fs\n",
			n, p.a.rate, p.b.rate, p.b.rate/p.a.rate, p.b.connects, p.m.delivered, p.m.records, p.m.kernelLost,
			p.m.ready.Seconds(), p.m.idleCPU, p.m.cpu, p.m.window.Seconds(), p.m.received,
			perMillion(p.m.cpu, p.m.received), perMillion(p.m.netCPU(), p.m.received), p.m.drain.Seconds(), p.m.hwmMiB,
			p.a.cpu, perMillion(p.a.cpu, p.a.connects), p.b.cpu)
		pairs = append(pairs, p)
	}
	return summarize(o, release, ncpu, pairs, time.Since(start))
}

func summarize(o options, release string, ncpu int, pairs []pair, wall time.Duration) error {
	var ratios, rateA, rateB, cpuPerM, netPerM, idle, stormPerM, predicted []float64
	var made, delivered, klost, errs int64
	for _, p := range pairs {
		ratios = append(ratios, p.b.rate/p.a.rate)
		rateA = append(rateA, p.a.rate)
		rateB = append(rateB, p.b.rate)
		cpuPerM = append(cpuPerM, perMillion(p.m.cpu, p.m.received))
		netPerM = append(netPerM, perMillion(p.m.netCPU(), p.m.received))
		idle = append(idle, p.m.idleCPU)
		// The storm alone saturates every CPU: its cost per connect is all
		// CPUs' time over its connects (client, server and kernel), as in
		// the native bound (docs/benchmarks-history.md). Each event's collector CPU is taken
		// from it: the rate ratio that the CPU accounting predicts.
		sp := perMillion(float64(ncpu)*p.a.seconds, p.a.connects)
		stormPerM = append(stormPerM, sp)
		predicted = append(predicted, sp/(sp+netPerM[len(netPerM)-1]))
		made += p.b.connects
		delivered += p.m.delivered
		klost += p.m.kernelLost
		errs += p.a.errors + p.b.errors
	}
	lost := made - delivered
	rmin, rmax := slices.Min(ratios), slices.Max(ratios)
	fmt.Printf("vmbench: summary kernel=%s attach=%s pairs=%d seconds=%d threads=%d rate_a_median=%.0f rate_b_median=%.0f ratio_median=%.3f ratio_min=%.3f ratio_max=%.3f made=%d delivered=%d lost=%d kernel_lost=%d storm_errors=%d collector_cpu_s_per_m_events=%.0f net_of_idle=%.0f idle_cpu=%.3f cpu_budget_s_per_m_connects_a=%.0f cpu_predicted_ratio=%.3f wall_s=%.0f\n",
		release, o.attach, len(pairs), o.seconds, o.threads, median(rateA), median(rateB), median(ratios), rmin, rmax,
		made, delivered, lost, klost, errs, median(cpuPerM), median(netPerM), median(idle), median(stormPerM), median(predicted), wall.Seconds())
	rs := make([]string, len(ratios))
	for i, r := range ratios {
		rs[i] = fmt.Sprintf("%.2f", r)
	}
	fmt.Printf("vmbench: row | %s | %s | %d x %d s | %.0f | %.0f | %s | **%.3f** (%.3f-%.3f) | %d | %d | %d | %d | %.0f (%.0f) | %.3f | %.0f | %.3f |\n",
		release, o.attach, len(pairs), o.seconds, median(rateA), median(rateB), strings.Join(rs, ", "),
		median(ratios), rmin, rmax, made, delivered, lost, klost, median(cpuPerM), median(netPerM), median(idle),
		median(stormPerM), median(predicted))
	if lost != klost {
		return fmt.Errorf("%d connects not delivered but the kernel loss counter says %d", lost, klost)
	}
	return nil
}

func perMillion(cpu float64, n int64) float64 {
	if n <= 0 {
		return math.NaN()
	}
	return cpu / float64(n) * 1e6
}

func median(v []float64) float64 {
	s := slices.Clone(v)
	slices.Sort(s)
	if len(s) == 0 {
		return math.NaN()
	}
	if len(s)%2 == 1 {
		return s[len(s)/2]
	}
	return (s[len(s)/2-1] + s[len(s)/2]) / 2
}

// runStorm runs the storm once, bounded by its duration plus a minute.
func runStorm(o options) (stormResult, error) {
	ctx, cancel := context.WithTimeout(context.Background(), time.Duration(o.seconds)*time.Second+time.Minute)
	defer cancel()
	cmd := exec.CommandContext(ctx, o.storm, "-t", strconv.Itoa(o.threads), "-d", strconv.Itoa(o.seconds))
	var stderr bytes.Buffer
	cmd.Stderr = &stderr
	out, err := cmd.Output()
	if err != nil {
		return stormResult{}, fmt.Errorf("storm: %w: %s", err, stderr.String())
	}
	kv := map[string]string{}
	for f := range strings.FieldsSeq(string(out)) {
		if k, v, ok := strings.Cut(f, "="); ok {
			kv[k] = v
		}
	}
	var r stormResult
	var perr error
	geti := func(k string) int64 {
		v, err := strconv.ParseInt(kv[k], 10, 64)
		if err != nil {
			perr = errors.Join(perr, fmt.Errorf("storm output %q: %s: %w", out, k, err))
		}
		return v
	}
	getf := func(k string) float64 {
		v, err := strconv.ParseFloat(kv[k], 64)
		if err != nil {
			perr = errors.Join(perr, fmt.Errorf("storm output %q: %s: %w", out, k, err))
		}
		return v
	}
	r.connects, r.errors, r.pid, r.port = geti("connects"), geti("errors"), geti("pid"), geti("port")
	r.rate, r.seconds = getf("rate"), getf("seconds")
	if ps := cmd.ProcessState; ps != nil {
		r.cpu = (ps.UserTime() + ps.SystemTime()).Seconds()
	}
	return r, perr
}

// runB runs the storm with the collector.
func runB(o options, n int) (stormResult, bResult, error) {
	var m bResult
	out := filepath.Join(o.dir, fmt.Sprintf("B%d.jsonl", n))
	logPath := filepath.Join(o.dir, fmt.Sprintf("B%d.log", n))
	_ = os.Remove(out)
	logf, err := os.Create(logPath)
	if err != nil {
		return stormResult{}, m, err
	}
	defer logf.Close()
	cmd := exec.Command(o.collector, "--config", o.config)
	cmd.Env = append(os.Environ(),
		"BENCH_OUT="+out, "BENCH_ATTACH="+o.attach,
		"BENCH_HEALTH_PORT="+strconv.Itoa(o.healthPort), "BENCH_METRICS_PORT="+strconv.Itoa(o.metricsPort))
	cmd.Stdout, cmd.Stderr = logf, logf
	t0 := time.Now()
	if err := cmd.Start(); err != nil {
		return stormResult{}, m, fmt.Errorf("start collector: %w", err)
	}
	exited := make(chan error, 1)
	go func() { exited <- cmd.Wait() }()
	stopped := false
	stop := func() {
		if stopped {
			return
		}
		stopped = true
		_ = cmd.Process.Signal(syscall.SIGTERM)
		select {
		case <-exited:
		case <-time.After(30 * time.Second):
			_ = cmd.Process.Kill()
			<-exited
		}
	}
	defer stop()
	fail := func(err error) (stormResult, bResult, error) {
		stop()
		tail, _ := os.ReadFile(logPath)
		if len(tail) > 4000 {
			tail = tail[len(tail)-4000:]
		}
		return stormResult{}, m, fmt.Errorf("%w; collector log tail:\n%s", err, tail)
	}
	if err := waitReady(o, exited); err != nil {
		return fail(err)
	}
	m.ready = time.Since(t0)
	pid := cmd.Process.Pid
	time.Sleep(o.settle)
	cpuI, _, err := procStat(pid)
	if err != nil {
		return fail(err)
	}
	tI := time.Now()
	time.Sleep(o.idle)
	cpu0, _, err := procStat(pid)
	if err != nil {
		return fail(err)
	}
	m.idleCPU = (cpu0 - cpuI) / time.Since(tI).Seconds()
	tw := time.Now()
	recv0, lost0, err := receiverMetrics(o.metricsPort)
	if err != nil {
		return fail(err)
	}
	s, err := runStorm(o)
	if err != nil {
		return fail(err)
	}
	stormEnd := time.Now()
	if err := waitQuiet(out, o.quiet, o.drainTimeout); err != nil {
		return fail(err)
	}
	m.drain = time.Since(stormEnd) - o.quiet
	cpu1, hwm, err := procStat(pid)
	if err != nil {
		return fail(err)
	}
	m.window = time.Since(tw)
	recv1, lost1, err := receiverMetrics(o.metricsPort)
	if err != nil {
		return fail(err)
	}
	m.cpu, m.hwmMiB = cpu1-cpu0, hwm
	m.received, m.kernelLost = recv1-recv0, lost1-lost0
	stop()
	if m.records, m.delivered, err = countRecords(out, s.pid, s.port); err != nil {
		return s, m, err
	}
	_ = os.Remove(out) // large; tmpfs is the guest's memory
	return s, m, nil
}

// waitReady polls the health check until it answers 200.
func waitReady(o options, exited <-chan error) error {
	url := fmt.Sprintf("http://127.0.0.1:%d/", o.healthPort)
	cl := &http.Client{Timeout: 2 * time.Second}
	deadline := time.Now().Add(o.startTimeout)
	var last error
	for time.Now().Before(deadline) {
		select {
		case err := <-exited:
			return fmt.Errorf("collector exited before it was ready: %v", err)
		default:
		}
		resp, err := cl.Get(url)
		if err == nil {
			_, _ = io.Copy(io.Discard, resp.Body)
			resp.Body.Close()
			if resp.StatusCode == http.StatusOK {
				return nil
			}
			err = fmt.Errorf("status %s", resp.Status)
		}
		last = err
		time.Sleep(100 * time.Millisecond)
	}
	return fmt.Errorf("collector not ready in %s: %v", o.startTimeout, last)
}

// waitQuiet waits until path's size has not changed for quiet.
func waitQuiet(path string, quiet, bound time.Duration) error {
	deadline := time.Now().Add(bound)
	last, since := int64(-1), time.Now()
	for time.Now().Before(deadline) {
		var size int64
		if st, err := os.Stat(path); err == nil {
			size = st.Size()
		}
		if size != last {
			last, since = size, time.Now()
		} else if time.Since(since) >= quiet {
			return nil
		}
		time.Sleep(50 * time.Millisecond)
	}
	return fmt.Errorf("%s still growing after %s", path, bound)
}

// procStat returns utime+stime in seconds and VmHWM in MiB.
func procStat(pid int) (float64, float64, error) {
	st, err := procinfo.ReadStat("", pid)
	if err != nil {
		return 0, 0, err
	}
	var hwm float64
	if m, err := procinfo.ReadMemory("", pid); err == nil {
		hwm = float64(m.PeakRSS) / (1 << 20)
	}
	return st.CPUSeconds(), hwm, nil
}

// receiverMetrics scrapes the collector's Prometheus endpoint: the sums of
// the connects_received and connects_lost series (0 when a series is absent:
// the receiver creates a counter's series on its first increment).
func receiverMetrics(port int) (received, lost int64, err error) {
	cl := &http.Client{Timeout: 10 * time.Second}
	resp, err := cl.Get(fmt.Sprintf("http://127.0.0.1:%d/metrics", port))
	if err != nil {
		return 0, 0, fmt.Errorf("metrics: %w", err)
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		return 0, 0, fmt.Errorf("metrics: %s", resp.Status)
	}
	var r, l float64
	s := bufio.NewScanner(resp.Body)
	s.Buffer(make([]byte, 0, 64<<10), 1<<20)
	for s.Scan() {
		line := s.Text()
		if line == "" || line[0] == '#' {
			continue
		}
		name, _, _ := strings.Cut(line, "{")
		name, _, _ = strings.Cut(name, " ")
		fl := strings.Fields(line)
		v, perr := strconv.ParseFloat(fl[len(fl)-1], 64)
		if perr != nil {
			continue
		}
		switch {
		case strings.Contains(name, "tcpconnect_connects_received"):
			r += v
		case strings.Contains(name, "tcpconnect_connects_lost"):
			l += v
		}
	}
	return int64(r), int64(l), s.Err()
}

// countRecords counts the log records in an OTLP JSON lines file, and those
// of process pid to destination port.
func countRecords(path string, pid, port int64) (total, matched int64, err error) {
	f, err := os.Open(path)
	if err != nil {
		return 0, 0, err
	}
	defer f.Close()
	r := bufio.NewReaderSize(f, 1<<20)
	var um plog.JSONUnmarshaler
	for {
		line, rerr := r.ReadBytes('\n')
		if len(bytes.TrimSpace(line)) > 0 {
			logs, err := um.UnmarshalLogs(line)
			if err != nil {
				return total, matched, fmt.Errorf("%s: %w", path, err)
			}
			rls := logs.ResourceLogs()
			for i := range rls.Len() {
				rl := rls.At(i)
				v, ok := rl.Resource().Attributes().Get("process.pid")
				mine := ok && v.Int() == pid
				sls := rl.ScopeLogs()
				for j := range sls.Len() {
					lrs := sls.At(j).LogRecords()
					for k := range lrs.Len() {
						total++
						if !mine {
							continue
						}
						if p, ok := lrs.At(k).Attributes().Get("network.peer.port"); ok && p.Int() == port {
							matched++
						}
					}
				}
			}
		}
		if errors.Is(rerr, io.EOF) {
			return total, matched, nil
		}
		if rerr != nil {
			return total, matched, rerr
		}
	}
}

func numCPU() int {
	b, err := os.ReadFile("/sys/devices/system/cpu/online")
	if err != nil {
		return 0
	}
	n := 0
	for r := range strings.SplitSeq(strings.TrimSpace(string(b)), ",") {
		lo, hi, ok := strings.Cut(r, "-")
		a, _ := strconv.Atoi(lo)
		if !ok {
			n++
			continue
		}
		z, _ := strconv.Atoi(hi)
		n += z - a + 1
	}
	return n
}

func utsString(b []int8) string {
	var s []byte
	for _, c := range b {
		if c == 0 {
			break
		}
		s = append(s, byte(c))
	}
	return string(s)
}
