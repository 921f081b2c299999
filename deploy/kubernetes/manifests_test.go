package kubernetes

import (
	"encoding/json"
	"errors"
	"fmt"
	"maps"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"
	rbacv1 "k8s.io/api/rbac/v1"
	kjson "sigs.k8s.io/json"
	"sigs.k8s.io/yaml"
)

// Environment variables naming the distributions that validate the
// embedded configs; the defaults are where `make build` and `make gateway`
// write them, relative to this folder.
const (
	envAgent       = "TCPCONNECT_COLLECTOR"
	envGateway     = "TCPCONNECT_GATEWAY"
	defaultAgent   = "../../_build/otelcol-tcpconnect"
	defaultGateway = "../../_build/gateway/otelcol-tcpconnect-gateway"
)

// agentCapabilities are the only capabilities the agent may add
// (deploy/README.md): anything else, or privileged: true, fails.
var agentCapabilities = []corev1.Capability{"BPF", "PERFMON", "NET_ADMIN", "SYS_PTRACE"}

// manifests are every object of the YAML files in this folder.
type manifests struct {
	namespaces      []corev1.Namespace
	configMaps      []corev1.ConfigMap
	services        []corev1.Service
	serviceAccounts []corev1.ServiceAccount
	daemonSets      []appsv1.DaemonSet
	deployments     []appsv1.Deployment
	clusterRoles    []rbacv1.ClusterRole
	bindings        []rbacv1.ClusterRoleBinding
}

var docSep = regexp.MustCompile(`(?m)^---[ \t]*$`)

// decodeStrict decodes one YAML document into v as the API server does:
// field names case-sensitive, unknown and duplicate fields errors.
func decodeStrict(doc []byte, v any) error {
	j, err := yaml.YAMLToJSONStrict(doc)
	if err != nil {
		return err
	}
	strict, err := kjson.UnmarshalStrict(j, v)
	if err != nil {
		return err
	}
	return errors.Join(strict...)
}

// load decodes every document of the *.yaml files here into its typed
// object, by apiVersion and kind.
func load(t *testing.T) manifests {
	t.Helper()
	files, err := filepath.Glob("*.yaml")
	if err != nil || len(files) == 0 {
		t.Fatalf("no manifests here: %v", err)
	}
	var m manifests
	for _, f := range files {
		data, err := os.ReadFile(f)
		if err != nil {
			t.Fatal(err)
		}
		for i, doc := range docSep.Split(string(data), -1) {
			if strings.TrimSpace(stripComments(doc)) == "" {
				continue
			}
			var head struct {
				APIVersion string `json:"apiVersion"`
				Kind       string `json:"kind"`
			}
			if err := yaml.Unmarshal([]byte(doc), &head); err != nil {
				t.Fatalf("%s document %d: %v", f, i, err)
			}
			var dst any
			switch head.APIVersion + " " + head.Kind {
			case "v1 Namespace":
				dst = add(&m.namespaces)
			case "v1 ConfigMap":
				dst = add(&m.configMaps)
			case "v1 Service":
				dst = add(&m.services)
			case "v1 ServiceAccount":
				dst = add(&m.serviceAccounts)
			case "apps/v1 DaemonSet":
				dst = add(&m.daemonSets)
			case "apps/v1 Deployment":
				dst = add(&m.deployments)
			case "rbac.authorization.k8s.io/v1 ClusterRole":
				dst = add(&m.clusterRoles)
			case "rbac.authorization.k8s.io/v1 ClusterRoleBinding":
				dst = add(&m.bindings)
			default:
				t.Fatalf("%s document %d: %s %s is not a kind this test knows", f, i, head.APIVersion, head.Kind)
			}
			if err := decodeStrict([]byte(doc), dst); err != nil {
				t.Fatalf("%s document %d (%s): %v", f, i, head.Kind, err)
			}
		}
	}
	return m
}

// add appends a zero T to s and returns a pointer to it.
func add[T any](s *[]T) *T {
	*s = append(*s, *new(T))
	return &(*s)[len(*s)-1]
}

func stripComments(doc string) string {
	var b strings.Builder
	for _, l := range strings.Split(doc, "\n") {
		if !strings.HasPrefix(strings.TrimSpace(l), "#") {
			b.WriteString(l + "\n")
		}
	}
	return b.String()
}

