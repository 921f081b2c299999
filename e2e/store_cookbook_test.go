package e2e

import (
	"bufio"
	"crypto/rand"
	"encoding/hex"
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"golang.org/x/sys/unix"

	"github.com/tcpconnect/tcpconnect/bpf"
	"github.com/tcpconnect/tcpconnect/internal/privtest"
)

// cookbookFile is the cookbook whose every query the store test runs.
const cookbookFile = "../docs/cookbook-victorialogs.md"

// The store test's addresses: a part of 127.0.0.0/8 of its own, so that
// extra_filters keeps the connects of every other process out of each
// answer (the collector records the whole host). Its DNS server, the
// named destinations (refusedIP has no listener) and two bare IPs.
const (
	storeNet      = "127.77.0.0/16"
	storeResolver = "127.77.0.53"
	apiIP         = "127.77.1.1"
	refusedIP     = "127.77.1.2"
	cdnIP         = "127.77.1.3"
	oldIP         = "127.77.1.4"
	bareIP        = "127.77.2.1"
	bareClosedIP  = "127.77.2.2"
)

// storeConnect is one client run of the store test and the entry it must
// leave in VictoriaLogs.
type storeConnect struct {
	inPod   bool     // run in the pod's container cgroup
	client  string   // "curl" or "busybox"
	args    []string // the client's arguments
	refused bool     // the client fails: connection refused
	msg     string   // _msg: the DNS name, or the IP when none
	peer    string   // network.peer.address
	named   bool     // tcpconnect.dns.names present
}

// cookbookQuery is one query of the cookbook, under its heading.
type cookbookQuery struct {
	heading, query string
}

// readCookbook returns the ```logsql blocks of the cookbook, one query per
// "### " heading (a second block under one heading fails the test).
func readCookbook(t *testing.T) []cookbookQuery {
	t.Helper()
	f, err := os.Open(cookbookFile)
	if err != nil {
		t.Fatalf("cookbook: %v", err)
	}
	defer f.Close()
	var out []cookbookQuery
	var heading string
	var block []string
	in := false
	s := bufio.NewScanner(f)
	for s.Scan() {
		line := s.Text()
		switch {
		case in && line == "```":
			in = false
			if heading == "" || (len(out) > 0 && out[len(out)-1].heading == heading) {
				t.Fatalf("cookbook: a logsql block needs a ### heading of its own (after %q)", heading)
			}
			out = append(out, cookbookQuery{heading: heading, query: strings.Join(block, " ")})
		case in:
			block = append(block, strings.TrimSpace(line))
		case line == "```logsql":
			in, block = true, nil
		case strings.HasPrefix(line, "### "):
			heading = strings.TrimPrefix(line, "### ")
		}
	}
	if err := s.Err(); err != nil {
		t.Fatalf("cookbook: %v", err)
	}
	if len(out) == 0 {
		t.Fatalf("cookbook %s: no logsql blocks", cookbookFile)
	}
	return out
}

// podCgroup makes a cgroup named as the kubelet's cgroupfs driver names a
// pod's container (.../kubepods/besteffort/pod<UID>/<container id>) below
// the cgroup v2 root, and returns its descriptor (for CLONE_INTO_CGROUP),
// the pod UID and the container id.
func podCgroup(t *testing.T) (fd int, podUID, containerID string) {
	t.Helper()
	root, err := bpf.FindCgroupRoot()
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { root.Close() })
	r := make([]byte, 48)
	if _, err := rand.Read(r); err != nil {
		t.Fatal(err)
	}
	u := hex.EncodeToString(r[:16])
	podUID = u[:8] + "-" + u[8:12] + "-" + u[12:16] + "-" + u[16:20] + "-" + u[20:]
	containerID = hex.EncodeToString(r[16:])
	top := filepath.Join(root.Path, fmt.Sprintf("tcpconnect-store-%d", os.Getpid()))
	dirs := []string{top, filepath.Join(top, "kubepods"), filepath.Join(top, "kubepods", "besteffort")}
	dirs = append(dirs, filepath.Join(dirs[2], "pod"+podUID))
	dirs = append(dirs, filepath.Join(dirs[3], containerID))
	for _, d := range dirs {
		if err := os.Mkdir(d, 0o755); err != nil {
			t.Fatalf("make the pod's cgroup: %v", err)
		}
		t.Cleanup(func() { _ = os.Remove(d) })
	}
	fd, err = unix.Open(dirs[4], unix.O_RDONLY|unix.O_DIRECTORY, 0)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { unix.Close(fd) })
	return fd, podUID, containerID
}

