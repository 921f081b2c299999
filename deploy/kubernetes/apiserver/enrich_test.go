package apiserver

import (
	"context"
	"fmt"
	"os"
	"regexp"
	"strings"
	"testing"
	"time"

	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
)

// Where `make build` and `make gateway` write the distributions, from here.
const (
	defaultAgent   = "../../../_build/otelcol-tcpconnect"
	defaultGateway = "../../../_build/gateway/otelcol-tcpconnect-gateway"
)

// connect is one connect the test made from a pod's container cgroup.
type connect struct {
	pod    pod
	driver string
	id     string // the container id in the cgroup's name
	pid    int
}

// TestGatewayEnrichesFromAPIServer: records of connects made from cgroups
// named as the kubelet names a pod's container (both cgroup drivers), with
// the UIDs a real API server gave a Deployment's ReplicaSet's pod and a
// DaemonSet's pod, leave the gateway with the pod's name, namespace,
// labels (as the shipped config extracts them) and owner, the gateway
// reading them with the shipped service account and ClusterRole. A pod
// deleted mid-run: the records already sent keep their names, and a
// record of its UID that arrives after the gateway saw the deletion is
// still named (k8sattributes keeps a deleted pod for
// pod_delete_grace_period, 2 minutes by default).
func TestGatewayEnrichesFromAPIServer(t *testing.T) {
	if os.Geteuid() != 0 {
		skipOrFail(t, "needs root: the agent loads eBPF programs, the test makes cgroups and a mount namespace")
	}
	agentBin := binary(t, envAgent, defaultAgent)
	gatewayBin := binary(t, envGateway, defaultGateway)
	vlBin := binary(t, envVictoriaLogs, defaultVictoriaLogs)
	root := cgroup2Root(t)
	ctx := context.Background()

	c := startAPIServer(t, startEtcd(t))
	s := loadShipped(t)
	s.apply(t, c)
	web, probe := createWorkloads(t, c)
	t.Logf("API server: pod %s/%s uid %s (%s %s), pod %s uid %s (%s %s)",
		workloadNS, web.name, web.uid, web.owner, web.ownerV, probe.name, probe.uid, probe.owner, probe.ownerV)
	sa := s.serviceAccounts[0]
	backend := newSink(t)
	saDir := c.serviceAccountDir(t, sa.Namespace, sa.Name)
	// The gateway also exports to VictoriaLogs, with the exporter block
	// that deploy/victorialogs ships.
	vl := startVictoriaLogs(t, vlBin)
	gw, gwOTLP := startGateway(t, "gateway", gatewayBin, s.configs["gateway"], c, saDir, backend.url(), func(cfg config) {
		cfg.at(t, "exporters")[victoriaLogsExp] = vl.exporter(t)
		cfg.set(t, []any{"otlphttp", victoriaLogsExp}, "service", "pipelines", "logs", "exporters")
	})
	grace := startGraceGateway(t, gatewayBin, s.configs["gateway"], c, saDir)
	// Each gateway's pod informer has listed both pods: records sent from
	// here on find them (the shipped config does not wait for metadata).
	gw.waitMetric(t, "k8s_watcher_pod_added", 2)
	grace.waitMetric(t, "k8s_watcher_pod_added", 2)
	startAgent(t, agentBin, s.configs["agent"], gwOTLP)

	port := listen(t)
	cgroupFD := map[string]int{}
	var made []connect
	for _, p := range []pod{web, probe} {
		for _, driver := range []string{systemdDriver, cgroupfsDriver} {
			id := containerID(t)
			key := p.name + "/" + driver
			cgroupFD[key] = makeCgroup(t, root, containerCgroup(driver, string(p.uid), id))
			made = append(made, connect{pod: p, driver: driver, id: id, pid: connectFrom(t, cgroupFD[key], port)})
		}
	}
	labelRules := labelRules(t, s.configs["gateway"])
	before := waitRecords(t, backend, port, made)
	for _, m := range made {
		checkEnriched(t, m, before[m.pid], labelRules)
	}
	// The same records in the log store, found by the cookbook's query.
	checkStored(t, vl, port, made)
	early := grace.send(t, probe, 1)
	checkEnriched(t, early, waitRecords(t, grace.backend, syntheticPort, []connect{early})[early.pid], labelRules)

	// Delete the DaemonSet's pod; once the API server has it gone and the
	// gateway's informer has seen the deletion, connect again from its
	// cgroups (its containers' processes outlive the API object until the
	// kubelet kills them).
	if err := c.admin.CoreV1().Pods(workloadNS).Delete(ctx, probe.name, metav1.DeleteOptions{}); err != nil {
		t.Fatalf("delete pod %s: %v", probe.name, err)
	}
	// A pod bound to no node (no scheduler here) is removed at once, without
	// the graceful deletion that waits for a kubelet.
	if _, err := c.admin.CoreV1().Pods(workloadNS).Get(ctx, probe.name, metav1.GetOptions{}); !apierrors.IsNotFound(err) {
		t.Fatalf("pod %s after its deletion: %v, want NotFound", probe.name, err)
	}
	gw.waitMetric(t, "k8s_watcher_pod_deleted", 1)
	var after []connect
	for _, driver := range []string{systemdDriver, cgroupfsDriver} {
		for _, m := range made {
			if m.pod.uid == probe.uid && m.driver == driver {
				m.pid = connectFrom(t, cgroupFD[probe.name+"/"+driver], port)
				after = append(after, m)
			}
		}
	}
	late := waitRecords(t, backend, port, after)
	for _, m := range after {
		t.Logf("after deletion: %s (%s driver): record of pid %d enriched as before (within pod_delete_grace_period)", m.pod.name, m.driver, m.pid)
		checkEnriched(t, m, late[m.pid], labelRules)
	}
	// The records sent before the deletion are the backend's: they keep
	// their names.
	kept := backend.connectsTo(t, port)
	for _, m := range made {
		checkEnriched(t, m, kept[m.pid], labelRules)
	}

	// Once the grace period is over (the second gateway's, shortGrace),
	// the processor's delete loop drops the pod from its table (1 pod
	// left), and a record of its UID gets none of its names.
	grace.waitMetric(t, "k8s_watcher_pod_deleted", 1)
	grace.waitFor(t, "dropping the deleted pod", func() error {
		v, err := grace.metric("k8s_watcher_pod_cache_size")
		if err == nil && v != 1 {
			err = fmt.Errorf("pod table size %v", v)
		}
		return err
	})
	expired := grace.send(t, probe, 2)
	checkUnnamed(t, expired, waitRecords(t, grace.backend, syntheticPort, []connect{expired})[expired.pid])
	t.Logf("after pod_delete_grace_period %s: the record of the deleted pod's UID has no pod names", shortGrace)
}

