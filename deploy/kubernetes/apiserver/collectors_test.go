package apiserver

import (
	"bufio"
	"fmt"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"testing"
	"time"

	"sigs.k8s.io/yaml"
)

// config is a collector config as a YAML tree, to change endpoints in.
type config map[string]any

func parseConfig(t testing.TB, text string) config {
	t.Helper()
	var c config
	if err := yaml.Unmarshal([]byte(text), &c); err != nil {
		t.Fatalf("collector config: %v", err)
	}
	return c
}

// at returns the map at path, failing t when it is not there: the test
// changes only what the shipped config has.
func (c config) at(t testing.TB, path ...string) map[string]any {
	t.Helper()
	m := map[string]any(c)
	for i, k := range path {
		next, ok := m[k].(map[string]any)
		if !ok {
			t.Fatalf("shipped collector config has no %s", strings.Join(path[:i+1], "."))
		}
		m = next
	}
	return m
}

// set sets key in the map at path, which must hold key already.
func (c config) set(t testing.TB, value any, path ...string) {
	t.Helper()
	m := c.at(t, path[:len(path)-1]...)
	key := path[len(path)-1]
	if _, ok := m[key]; !ok {
		t.Fatalf("shipped collector config has no %s", strings.Join(path, "."))
	}
	m[key] = value
}

func (c config) write(t testing.TB, name string) string {
	t.Helper()
	data, err := yaml.Marshal(map[string]any(c))
	if err != nil {
		t.Fatal(err)
	}
	f := filepath.Join(t.TempDir(), name+".yaml")
	if err := os.WriteFile(f, data, 0o600); err != nil {
		t.Fatal(err)
	}
	return f
}

func local(port int) string { return "127.0.0.1:" + strconv.Itoa(port) }

// promReader is a pull (Prometheus) reader of the collector's own metrics
// on 127.0.0.1:port; plain names them as the collector's default reader
// does (no unit or type suffix).
func promReader(port int, plain bool) []any {
	prom := map[string]any{"host": "127.0.0.1", "port": port}
	if plain {
		prom["without_units"], prom["without_type_suffix"] = true, true
	}
	return []any{map[string]any{"pull": map[string]any{"exporter": map[string]any{"prometheus": prom}}}}
}

// collector is a running collector and the ports the test reaches it on.
type collector struct {
	*process
	health, metrics int
}

func (c *collector) waitHealthy(t testing.TB) {
	t.Helper()
	hc := &http.Client{Timeout: 2 * time.Second}
	c.waitFor(t, "healthy", func() error { return httpOK(hc, "http://"+local(c.health)+"/", "") })
}

// metric returns the sum over its series of the collector's own metric
// whose Prometheus name is otelcol_<name>.
func (c *collector) metric(name string) (float64, error) {
	resp, err := http.Get("http://" + local(c.metrics) + "/metrics")
	if err != nil {
		return 0, err
	}
	defer resp.Body.Close()
	re := regexp.MustCompile(`^otelcol_` + regexp.QuoteMeta(name) + `(\{[^}]*\})? (\S+)$`)
	var sum float64
	found := false
	sc := bufio.NewScanner(resp.Body)
	for sc.Scan() {
		m := re.FindStringSubmatch(sc.Text())
		if m == nil {
			continue
		}
		v, err := strconv.ParseFloat(m[2], 64)
		if err != nil {
			return 0, fmt.Errorf("metric line %q: %w", sc.Text(), err)
		}
		sum, found = sum+v, true
	}
	if err := sc.Err(); err != nil {
		return 0, err
	}
	if !found {
		return 0, fmt.Errorf("no metric otelcol_%s yet", name)
	}
	return sum, nil
}

// waitMetric waits until the collector's metric name reaches want.
func (c *collector) waitMetric(t testing.TB, name string, want float64) {
	t.Helper()
	c.waitFor(t, fmt.Sprintf("at %s >= %v", name, want), func() error {
		v, err := c.metric(name)
		if err == nil && v < want {
			err = fmt.Errorf("%s = %v", name, v)
		}
		return err
	})
}

