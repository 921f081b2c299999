package e2e

import (
	"bufio"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"maps"
	"net"
	"net/http"
	"net/url"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	mdns "github.com/miekg/dns"
	"golang.org/x/sys/unix"
)

// EnvVictoriaLogs names the VictoriaLogs server binary of the store test
// (make store-test builds it from deploy/victorialogs's module); the default
// is defaultVictoriaLogs, relative to this package's directory.
const (
	EnvVictoriaLogs     = "TCPCONNECT_VICTORIALOGS"
	defaultVictoriaLogs = "../_build/victorialogs/victoria-logs"
)

// storeConfig is the shipped config the store test runs, as it is: the
// test changes its exporter's endpoint, and the health check's port and the
// collector's own metrics (port 8888) on the command line, so that it does
// not take fixed ports on a shared machine.
const (
	storeConfig   = "../deploy/victorialogs/config.yaml"
	storeExporter = "otlp_http/victorialogs"
)

// storeTimeout bounds the waits of the store test: VictoriaLogs' start and
// the records' way through the receiver, the batch processor (1 s), the
// OTLP/HTTP hop and VictoriaLogs' ingestion until a query finds them.
const storeTimeout = 60 * time.Second

// checkTimeout bounds how long a query's answer may take to become the
// expected one once every entry was counted (checkQuery).
const checkTimeout = 10 * time.Second

// envResolvExec makes the re-executed test binary a launcher: in the new
// mount namespace it was started in, it binds DIR/resolv.conf and
// DIR/nsswitch.conf over /etc's, then execs the command after "--". The
// client (curl, busybox) then resolves names through the test's DNS server
// with its own resolver, on the host's network, and the host's files stay
// as they are.
const envResolvExec = "TCPCONNECT_TEST_RESOLV_EXEC"

func init() {
	dir := os.Getenv(envResolvExec)
	if dir == "" {
		return
	}
	i := slices.Index(os.Args, "--")
	if i < 0 || i == len(os.Args)-1 {
		fmt.Fprintln(os.Stderr, envResolvExec, "needs a command after --")
		os.Exit(2)
	}
	for _, f := range []string{"resolv.conf", "nsswitch.conf"} {
		if err := unix.Mount(filepath.Join(dir, f), "/etc/"+f, "", unix.MS_BIND, ""); err != nil {
			fmt.Fprintf(os.Stderr, "bind %s over /etc/%s: %v\n", filepath.Join(dir, f), f, err)
			os.Exit(2)
		}
	}
	env := slices.DeleteFunc(os.Environ(), func(s string) bool { return strings.HasPrefix(s, envResolvExec+"=") })
	err := unix.Exec(os.Args[i+1], os.Args[i+1:], env)
	fmt.Fprintf(os.Stderr, "exec %s: %v\n", os.Args[i+1], err)
	os.Exit(2)
}

// victoriaLogsBinary returns the absolute path of the VictoriaLogs server,
// or skips or fails t (privtest.SkipOrFail) when it is missing.
func victoriaLogsBinary(t *testing.T) string {
	t.Helper()
	return executable(t, EnvVictoriaLogs, defaultVictoriaLogs,
		"store test: needs the VictoriaLogs server %s (make store-test builds it, or set %s)")
}

// victoriaLogs is a VictoriaLogs server the test started.
type victoriaLogs struct {
	url string // http://127.0.0.1:PORT
}