// TestDecodeStrict: the decoder this test relies on refuses a misspelt field.
func TestDecodeStrict(t *testing.T) {
	for _, bad := range []string{
		"apiVersion: v1\nkind: Service\nmetadata:\n  name: x\nspec:\n  prots: []\n",
		"apiVersion: v1\nkind: Service\nmetadata:\n  name: x\nspec:\n  clusterIp: None\n", // clusterIP
		"apiVersion: v1\nkind: Service\nmetadata:\n  name: x\n  name: y\n",
	} {
		if err := decodeStrict([]byte(bad), &corev1.Service{}); err == nil {
			t.Errorf("decoded without error:\n%s", bad)
		}
	}
}

// collectorConfig is the part of a collector config the rules look at.
type collectorConfig struct {
	Receivers  map[string]map[string]any `json:"receivers"`
	Processors map[string]map[string]any `json:"processors"`
	Exporters  map[string]map[string]any `json:"exporters"`
	Extensions map[string]map[string]any `json:"extensions"`
}

func configOf(t *testing.T, cm corev1.ConfigMap) collectorConfig {
	t.Helper()
	var c collectorConfig
	if err := yaml.Unmarshal([]byte(cm.Data["config.yaml"]), &c); err != nil {
		t.Fatalf("ConfigMap %s config.yaml: %v", cm.Name, err)
	}
	return c
}

func byComponent(t *testing.T, m manifests, component string) corev1.ConfigMap {
	t.Helper()
	for _, cm := range m.configMaps {
		// The seccomp profile's ConfigMap has no config.yaml.
		if _, ok := cm.Data["config.yaml"]; ok && cm.Labels["app.kubernetes.io/component"] == component {
			return cm
		}
	}
	t.Fatalf("no ConfigMap labelled app.kubernetes.io/component=%s", component)
	return corev1.ConfigMap{}
}

// port returns the port of a host:port endpoint.
func port(t *testing.T, endpoint any) int {
	t.Helper()
	s, _ := endpoint.(string)
	_, p, err := net.SplitHostPort(s)
	if err != nil {
		t.Fatalf("endpoint %q: %v", s, err)
	}
	n, _ := strconv.Atoi(p)
	return n
}

func duration(t *testing.T, v any, def time.Duration) time.Duration {
	t.Helper()
	s, ok := v.(string)
	if !ok {
		return def
	}
	d, err := time.ParseDuration(s)
	if err != nil {
		t.Fatalf("duration %q: %v", s, err)
	}
	return d
}

