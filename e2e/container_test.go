package e2e

import (
	"archive/tar"
	"bytes"
	"compress/gzip"
	"context"
	"debug/elf"
	"encoding/binary"
	"encoding/json"
	"fmt"
	"io"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"golang.org/x/sys/unix"

	"github.com/tcpconnect/tcpconnect/internal/privtest"
)

// EnvImage names the node agent image under test (make container-test sets
// it to the image `make image` built into podman's storage).
const EnvImage = "TCPCONNECT_IMAGE"

// agentShutdownBound is how long the agent may take from SIGTERM to exit
// with its next hop down: the receiver's shutdown_timeout (5 s by default)
// and the rest of the collector's shutdown.
const agentShutdownBound = 8 * time.Second

// podmanBase are the flags every podman command needs on this kind of host:
// Debian's crun refuses its hybrid cgroup layout, and podman's default
// rlimits are refused (/work/shared/ENVIRONMENT.md).
var podmanBase = []string{"--runtime", "runc"}

var podmanLimits = []string{"--ulimit", "nofile=1024:1024", "--ulimit", "nproc=1024:1024"}

// agentUser is the image's non-root user, the DaemonSet's runAsUser.
const agentUser = "65532:65532"

// seccompProfile is the agent's seccomp profile (the DaemonSet's Localhost
// profile), relative to this package's folder.
const seccompProfile = "../deploy/kubernetes/seccomp/tcpconnect-agent.json"

// criRuntime is an OCI runtime wrapper that starts a container as
// Kubernetes' CRI runtimes (containerd, CRI-O) do: capabilities.add in the
// bounding, permitted and effective sets, none ambient or inheritable. So a
// non-root user keeps no capability across execve but those of the binary's
// file capabilities. (podman itself makes --cap-add ambient for a non-root
// --user, which would hide a missing file capability.)
const criRuntime = `#!/bin/sh
prev=
for a in "$@"; do
  if [ "$prev" = --bundle ] || [ "$prev" = -b ]; then
    sed -i -e 's/"ambient":\[[^]]*\]/"ambient":[]/' -e 's/"inheritable":\[[^]]*\]/"inheritable":[]/' "$a/config.json" || exit 1
  fi
  prev=$a
done
exec runc "$@"
`

// agentRun is how a test runs the agent container: the OCI runtime and the
// flags of podman run.
type agentRun struct {
	runtime string
	flags   []string
}

// daemonSet runs the agent as deploy/kubernetes/agent.yaml does, through
// the CRI-like runtime: the image's non-root user, no privilege escalation,
// the host's PID namespace (unless hostPID is false), its own cgroup and
// mount namespaces, the host's cgroup tree mounted read-only, only the
// named capabilities, and the agent's seccomp profile. The host network
// only lets the test reach the agent's health check and the gateway on
// loopback.
func daemonSet(t *testing.T, hostPID bool) agentRun {
	t.Helper()
	return daemonSetWith(t, hostPID, seccompProfile, "BPF,PERFMON,NET_ADMIN,SYS_PTRACE")
}

// daemonSetWith is daemonSet with another seccomp profile and capability
// list (empty: none added).
func daemonSetWith(t *testing.T, hostPID bool, profile, capAdd string) agentRun {
	t.Helper()
	rt := filepath.Join(t.TempDir(), "cri-runc")
	if err := os.WriteFile(rt, []byte(criRuntime), 0o755); err != nil {
		t.Fatal(err)
	}
	abs, err := filepath.Abs(profile)
	if err != nil {
		t.Fatal(err)
	}
	f := []string{"--user", agentUser, "--security-opt", "no-new-privileges",
		"--cgroupns=private", "--network=host", "--security-opt", "seccomp=" + abs,
		"--cap-drop=ALL", "-v", "/sys/fs/cgroup:/host/sys/fs/cgroup:ro"}
	if capAdd != "" {
		f = append(f, "--cap-add="+capAdd)
	}
	if hostPID {
		f = append(f, "--pid=host")
	}
	return agentRun{runtime: rt, flags: f}
}

