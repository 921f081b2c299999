package e2e

import (
	"bufio"
	"bytes"
	"context"
	"errors"
	"fmt"
	"io/fs"
	"net"
	"net/http"
	"net/http/httptest"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strconv"
	"testing"
	"time"

	"go.opentelemetry.io/collector/pdata/plog"

	"github.com/tcpconnect/tcpconnect/internal/privtest"
)

// recordsTimeout bounds the wait for the connect records to reach collector
// B's file: the receiver's poll interval and batch timeout, A's batch
// processor, the OTLP hop and B's file flush each add at most a fraction of a
// second.
const recordsTimeout = 10 * time.Second

// eventName is the EventName of every record of the tcpconnect receiver.
const eventName = "net_tcp_connect"

// configB is collector B: OTLP/gRPC in, file exporter (OTLP/JSON lines) out.
// Arguments: OTLP port, output file, health check port.
const configB = `
receivers:
  otlp:
    protocols:
      grpc:
        endpoint: 127.0.0.1:%d
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
      receivers: [otlp]
      exporters: [file]
  telemetry:
    logs:
      level: info
    metrics:
      level: none
`

// configA is collector A: the tcpconnect receiver, the default processors,
// OTLP/gRPC out to collector B. Arguments: attach mode, B's OTLP port, health
// check port.
const configA = `
receivers:
  tcpconnect:
    attach: %s
    poll_interval: 50ms
    batch:
      max_size: 256
      timeout: 100ms
processors:
  memory_limiter:
    check_interval: 1s
    limit_mib: 256
    spike_limit_mib: 64
  batch:
    timeout: 200ms
exporters:
  otlp_grpc:
    endpoint: 127.0.0.1:%d
    tls:
      insecure: true
extensions:
  health_check:
    endpoint: 127.0.0.1:%d
service:
  extensions: [health_check]
  pipelines:
    logs:
      receivers: [tcpconnect]
      processors: [memory_limiter, batch]
      exporters: [otlp_grpc]
  telemetry:
    logs:
      level: info
    metrics:
      level: none
`

// wantConnect is a connect the test made and expects a record of.
type wantConnect struct {
	desc    string // who connected, for messages
	pid     int    // the connecting process
	exe     string // its executable's base name
	peer    string // destination address as the record spells it
	port    int    // destination port
	network string // network.type: ipv4 or ipv6
}

// connectRecord is one log record read back from collector B's file, with its
// resource's and scope's attributes.
type connectRecord struct {
	eventName string
	resource  map[string]any
	scope     map[string]any
	attrs     map[string]any
}

// TestPipelineOverOTLP runs collector A (tcpconnect receiver, OTLP exporter)
// into collector B (OTLP receiver, file exporter) on loopback, makes TCP
// connects from this process and from HTTP clients (curl, wget, busybox wget;
// each one missing fails under privtest.EnvRequire=1, but for those the VM
// does not have), and checks that B's file holds a record of each, with
// the event name, destination, server and process attributes.
func TestPipelineOverOTLP(t *testing.T) {
	bin := collectorBinary(t)
	privtest.Require(t)
	mode := privtest.Mode()

	// Collector B first, so that A's exporter finds it.
	out := filepath.Join(t.TempDir(), "logs.jsonl")
	otlpPort, healthB := freePort(t), freePort(t)
	b := startCollector(t, bin, "B", fmt.Sprintf(configB, otlpPort, out, healthB))
	b.waitHealthy(t, healthB)

	healthA := freePort(t)
	a := startCollector(t, bin, "A", fmt.Sprintf(configA, mode, otlpPort, healthA))
	a.waitHealthy(t, healthA)

	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) {
		_, _ = w.Write([]byte("ok\n"))
	}))
	t.Cleanup(srv.Close)
	srvPort := srv.Listener.Addr().(*net.TCPAddr).Port

	var wants []wantConnect
	wants = append(wants, dialSelf(t, "tcp4", "127.0.0.1")...)
	wants = append(wants, dialSelf(t, "tcp6", "::1")...)
	for _, c := range httpClients(srv.URL) {
		if c.notInVM && os.Getenv(envGuest) == "1" {
			// The VM's initramfs holds only busybox: busybox wget is the
			// client no one here wrote there; make e2e runs this one.
			continue
		}
		w, err := runClient(c, srvPort)
		if errors.Is(err, exec.ErrNotFound) {
			// CI installs every client (make deps).
			t.Run(c.name, func(t *testing.T) { privtest.SkipOrFail(t, fmt.Sprintf("client %s: not installed: %v", c.name, err)) })
			continue
		}
		if err != nil {
			t.Errorf("client %s: %v", c.name, err)
			continue
		}
		wants = append(wants, w)
	}

	found := waitForConnects(t, out, wants, a, b)
	for _, w := range wants {
		t.Run(w.desc, func(t *testing.T) {
			r, ok := found[key(w.pid, w.port)]
			if !ok {
				t.Fatalf("no %s record of pid %d to port %d in %s after %s", eventName, w.pid, w.port, out, recordsTimeout)
			}
			checkRecord(t, w, r, mode)
		})
	}
}

