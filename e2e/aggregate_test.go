package e2e

import (
	"errors"
	"fmt"
	"net"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"golang.org/x/sys/unix"

	"github.com/tcpconnect/tcpconnect/internal/privtest"
)

// configAggregate is one collector: the tcpconnect receiver with aggregation
// on (short windows and a map too small for every destination, so that
// summaries and overflow records both occur) into the file exporter.
// Arguments: attach mode, the port connected to, output file, health port.
const configAggregate = `
receivers:
  tcpconnect:
    attach: %s
    poll_interval: 50ms
    batch:
      max_size: 256
      timeout: 100ms
    filter:
      include_ports: [%d]
    aggregation:
      enabled: true
      window: 300ms
      max_keys: 4
exporters:
  file:
    path: %s
    format: json
    flush_interval: 100ms
extensions:
  health_check:
    endpoint: 127.0.0.1:%d
service:
  extensions: [health_check]
  pipelines:
    logs:
      receivers: [tcpconnect]
      exporters: [file]
  telemetry:
    logs:
      level: info
    metrics:
      level: none
`

// TestAggregationCountsAddUp runs the built collector with aggregation on,
// makes connects from two goroutines to eight loopback destinations (refused:
// nothing listens on the port), stops the collector mid-window and checks
// that the exported records' counts (tcpconnect.connect.count, 1 when
// absent) add up to the connects made, exactly, and each summary's counts per
// outcome (tcpconnect.connect.outcomes.*) add up to its count.
func TestAggregationCountsAddUp(t *testing.T) {
	bin := collectorBinary(t)
	privtest.Require(t)
	out := filepath.Join(t.TempDir(), "logs.jsonl")
	port, health := freePort(t), freePort(t)
	c := startCollector(t, bin, "agg", fmt.Sprintf(configAggregate, privtest.Mode(), port, out, health))
	c.waitHealthy(t, health)

	const threads, perThread, dests = 2, 1500, 8
	var wg sync.WaitGroup
	errs := make(chan error, threads)
	for th := range threads {
		wg.Go(func() {
			for i := range perThread {
				addr := fmt.Sprintf("127.0.7.%d:%d", (i+th)%dests+1, port)
				conn, err := net.DialTimeout("tcp4", addr, time.Second)
				if err == nil {
					conn.Close()
				} else if !errors.Is(err, unix.ECONNREFUSED) {
					errs <- err
					return
				}
			}
		})
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Fatalf("connect: %v", err)
	}
	const made = threads * perThread
	// Stop mid-window: the shutdown flushes what the kernel still counts.
	c.stop(t)

	recs, err := readRecords(out)
	if err != nil {
		t.Fatal(err)
	}
	var total, records, summaries, refused int64
	for _, r := range recs {
		if r.attrs["network.peer.port"] != int64(port) || r.resource["process.pid"] != int64(os.Getpid()) {
			continue
		}
		records++
		n, ok := r.attrs["tcpconnect.connect.count"].(int64)
		if !ok {
			total++
			continue
		}
		summaries++
		total += n
		// Counts per outcome add up to the count: refused, or pending.
		var outcomes int64
		for k, v := range r.attrs {
			if name, ok := strings.CutPrefix(k, "tcpconnect.connect.outcomes."); ok {
				c, _ := v.(int64)
				outcomes += c
				if name == "refused" {
					refused += c
				} else if name != "pending" {
					t.Errorf("summary with %d %s connects: every connect was refused", c, name)
				}
			}
		}
		if outcomes != n {
			t.Errorf("summary's counts per outcome add up to %d, its count is %d: %v", outcomes, n, r.attrs)
		}
		for _, k := range []string{"tcpconnect.connect.first_time", "tcpconnect.connect.last_time"} {
			if _, ok := r.attrs[k].(string); !ok {
				t.Errorf("summary without %s: %v", k, r.attrs)
			}
		}
	}
	t.Logf("%d connects: %d records exported, %d of them summaries, counting %d", made, records, summaries, total)
	if total != made {
		t.Errorf("exported records count %d connects, want the %d made", total, made)
	}
	if summaries == 0 {
		t.Error("no summary record: nothing was aggregated")
	}
	if refused == 0 {
		t.Error("no summary counted a refused connect: the kernel did not count outcomes")
	}
}