// agentConfig is the agent's configuration in the container. Arguments:
// health check port, OTLP endpoint port, extra exporter settings.
const agentConfig = `
receivers:
  tcpconnect:
    poll_interval: 50ms
    batch:
      max_size: 256
      timeout: 100ms
exporters:
  otlp_grpc:
    endpoint: 127.0.0.1:%d
    tls:
      insecure: true
%s
extensions:
  health_check:
    endpoint: 127.0.0.1:%d
service:
  extensions: [health_check]
  pipelines:
    logs:
      receivers: [tcpconnect]
      exporters: [otlp_grpc]
  telemetry:
    metrics:
      level: none
`

// containerTools returns podman's path and the image under test, or skips
// (fails under TCPCONNECT_REQUIRE_PRIVILEGED=1) when either is missing.
func containerTools(t *testing.T) (string, string) {
	t.Helper()
	privtest.Require(t)
	podman := privtest.LookPath(t, "podman", "podman")
	img := os.Getenv(EnvImage)
	if img == "" {
		privtest.SkipOrFail(t, "container test: needs the image under test in "+EnvImage+" (make container-test builds it)")
	}
	if out, err := exec.Command(podman, "image", "exists", img).CombinedOutput(); err != nil {
		privtest.SkipOrFail(t, fmt.Sprintf("container test: image %s not in podman's storage (make image): %v %s", img, err, out))
	}
	return podman, img
}

// agent is the collector container, run in the foreground by `podman run`,
// which passes SIGTERM on to it.
type agent struct {
	*collector
	podman, name string
}

// agentArgs are podman's arguments that run img as run says with config
// mounted over the image's default config, in a container named name.
func agentArgs(t *testing.T, img string, run agentRun, config, name string) []string {
	t.Helper()
	dir := t.TempDir()
	if err := os.Chmod(dir, 0o755); err != nil { // the agent's non-root user reads it
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(dir, "config.yaml"), []byte(config), 0o644); err != nil {
		t.Fatal(err)
	}
	args := append(append(append([]string{"--runtime", run.runtime}, "run", "--rm", "--name", name), podmanLimits...), run.flags...)
	return append(args, "-v", dir+":/etc/otelcol-tcpconnect:ro", img)
}

// startAgent runs the image as run says with config and waits until its
// health check on 127.0.0.1:health answers.
func startAgent(t *testing.T, podman, img string, run agentRun, config string, health int) *agent {
	t.Helper()
	name := fmt.Sprintf("tcpconnect-test-agent-%d-%d", os.Getpid(), health)
	cmd := exec.Command(podman, agentArgs(t, img, run, config, name)...)
	c := &collector{name: "agent container", cmd: cmd, stderr: &syncBuffer{}, done: make(chan struct{})}
	cmd.Stdout, cmd.Stderr = c.stderr, c.stderr
	cmd.SysProcAttr = &syscall.SysProcAttr{Pdeathsig: syscall.SIGTERM}
	if err := cmd.Start(); err != nil {
		t.Fatalf("podman run: %v", err)
	}
	go func() { c.err = cmd.Wait(); close(c.done) }()
	a := &agent{collector: c, podman: podman, name: name}
	t.Cleanup(func() {
		c.stop(t)
		_ = exec.Command(podman, append(slicesClone(podmanBase), "rm", "-f", "-t", "0", name)...).Run()
		if t.Failed() {
			t.Logf("agent container output:\n%s", c.stderr.String())
		}
	})
	c.waitHealthy(t, health)
	return a
}

func slicesClone(s []string) []string { return append([]string(nil), s...) }

// busyboxImage builds (once per test) a scratch image holding Debian's
// busybox-static, the "other container" that connects.
func busyboxImage(t *testing.T, podman string) string {
	t.Helper()
	bb := privtest.LookPath(t, "busybox", "busybox-static")
	dir := t.TempDir()
	data, err := os.ReadFile(bb)
	if err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(dir, "busybox"), data, 0o755); err != nil {
		t.Fatal(err)
	}
	cf := "FROM scratch\nCOPY busybox /bin/busybox\nENTRYPOINT [\"/bin/busybox\"]\n"
	if err := os.WriteFile(filepath.Join(dir, "Containerfile"), []byte(cf), 0o644); err != nil {
		t.Fatal(err)
	}
	img := "localhost/tcpconnect-test-busybox:latest"
	if out, err := exec.Command(podman, append(slicesClone(podmanBase), "build", "-q", "-t", img, dir)...).CombinedOutput(); err != nil {
		t.Fatalf("build the busybox image: %v\n%s", err, out)
	}
	return img
}

