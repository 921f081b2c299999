package tcpconnectreceiver

import (
	"errors"
	"fmt"
	"net/netip"
	"os"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"go.opentelemetry.io/collector/consumer/consumertest"
	"go.opentelemetry.io/collector/pdata/pcommon"
	"golang.org/x/sys/unix"

	"github.com/tcpconnect/tcpconnect/internal/privtest"
)

// aggSeen sums the records of this process to port in the sink: a record
// without tcpconnect.connect.count stands for one connect.
type aggSeen struct {
	records, summaries int
	connects           int64
	// summaryNames are the names of each summary to an address.
	summaryNames map[string][][]string
	firstNames   map[string][]string // the first record's names, by address
	// outcomes sums the summaries' counts per outcome, by name.
	outcomes map[string]int64
}

func sumAggregated(sink *consumertest.LogsSink, port uint16) aggSeen {
	s := aggSeen{summaryNames: map[string][][]string{}, firstNames: map[string][]string{}, outcomes: map[string]int64{}}
	for _, ld := range sink.AllLogs() {
		forEachRecord(ld, func(res, a pcommon.Map) {
			if intAttr(a, attrNetPeerPort) != int64(port) || intAttr(res, attrProcessPID) != int64(os.Getpid()) {
				return
			}
			var names []string
			if v, ok := a.Get(attrDNSNames); ok {
				for _, n := range v.Slice().AsRaw() {
					names = append(names, n.(string))
				}
			}
			ip := strAttr(a, attrNetPeerAddress)
			s.records++
			if v, ok := a.Get(attrConnectCount); ok {
				s.summaries++
				s.connects += v.Int()
				s.summaryNames[ip] = append(s.summaryNames[ip], names)
				for k, v := range a.All() {
					if name, ok := strings.CutPrefix(k, attrConnectOutcomes); ok {
						s.outcomes[name] += v.Int()
					}
				}
				return
			}
			s.connects++
			if _, ok := s.firstNames[ip]; !ok {
				s.firstNames[ip] = names
			}
		})
	}
	return s
}

// aggConnects connects from threads goroutines, perThread times each,
// round robin over ips at port (refused: nothing listens); it returns the
// connects made.
func aggConnects(t *testing.T, ips []string, port uint16, threads, perThread int) int64 {
	t.Helper()
	var made atomic.Int64
	var wg sync.WaitGroup
	var failed atomic.Value
	for th := range threads {
		wg.Go(func() {
			for i := range perThread {
				ap := netip.AddrPortFrom(netip.MustParseAddr(ips[(i+th)%len(ips)]), port)
				err := privtest.Connect(ap, unix.SOCK_STREAM, false)
				made.Add(1)
				if err != nil && !errors.Is(err, unix.ECONNREFUSED) {
					failed.Store(err)
					return
				}
			}
		})
	}
	wg.Wait()
	if err := failed.Load(); err != nil {
		t.Fatalf("connect: %v", err)
	}
	return made.Load()
}