// runStoreClient runs c's client through the resolv.conf launcher (envResolvExec)
// in a mount namespace of its own, in the pod's cgroup when c.inPod.
func runStoreClient(t *testing.T, c storeConnect, path, resolv string, podFD int) {
	t.Helper()
	cmd := exec.Command(os.Args[0], append([]string{"-test.run=^$", "--", path}, c.args...)...)
	cmd.Env = append(os.Environ(), envResolvExec+"="+resolv)
	cmd.SysProcAttr = &syscall.SysProcAttr{Unshareflags: unix.CLONE_NEWNS, Pdeathsig: syscall.SIGKILL}
	if c.inPod {
		cmd.SysProcAttr.UseCgroupFD, cmd.SysProcAttr.CgroupFD = true, podFD
	}
	out, err := cmd.CombinedOutput()
	switch {
	case c.refused && err == nil:
		t.Fatalf("%s %v: succeeded, want connection refused:\n%s", c.client, c.args, out)
	case c.refused && !strings.Contains(strings.ToLower(string(out)), "refused"):
		t.Fatalf("%s %v: %v, want connection refused:\n%s", c.client, c.args, err, out)
	case !c.refused && err != nil:
		t.Fatalf("%s %v: %v:\n%s", c.client, c.args, err, out)
	}
}

