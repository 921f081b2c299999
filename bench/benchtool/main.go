// Command benchtool measures what bench/run.sh needs from the consumer side.
//
//	benchtool watch -file F -out W [-interval 2ms] [-max 10m]
//	    polls F's size and writes "unix_ns size" whenever it grows, until
//	    SIGTERM/SIGINT or -max: the arrival time of every byte of F.
//	benchtool analyze -format otlpjson|bpftrace -file F [-watch W] [-samples S] -pid P -port PORT
//	    counts the connects the storm's records report (process P, destination
//	    port PORT; a record with tcpconnect.connect.count, from aggregation,
//	    reports that many, any other one) and,
//	    for the timed samples of bench/storm (destination 127.1.0.0 + id), the
//	    delay from the sample's CLOCK_REALTIME before connect() to the moment
//	    the record's line was complete in F (consumer delay) and, for OTLP, to
//	    the record's ObservedTimestamp (receiver read delay).
//	benchtool table -in results.tsv
//	    prints the markdown summary of bench/run.sh's rows.
//	benchtool ab -in results.tsv
//	    prints the markdown summary of bench/run.sh --ab's rows: per setup
//	    the new/base ratios of collector CPU per connect, pair by pair, and
//	    the loss check of every run.
//	benchtool proc -pid P
//	    prints cpu_seconds (utime+stime) and the peak and current RSS in MiB.
//	benchtool bpfstats -pid P | -hold
//	    prints the kernel's run time and run count of process P's eBPF
//	    programs by name; -hold enables that accounting until a signal.
//	benchtool fbcost -in results.tsv
//	    prints the markdown summary of bench/fbcost.sh's rows.
//
// Output is key=value on one line, for the shell to pick up.
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
	"net/netip"
	"os"
	"os/signal"
	"slices"
	"strconv"
	"strings"
	"syscall"
	"time"

	"go.opentelemetry.io/collector/pdata/pcommon"
	"go.opentelemetry.io/collector/pdata/plog"

	"github.com/tcpconnect/tcpconnect/internal/procinfo"
)

func main() {
	if len(os.Args) < 2 {
		fatalf("usage: benchtool watch|analyze|proc [flags]")
	}
	var err error
	switch os.Args[1] {
	case "watch":
		err = watch(os.Args[2:])
	case "analyze":
		err = analyze(os.Args[2:])
	case "proc":
		err = proc(os.Args[2:])
	case "table":
		err = table(os.Args[2:])
	case "ab":
		err = abTable(os.Args[2:])
	case "bpfstats":
		err = bpfStats(os.Args[2:])
	case "fbcost":
		err = fbcostTable(os.Args[2:])
	default:
		err = fmt.Errorf("unknown command %q", os.Args[1])
	}
	if err != nil {
		fatalf("%s: %v", os.Args[1], err)
	}
}

func fatalf(format string, a ...any) {
	fmt.Fprintf(os.Stderr, "benchtool: "+format+"\n", a...)
	os.Exit(1)
}

type arrival struct {
	ns   int64
	size int64
}

func watch(args []string) error {
	fs := flag.NewFlagSet("watch", flag.ExitOnError)
	file := fs.String("file", "", "file to watch")
	out := fs.String("out", "", "where to write the arrivals")
	interval := fs.Duration("interval", 2*time.Millisecond, "poll interval")
	maxDur := fs.Duration("max", 10*time.Minute, "stop after this long at the latest")
	_ = fs.Parse(args)
	if *file == "" || *out == "" || *interval <= 0 || *maxDur <= 0 || *maxDur > time.Hour {
		return errors.New("need -file, -out, interval > 0 and 0 < max <= 1h")
	}
	ctx, cancel := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer cancel()
	ctx, cancelT := context.WithTimeout(ctx, *maxDur)
	defer cancelT()
	var log []arrival
	var last int64 = -1
	t := time.NewTicker(*interval)
	defer t.Stop()
	for {
		if st, err := os.Stat(*file); err == nil && st.Size() != last {
			last = st.Size()
			log = append(log, arrival{time.Now().UnixNano(), last})
		}
		select {
		case <-ctx.Done():
			var b bytes.Buffer
			for _, a := range log {
				fmt.Fprintf(&b, "%d %d\n", a.ns, a.size)
			}
			return os.WriteFile(*out, b.Bytes(), 0o644)
		case <-t.C:
		}
	}
}

func readArrivals(path string) ([]arrival, error) {
	if path == "" {
		return nil, nil
	}
	f, err := os.Open(path)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	var out []arrival
	s := bufio.NewScanner(f)
	for s.Scan() {
		var a arrival
		if _, err := fmt.Sscanf(s.Text(), "%d %d", &a.ns, &a.size); err != nil {
			return nil, fmt.Errorf("%s: %q: %w", path, s.Text(), err)
		}
		out = append(out, a)
	}
	return out, s.Err()
}