// dialSelf connects from this process to a listener on addr (a loopback
// address of network) and returns the connect it expects to see. When the
// address family is not available here it expects nothing, and a subtest
// named for it skips, or fails when privtest.EnvRequire=1.
func dialSelf(t *testing.T, network, addr string) []wantConnect {
	t.Helper()
	l, err := net.Listen(network, net.JoinHostPort(addr, "0"))
	if err != nil {
		t.Run("test process "+network, func(t *testing.T) {
			privtest.SkipOrFail(t, fmt.Sprintf("%s on %s: not available here: %v", network, addr, err))
		})
		return nil
	}
	defer l.Close()
	go func() {
		for {
			c, err := l.Accept()
			if err != nil {
				return
			}
			_ = c.Close()
		}
	}()
	conn, err := net.DialTimeout(network, l.Addr().String(), 2*time.Second)
	if err != nil {
		t.Fatalf("connect to %s: %v", l.Addr(), err)
	}
	_ = conn.Close()
	exe, err := os.Executable()
	if err != nil {
		t.Fatalf("own executable: %v", err)
	}
	typ := "ipv4"
	if network == "tcp6" {
		typ = "ipv6"
	}
	return []wantConnect{{
		desc:    "test process " + network,
		pid:     os.Getpid(),
		exe:     baseName(exe),
		peer:    addr,
		port:    l.Addr().(*net.TCPAddr).Port,
		network: typ,
	}}
}

// httpClient is a program that fetches a URL: a client that no one here
// wrote.
type httpClient struct {
	name    string   // name in messages
	prog    string   // program to look up in PATH
	args    []string // its arguments
	notInVM bool     // the VM's initramfs (busybox only) does not have it
}

// envGuest is set to 1 inside the vmtest guest.
const envGuest = "VMTEST_GUEST"

// httpClients lists the clients tried, each fetching url.
func httpClients(url string) []httpClient {
	return []httpClient{
		{name: "curl", prog: "curl", args: []string{"-sS", "-o", "/dev/null", "-m", "5", url}, notInVM: true},
		// The VM's wget is busybox's applet (runClient: not found).
		{name: "wget", prog: "wget", args: []string{"-q", "-O", "/dev/null", "-T", "5", "-t", "1", url}, notInVM: true},
		// No -T: Debian 12's busybox-static 1.35.0 wget crashes (SIGSEGV)
		// with it. runClient's context bounds the run instead.
		{name: "busybox wget", prog: "busybox", args: []string{"wget", "-q", "-O", "/dev/null", url}},
	}
}