// TestAggregationPrivileged runs aggregation through the receiver in the
// kernel's attach mode: the counts of all records add up to the connects
// made, from two threads, to one destination and to many, with a map too
// small for them, across window ends and a shutdown mid-window; and a
// summary carries its key's first record's names.
func TestAggregationPrivileged(t *testing.T) {
	tests := []struct {
		name      string
		ips       int
		maxKeys   int
		window    time.Duration
		perThread int
		// uncounted: aggregation.count_outcomes off, summaries carry no outcome counts.
		uncounted bool
	}{
		{name: "one destination, windows end", ips: 1, maxKeys: 64, window: 100 * time.Millisecond, perThread: 3000},
		{name: "outcomes not counted", ips: 2, maxKeys: 64, window: 100 * time.Millisecond, perThread: 1000, uncounted: true},
		{name: "many destinations, small map", ips: 24, maxKeys: 4, window: 100 * time.Millisecond, perThread: 3000},
		{name: "shutdown mid-window", ips: 8, maxKeys: 64, window: time.Hour, perThread: 2000},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			h := newDNSHarness(t, zone{}, nil, func(c *Config) {
				c.Aggregation = AggregationConfig{Enabled: true, Window: tt.window, MaxKeys: tt.maxKeys, CountOutcomes: !tt.uncounted}
			})
			ips := make([]string, tt.ips)
			for i := range ips {
				ips[i] = fmt.Sprintf("127.0.8.%d", i+1)
			}
			made := aggConnects(t, ips, h.port, 2, tt.perThread)
			h.stop()
			got := sumAggregated(h.sink, h.port)
			overflows := counter(t, h.tel, "receiver_tcpconnect_aggregation_overflows")
			aggregated := counter(t, h.tel, "receiver_tcpconnect_connects_aggregated")
			t.Logf("%d connects: %d records (%d summaries) counting %d; %d aggregated, %d overflows, %d lost",
				made, got.records, got.summaries, got.connects, aggregated, overflows, counter(t, h.tel, "receiver_tcpconnect_connects_lost"))
			if got.connects != made {
				t.Errorf("records count %d connects, want the %d made", got.connects, made)
			}
			if got.summaries == 0 || aggregated == 0 {
				t.Errorf("%d summaries, %d connects aggregated: nothing was aggregated", got.summaries, aggregated)
			}
			if n := counter(t, h.tel, "receiver_tcpconnect_aggregation_summaries"); n != int64(got.summaries) {
				t.Errorf("summaries metric %d, sink has %d", n, got.summaries)
			}
			if tt.maxKeys < tt.ips && overflows == 0 {
				t.Errorf("a %d-key map took %d destinations without overflowing", tt.maxKeys, tt.ips)
			}
			if tt.maxKeys >= tt.ips && overflows != 0 {
				t.Errorf("%d overflows with room for every key", overflows)
			}
			if got.records > 0 && int64(got.records) >= made/2 && tt.maxKeys >= tt.ips {
				t.Errorf("%d records for %d connects: repeats not aggregated", got.records, made)
			}
			// Every connect is refused: the summaries' outcomes are refused,
			// or pending when the outcome came after the window ended
			// (counted as late) or was not reported (missed).
			late := counter(t, h.tel, "receiver_tcpconnect_aggregation_late_outcomes")
			missed := counter(t, h.tel, "receiver_tcpconnect_outcomes_missed")
			t.Logf("summaries' outcomes %v; %d late, %d missed", got.outcomes, late, missed)
			if tt.uncounted {
				if len(got.outcomes) != 0 || late != 0 {
					t.Errorf("summaries' outcomes %v and %d late with count_outcomes off, want none", got.outcomes, late)
				}
				return
			}
			if got.outcomes["refused"]+got.outcomes["pending"] != aggregated || len(got.outcomes) > 2 {
				t.Errorf("summaries' outcomes %v, want refused and pending adding up to the %d connects aggregated", got.outcomes, aggregated)
			}
			if got.outcomes["refused"] == 0 || got.outcomes["pending"] > late+missed {
				t.Errorf("summaries' outcomes %v with %d late and %d missed outcomes: the kernel did not count the refusals", got.outcomes, late, missed)
			}
		})
	}
}

// TestAggregationPrivilegedNames checks the names on a summary: those of
// its key's first record, even when an answer in the window added another
// name for the address (a new name is carried, not a new key).
func TestAggregationPrivilegedNames(t *testing.T) {
	z := zone{
		"agg-first.test./A": {"agg-first.test. 60 IN A 127.0.9.1"},
		"agg-later.test./A": {"agg-later.test. 60 IN A 127.0.9.1"},
	}
	h := newDNSHarness(t, z, nil, func(c *Config) {
		c.Aggregation = AggregationConfig{Enabled: true, Window: time.Hour, MaxKeys: 64}
	})
	h.resolve("agg-first.test", "udp", "ip4")
	made := aggConnects(t, []string{"127.0.9.1"}, h.port, 2, 100)
	h.waitRecord("127.0.9.1", 1)
	h.resolve("agg-later.test", "udp", "ip4")
	made += aggConnects(t, []string{"127.0.9.1"}, h.port, 2, 100)
	h.stop()

	got := sumAggregated(h.sink, h.port)
	if got.connects != made {
		t.Errorf("records count %d connects, want the %d made", got.connects, made)
	}
	first := got.firstNames["127.0.9.1"]
	if !slices.Equal(first, []string{"agg-first.test"}) {
		t.Errorf("first record's names %q, want [agg-first.test]", first)
	}
	sums := got.summaryNames["127.0.9.1"]
	if len(sums) != 1 {
		t.Fatalf("%d summaries for one key in one window, want 1", len(sums))
	}
	if !slices.Equal(sums[0], first) {
		t.Errorf("summary's names %q, want the first record's %q", sums[0], first)
	}
}