// TestAgentDaemonSet checks the rules of the node agent's DaemonSet.
func TestAgentDaemonSet(t *testing.T) {
	m := load(t)
	if len(m.daemonSets) != 1 {
		t.Fatalf("%d DaemonSets, want the agent's", len(m.daemonSets))
	}
	ds := m.daemonSets[0]
	spec := ds.Spec.Template.Spec
	cfg := configOf(t, byComponent(t, m, "agent"))
	if !spec.HostPID {
		t.Error("hostPID: the kernel's records carry host pids, /proc must show them")
	}
	if !slices.ContainsFunc(spec.Tolerations, func(tl corev1.Toleration) bool {
		return tl.Operator == corev1.TolerationOpExists && tl.Key == "" && tl.Effect == ""
	}) {
		t.Error("tolerations: want one that tolerates every taint (operator: Exists, no key, no effect)")
	}
	tcp := cfg.Receivers["tcpconnect"]
	bound := duration(t, tcp["shutdown_timeout"], 5*time.Second)
	var exportTimeout time.Duration
	for _, e := range cfg.Exporters {
		exportTimeout = max(exportTimeout, duration(t, e["timeout"], 5*time.Second))
	}
	if g := spec.TerminationGracePeriodSeconds; g == nil || time.Duration(*g)*time.Second < bound+exportTimeout {
		t.Errorf("terminationGracePeriodSeconds %d: want at least shutdown_timeout %s + the exporters' timeout %s", g, bound, exportTimeout)
	}
	health := port(t, cfg.Extensions["health_check"]["endpoint"])
	hostCgroup := ""
	for _, v := range spec.Volumes {
		if v.HostPath != nil && v.HostPath.Path == "/sys/fs/cgroup" {
			hostCgroup = v.Name
		}
	}
	if hostCgroup == "" {
		t.Error("volumes: want a hostPath of /sys/fs/cgroup (the host's cgroup tree)")
	}
	if len(spec.Containers) != 1 {
		t.Fatalf("%d containers, want 1", len(spec.Containers))
	}
	c := spec.Containers[0]
	sc := c.SecurityContext
	if sc == nil || sc.Capabilities == nil {
		t.Fatal("securityContext.capabilities: want named capabilities")
	}
	if sc.Privileged != nil && *sc.Privileged {
		t.Error("privileged: true; want named capabilities only")
	}
	if !slices.Equal(sc.Capabilities.Drop, []corev1.Capability{"ALL"}) {
		t.Errorf("capabilities.drop = %v, want [ALL]", sc.Capabilities.Drop)
	}
	for _, cp := range sc.Capabilities.Add {
		if !slices.Contains(agentCapabilities, cp) {
			t.Errorf("capabilities.add has %s, beyond %v", cp, agentCapabilities)
		}
	}
	checkAgentSecurity(t, "agent DaemonSet", sc)
	if c.Resources.Requests.Cpu().IsZero() || c.Resources.Requests.Memory().IsZero() || c.Resources.Limits.Memory().IsZero() {
		t.Errorf("resources: want cpu and memory requests and a memory limit, got %+v", c.Resources)
	}
	ports := map[string]int32{}
	for _, p := range c.Ports {
		ports[p.Name] = p.ContainerPort
	}
	for name, probe := range map[string]*corev1.Probe{"readinessProbe": c.ReadinessProbe, "livenessProbe": c.LivenessProbe} {
		if probe == nil || probe.HTTPGet == nil {
			t.Errorf("%s: want an HTTP probe of health_check", name)
			continue
		}
		p := probe.HTTPGet.Port.IntVal
		if probe.HTTPGet.Port.StrVal != "" {
			p = ports[probe.HTTPGet.Port.StrVal]
		}
		if int(p) != health {
			t.Errorf("%s: port %v, want health_check's %d", name, probe.HTTPGet.Port.String(), health)
		}
	}
	mounted := false
	for _, vm := range c.VolumeMounts {
		if vm.Name == hostCgroup && vm.ReadOnly {
			mounted = true
		}
	}
	if !mounted {
		t.Error("the host cgroup volume is not mounted read-only")
	}
	// The agent exports to the gateway's Service.
	exp, ok := cfg.Exporters["otlp_grpc"]
	if !ok {
		t.Fatal("agent config: no otlp_grpc exporter")
	}
	want := ""
	for _, s := range m.services {
		for _, p := range s.Spec.Ports {
			want = fmt.Sprintf("%s.%s.svc:%d", s.Name, s.Namespace, p.Port)
		}
	}
	if exp["endpoint"] != want {
		t.Errorf("agent exports to %v, want the gateway Service %s", exp["endpoint"], want)
	}
}

// TestGateway checks the gateway: the upstream contrib image at the
// gateway distribution's version, its RBAC, and k8sattributes associating
// by k8s.pod.uid and container.id.
func TestGateway(t *testing.T) {
	m := load(t)
	if len(m.deployments) != 1 {
		t.Fatalf("%d Deployments, want the gateway's", len(m.deployments))
	}
	d := m.deployments[0]
	version := gatewayVersion(t)
	if img := d.Spec.Template.Spec.Containers[0].Image; img != "otel/opentelemetry-collector-contrib:"+version {
		t.Errorf("gateway image %s, want otel/opentelemetry-collector-contrib:%s (the version its config is validated at)", img, version)
	}
	sa := d.Spec.Template.Spec.ServiceAccountName
	bound := slices.ContainsFunc(m.bindings, func(b rbacv1.ClusterRoleBinding) bool {
		return slices.ContainsFunc(b.Subjects, func(s rbacv1.Subject) bool { return s.Kind == "ServiceAccount" && s.Name == sa })
	})
	if !bound {
		t.Errorf("service account %q is bound to no ClusterRole", sa)
	}
	cfg := configOf(t, byComponent(t, m, "gateway"))
	k8s, ok := cfg.Processors["k8sattributes"]
	if !ok {
		t.Fatal("gateway config: no k8sattributes processor")
	}
	assoc := fmt.Sprint(k8s["pod_association"])
	for _, key := range []string{"k8s.pod.uid", "container.id"} {
		if !strings.Contains(assoc, key) {
			t.Errorf("k8sattributes.pod_association does not use %s: %s", key, assoc)
		}
	}
	for _, s := range m.services {
		if !labelsMatch(s.Spec.Selector, d.Spec.Template.Labels) {
			t.Errorf("Service %s selects %v, not the gateway's pods %v", s.Name, s.Spec.Selector, d.Spec.Template.Labels)
		}
	}
}