// containerConnect runs busybox nc in a new container with its own network
// namespace: it listens on 127.0.0.1:port there, and a second nc connects
// to it and stays connected for two seconds (both hold their stdin open:
// a side whose stdin ends closes the connection), so that the agent reads
// the client's /proc entry while it lives. It returns the container's full id.
func containerConnect(t *testing.T, podman, img string, port int) string {
	p := strconv.Itoa(port)
	return runInContainer(t, podman, img, "sleep 3 | nc -l -p "+p+" >/dev/null & sleep 0.3; sleep 2 | nc 127.0.0.1 "+p+"; exit 0")
}

// containerConnectShort runs a container whose nc connects to 127.0.0.1:port
// (refused) and exits at once; the container lives a second longer. The
// agent reads the record after the process is gone: the container comes
// from the kernel's cgroup id. It returns the container's full id.
func containerConnectShort(t *testing.T, podman, img string, port int) string {
	return runInContainer(t, podman, img, "nc 127.0.0.1 "+strconv.Itoa(port)+"; sleep 1; exit 0")
}

// runInContainer runs script with busybox sh in a new container with its
// own network namespace and returns the container's full id.
func runInContainer(t *testing.T, podman, img, script string) string {
	t.Helper()
	cidFile := filepath.Join(t.TempDir(), "cid")
	args := append(append(slicesClone(podmanBase), "run", "--rm", "--network=none", "--cidfile", cidFile), podmanLimits...)
	args = append(args, img, "sh", "-c", script)
	out, err := exec.Command(podman, args...).CombinedOutput()
	if err != nil {
		t.Fatalf("busybox nc in a container: %v\n%s", err, out)
	}
	id, err := os.ReadFile(cidFile)
	if err != nil {
		t.Fatalf("container id: %v", err)
	}
	cid := strings.TrimSpace(string(id))
	if !regexp.MustCompile(`^[0-9a-f]{64}$`).MatchString(cid) {
		t.Fatalf("container id %q is not 64 hex digits", cid)
	}
	return cid
}

// dialRefused connects from this (host) process to 127.0.0.1 on a port
// where nothing listens.
func dialRefused(t *testing.T) int {
	t.Helper()
	port := freePort(t)
	if c, err := net.DialTimeout("tcp4", "127.0.0.1:"+strconv.Itoa(port), time.Second); err == nil {
		c.Close()
	}
	return port
}

// recordsTo polls the gateway's file until a record to each port is there
// (or recordsTimeout passes) and returns every record by destination port.
func recordsTo(t *testing.T, file string, ports ...int) map[int][]connectRecord {
	t.Helper()
	deadline := time.Now().Add(recordsTimeout)
	for {
		records, err := readRecords(file)
		if err != nil {
			t.Fatal(err)
		}
		byPort := make(map[int][]connectRecord)
		for _, r := range records {
			if r.eventName != eventName {
				continue
			}
			p, _ := r.attrs["network.peer.port"].(int64)
			byPort[int(p)] = append(byPort[int(p)], r)
		}
		all := true
		for _, p := range ports {
			all = all && len(byPort[p]) > 0
		}
		if all || time.Now().After(deadline) {
			return byPort
		}
		time.Sleep(pollEvery)
	}
}

// startGateway runs the distribution on the host as the gateway stand-in:
// OTLP in, file out. It returns the OTLP port and the file.
func startGateway(t *testing.T) (int, string) {
	t.Helper()
	bin := collectorBinary(t)
	out := filepath.Join(t.TempDir(), "gateway.jsonl")
	otlpPort, health := freePort(t), freePort(t)
	g := startCollector(t, bin, "gateway", fmt.Sprintf(configB, otlpPort, out, health))
	g.waitHealthy(t, health)
	return otlpPort, out
}