// startGateway runs the gateway distribution with the shipped gateway
// config, in which only endpoints change: its OTLP receiver, health check
// and own metrics on loopback ports, and its exporter, the `debug` that
// the shipped config says to replace with your backend, replaced with an
// otlphttp exporter to the test's backend (JSON encoding, so that the test
// reads it without the OTLP protobuf types). Its k8sattributes processor
// keeps the shipped `auth_type: serviceAccount`: as in a pod, the API
// server's address comes from KUBERNETES_SERVICE_HOST/PORT and its token
// and CA from /var/run/secrets/kubernetes.io/serviceaccount, which a
// private mount namespace (unshare -m) holds for the gateway alone: a
// tmpfs on /run there (the host's /run is left as it is) with saDir bound
// at that path.
//
// change, when not nil, changes the config further (gateways other than the
// shipped one).
func startGateway(t testing.TB, name, bin, text string, c *cluster, saDir, backend string, change func(config)) (*collector, int) {
	t.Helper()
	unshare := binary(t, "", "unshare")
	cfg := parseConfig(t, text)
	otlp := freePort(t)
	g := &collector{health: freePort(t), metrics: freePort(t)}
	cfg.set(t, local(otlp), "receivers", "otlp", "protocols", "grpc", "endpoint")
	cfg.set(t, local(g.health), "extensions", "health_check", "endpoint")
	exporters := cfg.at(t, "exporters")
	if _, ok := exporters["debug"]; !ok || len(exporters) != 1 {
		t.Fatalf("shipped gateway config: exporters %v, want the one debug exporter to replace", exporters)
	}
	cfg["exporters"] = map[string]any{"otlphttp": map[string]any{"endpoint": backend, "encoding": "json"}}
	cfg.set(t, []any{"otlphttp"}, "service", "pipelines", "logs", "exporters")
	cfg.at(t, "service")["telemetry"] = map[string]any{"metrics": map[string]any{"readers": promReader(g.metrics, true)}}
	if change != nil {
		change(cfg)
	}
	file := cfg.write(t, name)

	run, err := filepath.EvalSymlinks("/var/run")
	if err != nil {
		t.Fatal(err)
	}
	script := `set -e
mount -t tmpfs -o mode=0755,size=1m tcpconnect-k8s-test "$RUN"
mkdir -p "$RUN/secrets/kubernetes.io/serviceaccount"
mount --bind "$SA_DIR" "$RUN/secrets/kubernetes.io/serviceaccount"
exec "$GATEWAY" --config "$CONFIG"`
	cmd := exec.Command(unshare, "--mount", "--propagation", "private", "sh", "-c", script)
	cmd.Env = append(os.Environ(),
		"RUN="+run, "SA_DIR="+saDir, "GATEWAY="+bin, "CONFIG="+file,
		"KUBERNETES_SERVICE_HOST=127.0.0.1", "KUBERNETES_SERVICE_PORT="+strconv.Itoa(c.port),
		"K8S_CLUSTER_NAME=k8s-test")
	g.process = start(t, name, cmd)
	g.waitHealthy(t)
	return g, otlp
}

// startAgent runs the node agent distribution with the shipped agent
// config, in which only endpoints change: the exporter's to the gateway,
// the health check's and its own metrics' on loopback ports.
func startAgent(t testing.TB, bin, text string, gatewayOTLP int) *collector {
	t.Helper()
	cfg := parseConfig(t, text)
	a := &collector{health: freePort(t), metrics: freePort(t)}
	cfg.set(t, local(gatewayOTLP), "exporters", "otlp_grpc", "endpoint")
	cfg.set(t, local(a.health), "extensions", "health_check", "endpoint")
	cfg.set(t, promReader(a.metrics, false), "service", "telemetry", "metrics", "readers")
	a.process = start(t, "agent", exec.Command(bin, "--config", cfg.write(t, "agent")))
	a.waitHealthy(t)
	return a
}