// arrivalOf is the first time the file held at least end bytes (0: unknown).
func arrivalOf(arr []arrival, end int64) int64 {
	i, _ := slices.BinarySearchFunc(arr, end, func(a arrival, e int64) int {
		if a.size < e {
			return -1
		}
		return 1
	})
	if i < len(arr) {
		return arr[i].ns
	}
	return 0
}

func readSamples(path string) (map[uint32]int64, error) {
	if path == "" {
		return nil, nil
	}
	f, err := os.Open(path)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	m := map[uint32]int64{}
	s := bufio.NewScanner(f)
	for s.Scan() {
		var id uint32
		var ns int64
		if _, err := fmt.Sscanf(s.Text(), "%d %d", &id, &ns); err != nil {
			return nil, fmt.Errorf("%s: %q: %w", path, s.Text(), err)
		}
		m[id] = ns
	}
	return m, s.Err()
}

// sampleID maps 127.1.0.0 + id back to id.
func sampleID(a netip.Addr) (uint32, bool) {
	if !a.Is4() {
		return 0, false
	}
	b := a.As4()
	v := uint32(b[0])<<24 | uint32(b[1])<<16 | uint32(b[2])<<8 | uint32(b[3])
	if v < 0x7f010000 || v >= 0x7f800000 {
		return 0, false
	}
	return v - 0x7f010000, true
}

type stats struct {
	// matched counts the storm's connects its records report (the sum of
	// their counts); matchedRecords the records.
	total, matched, matchedRecords, samplesSeen, samplesDup int64
	fileDelay, obsDelay, tsSkew                             []float64 // ms
}

func analyze(args []string) error {
	fs := flag.NewFlagSet("analyze", flag.ExitOnError)
	format := fs.String("format", "otlpjson", "otlpjson (file exporter) or bpftrace (\"pid tid comm port addr\" lines)")
	file := fs.String("file", "", "consumer output")
	watchFile := fs.String("watch", "", "arrivals written by benchtool watch")
	samplesFile := fs.String("samples", "", "samples written by storm -o")
	pid := fs.Int64("pid", 0, "the storm's pid")
	port := fs.Int64("port", 0, "the storm's listener port")
	pidKey := fs.String("pid-attr", "process.pid", "resource attribute with the pid")
	portKey := fs.String("port-attr", "network.peer.port", "log attribute with the destination port")
	addrKey := fs.String("addr-attr", "network.peer.address", "log attribute with the destination address")
	countKey := fs.String("count-attr", "tcpconnect.connect.count", "log attribute with the connects an aggregated record reports (absent: one)")
	_ = fs.Parse(args)
	if *file == "" || *pid == 0 || *port == 0 {
		return errors.New("need -file, -pid and -port")
	}
	arr, err := readArrivals(*watchFile)
	if err != nil {
		return err
	}
	samples, err := readSamples(*samplesFile)
	if err != nil {
		return err
	}
	f, err := os.Open(*file)
	if err != nil {
		return err
	}
	defer f.Close()
	var st stats
	seen := map[uint32]bool{}
	record := func(addr netip.Addr, count, lineEnd int64, obs, ts int64) {
		st.matched += count
		st.matchedRecords++
		id, ok := sampleID(addr)
		if !ok {
			return
		}
		sent, ok := samples[id]
		if !ok {
			return
		}
		if seen[id] {
			st.samplesDup++
			return
		}
		seen[id] = true
		st.samplesSeen++
		if at := arrivalOf(arr, lineEnd); at != 0 {
			st.fileDelay = append(st.fileDelay, float64(at-sent)/1e6)
		}
		if obs != 0 {
			st.obsDelay = append(st.obsDelay, float64(obs-sent)/1e6)
		}
		if ts != 0 {
			st.tsSkew = append(st.tsSkew, float64(ts-sent)/1e6)
		}
	}

	r := bufio.NewReaderSize(f, 1<<20)
	var off int64
	var um plog.JSONUnmarshaler
	for {
		line, err := r.ReadBytes('\n')
		off += int64(len(line))
		if len(line) > 0 && line[len(line)-1] == '\n' {
			switch *format {
			case "otlpjson":
				logs, err := um.UnmarshalLogs(line)
				if err != nil {
					return fmt.Errorf("line ending at byte %d: %w", off, err)
				}
				eachRecord(logs, func(res pcommon.Map, lr plog.LogRecord) {
					st.total++
					if v, ok := res.Get(*pidKey); !ok || v.Int() != *pid {
						return
					}
					attrs := lr.Attributes()
					if v, ok := attrs.Get(*portKey); !ok || v.Int() != *port {
						return
					}
					var addr netip.Addr
					if v, ok := attrs.Get(*addrKey); ok {
						addr, _ = netip.ParseAddr(v.Str())
					}
					count := int64(1)
					if v, ok := attrs.Get(*countKey); ok {
						count = v.Int()
					}
					record(addr, count, off, int64(lr.ObservedTimestamp()), int64(lr.Timestamp()))
				})
			case "bpftrace":
				fl := strings.Fields(string(line))
				if len(fl) != 5 {
					continue
				}
				st.total++
				p, _ := strconv.ParseInt(fl[0], 10, 64)
				dp, _ := strconv.ParseInt(fl[3], 10, 64)
				if p != *pid || dp != *port {
					continue
				}
				addr, _ := netip.ParseAddr(fl[4])
				record(addr, 1, off, 0, 0)
			default:
				return fmt.Errorf("unknown format %q", *format)
			}
		}
		if errors.Is(err, io.EOF) {
			break
		}
		if err != nil {
			return err
		}
	}
	fmt.Printf("records=%d matched=%d matched_records=%d samples=%d samples_seen=%d samples_dup=%d", st.total, st.matched, st.matchedRecords, len(samples), st.samplesSeen, st.samplesDup)
	for _, d := range []struct {
		name string
		v    []float64
	}{{"file_ms", st.fileDelay}, {"observed_ms", st.obsDelay}, {"ts_skew_ms", st.tsSkew}} {
		if len(d.v) == 0 {
			fmt.Printf(" %s_p50=NA %s_p99=NA %s_max=NA", d.name, d.name, d.name)
			continue
		}
		slices.Sort(d.v)
		fmt.Printf(" %s_p50=%.1f %s_p99=%.1f %s_max=%.1f", d.name, pct(d.v, 50), d.name, pct(d.v, 99), d.name, d.v[len(d.v)-1])
	}
	fmt.Println()
	return nil
}