func labelsMatch(sel, labels map[string]string) bool {
	for k, v := range sel {
		if labels[k] != v {
			return false
		}
	}
	return len(sel) > 0
}

// gatewayVersion is the collector version of the gateway distribution.
func gatewayVersion(t *testing.T) string {
	t.Helper()
	data, err := os.ReadFile("../gateway/builder-config.yaml")
	if err != nil {
		t.Fatal(err)
	}
	m := regexp.MustCompile(`otlpreceiver v(\S+)`).FindSubmatch(data)
	if m == nil {
		t.Fatal("../gateway/builder-config.yaml: no otlpreceiver version")
	}
	return string(m[1])
}

// distribution returns the absolute path of a built distribution.
func distribution(t *testing.T, env, def string) string {
	t.Helper()
	p := os.Getenv(env)
	if p == "" {
		p = def
	}
	abs, err := filepath.Abs(p)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := os.Stat(abs); err != nil {
		t.Fatalf("distribution %s (set %s; `make deploy-test` builds it): %v", abs, env, err)
	}
	return abs
}

// validate runs `bin validate` on config.
func validate(t *testing.T, bin, name, config string) {
	t.Helper()
	f := filepath.Join(t.TempDir(), "config.yaml")
	if err := os.WriteFile(f, []byte(config), 0o600); err != nil {
		t.Fatal(err)
	}
	out, err := exec.Command(bin, "validate", "--config="+f).CombinedOutput()
	if err != nil {
		t.Errorf("%s: %s validate: %v\n%s", name, filepath.Base(bin), err, out)
	}
}

// dropNulls removes the keys whose value is null, as Helm does when it
// merges values into the chart's defaults.
func dropNulls(v any) any {
	m, ok := v.(map[string]any)
	if !ok {
		return v
	}
	for k, x := range m {
		if x == nil {
			delete(m, k)
			continue
		}
		m[k] = dropNulls(x)
	}
	return m
}

// helmValues is the part of the Helm values that maps onto k8s.io/api
// types, decoded strictly; Config is the collector config.
type helmValues struct {
	Mode              string                      `json:"mode"`
	Config            map[string]any              `json:"config"`
	SecurityContext   *corev1.SecurityContext     `json:"securityContext"`
	Resources         corev1.ResourceRequirements `json:"resources"`
	Tolerations       []corev1.Toleration         `json:"tolerations"`
	ExtraVolumes      []corev1.Volume             `json:"extraVolumes"`
	ExtraVolumeMounts []corev1.VolumeMount        `json:"extraVolumeMounts"`
	ExtraEnvs         []corev1.EnvVar             `json:"extraEnvs"`
	InitContainers    []corev1.Container          `json:"initContainers"`
}