// TestContainerDaemonSet runs the image as the DaemonSet does and checks
// that another container's connect carries that container's full id, a host
// process's connect is recorded with its host pid, and the agent's own OTLP
// export to the gateway is not recorded.
func TestContainerDaemonSet(t *testing.T) {
	podman, img := containerTools(t)
	bb := busyboxImage(t, podman)
	otlpPort, out := startGateway(t)
	health := freePort(t)
	a := startAgent(t, podman, img, daemonSet(t, true), fmt.Sprintf(agentConfig, otlpPort, "", health), health)

	checkAgentCreds(t, podman, a.name)

	ctrPort, shortPort := freePort(t), freePort(t)
	cid := containerConnect(t, podman, bb, ctrPort)
	shortCID := containerConnectShort(t, podman, bb, shortPort)
	hostPort := dialRefused(t)
	byPort := recordsTo(t, out, ctrPort, shortPort, hostPort)

	if len(byPort[shortPort]) == 0 {
		t.Errorf("no record of the short-lived container's connect to port %d", shortPort)
	}
	for _, r := range byPort[shortPort] {
		if got := r.resource["container.id"]; got != shortCID {
			t.Errorf("short-lived container: container.id = %v, want %s (resource %v)", got, shortCID, r.resource)
		}
	}

	if len(byPort[ctrPort]) == 0 {
		t.Errorf("no record of the busybox container's connect to port %d", ctrPort)
	}
	for _, r := range byPort[ctrPort] {
		if got := r.resource["container.id"]; got != cid {
			t.Errorf("container connect: container.id = %v, want %s (resource %v)", got, cid, r.resource)
		}
		if got := r.resource["process.executable.name"]; got != "busybox" {
			t.Errorf("container connect: process.executable.name = %v, want busybox", got)
		}
		if got := r.resource["process.executable.path"]; got != "/bin/busybox" {
			t.Errorf("container connect: process.executable.path = %v, want /bin/busybox (the host's /proc/PID/exe)", got)
		}
	}
	if len(byPort[hostPort]) == 0 {
		t.Errorf("no record of this host process's connect to port %d", hostPort)
	}
	for _, r := range byPort[hostPort] {
		if pid, _ := r.resource["process.pid"].(int64); int(pid) != os.Getpid() {
			t.Errorf("host connect: process.pid = %d, want %d", pid, os.Getpid())
		}
		if _, ok := r.resource["container.id"]; ok {
			t.Errorf("host connect: container.id = %v, want none", r.resource["container.id"])
		}
		if got := r.resource["process.executable.path"]; got != mustExecutable(t) {
			t.Errorf("host connect: process.executable.path = %v, want %s (read from the host's /proc)", got, mustExecutable(t))
		}
	}
	if n := len(byPort[otlpPort]); n != 0 {
		t.Errorf("%d records of connects to the gateway's OTLP port %d: the agent's own export must be left out (exclude_self)", n, otlpPort)
	}
	a.stop(t)
}

func mustExecutable(t *testing.T) string {
	t.Helper()
	p, err := os.Executable()
	if err != nil {
		t.Fatal(err)
	}
	return p
}