func eachRecord(logs plog.Logs, fn func(pcommon.Map, plog.LogRecord)) {
	rls := logs.ResourceLogs()
	for i := range rls.Len() {
		rl := rls.At(i)
		res := rl.Resource().Attributes()
		sls := rl.ScopeLogs()
		for j := range sls.Len() {
			lrs := sls.At(j).LogRecords()
			for k := range lrs.Len() {
				fn(res, lrs.At(k))
			}
		}
	}
}

// pct is the nearest-rank percentile of sorted v.
func pct(v []float64, p float64) float64 {
	i := int(math.Ceil(p/100*float64(len(v)))) - 1
	return v[max(0, min(i, len(v)-1))]
}

func proc(args []string) error {
	fs := flag.NewFlagSet("proc", flag.ExitOnError)
	pid := fs.Int("pid", 0, "process")
	_ = fs.Parse(args)
	if *pid <= 0 {
		return errors.New("need -pid")
	}
	st, err := procinfo.ReadStat("", *pid)
	if err != nil {
		return err
	}
	m, err := procinfo.ReadMemory("", *pid)
	if err != nil {
		return err
	}
	fmt.Printf("cpu_seconds=%.2f hwm_mib=%.1f rss_mib=%.1f\n", st.CPUSeconds(), float64(m.PeakRSS)/(1<<20), float64(m.RSS)/(1<<20))
	return nil
}