// TestValidateConfigs runs `validate` of the distribution that runs each
// embedded collector config: the agent's ConfigMap, the image's default and
// the agent's Helm values with otelcol-tcpconnect; the gateway's ConfigMap,
// Helm values and the example pipelines with the gateway distribution.
func TestValidateConfigs(t *testing.T) {
	agent := distribution(t, envAgent, defaultAgent)
	gateway := distribution(t, envGateway, defaultGateway)
	m := load(t)
	bins := map[string]string{"agent": agent, "gateway": gateway}
	for _, cm := range m.configMaps {
		if _, ok := cm.Data["config.yaml"]; !ok {
			continue // the seccomp profile's (TestAgentSeccompInstall)
		}
		comp := cm.Labels["app.kubernetes.io/component"]
		bin, ok := bins[comp]
		if !ok {
			t.Errorf("ConfigMap %s: label app.kubernetes.io/component %q names no distribution", cm.Name, comp)
			continue
		}
		validate(t, bin, "ConfigMap "+cm.Name, cm.Data["config.yaml"])
	}
	for _, f := range []struct{ path, bin string }{
		{"../image/config.yaml", agent},
		{"../gateway/examples.yaml", gateway},
	} {
		data, err := os.ReadFile(f.path)
		if err != nil {
			t.Fatal(err)
		}
		validate(t, f.bin, f.path, string(data))
	}
	for _, f := range []struct{ path, bin, mode string }{
		{"helm/agent-values.yaml", agent, "daemonset"},
		{"helm/gateway-values.yaml", gateway, "deployment"},
	} {
		data, err := os.ReadFile(f.path)
		if err != nil {
			t.Fatal(err)
		}
		var typed helmValues
		if err := yaml.Unmarshal(data, &typed); err != nil {
			t.Fatalf("%s: %v", f.path, err)
		}
		// The Kubernetes parts, strictly (the rest is the chart's own).
		for name, part := range map[string]any{"securityContext": typed.SecurityContext, "resources": typed.Resources,
			"tolerations": typed.Tolerations, "extraVolumes": typed.ExtraVolumes, "extraVolumeMounts": typed.ExtraVolumeMounts, "extraEnvs": typed.ExtraEnvs, "initContainers": typed.InitContainers} {
			if err := strictPart(data, name, part); err != nil {
				t.Errorf("%s: %s: %v", f.path, name, err)
			}
		}
		if typed.Mode != f.mode {
			t.Errorf("%s: mode %q, want %q", f.path, typed.Mode, f.mode)
		}
		cfg, err := yaml.Marshal(dropNulls(typed.Config))
		if err != nil {
			t.Fatal(err)
		}
		validate(t, f.bin, f.path+" config", string(cfg))
	}
	if sc := mustAgentValues(t).SecurityContext; sc == nil || sc.Capabilities == nil || !slices.Equal(sc.Capabilities.Add, agentCapabilities) {
		t.Errorf("helm/agent-values.yaml: capabilities.add want %v", agentCapabilities)
	} else {
		checkAgentSecurity(t, "helm/agent-values.yaml", sc)
	}
}

// seccompDir holds the seccomp profiles that the manifests name as
// Localhost profiles (installed under /var/lib/kubelet/seccomp/ on nodes).
const seccompDir = "seccomp"

// checkAgentSecurity checks the agent container's security context beyond
// its capabilities: the image's non-root user, and a Localhost seccomp
// profile shipped in seccompDir (the runtimes' default profiles refuse bpf()
// without CAP_SYS_ADMIN; Unconfined is more than the agent needs).
func checkAgentSecurity(t *testing.T, where string, sc *corev1.SecurityContext) {
	t.Helper()
	user := imageUser(t)
	if sc.RunAsNonRoot == nil || !*sc.RunAsNonRoot {
		t.Errorf("%s: runAsNonRoot: want true (the image's binary carries the capabilities)", where)
	}
	if sc.RunAsUser == nil {
		t.Errorf("%s: runAsUser unset, want the image's user %d", where, user)
	} else if *sc.RunAsUser != user {
		t.Errorf("%s: runAsUser %d, want the image's user %d", where, *sc.RunAsUser, user)
	}
	p := sc.SeccompProfile
	if p == nil || p.Type != corev1.SeccompProfileTypeLocalhost || p.LocalhostProfile == nil {
		t.Errorf("%s: seccompProfile %+v, want type Localhost naming a profile in %s/", where, p, seccompDir)
		return
	}
	if _, err := os.Stat(filepath.Join(seccompDir, *p.LocalhostProfile)); err != nil {
		t.Errorf("%s: seccompProfile names %s, not shipped here: %v", where, *p.LocalhostProfile, err)
	}
}

// imageUser returns the numeric user of the image's USER line.
func imageUser(t *testing.T) int64 {
	t.Helper()
	data, err := os.ReadFile("../image/Containerfile")
	if err != nil {
		t.Fatal(err)
	}
	m := regexp.MustCompile(`(?m)^USER (\d+)(:\d+)?$`).FindStringSubmatch(string(data))
	if m == nil {
		t.Fatal("../image/Containerfile: no numeric USER line")
	}
	u, _ := strconv.ParseInt(m[1], 10, 64)
	if u == 0 {
		t.Fatal("../image/Containerfile: USER is root")
	}
	return u
}