// TestContainerNoHostPID runs the image in its own PID namespace without the
// host's /proc: it starts, says in its log that /proc is not read, still
// leaves its own export out (the kernel's tgid from the attach proof), and
// attributes a host connect by the kernel's pid and executable name, with no
// path from a /proc that would describe another process.
func TestContainerNoHostPID(t *testing.T) {
	podman, img := containerTools(t)
	otlpPort, out := startGateway(t)
	health := freePort(t)
	a := startAgent(t, podman, img, daemonSet(t, false), fmt.Sprintf(agentConfig, otlpPort, "", health), health)
	// podman relays the container's output on its own time: poll for it.
	const msg = "proc_path does not show the host's PID namespace"
	for end := time.Now().Add(recordsTimeout); !strings.Contains(a.stderr.String(), msg) && time.Now().Before(end); {
		time.Sleep(pollEvery)
	}
	if !strings.Contains(a.stderr.String(), msg) {
		t.Errorf("agent log does not say that its /proc is not the host's:\n%s", a.stderr.String())
	}
	hostPort := dialRefused(t)
	byPort := recordsTo(t, out, hostPort)
	if len(byPort[hostPort]) == 0 {
		t.Fatalf("no record of this host process's connect to port %d", hostPort)
	}
	for _, r := range byPort[hostPort] {
		if pid, _ := r.resource["process.pid"].(int64); int(pid) != os.Getpid() {
			t.Errorf("process.pid = %d, want the host pid %d", pid, os.Getpid())
		}
		if got := r.resource["process.executable.name"]; got != filepath.Base(mustExecutable(t)) {
			t.Errorf("process.executable.name = %v, want %s (from the kernel)", got, filepath.Base(mustExecutable(t)))
		}
		if p, ok := r.resource["process.executable.path"]; ok {
			t.Errorf("process.executable.path = %v: read from a /proc of another PID namespace", p)
		}
	}
	if n := len(byPort[otlpPort]); n != 0 {
		t.Errorf("%d records of the agent's own export to port %d", n, otlpPort)
	}
}

// TestContainerShutdownNextHopDown: the agent's next hop refuses (nothing
// listens on its OTLP port; no exporter queue, so the receiver sees the
// refusals and retries them for up to 5 minutes). SIGTERM to `podman run`
// must end the agent within agentShutdownBound, and the log must count the
// records it dropped.
func TestContainerShutdownNextHopDown(t *testing.T) {
	podman, img := containerTools(t)
	health := freePort(t)
	down := freePort(t) // nothing listens here
	exporter := "    sending_queue:\n      enabled: false\n    retry_on_failure:\n      enabled: false\n    timeout: 1s"
	a := startAgent(t, podman, img, daemonSet(t, true), fmt.Sprintf(agentConfig, down, exporter, health), health)
	for range 5 {
		dialRefused(t)
	}
	// Wait until a batch was refused: the receiver is now retrying.
	deadline := time.Now().Add(recordsTimeout)
	for !strings.Contains(a.stderr.String(), "connection refused") && time.Now().Before(deadline) {
		time.Sleep(pollEvery)
	}
	t.Logf("the next hop refused a batch: %t", strings.Contains(a.stderr.String(), "connection refused"))
	start := time.Now()
	if err := a.cmd.Process.Signal(syscall.SIGTERM); err != nil {
		t.Fatal(err)
	}
	select {
	case <-a.done:
	case <-time.After(agentShutdownBound + 5*time.Second):
		t.Fatalf("agent still running %s after SIGTERM", agentShutdownBound+5*time.Second)
	}
	d := time.Since(start)
	t.Logf("SIGTERM to exit: %s", d)
	if d > agentShutdownBound {
		t.Errorf("agent took %s to stop after SIGTERM, want at most %s", d, agentShutdownBound)
	}
	log := a.stderr.String()
	m := regexp.MustCompile(`Dropped log records: the next consumer refused them.*"records": (\d+).*"shutting_down": true`).FindStringSubmatch(log)
	if m == nil {
		t.Fatalf("no count of the records dropped at shutdown in the agent's log:\n%s", log)
	}
	if n, _ := strconv.Atoi(m[1]); n < 1 {
		t.Errorf("dropped %d records at shutdown, want at least the 5 connects' batch", n)
	}
}