// startVictoriaLogs starts bin on a free loopback port with a temporary data
// directory and waits until /health answers; it is killed when t ends.
func startVictoriaLogs(t *testing.T, bin string) *victoriaLogs {
	t.Helper()
	addr := "127.0.0.1:" + strconv.Itoa(freePort(t))
	out := &syncBuffer{}
	cmd := exec.Command(bin, "-storageDataPath="+t.TempDir(), "-httpListenAddr="+addr, "-loggerLevel=WARN")
	cmd.Stdout, cmd.Stderr = out, out
	cmd.SysProcAttr = &syscall.SysProcAttr{Pdeathsig: syscall.SIGKILL}
	if err := cmd.Start(); err != nil {
		t.Fatalf("start VictoriaLogs: %v", err)
	}
	done := make(chan struct{})
	go func() { _ = cmd.Wait(); close(done) }()
	t.Cleanup(func() {
		_ = cmd.Process.Signal(syscall.SIGTERM)
		select {
		case <-done:
		case <-time.After(stopTimeout):
			_ = cmd.Process.Kill()
			<-done
		}
		if t.Failed() {
			t.Logf("VictoriaLogs output:\n%s", out.String())
		}
	})
	vl := &victoriaLogs{url: "http://" + addr}
	client := &http.Client{Timeout: time.Second}
	for end := time.Now().Add(storeTimeout); ; time.Sleep(pollEvery) {
		select {
		case <-done:
			t.Fatalf("VictoriaLogs exited before it was ready:\n%s", out.String())
		default:
		}
		resp, err := client.Get(vl.url + "/health")
		if err == nil {
			_ = resp.Body.Close()
			if resp.StatusCode == http.StatusOK {
				return vl
			}
		}
		if time.Now().After(end) {
			t.Fatalf("VictoriaLogs /health not ready after %s (last: %v):\n%s", storeTimeout, err, out.String())
		}
	}
}

// query runs a LogsQL query with VictoriaLogs' extra_filters (ANDed to it)
// and returns its rows, each field name to value.
func (vl *victoriaLogs) query(q, extraFilters string) ([]map[string]string, error) {
	form := url.Values{"query": {q}, "extra_filters": {extraFilters}}
	resp, err := http.PostForm(vl.url+"/select/logsql/query", form)
	if err != nil {
		return nil, fmt.Errorf("query %q: %w", q, err)
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		body, _ := io.ReadAll(resp.Body)
		return nil, fmt.Errorf("query %q: %s: %s", q, resp.Status, body)
	}
	var rows []map[string]string
	s := bufio.NewScanner(resp.Body)
	s.Buffer(nil, 1<<20)
	for s.Scan() {
		if len(s.Bytes()) == 0 {
			continue
		}
		var row map[string]string
		if err := json.Unmarshal(s.Bytes(), &row); err != nil {
			return nil, fmt.Errorf("query %q: row %q: %w", q, s.Text(), err)
		}
		rows = append(rows, row)
	}
	if err := s.Err(); err != nil {
		return nil, fmt.Errorf("query %q: read the answer: %w", q, err)
	}
	return rows, nil
}

// flush makes VictoriaLogs write its buffered rows, so that every search
// sees them (/internal/force_flush).
func (vl *victoriaLogs) flush() error {
	resp, err := http.Get(vl.url + "/internal/force_flush")
	if err != nil {
		return fmt.Errorf("force flush: %w", err)
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		body, _ := io.ReadAll(resp.Body)
		return fmt.Errorf("force flush: %s: %s", resp.Status, body)
	}
	return nil
}

// insertJSONLines stores rows through VictoriaLogs' JSON lines ingestion,
// with the given stream fields.
func (vl *victoriaLogs) insertJSONLines(rows []map[string]string, streamFields string) error {
	var b strings.Builder
	enc := json.NewEncoder(&b)
	for _, r := range rows {
		if err := enc.Encode(r); err != nil {
			return fmt.Errorf("encode %v: %w", r, err)
		}
	}
	u := vl.url + "/insert/jsonline?_stream_fields=" + url.QueryEscape(streamFields)
	resp, err := http.Post(u, "application/stream+json", strings.NewReader(b.String()))
	if err != nil {
		return fmt.Errorf("insert JSON lines: %w", err)
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		body, _ := io.ReadAll(resp.Body)
		return fmt.Errorf("insert JSON lines: %s: %s", resp.Status, body)
	}
	return nil
}