// waitRecords waits until the backend holds a record of each connect and
// returns them by pid.
func waitRecords(t testing.TB, b *sink, port int, want []connect) map[int][]record {
	t.Helper()
	deadline := time.Now().Add(recordsTimeout)
	for {
		got := b.connectsTo(t, port)
		missing := 0
		for _, w := range want {
			if len(got[w.pid]) == 0 {
				missing++
			}
		}
		if missing == 0 {
			return got
		}
		if time.Now().After(deadline) {
			t.Fatalf("%d of %d connects to port %d not at the backend after %s", missing, len(want), port, recordsTimeout)
		}
		time.Sleep(pollEvery)
	}
}

// checkEnriched checks the one record of connect m: what the agent put on
// it from the cgroup path, and what the gateway added from the API server.
func checkEnriched(t testing.TB, m connect, recs []record, labels []labelRule) {
	t.Helper()
	if len(recs) != 1 {
		t.Errorf("%s (%s driver), pid %d: %d records, want 1", m.pod.name, m.driver, m.pid, len(recs))
		if len(recs) == 0 {
			return
		}
	}
	r := recs[0].resource
	want := map[string]string{
		"k8s.pod.uid":        string(m.pod.uid),
		"k8s.pod.name":       m.pod.name,
		"k8s.namespace.name": workloadNS,
		m.pod.owner:          m.pod.ownerV,
	}
	if m.id != "" {
		want["container.id"] = m.id
	}
	for k, v := range expectedLabels(m.pod, labels) {
		want[k] = v
	}
	for k, v := range want {
		if r[k] != v {
			t.Errorf("%s (%s driver), pid %d: resource attribute %s = %q, want %q", m.pod.name, m.driver, m.pid, k, r[k], v)
		}
	}
	// Only the labels the config extracts, and only the pod's owner.
	for k := range r {
		if _, ok := want[k]; !ok && (strings.HasPrefix(k, "k8s.pod.label") || strings.HasSuffix(k, "set.name") || k == "k8s.deployment.name") {
			t.Errorf("%s (%s driver), pid %d: resource attribute %s = %q, not expected", m.pod.name, m.driver, m.pid, k, r[k])
		}
	}
	if t.Failed() {
		t.Logf("record resource: %v", r)
	}
}

// labelRule is one entry of the shipped k8sattributes extract.labels.
type labelRule struct {
	key     string
	keyRe   *regexp.Regexp
	tagName string
}

// labelRules reads the label rules of the gateway config's k8sattributes
// (pod labels only; tag_name with back references is not used there).
func labelRules(t testing.TB, text string) []labelRule {
	t.Helper()
	cfg := parseConfig(t, text)
	list, _ := cfg.at(t, "processors", "k8sattributes", "extract")["labels"].([]any)
	if len(list) == 0 {
		t.Fatal("shipped gateway config: k8sattributes extracts no pod labels")
	}
	var rules []labelRule
	for _, e := range list {
		m, _ := e.(map[string]any)
		from, _ := m["from"].(string)
		if from != "" && from != "pod" {
			continue
		}
		r := labelRule{}
		r.key, _ = m["key"].(string)
		r.tagName, _ = m["tag_name"].(string)
		if re, _ := m["key_regex"].(string); re != "" {
			r.keyRe = regexp.MustCompile("^(?:" + re + ")$")
			if strings.Contains(r.tagName, "$") {
				t.Fatalf("label rule %v: tag_name back references are not checked here", m)
			}
		}
		rules = append(rules, r)
	}
	return rules
}

// expectedLabels are the record attributes that rules make of p's labels:
// tag_name, or k8s.pod.labels.<key> by default.
func expectedLabels(p pod, rules []labelRule) map[string]string {
	out := map[string]string{}
	for k, v := range p.labels {
		for _, r := range rules {
			if r.key != k && (r.keyRe == nil || !r.keyRe.MatchString(k)) {
				continue
			}
			name := r.tagName
			if name == "" {
				name = fmt.Sprintf("k8s.pod.labels.%s", k)
			}
			out[name] = v
		}
	}
	return out
}