// checkAgentCreds checks, in the host's /proc, that the agent's collector
// runs as the image's non-root user with the named capabilities effective
// and none ambient: they came from the binary's file capabilities.
func checkAgentCreds(t *testing.T, podman, name string) {
	t.Helper()
	out, err := exec.Command(podman, append(slicesClone(podmanBase), "inspect", "--format", "{{.State.Pid}}", name)...).CombinedOutput()
	if err != nil {
		t.Fatalf("podman inspect %s: %v\n%s", name, err, out)
	}
	status, err := os.ReadFile(filepath.Join("/proc", strings.TrimSpace(string(out)), "status"))
	if err != nil {
		t.Fatal(err)
	}
	want := map[string]string{
		"Uid":    "65532\t65532\t65532\t65532",
		"CapEff": fmt.Sprintf("%016x", 1<<39|1<<38|1<<12|1<<19), // BPF, PERFMON, NET_ADMIN, SYS_PTRACE
		"CapAmb": "0000000000000000",
	}
	for _, line := range strings.Split(string(status), "\n") {
		k, v, ok := strings.Cut(line, ":")
		if w, check := want[k]; ok && check {
			if got := strings.TrimSpace(v); got != w {
				t.Errorf("agent's %s = %q, want %q", k, got, w)
			}
			delete(want, k)
		}
	}
	for k := range want {
		t.Errorf("agent's /proc status has no %s", k)
	}
}

// TestContainerStartRefused: the agent refuses to start, naming the cause,
// where it cannot work; this is what makes the DaemonSet test's start under
// the seccomp profile and as a non-root user mean something.
func TestContainerStartRefused(t *testing.T) {
	podman, img := containerTools(t)
	noBPF := filepath.Join(t.TempDir(), "no-bpf.json")
	writeProfileWithout(t, seccompProfile, noBPF, "bpf")
	// podman's own default profile, as the runtimes' defaults, allows bpf()
	// only with CAP_SYS_ADMIN.
	const runtimeDefault = "/usr/share/containers/seccomp.json"
	tests := []struct {
		name    string
		profile string
		capAdd  string
		want    string
	}{
		{"the agent's seccomp profile without bpf", noBPF, "BPF,PERFMON,NET_ADMIN,SYS_PTRACE",
			"the bpf() system call is refused (creating map: map create: function not implemented): a seccomp profile"},
		{"the runtime's default seccomp profile", runtimeDefault, "BPF,PERFMON,NET_ADMIN,SYS_PTRACE",
			"or a seccomp profile refuses bpf() with EPERM"},
		{"non-root without the capabilities", seccompProfile, "",
			"missing capabilities: CAP_BPF missing"},
	}
	for i, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if _, err := os.Stat(tt.profile); err != nil {
				t.Fatalf("seccomp profile: %v", err)
			}
			health := freePort(t)
			config := fmt.Sprintf(agentConfig, freePort(t), "", health)
			name := fmt.Sprintf("tcpconnect-test-refused-%d-%d", os.Getpid(), i)
			ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
			defer cancel()
			out, err := exec.CommandContext(ctx, podman, agentArgs(t, img, daemonSetWith(t, true, tt.profile, tt.capAdd), config, name)...).CombinedOutput()
			_ = exec.Command(podman, append(slicesClone(podmanBase), "rm", "-f", "-t", "0", name)...).Run()
			if err == nil || ctx.Err() != nil {
				t.Fatalf("agent did not refuse to start (err %v, timeout %v):\n%s", err, ctx.Err(), out)
			}
			if !strings.Contains(string(out), tt.want) {
				t.Errorf("agent's output does not say %q:\n%s", tt.want, out)
			}
		})
	}
}

// writeProfileWithout writes the seccomp profile src to dst with the named
// system calls taken out of every rule.
func writeProfileWithout(t *testing.T, src, dst string, drop ...string) {
	t.Helper()
	data, err := os.ReadFile(src)
	if err != nil {
		t.Fatal(err)
	}
	var profile map[string]any
	if err := json.Unmarshal(data, &profile); err != nil {
		t.Fatalf("%s: %v", src, err)
	}
	rules, _ := profile["syscalls"].([]any)
	var kept []any
	removed := 0
	for _, r := range rules {
		rule, _ := r.(map[string]any)
		names, _ := rule["names"].([]any)
		var left []any
		for _, n := range names {
			if slices.Contains(drop, n.(string)) {
				removed++
				continue
			}
			left = append(left, n)
		}
		if len(left) > 0 {
			rule["names"] = left
			kept = append(kept, rule)
		}
	}
	if removed == 0 {
		t.Fatalf("%s allows none of %v", src, drop)
	}
	profile["syscalls"] = kept
	out, err := json.Marshal(profile)
	if err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(dst, out, 0o644); err != nil {
		t.Fatal(err)
	}
}