// seccompProfile is the part of a seccomp profile (the runtimes' JSON
// format, with conditional rules) this test reads.
type seccompProfile struct {
	DefaultAction string `json:"defaultAction"`
	Syscalls      []struct {
		Names    []string        `json:"names"`
		Action   string          `json:"action"`
		Args     []any           `json:"args"`
		Includes json.RawMessage `json:"includes"`
		Excludes json.RawMessage `json:"excludes"`
	} `json:"syscalls"`
}

// runtimeDefaultProfile is the runtime default the agent's profile is made
// from: containers-common's (podman, CRI-O), which Debian installs with
// podman.
const runtimeDefaultProfile = "/usr/share/containers/seccomp.json"

// bpfSyscalls are what the agent's profile adds to the runtime default:
// the eBPF maps and programs, and attach mode kprobe's perf event.
var bpfSyscalls = []string{"bpf", "perf_event_open"}

// TestSeccompProfile checks the agent's seccomp profile: it refuses by
// default, allows bpf and perf_event_open with no condition, and allows
// nothing else that the runtime default does not allow too.
func TestSeccompProfile(t *testing.T) {
	var agent, base seccompProfile
	readJSON(t, filepath.Join(seccompDir, "tcpconnect-agent.json"), &agent)
	readJSON(t, runtimeDefaultProfile, &base)
	if agent.DefaultAction == "SCMP_ACT_ALLOW" || agent.DefaultAction == "SCMP_ACT_LOG" || agent.DefaultAction != base.DefaultAction {
		t.Errorf("defaultAction %s, want the runtime default's %s", agent.DefaultAction, base.DefaultAction)
	}
	allowedBase := map[string]bool{}
	for _, r := range base.Syscalls {
		if r.Action == "SCMP_ACT_ALLOW" {
			for _, n := range r.Names {
				allowedBase[n] = true
			}
		}
	}
	unconditional := map[string]bool{}
	for _, r := range agent.Syscalls {
		if r.Action != "SCMP_ACT_ALLOW" {
			continue
		}
		cond := len(r.Args) > 0 || (len(r.Includes) > 0 && string(r.Includes) != "{}")
		for _, n := range r.Names {
			if !cond {
				unconditional[n] = true
			}
			if !allowedBase[n] && !slices.Contains(bpfSyscalls, n) {
				t.Errorf("the profile allows %s, which the runtime default does not", n)
			}
		}
	}
	for _, n := range bpfSyscalls {
		if !unconditional[n] {
			t.Errorf("the profile does not allow %s without a condition", n)
		}
	}
}

func readJSON(t *testing.T, path string, v any) {
	t.Helper()
	data, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	if err := json.Unmarshal(data, v); err != nil {
		t.Fatalf("%s: %v", path, err)
	}
}

func mustAgentValues(t *testing.T) helmValues {
	t.Helper()
	data, err := os.ReadFile("helm/agent-values.yaml")
	if err != nil {
		t.Fatal(err)
	}
	var v helmValues
	if err := yaml.Unmarshal(data, &v); err != nil {
		t.Fatal(err)
	}
	return v
}

// strictPart decodes the top-level key name of a values file strictly into
// a fresh value of part's type.
func strictPart(values []byte, name string, part any) error {
	var raw map[string]any
	if err := yaml.Unmarshal(values, &raw); err != nil {
		return err
	}
	v, ok := raw[name]
	if !ok {
		return nil
	}
	doc, err := yaml.Marshal(v)
	if err != nil {
		return err
	}
	switch part.(type) {
	case *corev1.SecurityContext:
		return decodeStrict(doc, &corev1.SecurityContext{})
	case corev1.ResourceRequirements:
		return decodeStrict(doc, &corev1.ResourceRequirements{})
	case []corev1.Toleration:
		return decodeStrict(doc, &[]corev1.Toleration{})
	case []corev1.Volume:
		return decodeStrict(doc, &[]corev1.Volume{})
	case []corev1.VolumeMount:
		return decodeStrict(doc, &[]corev1.VolumeMount{})
	case []corev1.EnvVar:
		return decodeStrict(doc, &[]corev1.EnvVar{})
	case []corev1.Container:
		return decodeStrict(doc, &[]corev1.Container{})
	}
	return fmt.Errorf("no type for %s", name)
}

