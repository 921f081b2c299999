package apiserver

import (
	"bytes"
	"fmt"
	"net/http"
	"testing"
)

// shortGrace is the pod_delete_grace_period of a second gateway, which
// shows what the gateway does once a deleted pod's grace period is over
// without the test waiting the shipped two minutes (and up to the 30 s
// of the processor's delete loop on top).
const shortGrace = "1s"

// syntheticPort marks the records the test sends to that gateway itself
// (network.peer.port; no connection is made).
const syntheticPort = 1

// graceGateway is the second gateway: the shipped config with
// pod_delete_grace_period shortGrace and an OTLP/HTTP receiver as well, on
// which the test sends it records; its own backend.
type graceGateway struct {
	*collector
	backend *sink
	http    int
}

func startGraceGateway(t testing.TB, bin, text string, c *cluster, saDir string) *graceGateway {
	t.Helper()
	g := &graceGateway{backend: newSink(t), http: freePort(t)}
	g.collector, _ = startGateway(t, "gateway-short-grace", bin, text, c, saDir, g.backend.url(), func(cfg config) {
		cfg.at(t, "processors", "k8sattributes")["pod_delete_grace_period"] = shortGrace
		cfg.at(t, "receivers", "otlp", "protocols")["http"] = map[string]any{"endpoint": local(g.http)}
	})
	return g
}

// send posts one log record to the gateway as an agent's record of the pod
// uid looks there (its resource's k8s.pod.uid), with process.pid seq, and
// returns the connect that names it.
func (g *graceGateway) send(t testing.TB, p pod, seq int) connect {
	t.Helper()
	body := fmt.Sprintf(`{"resourceLogs":[{"resource":{"attributes":[
		{"key":"k8s.pod.uid","value":{"stringValue":%q}},
		{"key":"process.pid","value":{"intValue":"%d"}}]},
	"scopeLogs":[{"logRecords":[{"eventName":"net_tcp_connect","attributes":[
		{"key":"network.peer.port","value":{"intValue":"%d"}}]}]}]}]}`, p.uid, seq, syntheticPort)
	resp, err := http.Post("http://"+local(g.http)+"/v1/logs", "application/json", bytes.NewBufferString(body))
	if err != nil {
		t.Fatalf("send a record to %s: %v", g.name, err)
	}
	_ = resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		t.Fatalf("send a record to %s: %s", g.name, resp.Status)
	}
	return connect{pod: p, driver: "none", pid: seq}
}

// checkUnnamed checks that the one record of c carries the pod UID it was
// sent with and nothing the gateway adds from the API server.
func checkUnnamed(t testing.TB, c connect, recs []record) {
	t.Helper()
	if len(recs) != 1 {
		t.Fatalf("record %d: %d records, want 1", c.pid, len(recs))
	}
	r := recs[0].resource
	if r["k8s.pod.uid"] != string(c.pod.uid) {
		t.Errorf("record %d: k8s.pod.uid = %q, want %q", c.pid, r["k8s.pod.uid"], c.pod.uid)
	}
	for _, k := range []string{"k8s.pod.name", "k8s.namespace.name", c.pod.owner} {
		if v, ok := r[k]; ok {
			t.Errorf("record %d of the pod deleted %s+ ago: %s = %q, want none (the pod is no longer known)", c.pid, shortGrace, k, v)
		}
	}
}
