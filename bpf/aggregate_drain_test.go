package bpf

import (
	"encoding/binary"
	"errors"
	"net/netip"
	"os"
	"testing"
	"time"

	"github.com/cilium/ebpf"
	"golang.org/x/sys/unix"

	"github.com/tcpconnect/tcpconnect/internal/event"
	"github.com/tcpconnect/tcpconnect/internal/privtest"
)

// refusedWildcardPort holds a port bound on 0.0.0.0 and not listening: a
// connect to any loopback address on it is refused at once, and no one
// else can listen there.
func refusedWildcardPort(t testing.TB) uint16 {
	t.Helper()
	fd, err := unix.Socket(unix.AF_INET, unix.SOCK_STREAM|unix.SOCK_CLOEXEC, 0)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { unix.Close(fd) })
	if err := unix.Bind(fd, &unix.SockaddrInet4{}); err != nil {
		t.Fatalf("bind 0.0.0.0:0: %v", err)
	}
	sa, err := unix.Getsockname(fd)
	if err != nil {
		t.Fatal(err)
	}
	return uint16(sa.(*unix.SockaddrInet4).Port)
}

// drainDest is the i-th test destination: 127.1.x.y, one window map key each.
func drainDest(i int) netip.Addr {
	return netip.AddrFrom4([4]byte{127, 1, byte(i >> 8), byte(i)})
}

// mapEntries counts m's entries one by one (independent of the drain).
func mapEntries(t testing.TB, m *ebpf.Map) int {
	t.Helper()
	var (
		key [aggKeySize]byte
		val [aggValueSize]byte
	)
	n := 0
	it := m.Iterate()
	for it.Next(&key, &val) {
		n++
	}
	if err := it.Err(); err != nil {
		t.Fatalf("iterate: %v", err)
	}
	return n
}

// TestAggregateDrain fills a window map with more keys than one batched
// read returns (the chunk forced small), some counted once (no summary),
// some two and three times, and ends the window: every key with repeats
// comes back in exactly one summary with its exact count, none is lost
// with the last partial chunk, and both maps are empty afterwards. Two
// windows per case, so that the second drain reuses the buffers and starts
// from a fresh cursor. Also a bucket larger than the chunk (ENOSPC: the
// buffers grow), the iterating path where batch operations are missing, and
// an empty map.
func TestAggregateDrain(t *testing.T) {
	tests := []struct {
		name     string
		keys     int  // Options.AggregateKeys
		chunk    int  // aggregator.chunk; 0: the default
		iterate  bool // the kernel has no batch operations
		dests    int
		wantGrow bool // a bucket must not fit the chunk
	}{
		{name: "many chunks", keys: 4096, chunk: 16, dests: 300},
		{name: "default chunk, map larger", keys: 4096, dests: drainChunk + 100},
		{name: "map forced small and full", keys: 64, chunk: 8, dests: 200},
		{name: "map forced small, chunk of the map", keys: 64, dests: 200},
		{name: "bucket larger than the chunk", keys: 256, chunk: 1, dests: 256, wantGrow: true},
		{name: "iterate without batch operations", keys: 4096, iterate: true, dests: 300},
		{name: "empty", keys: 64, chunk: 8, dests: 0},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			port := refusedWildcardPort(t)
			p := openForTest(t, Options{
				Aggregate:     true,
				AggregateKeys: tt.keys,
				Filter:        Filter{IncludePorts: []uint16{port}, IncludeCIDRs: []netip.Prefix{netip.MustParsePrefix("127.1.0.0/16")}},
			})
			defer p.Close()
			a := p.agg
			a.chunk, a.noBatch = tt.chunk, tt.iterate

			for window := range 2 {
				made := map[netip.Addr]uint64{}
				for i := range tt.dests {
					ap := netip.AddrPortFrom(drainDest(i), port)
					for range 1 + i%3 {
						if err := privtest.Connect(ap, unix.SOCK_STREAM, false); !errors.Is(err, unix.ECONNREFUSED) {
							t.Fatalf("connect %s: %v, want refused", ap, err)
						}
						made[ap.Addr()]++
					}
				}
				got := map[netip.Addr]uint64{}
				summaries := map[netip.Addr]int{}
				drainRound(t, p, 100*time.Millisecond, func(raw []byte) {
					var c event.Connect
					if event.Type(raw) != event.TypeConnect {
						return
					}
					if err := event.DecodeConnect(raw, &c); err != nil {
						t.Fatal(err)
					}
					if int(c.TGID) == os.Getpid() && c.DstPort == port {
						got[c.Dst]++
					}
				})
				old := a.maps[a.gen&1]
				entries := mapEntries(t, old)
				if want := min(tt.dests, tt.keys); entries != want {
					t.Fatalf("window %d: %d entries in the window map, want %d", window, entries, want)
				}
				n, err := p.FlushAggregate(false, func(s *AggregateSummary) {
					var c event.Connect
					if err := event.DecodeConnect(s.First[:], &c); err != nil {
						t.Fatalf("summary's first record: %v", err)
					}
					if s.Count == 0 {
						t.Errorf("summary of %s with count 0", c.Dst)
					}
					summaries[c.Dst]++
					got[c.Dst] += s.Count
				})
				if err != nil {
					t.Fatal(err)
				}
				t.Logf("window %d: %d destinations, %d map entries, %d summaries; chunk %d, grown %d times, iterating %v",
					window, tt.dests, entries, n, len(a.batchKeys), a.batchGrown, a.noBatch)
				if n != len(summaries) {
					t.Errorf("FlushAggregate returned %d, fn saw %d keys", n, len(summaries))
				}
				for addr, k := range summaries {
					if k != 1 {
						t.Errorf("%s: %d summaries in one window, want 1", addr, k)
					}
				}
				for addr, want := range made {
					if got[addr] != want {
						t.Errorf("%s: %d connects reported (records and summary counts), %d made", addr, got[addr], want)
					}
				}
				if len(got) != len(made) {
					t.Errorf("connects reported for %d destinations, made to %d", len(got), len(made))
				}
				for i, m := range a.maps {
					if k := mapEntries(t, m); k != 0 {
						t.Errorf("window %d: window map %d keeps %d entries after the flush", window, i, k)
					}
				}
			}
			if a.noBatch != tt.iterate {
				t.Errorf("iterating %v, want %v", a.noBatch, tt.iterate)
			}
			wantChunk := tt.chunk
			if wantChunk == 0 {
				wantChunk = min(drainChunk, tt.keys)
			}
			switch {
			case tt.iterate:
				if a.batchKeys != nil {
					t.Errorf("batch buffers of %d entries allocated while iterating", len(a.batchKeys))
				}
			case tt.wantGrow && a.batchGrown == 0:
				t.Errorf("%d keys in %d-entry batches and no bucket outgrew one", tt.dests, tt.chunk)
			case !tt.wantGrow && len(a.batchKeys) != wantChunk:
				t.Errorf("batches of %d entries, want %d", len(a.batchKeys), wantChunk)
			}
			if _, err := p.FlushAggregate(true, func(*AggregateSummary) {}); err != nil {
				t.Fatal(err)
			}
		})
	}
}