// runClient runs c, which connects to 127.0.0.1:port, and returns the connect
// it expects to see. The error wraps exec.ErrNotFound when c is not
// installed.
func runClient(c httpClient, port int) (wantConnect, error) {
	path, err := exec.LookPath(c.prog)
	if err != nil {
		return wantConnect{}, fmt.Errorf("look up %s: %w", c.prog, err)
	}
	if c.prog != "busybox" && baseName(path) == "busybox" {
		// The VM's wget is busybox's applet: it is run as "busybox wget".
		return wantConnect{}, fmt.Errorf("%s is busybox's applet, tested as busybox wget: %w", path, exec.ErrNotFound)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	cmd := exec.CommandContext(ctx, path, c.args...)
	var stderr bytes.Buffer
	cmd.Stderr = &stderr
	if err := cmd.Start(); err != nil {
		return wantConnect{}, fmt.Errorf("start %s: %w", path, err)
	}
	pid := cmd.Process.Pid
	if err := cmd.Wait(); err != nil {
		return wantConnect{}, fmt.Errorf("run %s %q: %w: %s", path, c.args, err, stderr.Bytes())
	}
	return wantConnect{
		desc:    c.name,
		pid:     pid,
		exe:     baseName(path),
		peer:    "127.0.0.1",
		port:    port,
		network: "ipv4",
	}, nil
}

// baseName is the base name of path after symbolic links, the way the
// receiver names executables (readlink /proc/PID/exe).
func baseName(path string) string {
	if real, err := filepath.EvalSymlinks(path); err == nil {
		path = real
	}
	return filepath.Base(path)
}

// key identifies a connect by process and destination port.
func key(pid, port int) string { return strconv.Itoa(pid) + "/" + strconv.Itoa(port) }

// waitForConnects polls file until it holds a net_tcp_connect record for
// every connect in wants, or recordsTimeout passes, and returns the records
// found by key. It fails the test when a collector exits meanwhile.
func waitForConnects(t *testing.T, file string, wants []wantConnect, collectors ...*collector) map[string]connectRecord {
	t.Helper()
	deadline := time.Now().Add(recordsTimeout)
	for {
		for _, c := range collectors {
			select {
			case <-c.done:
				t.Fatalf("collector %s exited (%v):\n%s", c.name, c.err, c.stderr.String())
			default:
			}
		}
		records, err := readRecords(file)
		if err != nil {
			t.Fatalf("read collector B's output: %v", err)
		}
		found := make(map[string]connectRecord)
		for _, r := range records {
			if r.eventName != eventName {
				continue
			}
			pid, _ := r.resource["process.pid"].(int64)
			port, _ := r.attrs["network.peer.port"].(int64)
			found[key(int(pid), int(port))] = r
		}
		missing := slices.DeleteFunc(slices.Clone(wants), func(w wantConnect) bool {
			_, ok := found[key(w.pid, w.port)]
			return ok
		})
		if len(missing) == 0 || time.Now().After(deadline) {
			if len(missing) > 0 {
				t.Logf("after %s, %d records in %s, none for: %+v", recordsTimeout, len(records), file, missing)
			}
			return found
		}
		time.Sleep(pollEvery)
	}
}

// readRecords parses the complete lines of the file exporter's output (each
// an OTLP/JSON ExportLogsServiceRequest) into records. A missing file holds
// none; a last line without its newline is still being written and is left
// for the next read.
func readRecords(file string) ([]connectRecord, error) {
	data, err := os.ReadFile(file)
	if errors.Is(err, fs.ErrNotExist) {
		return nil, nil
	}
	if err != nil {
		return nil, fmt.Errorf("read %s: %w", file, err)
	}
	if i := bytes.LastIndexByte(data, '\n'); i >= 0 {
		data = data[:i+1]
	} else {
		return nil, nil
	}
	var (
		records []connectRecord
		um      plog.JSONUnmarshaler
	)
	sc := bufio.NewScanner(bytes.NewReader(data))
	sc.Buffer(make([]byte, 0, 1<<20), 64<<20)
	for n := 1; sc.Scan(); n++ {
		line := sc.Bytes()
		if len(bytes.TrimSpace(line)) == 0 {
			continue
		}
		logs, err := um.UnmarshalLogs(line)
		if err != nil {
			return nil, fmt.Errorf("%s line %d: %w", file, n, err)
		}
		for _, rl := range logs.ResourceLogs().All() {
			res := rl.Resource().Attributes().AsRaw()
			for _, sl := range rl.ScopeLogs().All() {
				scope := sl.Scope().Attributes().AsRaw()
				for _, lr := range sl.LogRecords().All() {
					records = append(records, connectRecord{
						eventName: lr.EventName(),
						resource:  res,
						scope:     scope,
						attrs:     lr.Attributes().AsRaw(),
					})
				}
			}
		}
	}
	if err := sc.Err(); err != nil {
		return nil, fmt.Errorf("scan %s: %w", file, err)
	}
	return records, nil
}

// checkRecord checks the attributes of r, the record of the connect w.
func checkRecord(t *testing.T, w wantConnect, r connectRecord, mode string) {
	t.Helper()
	checks := []struct {
		where string
		attrs map[string]any
		name  string
		want  any
	}{
		{"attribute", r.attrs, "network.transport", "tcp"},
		{"attribute", r.attrs, "network.type", w.network},
		{"attribute", r.attrs, "network.peer.address", w.peer},
		{"attribute", r.attrs, "network.peer.port", int64(w.port)},
		{"attribute", r.attrs, "server.port", int64(w.port)},
		{"resource attribute", r.resource, "process.pid", int64(w.pid)},
		{"resource attribute", r.resource, "process.executable.name", w.exe},
	}
	for _, c := range checks {
		if got, ok := c.attrs[c.name]; !ok || got != c.want {
			t.Errorf("%s %s = %v (present: %v), want %v", c.where, c.name, got, ok, c.want)
		}
	}
	// No DNS answer named these loopback addresses, so the best name is the
	// address itself unless a name list says otherwise.
	server, _ := r.attrs["server.address"].(string)
	names, _ := r.attrs["tcpconnect.dns.names"].([]any)
	switch {
	case server == "":
		t.Errorf("attribute server.address missing or empty: %v", r.attrs)
	case len(names) == 0 && server != w.peer:
		t.Errorf("attribute server.address = %q with no DNS names, want the peer address %q", server, w.peer)
	}
	// Every connect here goes to a listener: the record waited for the
	// handshake and says so (outcome tracking is on by default).
	if o, _ := r.attrs["tcpconnect.outcome"].(string); o != "established" {
		t.Errorf("attribute tcpconnect.outcome = %q, want established", o)
	}
	if d, ok := r.attrs["tcpconnect.connect.duration"].(float64); !ok || d < 0 || d > 1 {
		t.Errorf("attribute tcpconnect.connect.duration = %v, want a handshake time in seconds", r.attrs["tcpconnect.connect.duration"])
	}
	if tid, ok := r.attrs["thread.id"].(int64); !ok || tid <= 0 {
		t.Errorf("attribute thread.id = %v, want a positive thread id", r.attrs["thread.id"])
	}
	got, _ := r.scope["tcpconnect.attach_mode"].(string)
	if mode != "auto" && got != mode {
		t.Errorf("scope attribute tcpconnect.attach_mode = %q, want %q (%s)", got, mode, privtest.EnvAttach)
	}
	privtest.CheckAutoMode(t, got)
	t.Logf("%s: pid %d %s -> %s:%d (server.address %s, attach mode %v)", w.desc, w.pid, w.exe, w.peer, w.port, server, got)
}
