package bpf

import (
	"errors"
	"net/netip"
	"os"
	"testing"
	"time"

	"github.com/cilium/ebpf"
	"github.com/cilium/ebpf/ringbuf"
	"golang.org/x/sys/unix"

	"github.com/tcpconnect/tcpconnect/internal/privtest"
)

// BenchmarkKernelCost measures what the kernel programs cost per connect
// (the kernel's own accounting, BPF_ENABLE_STATS: the run time of every
// program of the probe, the outcome programs' included, over the connects
// made), for the default setup and with aggregation, to one destination
// (every connect after the first a repeat) and to a new one each time
// (127.77.0.0/16, refused: nothing listens there). It is what the
// connecting workload pays, which the storm's rate shows and the
// collector's CPU does not. Run it as root:
//
//	go test -run '^$' -bench KernelCost -benchtime 20000x ./bpf/
func BenchmarkKernelCost(b *testing.B) {
	setups := []struct {
		name string
		opts Options
	}{
		{"records", Options{}},
		{"records+outcome", Options{Outcome: true}},
		{"aggregated", Options{Aggregate: true}},
		{"aggregated+outcome", Options{Aggregate: true, Outcome: true}},
		{"aggregated+outcome-uncounted", Options{Aggregate: true, Outcome: true, AggregateSkipOutcomes: true}},
	}
	loads := []struct {
		name string
		dst  func(i int) netip.AddrPort
	}{
		{"repeated", func(int) netip.AddrPort { return netip.MustParseAddrPort("127.77.0.1:9") }},
		{"unique", func(i int) netip.AddrPort {
			return netip.AddrPortFrom(netip.AddrFrom4([4]byte{127, 77, byte(i >> 8), byte(i)}), 9)
		}},
	}
	for _, load := range loads {
		for _, s := range setups {
			b.Run(load.name+"/"+s.name, func(b *testing.B) {
				privtest.Require(b)
				stats, err := ebpf.EnableStats(0) // BPF_STATS_RUN_TIME
				if err != nil {
					privtest.SkipOrFail(b, "BPF_ENABLE_STATS (Linux 5.8): "+err.Error())
				}
				defer stats.Close()
				opts := s.opts
				opts.Filter = Filter{IncludeCIDRs: []netip.Prefix{netip.MustParsePrefix("127.77.0.0/16")}}
				p := openForTest(b, opts)
				defer p.Close()
				// The ring is read as the receiver would, so it never fills;
				// the reader stops before the probe is closed.
				stop, done := make(chan struct{}), make(chan struct{})
				go func() {
					defer close(done)
					var rec ringbuf.Record
					for {
						select {
						case <-stop:
							return
						default:
						}
						p.SetDeadline(time.Now().Add(10 * time.Millisecond))
						if err := p.ReadInto(&rec); err != nil && !errors.Is(err, os.ErrDeadlineExceeded) {
							b.Error(err)
							return
						}
					}
				}()
				defer func() { close(stop); <-done }()
				before := progStats(b, p)
				b.ResetTimer()
				for i := range b.N {
					if err := privtest.Connect(load.dst(i), unix.SOCK_STREAM, false); err != nil && err != unix.ECONNREFUSED {
						b.Fatal(err)
					}
				}
				b.StopTimer()
				var total time.Duration
				for name, s := range progStats(b, p) {
					ns, runs := s.Runtime-before[name].Runtime, s.RunCount-before[name].RunCount
					total += ns
					if runs == 0 {
						continue
					}
					// Per program: its share of the connect's cost and
					// its cost per run (the outcome programs run on
					// several socket state changes of one connect).
					b.ReportMetric(float64(ns.Nanoseconds())/float64(b.N), name+"-ns/connect")
					b.ReportMetric(float64(ns.Nanoseconds())/float64(runs), name+"-ns/run")
				}
				b.ReportMetric(float64(total.Nanoseconds())/float64(b.N), "kernel-ns/connect")
			})
		}
	}
}

// progStats is the kernel's run statistics of every program of p so far, by
// program name.
func progStats(b *testing.B, p *Probe) map[string]ebpf.ProgramStats {
	stats := make(map[string]ebpf.ProgramStats, len(p.progs))
	for _, prog := range p.progs {
		s, err := prog.Stats()
		if err != nil {
			b.Fatal(err)
		}
		info, err := prog.Info()
		if err != nil {
			b.Fatal(err)
		}
		stats[info.Name] = *s
	}
	return stats
}