// BenchmarkAggregateDrain ends a window of 16384 keys (the default map
// size, full): one key's real value under synthetic keys, refilled before
// each drain (not timed); the drain alone, one entry at a time or batched.
func BenchmarkAggregateDrain(b *testing.B) {
	for _, bb := range []struct {
		name    string
		iterate bool
	}{{"iterate", true}, {"batch", false}} {
		b.Run(bb.name, func(b *testing.B) {
			privtest.Require(b)
			port := refusedWildcardPort(b)
			mode, err := ParseMode(privtest.Mode())
			if err != nil {
				b.Fatal(err)
			}
			p, err := Open(Options{
				Mode:      mode,
				Aggregate: true,
				Filter:    Filter{IncludePorts: []uint16{port}, IncludeCIDRs: []netip.Prefix{netip.MustParsePrefix("127.1.0.0/16")}},
			})
			if err != nil {
				b.Fatal(err)
			}
			defer p.Close()
			a := p.agg
			a.noBatch = bb.iterate
			m := a.maps[a.gen&1]
			ap := netip.AddrPortFrom(drainDest(1), port)
			for range 2 {
				if err := privtest.Connect(ap, unix.SOCK_STREAM, false); !errors.Is(err, unix.ECONNREFUSED) {
					b.Fatalf("connect %s: %v, want refused", ap, err)
				}
			}
			var key [aggKeySize]byte
			var val [aggValueSize]byte
			if !m.Iterate().Next(&key, &val) {
				b.Fatal("no entry in the window map")
			}
			n := int(m.MaxEntries())
			keys := make([][aggKeySize]byte, n)
			vals := make([][aggValueSize]byte, n)
			for i := range keys {
				keys[i] = key
				binary.LittleEndian.PutUint32(keys[i][aggKeySize-4:], uint32(i))
				vals[i] = val
			}
			summaries := 0
			fn := func(*AggregateSummary) { summaries++ }
			b.ResetTimer()
			for range b.N {
				b.StopTimer()
				if _, err := m.BatchUpdate(keys, vals, nil); err != nil {
					b.Fatal(err)
				}
				summaries = 0
				b.StartTimer()
				if _, err := a.drain(m, fn); err != nil {
					b.Fatal(err)
				}
				if summaries != n {
					b.Fatalf("%d summaries, want %d", summaries, n)
				}
			}
			b.ReportMetric(float64(b.Elapsed().Nanoseconds())/float64(b.N)/float64(n), "ns/entry")
		})
	}
}