// TestStoreVictoriaLogs runs the collector of `make build` with the shipped
// deploy/victorialogs/config.yaml (only its endpoint changed) into a real
// VictoriaLogs on loopback. curl and busybox (wget, nc) connect by name,
// through the test's DNS server, and by bare IP, from the host and from a
// cgroup named as a pod's container; some connects are refused. The test
// checks each entry's message (_msg: server.address) and stream as stored,
// then runs every query of the cookbook (docs/cookbook-victorialogs.md) as
// written and checks each answer against those connects.
func TestStoreVictoriaLogs(t *testing.T) {
	bin := collectorBinary(t)
	vlBin := victoriaLogsBinary(t)
	privtest.Require(t)
	clients := map[string]string{
		"curl":    privtest.LookPath(t, "curl", "curl"),
		"busybox": privtest.LookPath(t, "busybox", "busybox-static"),
	}
	queries := readCookbook(t)
	host, err := os.Hostname()
	if err != nil {
		t.Fatal(err)
	}

	vl := startVictoriaLogs(t, vlBin)
	storeDNS(t, net.JoinHostPort(storeResolver, "53"), map[string]string{
		"api.example.com": apiIP, "refused.example.com": refusedIP, "cdn.example.net": cdnIP, "old.example.com": oldIP,
	})
	port := strconv.Itoa(freePort(t))
	httpListeners(t, net.JoinHostPort(apiIP, port), net.JoinHostPort(cdnIP, port), net.JoinHostPort(oldIP, port), net.JoinHostPort(bareIP, port))
	resolv := resolvDir(t, storeResolver)
	podFD, podUID, containerID := podCgroup(t)

	// What an earlier run of the agent stored two hours ago: old.example.com
	// is then not a new destination.
	fixture := map[string]string{
		"_time": time.Now().Add(-2 * time.Hour).UTC().Format(time.RFC3339Nano), "_msg": "old.example.com",
		"host.name": host, "process.executable.name": "curl", "event_name": eventName,
		"network.peer.address": oldIP, "server.port": port, "tcpconnect.outcome": "established",
		"tcpconnect.dns.names": `["old.example.com"]`,
	}
	if err := vl.insertJSONLines([]map[string]string{fixture}, "host.name,process.executable.name"); err != nil {
		t.Fatal(err)
	}

	health := freePort(t)
	c := startCollectorArgs(t, bin, "agent", "--config", storeConfig,
		"--set=exporters::"+storeExporter+"::logs_endpoint="+vl.url+"/insert/opentelemetry/v1/logs",
		"--set=extensions::health_check::endpoint=127.0.0.1:"+strconv.Itoa(health),
		"--set=service::telemetry::metrics::level=none")
	c.waitHealthy(t, health)

	httpURL := func(h string) string { return "http://" + net.JoinHostPort(h, port) + "/" }
	connects := []storeConnect{
		{inPod: true, client: "curl", args: []string{"-sS", "-o", "/dev/null", httpURL("api.example.com")}, msg: "api.example.com", peer: apiIP, named: true},
		{inPod: true, client: "curl", args: []string{"-sS", "-o", "/dev/null", httpURL("api.example.com")}, msg: "api.example.com", peer: apiIP, named: true},
		{inPod: true, client: "curl", args: []string{"-sS", "-o", "/dev/null", httpURL("refused.example.com")}, refused: true, msg: "refused.example.com", peer: refusedIP, named: true},
		{client: "busybox", args: []string{"wget", "-q", "-O", "/dev/null", httpURL("cdn.example.net")}, msg: "cdn.example.net", peer: cdnIP, named: true},
		{client: "curl", args: []string{"-sS", "-o", "/dev/null", httpURL("old.example.com")}, msg: "old.example.com", peer: oldIP, named: true},
		{client: "curl", args: []string{"-sS", "-o", "/dev/null", httpURL(bareIP)}, msg: bareIP, peer: bareIP},
		{client: "busybox", args: []string{"nc", bareClosedIP, port}, refused: true, msg: bareClosedIP, peer: bareClosedIP},
	}
	for _, cn := range connects {
		runStoreClient(t, cn, clients[cn.client], resolv, podFD)
	}

	extra := fmt.Sprintf("network.peer.address:ipv4_range(%q)", storeNet)
	want := len(connects) + 1 // and the fixture
	var n int
	for end := time.Now().Add(storeTimeout); ; time.Sleep(200 * time.Millisecond) {
		rows, err := vl.query("* | stats count() as n", extra)
		if err != nil {
			t.Fatal(err)
		}
		if len(rows) == 1 {
			n, _ = strconv.Atoi(rows[0]["n"])
		}
		if n >= want || time.Now().After(end) {
			break
		}
	}
	if n != want {
		t.Fatalf("%d entries to %s in VictoriaLogs after %s, want %d (%d connects and the fixture)", n, storeNet, storeTimeout, want, len(connects))
	}

	t.Cleanup(func() {
		if !t.Failed() {
			return
		}
		rows, err := vl.query("*", extra)
		t.Logf("every entry to %s in VictoriaLogs (%v):", storeNet, err)
		for _, r := range rows {
			t.Logf("  %v", r)
		}
	})
	// Every entry is counted; make every one of them visible to every
	// search before the checks (VictoriaLogs otherwise makes buffered rows
	// searchable in the background, within about a second).
	if err := vl.flush(); err != nil {
		t.Fatal(err)
	}

	t.Run("message and stream as stored", func(t *testing.T) {
		var wantRows []map[string]string
		for _, cn := range connects {
			r := map[string]string{"_msg": cn.msg, "network.peer.address": cn.peer, "process.executable.name": cn.client,
				"_stream": fmt.Sprintf("{host.name=%q,process.executable.name=%q}", host, cn.client)}
			if cn.named {
				r["tcpconnect.dns.names"] = fmt.Sprintf("[%q]", cn.msg)
			}
			if cn.inPod {
				r["k8s.pod.uid"], r["container.id"] = podUID, containerID
			}
			wantRows = append(wantRows, r)
		}
		// _time:1h: the connects, not the fixture.
		checkQuery(t, vl, `_time:1h | fields _msg, _stream, network.peer.address, process.executable.name, tcpconnect.dns.names, k8s.pod.uid, container.id`, extra, wantRows, nil)
	})

	checks := cookbookChecks(port, podUID, containerID)
	for _, q := range queries {
		check, ok := checks[q.heading]
		if !ok {
			t.Errorf("cookbook query %q has no check in the store test: add its expected answer to cookbookChecks", q.heading)
			continue
		}
		delete(checks, q.heading)
		t.Run(q.heading, func(t *testing.T) {
			checkQuery(t, vl, q.query, extra, check.rows, check.varying)
		})
	}
	for h := range checks {
		t.Errorf("the store test checks the cookbook query %q, which the cookbook no longer has", h)
	}
}

