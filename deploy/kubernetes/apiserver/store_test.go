package apiserver

import (
	"bufio"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"os"
	"os/exec"
	"strconv"
	"strings"
	"testing"
	"time"
)

// The log store at the end of the chain: VictoriaLogs (`make victorialogs`
// builds it), the exporter block the project ships for it, and the
// cookbook whose query the test runs on what the gateway stored.
const (
	envVictoriaLogs     = "TCPCONNECT_VICTORIALOGS"
	defaultVictoriaLogs = "../../../_build/victorialogs/victoria-logs"
	victoriaLogsConfig  = "../../victorialogs/config.yaml"
	victoriaLogsExp     = "otlp_http/victorialogs"
	cookbookFile        = "../../../docs/cookbook-victorialogs.md"
	podsQueryHeading    = "Connects per pod and container"
	storeTimeout        = 10 * time.Second
)

// victoriaLogs is a VictoriaLogs server the test started.
type victoriaLogs struct {
	*process
	url string // http://127.0.0.1:PORT
}

// startVictoriaLogs runs bin on a free loopback port with a temporary data
// directory and waits until /health answers.
func startVictoriaLogs(t testing.TB, bin string) *victoriaLogs {
	t.Helper()
	addr := local(freePort(t))
	cmd := exec.Command(bin, "-storageDataPath="+t.TempDir(), "-httpListenAddr="+addr, "-loggerLevel=WARN")
	vl := &victoriaLogs{process: start(t, "victorialogs", cmd), url: "http://" + addr}
	hc := &http.Client{Timeout: 2 * time.Second}
	vl.waitFor(t, "healthy", func() error { return httpOK(hc, vl.url+"/health", "") })
	return vl
}

// exporter returns the shipped deploy/victorialogs exporter block with its
// logs_endpoint's host changed to this server's (path and headers kept).
func (vl *victoriaLogs) exporter(t testing.TB) map[string]any {
	t.Helper()
	text, err := os.ReadFile(victoriaLogsConfig)
	if err != nil {
		t.Fatalf("VictoriaLogs config: %v", err)
	}
	exp := parseConfig(t, string(text)).at(t, "exporters", victoriaLogsExp)
	endpoint, _ := exp["logs_endpoint"].(string)
	u, err := url.Parse(endpoint)
	if err != nil || u.Path == "" {
		t.Fatalf("%s: exporters.%s.logs_endpoint %q: want a URL with a path (%v)", victoriaLogsConfig, victoriaLogsExp, endpoint, err)
	}
	exp["logs_endpoint"] = vl.url + u.Path
	return exp
}

// query runs a LogsQL query with VictoriaLogs' extra_filters (ANDed to it)
// after /internal/force_flush, and returns its rows.
func (vl *victoriaLogs) query(q, extraFilters string) ([]map[string]string, error) {
	if err := vlGet(vl.url + "/internal/force_flush"); err != nil {
		return nil, err
	}
	resp, err := http.PostForm(vl.url+"/select/logsql/query", url.Values{"query": {q}, "extra_filters": {extraFilters}})
	if err != nil {
		return nil, fmt.Errorf("query %q: %w", q, err)
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		body, _ := io.ReadAll(resp.Body)
		return nil, fmt.Errorf("query %q: %s: %s", q, resp.Status, body)
	}
	var rows []map[string]string
	dec := json.NewDecoder(resp.Body)
	for dec.More() {
		var row map[string]string
		if err := dec.Decode(&row); err != nil {
			return nil, fmt.Errorf("query %q: answer: %w", q, err)
		}
		rows = append(rows, row)
	}
	return rows, nil
}

func vlGet(u string) error {
	resp, err := http.Get(u)
	if err != nil {
		return fmt.Errorf("GET %s: %w", u, err)
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		body, _ := io.ReadAll(resp.Body)
		return fmt.Errorf("GET %s: %s: %s", u, resp.Status, body)
	}
	return nil
}

// cookbookQuery returns the ```logsql block under the cookbook's "### "
// heading.
func cookbookQuery(t testing.TB, heading string) string {
	t.Helper()
	f, err := os.Open(cookbookFile)
	if err != nil {
		t.Fatalf("cookbook: %v", err)
	}
	defer f.Close()
	var block []string
	under, in := false, false
	s := bufio.NewScanner(f)
	for s.Scan() {
		line := s.Text()
		switch {
		case in && line == "```":
			return strings.Join(block, " ")
		case in:
			block = append(block, strings.TrimSpace(line))
		case under && line == "```logsql":
			in = true
		case strings.HasPrefix(line, "#"):
			under = line == "### "+heading
		}
	}
	if err := s.Err(); err != nil {
		t.Fatalf("cookbook: %v", err)
	}
	t.Fatalf("cookbook %s: no logsql block under ### %s", cookbookFile, heading)
	return ""
}

// checkStored runs the cookbook's per-pod query on the connects to port and
// waits until it answers a row for each connect's pod and container, with
// the namespace and pod name the API server gave it and at least as many
// connects as the test made from that container.
func checkStored(t testing.TB, vl *victoriaLogs, port int, made []connect) {
	t.Helper()
	q := cookbookQuery(t, podsQueryHeading)
	extra := "server.port:=" + strconv.Itoa(port)
	var rows []map[string]string
	var missing []string
	var err error
	for deadline := time.Now().Add(storeTimeout); ; time.Sleep(pollEvery) {
		rows, err = vl.query(q, extra)
		missing = nil
		for _, m := range made {
			if !hasPodRow(rows, m, made) {
				missing = append(missing, fmt.Sprintf("%s/%s container %s", workloadNS, m.pod.name, m.id))
			}
		}
		if err == nil && len(missing) == 0 {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("VictoriaLogs, cookbook %q with extra_filters %s after %s: no row for %v (error %v); rows %v", podsQueryHeading, extra, storeTimeout, missing, err, rows)
		}
	}
	t.Logf("VictoriaLogs, cookbook %q: %v", podsQueryHeading, rows)
}

// hasPodRow says whether rows hold m's pod and container with a count of
// at least the connects of made from that container.
func hasPodRow(rows []map[string]string, m connect, made []connect) bool {
	sent := 0
	for _, o := range made {
		if o.id == m.id {
			sent++
		}
	}
	for _, r := range rows {
		n, _ := strconv.Atoi(r["connects"])
		if r["k8s.namespace.name"] == workloadNS && r["k8s.pod.name"] == m.pod.name &&
			r["k8s.pod.uid"] == string(m.pod.uid) && r["container.id"] == m.id && n >= sent {
			return true
		}
	}
	return false
}