// kubeletRoot is the kubelet's default --root-dir: the runtime reads a
// Localhost profile from <kubeletRoot>/seccomp/<localhostProfile> (the
// kubelet passes that path in CreateContainer).
const kubeletRoot = "/var/lib/kubelet"

// TestAgentSeccompInstall checks that the agent installs its own seccomp
// profile, in the DaemonSet and in the Helm values: the ConfigMap holds the
// committed profile byte for byte; one init container, running under the
// runtime default profile as root without any capability, not privileged,
// copies it with the image's /install-profile to exactly the path the agent
// container's Localhost profile names under the kubelet root, through a
// hostPath of that directory alone, mounted at the same path.
func TestAgentSeccompInstall(t *testing.T) {
	m := load(t)
	profile, err := os.ReadFile(filepath.Join(seccompDir, "tcpconnect-agent.json"))
	if err != nil {
		t.Fatal(err)
	}
	var cm *corev1.ConfigMap
	for i := range m.configMaps {
		if m.configMaps[i].Name == "tcpconnect-agent-seccomp" {
			cm = &m.configMaps[i]
		}
	}
	if cm == nil {
		t.Fatal("no ConfigMap tcpconnect-agent-seccomp")
	}
	if got := cm.Data["tcpconnect-agent.json"]; got != string(profile) {
		t.Errorf("ConfigMap %s: tcpconnect-agent.json differs from %s/tcpconnect-agent.json (make seccomp-configmap)", cm.Name, seccompDir)
	}
	containerfile, err := os.ReadFile("../image/Containerfile")
	if err != nil {
		t.Fatal(err)
	}
	if !regexp.MustCompile(`(?m)^COPY install-profile /install-profile$`).Match(containerfile) {
		t.Error("../image/Containerfile: no COPY install-profile /install-profile")
	}
	if len(m.daemonSets) != 1 {
		t.Fatalf("%d DaemonSets, want the agent's", len(m.daemonSets))
	}
	spec := m.daemonSets[0].Spec.Template.Spec
	checkSeccompInstall(t, "agent DaemonSet", spec.InitContainers, spec.Containers[0].SecurityContext, spec.Volumes, cm.Name, spec.Containers[0].Image)
	v := mustAgentValues(t)
	checkSeccompInstall(t, "helm/agent-values.yaml", v.InitContainers, v.SecurityContext, v.ExtraVolumes, cm.Name, "")

	// The chart installs the same ConfigMap (extraManifests).
	const helmSeccomp = "helm/agent-seccomp-values.yaml"
	data, err := os.ReadFile(helmSeccomp)
	if err != nil {
		t.Fatal(err)
	}
	var extra struct {
		ExtraManifests []corev1.ConfigMap `json:"extraManifests"`
	}
	if err := decodeStrict(data, &extra); err != nil {
		t.Fatalf("%s: %v", helmSeccomp, err)
	}
	if len(extra.ExtraManifests) != 1 {
		t.Fatalf("%s: %d extraManifests, want the seccomp profile's ConfigMap", helmSeccomp, len(extra.ExtraManifests))
	}
	hm := extra.ExtraManifests[0]
	if hm.Kind != "ConfigMap" || hm.APIVersion != "v1" || hm.Name != cm.Name || hm.Namespace != cm.Namespace {
		t.Errorf("%s: extraManifests[0] is %s %s %s/%s, want v1 ConfigMap %s/%s", helmSeccomp, hm.APIVersion, hm.Kind, hm.Namespace, hm.Name, cm.Namespace, cm.Name)
	}
	if !maps.Equal(hm.Data, map[string]string{"tcpconnect-agent.json": string(profile)}) {
		t.Errorf("%s: the ConfigMap's data is not exactly tcpconnect-agent.json = %s/tcpconnect-agent.json (make seccomp-configmap)", helmSeccomp, seccompDir)
	}
}

