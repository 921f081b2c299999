package e2e

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/tcpconnect/tcpconnect/internal/privtest"
)

// EnvCollector names the collector binary under test; the default is
// defaultCollector, relative to this package's directory.
const (
	EnvCollector     = "TCPCONNECT_COLLECTOR"
	defaultCollector = "../_build/otelcol-tcpconnect"
)

// Bounds of the waits.
const (
	// startTimeout bounds a collector's start, until its health check
	// answers (loading and attaching the eBPF programs included). It is a
	// hang detector, not a speed target: under TCG, with a second guest on
	// the same two cores, parsing the kernel's BTF and proving the attach
	// mode took over 20 s.
	startTimeout = 90 * time.Second
	// stopTimeout bounds a collector's graceful shutdown before it is killed.
	stopTimeout = 5 * time.Second
	// pollEvery is the polling period of every wait.
	pollEvery = 50 * time.Millisecond
)

// collectorBinary returns the absolute path of the collector binary under
// test. When it is missing the test skips with the reason, or fails when
// privileged tests must run (privtest.EnvRequire=1).
func collectorBinary(t testing.TB) string {
	t.Helper()
	return executable(t, EnvCollector, defaultCollector,
		"end-to-end test: needs the collector binary %s (build it with `make build`, or set %s)")
}

// executable returns the absolute path of the executable file that env
// names (def when unset), or skips or fails t (privtest.SkipOrFail) with
// reason, formatted with that path and env, when it is not one.
func executable(t testing.TB, env, def, reason string) string {
	t.Helper()
	p := os.Getenv(env)
	if p == "" {
		p = def
	}
	abs, err := filepath.Abs(p)
	if err != nil {
		t.Fatalf("binary path %q: %v", p, err)
	}
	fi, err := os.Stat(abs)
	if err == nil && fi.Mode().IsRegular() && fi.Mode()&0o111 != 0 {
		return abs
	}
	reason = fmt.Sprintf(reason, abs, env)
	if err != nil {
		reason += ": " + err.Error()
	} else {
		reason += ": not an executable file"
	}
	privtest.SkipOrFail(t, reason)
	return ""
}

// freePort returns a TCP port on 127.0.0.1 that was free a moment ago.
func freePort(t testing.TB) int {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatalf("find a free port: %v", err)
	}
	defer l.Close()
	return l.Addr().(*net.TCPAddr).Port
}

// syncBuffer is a bytes.Buffer that a process's output and the test may use
// at once.
type syncBuffer struct {
	mu  sync.Mutex
	buf bytes.Buffer
}

// Write appends p.
func (b *syncBuffer) Write(p []byte) (int, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.Write(p)
}

// String returns what was written so far.
func (b *syncBuffer) String() string {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.String()
}

// collector is a running collector process.
type collector struct {
	name   string
	cmd    *exec.Cmd
	stderr *syncBuffer
	done   chan struct{} // closed when the process has exited
	err    error         // Wait's result, valid once done is closed
}

// writeConfig writes config into a new file in a test temporary directory
// and returns its path.
func writeConfig(t testing.TB, name, config string) string {
	t.Helper()
	path := filepath.Join(t.TempDir(), name+".yaml")
	if err := os.WriteFile(path, []byte(config), 0o600); err != nil {
		t.Fatalf("write %s config: %v", name, err)
	}
	return path
}

// startCollector starts bin with the configuration config. The process is
// stopped (SIGTERM, then SIGKILL after stopTimeout) when the test ends, and
// its standard error is logged when the test failed.
func startCollector(t testing.TB, bin, name, config string) *collector {
	t.Helper()
	return startCollectorArgs(t, bin, name, "--config", writeConfig(t, name, config))
}

// startCollectorArgs is startCollector with the collector's command line
// arguments given (--config FILE, --set KEY=VALUE).
func startCollectorArgs(t testing.TB, bin, name string, args ...string) *collector {
	t.Helper()
	cmd := exec.Command(bin, args...)
	c := &collector{name: name, cmd: cmd, stderr: &syncBuffer{}, done: make(chan struct{})}
	cmd.Stdout = c.stderr // the debug exporter, if any, writes to stdout
	cmd.Stderr = c.stderr
	// If the test binary dies, the kernel ends the collector too.
	cmd.SysProcAttr = &syscall.SysProcAttr{Pdeathsig: syscall.SIGKILL}
	if err := cmd.Start(); err != nil {
		t.Fatalf("start collector %s: %v", name, err)
	}
	go func() {
		c.err = cmd.Wait()
		close(c.done)
	}()
	t.Cleanup(func() {
		c.stop(t)
		if t.Failed() {
			t.Logf("collector %s output:\n%s", name, c.stderr.String())
		}
	})
	return c
}

// stop ends the process: SIGTERM, and SIGKILL if it is still running after
// stopTimeout.
func (c *collector) stop(t testing.TB) {
	t.Helper()
	select {
	case <-c.done:
		return
	default:
	}
	if err := c.cmd.Process.Signal(syscall.SIGTERM); err != nil && !errors.Is(err, os.ErrProcessDone) {
		t.Errorf("collector %s: SIGTERM: %v", c.name, err)
	}
	select {
	case <-c.done:
	case <-time.After(stopTimeout):
		t.Errorf("collector %s: still running %s after SIGTERM, killing it", c.name, stopTimeout)
		_ = c.cmd.Process.Kill()
		<-c.done
	}
}

// waitHealthy polls the health_check extension at 127.0.0.1:port until it
// answers 200, which it does once every pipeline has started. It fails the
// test if the process exits or startTimeout passes first.
func (c *collector) waitHealthy(t testing.TB, port int) {
	t.Helper()
	url := "http://127.0.0.1:" + strconv.Itoa(port) + "/"
	client := &http.Client{Timeout: time.Second}
	ctx, cancel := context.WithTimeout(context.Background(), startTimeout)
	defer cancel()
	tick := time.NewTicker(pollEvery)
	defer tick.Stop()
	var last error
	for {
		select {
		case <-c.done:
			t.Fatalf("collector %s exited before it was ready (%v):\n%s", c.name, c.err, c.stderr.String())
		case <-ctx.Done():
			t.Fatalf("collector %s: health check %s not ready after %s (last: %v):\n%s", c.name, url, startTimeout, last, c.stderr.String())
		case <-tick.C:
		}
		resp, err := client.Get(url)
		if err != nil {
			last = err
			continue
		}
		_ = resp.Body.Close()
		if resp.StatusCode == http.StatusOK {
			return
		}
		last = fmt.Errorf("status %s", resp.Status)
	}
}
