package e2e

import (
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"syscall"
	"testing"
	"time"

	"golang.org/x/sys/unix"

	"github.com/tcpconnect/tcpconnect/bpf"
	"github.com/tcpconnect/tcpconnect/internal/privtest"
)

// configNode is one node agent of the fleet test: the cgroup programs on
// its node's cgroup (its cgroup_path), OTLP out to the gateway. Arguments:
// cgroup path, gateway OTLP port, health check port.
const configNode = `
receivers:
  tcpconnect:
    attach: cgroup
    cgroup_path: %s
    dns:
      enabled: false
    poll_interval: 50ms
    batch:
      timeout: 100ms
exporters:
  otlp_grpc:
    endpoint: 127.0.0.1:%d
    tls:
      insecure: true
    # One sender keeps the batches in order: a node's later connect then
    # says that its earlier ones are all in the gateway's output.
    sending_queue:
      num_consumers: 1
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

// TestFleetAgentsToGateway: three node agents export over OTLP into one
// gateway collector, and every connect made on every node is in the
// gateway's output exactly once (counted, not sampled). A node is a cgroup
// below the root here: each agent attaches its programs to its node's
// cgroup, as a node's agent attaches to that node's root, and busybox nc
// processes started in each node's cgroup connect. The gateway stand-in is
// this distribution (OTLP in, file out: startGateway); the gateway
// distribution has no file exporter, and k8sattributes needs a cluster.
func TestFleetAgentsToGateway(t *testing.T) {
	bin := collectorBinary(t)
	privtest.Require(t)
	busybox := privtest.LookPath(t, "busybox", "busybox-static")
	root, err := bpf.FindCgroupRoot()
	if err != nil {
		t.Fatal(err)
	}
	defer root.Close()

	otlpPort, out := startGateway(t)
	const nodes, connectsPerNode = 3, 20
	type node struct {
		cgroupFD int
		port     int
		pids     map[int]bool
	}
	var fleet []*node
	for i := range nodes {
		dir := filepath.Join(root.Path, fmt.Sprintf("tcpconnect-e2e-node%d-%d", i, os.Getpid()))
		if err := os.Mkdir(dir, 0o755); err != nil {
			t.Fatalf("make node cgroup: %v", err)
		}
		t.Cleanup(func() { _ = os.Remove(dir) })
		fd, err := unix.Open(dir, unix.O_RDONLY|unix.O_DIRECTORY, 0)
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { unix.Close(fd) })
		ln, err := net.Listen("tcp4", "127.0.0.1:0")
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { ln.Close() })
		go func() {
			for {
				c, err := ln.Accept()
				if err != nil {
					return
				}
				c.Close()
			}
		}()
		health := freePort(t)
		a := startCollector(t, bin, fmt.Sprintf("node%d", i), fmt.Sprintf(configNode, dir, otlpPort, health))
		a.waitHealthy(t, health)
		fleet = append(fleet, &node{cgroupFD: fd, port: ln.Addr().(*net.TCPAddr).Port, pids: map[int]bool{}})
	}

	for _, n := range fleet {
		for range connectsPerNode {
			cmd := exec.Command(busybox, "nc", "127.0.0.1", strconv.Itoa(n.port))
			cmd.SysProcAttr = &syscall.SysProcAttr{UseCgroupFD: true, CgroupFD: n.cgroupFD}
			if out, err := cmd.CombinedOutput(); err != nil {
				t.Fatalf("busybox nc in a node cgroup: %v\n%s", err, out)
			}
			n.pids[cmd.Process.Pid] = true
		}
	}

	ports := make([]int, 0, nodes)
	for _, n := range fleet {
		ports = append(ports, n.port)
	}
	// Wait until every node's count is reached (or recordsTimeout), then
	// until every node's later connect (to marker) is in too: each agent
	// reads, batches and exports in order, so a duplicate of an earlier
	// connect would be in before it.
	counted := func() (map[int][]connectRecord, bool) {
		byPort := recordsTo(t, out, ports...)
		for _, n := range fleet {
			if len(byPort[n.port]) < connectsPerNode {
				return byPort, false
			}
		}
		return byPort, true
	}
	deadline := time.Now().Add(recordsTimeout)
	for _, ok := counted(); !ok && time.Now().Before(deadline); _, ok = counted() {
		time.Sleep(pollEvery)
	}
	marker, err := net.Listen("tcp4", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer marker.Close()
	go func() {
		for {
			c, err := marker.Accept()
			if err != nil {
				return
			}
			c.Close()
		}
	}()
	markerPort := marker.Addr().(*net.TCPAddr).Port
	markers := map[int64]bool{}
	for _, n := range fleet {
		cmd := exec.Command(busybox, "nc", "127.0.0.1", strconv.Itoa(markerPort))
		cmd.SysProcAttr = &syscall.SysProcAttr{UseCgroupFD: true, CgroupFD: n.cgroupFD}
		if out, err := cmd.CombinedOutput(); err != nil {
			t.Fatalf("busybox nc in a node cgroup: %v\n%s", err, out)
		}
		markers[int64(cmd.Process.Pid)] = true
	}
	for end := time.Now().Add(recordsTimeout); ; time.Sleep(pollEvery) {
		in := 0
		for _, r := range recordsTo(t, out, markerPort)[markerPort] {
			if pid, _ := r.resource["process.pid"].(int64); markers[pid] {
				in++
			}
		}
		if in == len(markers) {
			break
		}
		if time.Now().After(end) {
			t.Fatalf("%d of the %d nodes' later connects in the gateway's output after %s", in, len(markers), recordsTimeout)
		}
	}
	byPort, _ := counted()
	for i, n := range fleet {
		recs := byPort[n.port]
		seen := map[int]int{}
		for _, r := range recs {
			pid, _ := r.resource["process.pid"].(int64)
			seen[int(pid)]++
		}
		for pid := range n.pids {
			if seen[pid] != 1 {
				t.Errorf("node %d: the connect of pid %d is in the gateway's output %d times, want once", i, pid, seen[pid])
			}
		}
		if len(recs) != connectsPerNode {
			t.Errorf("node %d: %d records to its port %d, want exactly %d", i, len(recs), n.port, connectsPerNode)
		}
	}
}