// checkSeccompInstall checks the init container that installs the agent's
// seccomp profile (TestAgentSeccompInstall); image, when set, is the agent
// container's, which the init container must share.
func checkSeccompInstall(t *testing.T, where string, inits []corev1.Container, agent *corev1.SecurityContext, volumes []corev1.Volume, configMap, image string) {
	t.Helper()
	if len(inits) != 1 {
		t.Errorf("%s: %d init containers, want the one that installs the seccomp profile", where, len(inits))
		return
	}
	c := inits[0]
	if agent == nil || agent.SeccompProfile == nil || agent.SeccompProfile.LocalhostProfile == nil {
		t.Errorf("%s: the agent container has no Localhost seccomp profile", where)
		return
	}
	want := kubeletRoot + "/seccomp/" + *agent.SeccompProfile.LocalhostProfile
	if image != "" && c.Image != image {
		t.Errorf("%s: init container image %s, want the agent's %s (it carries /install-profile)", where, c.Image, image)
	}
	cmd := append(append([]string{}, c.Command...), c.Args...)
	if len(cmd) != 3 || cmd[0] != "/install-profile" {
		t.Fatalf("%s: init container runs %q, want [/install-profile SRC DST]", where, cmd)
	}
	src, dst := cmd[1], cmd[2]
	if dst != want {
		t.Errorf("%s: init container writes %s, want %s (the agent's localhostProfile under the kubelet root)", where, dst, want)
	}
	vols := map[string]corev1.Volume{}
	for _, v := range volumes {
		vols[v.Name] = v
	}
	if len(c.VolumeMounts) != 2 {
		t.Errorf("%s: init container mounts %d volumes, want the profile's ConfigMap and the seccomp directory only", where, len(c.VolumeMounts))
	}
	var srcOK, dstOK bool
	for _, vm := range c.VolumeMounts {
		v, ok := vols[vm.Name]
		switch {
		case !ok:
			t.Errorf("%s: init container mounts %s, which is no volume", where, vm.Name)
		case v.ConfigMap != nil && v.ConfigMap.Name == configMap && vm.MountPath == filepath.Dir(src) && len(v.ConfigMap.Items) == 0:
			srcOK = vm.ReadOnly && filepath.Base(src) == *agent.SeccompProfile.LocalhostProfile
		case v.HostPath != nil && v.HostPath.Path == filepath.Dir(want) && vm.MountPath == filepath.Dir(want):
			dstOK = !vm.ReadOnly && vm.SubPath == "" &&
				v.HostPath.Type != nil && *v.HostPath.Type == corev1.HostPathDirectoryOrCreate
		default:
			t.Errorf("%s: init container mounts %s (%+v) at %s, beyond what it needs", where, vm.Name, v.VolumeSource, vm.MountPath)
		}
	}
	if !srcOK {
		t.Errorf("%s: init container: want ConfigMap %s mounted read-only at %s, holding %s", where, configMap, filepath.Dir(src), filepath.Base(src))
	}
	if !dstOK {
		t.Errorf("%s: init container: want a writable hostPath %s (DirectoryOrCreate) mounted at the same path", where, filepath.Dir(want))
	}
	sc := c.SecurityContext
	if sc == nil {
		t.Fatalf("%s: init container has no securityContext", where)
	}
	if sc.Privileged != nil && *sc.Privileged {
		t.Errorf("%s: init container privileged", where)
	}
	if sc.AllowPrivilegeEscalation == nil || *sc.AllowPrivilegeEscalation {
		t.Errorf("%s: init container: allowPrivilegeEscalation want false", where)
	}
	if sc.ReadOnlyRootFilesystem == nil || !*sc.ReadOnlyRootFilesystem {
		t.Errorf("%s: init container: readOnlyRootFilesystem want true", where)
	}
	if sc.Capabilities == nil || !slices.Equal(sc.Capabilities.Drop, []corev1.Capability{"ALL"}) || len(sc.Capabilities.Add) != 0 {
		t.Errorf("%s: init container capabilities %+v, want drop [ALL] and none added (root owns the directory)", where, sc.Capabilities)
	}
	if sc.RunAsUser == nil || *sc.RunAsUser != 0 {
		t.Errorf("%s: init container: runAsUser want 0 (the kubelet's seccomp directory is root's)", where)
	}
	if p := sc.SeccompProfile; p == nil || p.Type != corev1.SeccompProfileTypeRuntimeDefault {
		t.Errorf("%s: init container seccompProfile %+v, want RuntimeDefault (its own profile cannot be the one it installs)", where, p)
	}
	if c.Resources.Limits.Memory().IsZero() {
		t.Errorf("%s: init container: want a memory limit", where)
	}
}
