package e2e

import (
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

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

// daemonSetFlags run the agent as deploy/kubernetes/agent.yaml does: the
// host's PID namespace, its own cgroup and mount namespaces, the host's
// cgroup tree mounted read-only, only the named capabilities, and no
// seccomp filter (the runtime's default allows bpf() only with
// CAP_SYS_ADMIN). The host network only lets the test reach the agent's
// health check and the gateway on loopback.
func daemonSetFlags(hostPID bool) []string {
	f := []string{"--cgroupns=private", "--network=host", "--security-opt", "seccomp=unconfined",
		"--cap-drop=ALL", "--cap-add=BPF,PERFMON,NET_ADMIN,SYS_PTRACE",
		"-v", "/sys/fs/cgroup:/host/sys/fs/cgroup:ro"}
	if hostPID {
		f = append(f, "--pid=host")
	}
	return f
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

// startAgent runs the image with flags and config (mounted over the image's
// default config) and waits until its health check on 127.0.0.1:health
// answers.
func startAgent(t *testing.T, podman, img string, flags []string, config string, health int) *agent {
	t.Helper()
	dir := t.TempDir()
	if err := os.WriteFile(filepath.Join(dir, "config.yaml"), []byte(config), 0o644); err != nil {
		t.Fatal(err)
	}
	name := fmt.Sprintf("tcpconnect-test-agent-%d-%d", os.Getpid(), health)
	args := append(append(append(slicesClone(podmanBase), "run", "--rm", "--name", name), podmanLimits...), flags...)
	args = append(args, "-v", dir+":/etc/otelcol-tcpconnect:ro", img)
	cmd := exec.Command(podman, args...)
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
	a := startAgent(t, podman, img, daemonSetFlags(true), fmt.Sprintf(agentConfig, otlpPort, "", health), health)

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
	a := startAgent(t, podman, img, daemonSetFlags(false), fmt.Sprintf(agentConfig, otlpPort, "", health), health)
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
	a := startAgent(t, podman, img, daemonSetFlags(true), fmt.Sprintf(agentConfig, down, exporter, health), health)
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