// cookbookCheck is the expected answer of one cookbook query: its rows,
// and the fields whose values vary from run to run (present, not compared).
type cookbookCheck struct {
	rows    []map[string]string
	varying []string
}

// cookbookChecks returns the answer of each cookbook query, by heading, to
// the store test's connects.
func cookbookChecks(port, podUID, containerID string) map[string]cookbookCheck {
	type m = map[string]string
	line := func(exe, dst, outcome string) m { return m{"line": exe + " -> " + dst + ":" + port + " " + outcome} }
	return map[string]cookbookCheck{
		"Connects to a domain, by process": {rows: []map[string]string{
			{"process.executable.name": "curl", "_msg": "api.example.com", "tcpconnect.outcome": "established", "connects": "2"},
			{"process.executable.name": "curl", "_msg": "refused.example.com", "tcpconnect.outcome": "refused", "connects": "1"},
			{"process.executable.name": "curl", "_msg": "old.example.com", "tcpconnect.outcome": "established", "connects": "1"},
		}},
		"Connects of pods to a domain": {rows: []map[string]string{
			{"k8s.pod.uid": podUID, "_msg": "api.example.com", "connects": "2"},
			{"k8s.pod.uid": podUID, "_msg": "refused.example.com", "connects": "1"},
		}},
		"Connects to an IP that no DNS answer named": {rows: []map[string]string{
			{"process.executable.name": "curl", "_msg": bareIP, "server.port": port, "tcpconnect.outcome": "established", "connects": "1"},
			{"process.executable.name": "busybox", "_msg": bareClosedIP, "server.port": port, "tcpconnect.outcome": "refused", "connects": "1"},
		}},
		"Failed connects by process": {rows: []map[string]string{
			{"process.executable.name": "curl", "tcpconnect.outcome": "refused", "error.type": "ECONNREFUSED", "failures": "1"},
			{"process.executable.name": "busybox", "tcpconnect.outcome": "refused", "error.type": "ECONNREFUSED", "failures": "1"},
		}},
		"Destinations first seen in the last hour": {varying: []string{"first_seen"}, rows: []map[string]string{
			{"_msg": "api.example.com", "server.port": port, "connects": "2"},
			{"_msg": "refused.example.com", "server.port": port, "connects": "1"},
			{"_msg": "cdn.example.net", "server.port": port, "connects": "1"},
			{"_msg": bareIP, "server.port": port, "connects": "1"},
			{"_msg": bareClosedIP, "server.port": port, "connects": "1"},
		}},
		"Connects per pod and container": {rows: []map[string]string{
			{"k8s.pod.uid": podUID, "container.id": containerID, "connects": "3"},
			{"connects": "4"},
		}},
		"Top destination names": {rows: []map[string]string{
			{"_msg": "api.example.com", "hits": "2"},
			{"_msg": "refused.example.com", "hits": "1"},
			{"_msg": "cdn.example.net", "hits": "1"},
			{"_msg": "old.example.com", "hits": "1"},
		}},
		"A readable line per connect": {varying: []string{"_time"}, rows: []map[string]string{
			line("curl", "api.example.com", "established"), line("curl", "api.example.com", "established"),
			line("curl", "refused.example.com", "refused"), line("busybox", "cdn.example.net", "established"),
			line("curl", "old.example.com", "established"), line("curl", bareIP, "established"),
			line("busybox", bareClosedIP, "refused"),
		}},
	}
}