// storeDNS serves zone (name -> IPv4 address, answered with TTL 60; other
// questions get an empty answer) on UDP and TCP port 53 of addr, the DNS
// server the store test's clients resolve through.
func storeDNS(t *testing.T, addr string, zone map[string]string) {
	t.Helper()
	handler := mdns.HandlerFunc(func(w mdns.ResponseWriter, r *mdns.Msg) {
		m := new(mdns.Msg)
		m.SetReply(r)
		q := r.Question[0]
		if ip, ok := zone[strings.TrimSuffix(strings.ToLower(q.Name), ".")]; ok && q.Qtype == mdns.TypeA {
			rr, err := mdns.NewRR(fmt.Sprintf("%s 60 IN A %s", q.Name, ip))
			if err == nil {
				m.Answer = append(m.Answer, rr)
			}
		}
		_ = w.WriteMsg(m)
	})
	pc, err := net.ListenPacket("udp", addr)
	if err != nil {
		t.Fatalf("DNS server udp %s: %v", addr, err)
	}
	ln, err := net.Listen("tcp", addr)
	if err != nil {
		pc.Close()
		t.Fatalf("DNS server tcp %s: %v", addr, err)
	}
	for _, srv := range []*mdns.Server{{PacketConn: pc, Handler: handler}, {Listener: ln, Handler: handler}} {
		started := make(chan struct{})
		srv.NotifyStartedFunc = func() { close(started) }
		go func() { _ = srv.ActivateAndServe() }()
		<-started
		t.Cleanup(func() { _ = srv.Shutdown() })
	}
	t.Cleanup(func() { _ = pc.Close(); _ = ln.Close() })
}

// resolvDir writes the resolv.conf (nameserver: the test's DNS server) and
// nsswitch.conf (hosts from files, then DNS) that the clients get.
func resolvDir(t *testing.T, nameserver string) string {
	t.Helper()
	dir := t.TempDir()
	files := map[string]string{
		"resolv.conf":   "nameserver " + nameserver + "\noptions attempts:2 timeout:2\n",
		"nsswitch.conf": "hosts: files dns\n",
	}
	for name, text := range files {
		if err := os.WriteFile(filepath.Join(dir, name), []byte(text), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	return dir
}

// httpListeners serves HTTP 200 on each of addrs (host:port).
func httpListeners(t *testing.T, addrs ...string) {
	t.Helper()
	srv := &http.Server{Handler: http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) {
		_, _ = io.WriteString(w, "ok\n")
	}), ReadHeaderTimeout: 5 * time.Second}
	for _, a := range addrs {
		ln, err := net.Listen("tcp4", a)
		if err != nil {
			t.Fatalf("listen %s: %v", a, err)
		}
		go func() { _ = srv.Serve(ln) }()
	}
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), stopTimeout)
		defer cancel()
		_ = srv.Shutdown(ctx)
	})
}

// diffRows returns "" when got and want hold the same rows in any order,
// else both; the varying fields must be in every row of got and are not
// compared, and an empty value stands for a field the entry lacks.
func diffRows(got, want []map[string]string, varying []string) string {
	key := func(r map[string]string) string { b, _ := json.Marshal(r); return string(b) }
	var g, w []string
	var missing []string
	for _, r := range got {
		r = maps.Clone(r)
		maps.DeleteFunc(r, func(_, v string) bool { return v == "" })
		for _, f := range varying {
			if r[f] == "" {
				missing = append(missing, f)
			}
			delete(r, f)
		}
		g = append(g, key(r))
	}
	for _, r := range want {
		w = append(w, key(r))
	}
	slices.Sort(g)
	slices.Sort(w)
	if slices.Equal(g, w) && len(missing) == 0 {
		return ""
	}
	return fmt.Sprintf("got  %s\nwant %s\nrows without %v", strings.Join(g, "\n     "), strings.Join(w, "\n     "), missing)
}

// checkQuery runs q (with extraFilters) until its answer is want or
// checkTimeout passes, and fails t with the last answer then. VictoriaLogs
// can answer a query from fewer parts than the one before for a moment
// after ingestion (seen here: a search that missed one stream's entries
// right after a count that had them), so one answer is not the store's
// last word.
func checkQuery(t *testing.T, vl *victoriaLogs, q, extraFilters string, want []map[string]string, varying []string) {
	t.Helper()
	var diff string
	for end := time.Now().Add(checkTimeout); ; time.Sleep(200 * time.Millisecond) {
		rows, err := vl.query(q, extraFilters)
		if err != nil {
			t.Fatal(err)
		}
		if diff = diffRows(rows, want, varying); diff == "" {
			return
		}
		if time.Now().After(end) {
			break
		}
	}
	t.Errorf("%s\n%s", q, diff)
}