// EnvImageArchive names the OCI archive of the image's manifest list that
// make image writes (make container-test sets it).
const EnvImageArchive = "TCPCONNECT_IMAGE_ARCHIVE"

// imageFileCaps are the file capabilities of the image's binary (make
// image's IMAGE_FILE_CAPS), permitted only.
const imageFileCaps = 1<<unix.CAP_BPF | 1<<unix.CAP_PERFMON | 1<<unix.CAP_NET_ADMIN |
	1<<unix.CAP_SYS_PTRACE | 1<<unix.CAP_SYS_ADMIN | 1<<unix.CAP_SYS_RESOURCE

// TestContainerImageManifest reads the image's OCI archive: one manifest
// list with a linux/amd64 and a linux/arm64 image, each image's config
// naming its platform and the non-root user, and each one's collector an
// ELF binary for that machine with the file capabilities, permitted only.
func TestContainerImageManifest(t *testing.T) {
	path := os.Getenv(EnvImageArchive)
	if path == "" {
		privtest.SkipOrFail(t, "image manifest test: needs the image's OCI archive in "+EnvImageArchive+" (make container-test)")
	}
	blobs, index := readOCIArchive(t, path)
	var top ociIndex
	mustJSON(t, index, &top)
	if len(top.Manifests) != 1 || top.Manifests[0].MediaType != "application/vnd.oci.image.index.v1+json" {
		t.Fatalf("index.json: %+v, want one image index (the manifest list)", top.Manifests)
	}
	var list ociIndex
	mustJSON(t, blob(t, blobs, top.Manifests[0].Digest), &list)
	want := map[string]elf.Machine{"amd64": elf.EM_X86_64, "arm64": elf.EM_AARCH64}
	for _, m := range list.Manifests {
		arch := m.Platform.Architecture
		machine, ok := want[arch]
		if !ok || m.Platform.OS != "linux" {
			t.Errorf("manifest list has %s/%s, want only linux/amd64 and linux/arm64", m.Platform.OS, arch)
			continue
		}
		delete(want, arch)
		var manifest struct {
			Config ociDescriptor   `json:"config"`
			Layers []ociDescriptor `json:"layers"`
		}
		mustJSON(t, blob(t, blobs, m.Digest), &manifest)
		var config struct {
			Architecture string `json:"architecture"`
			OS           string `json:"os"`
			Config       struct {
				User   string            `json:"User"`
				Labels map[string]string `json:"Labels"`
			} `json:"config"`
		}
		mustJSON(t, blob(t, blobs, manifest.Config.Digest), &config)
		if config.Architecture != arch || config.OS != "linux" {
			t.Errorf("%s image: config says %s/%s", arch, config.OS, config.Architecture)
		}
		if config.Config.User != agentUser {
			t.Errorf("%s image: user %q, want %s", arch, config.Config.User, agentUser)
		}
		for _, l := range []string{"org.opencontainers.image.version", "org.opencontainers.image.revision", "org.opencontainers.image.source"} {
			if config.Config.Labels[l] == "" {
				t.Errorf("%s image: no label %s", arch, l)
			}
		}
		found := false
		for _, l := range manifest.Layers {
			hdr, head := findInLayer(t, blob(t, blobs, l.Digest), "otelcol-tcpconnect")
			if hdr == nil {
				continue
			}
			found = true
			if len(head) < 20 || string(head[:4]) != elf.ELFMAG {
				t.Errorf("%s image: /otelcol-tcpconnect is not an ELF file", arch)
				continue
			}
			if got := elf.Machine(binary.LittleEndian.Uint16(head[18:20])); got != machine {
				t.Errorf("%s image: /otelcol-tcpconnect is for %v, want %v", arch, got, machine)
			}
			perm, effective, err := decodeFileCaps(hdr.PAXRecords["SCHILY.xattr.security.capability"])
			if err != nil {
				t.Errorf("%s image: /otelcol-tcpconnect file capabilities: %v", arch, err)
				continue
			}
			if perm != imageFileCaps || effective {
				t.Errorf("%s image: file capabilities permitted %#x effective %t, want %#x permitted only", arch, perm, effective, uint64(imageFileCaps))
			}
		}
		if !found {
			t.Errorf("%s image: no /otelcol-tcpconnect in its layers", arch)
		}
	}
	for arch := range want {
		t.Errorf("manifest list has no linux/%s image", arch)
	}
}