// table summarises results.tsv (one row per A/B pair) as markdown: per load
// and setup the median B/A connect-rate ratio (and its range), the loss over
// all pairs, CPU per event, peak RSS and delays (median of the pairs' p50,
// worst of their p99).
func table(args []string) error {
	fs := flag.NewFlagSet("table", flag.ExitOnError)
	in := fs.String("in", "", "results.tsv from run.sh")
	_ = fs.Parse(args)
	data, err := os.ReadFile(*in)
	if err != nil {
		return err
	}
	lines := strings.Split(strings.TrimSpace(string(data)), "\n")
	if len(lines) < 2 {
		fmt.Println("(no A/B rows)")
		return nil
	}
	head := strings.Split(lines[0], "\t")
	col := map[string]int{}
	for i, h := range head {
		col[h] = i
	}
	type group struct {
		load, setup string
		rows        [][]string
	}
	var groups []*group
	byKey := map[string]*group{}
	for _, l := range lines[1:] {
		f := strings.Split(l, "\t")
		if len(f) != len(head) {
			return fmt.Errorf("row %q: %d fields, want %d", l, len(f), len(head))
		}
		k := f[col["load"]] + "/" + f[col["setup"]]
		g := byKey[k]
		if g == nil {
			g = &group{load: f[col["load"]], setup: f[col["setup"]]}
			byKey[k] = g
			groups = append(groups, g)
		}
		g.rows = append(g.rows, f)
	}
	num := func(s string) (float64, bool) {
		v, err := strconv.ParseFloat(s, 64)
		return v, err == nil
	}
	vals := func(g *group, fn func([]string) (float64, bool)) []float64 {
		var v []float64
		for _, r := range g.rows {
			if x, ok := fn(r); ok {
				v = append(v, x)
			}
		}
		slices.Sort(v)
		return v
	}
	// get is a row's value of column name; "" when an older file lacks it.
	get := func(r []string, name string) string {
		if i, ok := col[name]; ok {
			return r[i]
		}
		return ""
	}
	field := func(name string) func([]string) (float64, bool) {
		return func(r []string) (float64, bool) { return num(get(r, name)) }
	}
	ratio := func(a, b string) func([]string) (float64, bool) {
		return func(r []string) (float64, bool) {
			x, ok1 := num(get(r, a))
			y, ok2 := num(get(r, b))
			return y / x, ok1 && ok2 && x > 0
		}
	}
	median := func(v []float64) float64 {
		if len(v) == 0 {
			return math.NaN()
		}
		if len(v)%2 == 1 {
			return v[len(v)/2]
		}
		return (v[len(v)/2-1] + v[len(v)/2]) / 2
	}
	show := func(format string, v float64) string {
		if math.IsNaN(v) {
			return "n/a"
		}
		return fmt.Sprintf(format, v)
	}
	sum := func(v []float64) float64 {
		if len(v) == 0 {
			return math.NaN()
		}
		s := 0.0
		for _, x := range v {
			s += x
		}
		return s
	}
	worst := func(v []float64) float64 {
		if len(v) == 0 {
			return math.NaN()
		}
		return v[len(v)-1]
	}
	fmt.Println("| load | setup | pairs | connects/s A (median) | connects/s B (median) | B/A median (min-max) | connects made (B, all pairs) | connects reported | lost (made - reported) | kernel lost counter | monitor CPU us/event (median) | monitor CPU us/connect (median, min-max) | records/s B (median) | monitor peak RSS MiB | connect->file p50 / p99 ms | connect->read p50 / p99 ms | DNS q/s B/A |")
	fmt.Println("|---|---|---|---|---|---|---|---|---|---|---|---|---|---|---|---|---|")
	for _, g := range groups {
		r := vals(g, ratio("rate_a", "rate_b"))
		made := sum(vals(g, field("connects")))
		got := sum(vals(g, field("matched")))
		cpu := vals(g, func(row []string) (float64, bool) {
			c, ok1 := num(get(row, "cpu_s"))
			e, ok2 := num(get(row, "events"))
			return c / e * 1e6, ok1 && ok2 && e > 0
		})
		// Per connect the storm made: with aggregation a record reports
		// many connects, so per event (record) is not comparable.
		cpuConn := vals(g, func(row []string) (float64, bool) {
			c, ok1 := num(get(row, "cpu_s"))
			e, ok2 := num(get(row, "connects"))
			return c / e * 1e6, ok1 && ok2 && e > 0
		})
		recRate := vals(g, func(row []string) (float64, bool) {
			n, ok1 := num(get(row, "matched_records"))
			s, ok2 := num(get(row, "storm_s"))
			return n / s, ok1 && ok2 && s > 0
		})
		rng := "n/a"
		if len(r) > 0 {
			rng = fmt.Sprintf("%.3f (%.3f-%.3f)", median(r), r[0], r[len(r)-1])
		}
		cpuRng := "n/a"
		if len(cpuConn) > 0 {
			cpuRng = fmt.Sprintf("%.2f (%.2f-%.2f)", median(cpuConn), cpuConn[0], cpuConn[len(cpuConn)-1])
		}
		fmt.Printf("| %s | %s | %d | %s | %s | %s | %s | %s | %s | %s | %s | %s | %s | %s | %s / %s | %s / %s | %s |\n",
			g.load, g.setup, len(g.rows),
			show("%.0f", median(vals(g, field("rate_a")))), show("%.0f", median(vals(g, field("rate_b")))), rng,
			show("%.0f", made), show("%.0f", got), show("%.0f", made-got),
			show("%.0f", sum(vals(g, field("kernel_lost")))),
			show("%.2f", median(cpu)), cpuRng, show("%.0f", median(recRate)), show("%.1f", worst(vals(g, field("hwm_mib")))),
			show("%.0f", median(vals(g, field("file_p50_ms")))), show("%.0f", worst(vals(g, field("file_p99_ms")))),
			show("%.0f", median(vals(g, field("obs_p50_ms")))), show("%.0f", worst(vals(g, field("obs_p99_ms")))),
			show("%.3f", median(vals(g, ratio("dns_qps_a", "dns_qps_b")))))
	}
	return nil
}