type ociDescriptor struct {
	MediaType string `json:"mediaType"`
	Digest    string `json:"digest"`
	Platform  struct {
		Architecture string `json:"architecture"`
		OS           string `json:"os"`
	} `json:"platform"`
}

type ociIndex struct {
	Manifests []ociDescriptor `json:"manifests"`
}

// readOCIArchive returns an OCI archive's blobs by digest and its
// index.json.
func readOCIArchive(t *testing.T, path string) (map[string][]byte, []byte) {
	t.Helper()
	f, err := os.Open(path)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	blobs := map[string][]byte{}
	var index []byte
	tr := tar.NewReader(f)
	for {
		hdr, err := tr.Next()
		if err == io.EOF {
			break
		}
		if err != nil {
			t.Fatalf("%s: %v", path, err)
		}
		data, err := io.ReadAll(tr)
		if err != nil {
			t.Fatalf("%s: %s: %v", path, hdr.Name, err)
		}
		name := strings.TrimPrefix(hdr.Name, "./")
		switch {
		case name == "index.json":
			index = data
		case strings.HasPrefix(name, "blobs/sha256/"):
			blobs["sha256:"+strings.TrimPrefix(name, "blobs/sha256/")] = data
		}
	}
	if index == nil {
		t.Fatalf("%s: no index.json", path)
	}
	return blobs, index
}

func blob(t *testing.T, blobs map[string][]byte, digest string) []byte {
	t.Helper()
	b, ok := blobs[digest]
	if !ok {
		t.Fatalf("no blob %s in the archive", digest)
	}
	return b
}

func mustJSON(t *testing.T, data []byte, v any) {
	t.Helper()
	if err := json.Unmarshal(data, v); err != nil {
		t.Fatalf("decode %.100s: %v", data, err)
	}
}

// findInLayer returns the tar header and first 64 bytes of the file name
// in a (gzip-compressed or plain) layer, or nil when it has none.
func findInLayer(t *testing.T, layer []byte, name string) (*tar.Header, []byte) {
	t.Helper()
	var r io.Reader = bytes.NewReader(layer)
	if len(layer) > 2 && layer[0] == 0x1f && layer[1] == 0x8b {
		zr, err := gzip.NewReader(r)
		if err != nil {
			t.Fatalf("layer: %v", err)
		}
		r = zr
	}
	tr := tar.NewReader(r)
	for {
		hdr, err := tr.Next()
		if err == io.EOF {
			return nil, nil
		}
		if err != nil {
			t.Fatalf("layer: %v", err)
		}
		if strings.TrimPrefix(strings.TrimPrefix(hdr.Name, "./"), "/") == name {
			head := make([]byte, 64)
			n, _ := io.ReadFull(tr, head)
			return hdr, head[:n]
		}
	}
}

// decodeFileCaps decodes a security.capability xattr (struct
// vfs_cap_data, revision 2 or 3): the permitted set and the effective flag.
func decodeFileCaps(x string) (uint64, bool, error) {
	b := []byte(x)
	if len(b) < 20 {
		return 0, false, fmt.Errorf("xattr of %d bytes (absent?)", len(b))
	}
	magic := binary.LittleEndian.Uint32(b[0:4])
	if rev := magic & 0xff000000; rev != 0x02000000 && rev != 0x03000000 {
		return 0, false, fmt.Errorf("revision %#x", rev)
	}
	perm := uint64(binary.LittleEndian.Uint32(b[4:8])) | uint64(binary.LittleEndian.Uint32(b[12:16]))<<32
	return perm, magic&1 != 0, nil
}
