package receiver

import (
	"fmt"
	"net"
	"net/netip"
	"os"
	"os/exec"
	"strings"
	"testing"
	"time"

	mdns "github.com/miekg/dns"
	"github.com/vishvananda/netns"

	"github.com/tcpconnect/tcpconnect/internal/privtest"
)

// namedNetns makes a network namespace with `ip netns add` (so that `ip
// netns exec` gives its processes /etc/netns/NAME/resolv.conf, here
// "nameserver <resolver>"), its loopback up, and a veth pair whose
// namespace end has addr (an RFC 2544 test address: getaddrinfo's
// AI_ADDRCONFIG asks DNS for IPv4 only when a non-loopback IPv4 address
// exists). It returns the name and a handle; both go away with t.
func namedNetns(t *testing.T, ip, tag, resolver, addr string) (string, netns.NsHandle) {
	t.Helper()
	name := fmt.Sprintf("tc%s%d", tag, os.Getpid()%100000)
	if out, err := exec.Command(ip, "netns", "add", name).CombinedOutput(); err != nil {
		t.Fatalf("ip netns add: %v: %s", err, out)
	}
	t.Cleanup(func() { _ = exec.Command(ip, "netns", "del", name).Run() })
	etc := "/etc/netns/" + name
	if err := os.MkdirAll(etc, 0o755); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { os.RemoveAll(etc) })
	resolv := "nameserver " + resolver + "\noptions attempts:1 timeout:2\n"
	if err := os.WriteFile(etc+"/resolv.conf", []byte(resolv), 0o644); err != nil {
		t.Fatal(err)
	}
	veth := name + "h"
	t.Cleanup(func() { _ = exec.Command(ip, "link", "del", veth).Run() })
	ipRun(t, ip,
		[]string{"-n", name, "link", "set", "lo", "up"},
		[]string{"link", "add", veth, "type", "veth", "peer", "name", "eth0", "netns", name},
		[]string{"-n", name, "addr", "add", addr, "dev", "eth0"},
		[]string{"-n", name, "link", "set", "eth0", "up"},
	)
	h, err := netns.GetFromName(name)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { h.Close() })
	return name, h
}

// ipRun runs `ip` with each argument list in turn.
func ipRun(t *testing.T, ip string, cmds ...[]string) {
	t.Helper()
	for _, args := range cmds {
		if out, err := exec.Command(ip, args...).CombinedOutput(); err != nil {
			t.Fatalf("ip %s: %v: %s", strings.Join(args, " "), err, out)
		}
	}
}

// nftIn loads an nftables ruleset (Debian's nft) into the named network
// namespace: never into the test's own.
func nftIn(t *testing.T, ip, ns, ruleset string) {
	t.Helper()
	nft := privtest.LookPath(t, "nft", "nftables")
	cmd := exec.Command(ip, "netns", "exec", ns, nft, "-f", "-")
	cmd.Stdin = strings.NewReader(ruleset)
	if out, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("nft in %s: %v: %s\n%s", ns, err, out, ruleset)
	}
}

// resolveConnectIn runs the test binary in the named namespace as a client
// that resolves name at server with Go's resolver (over network "udp" or
// "tcp") and connects to the first address.
func resolveConnectIn(t *testing.T, ip, ns, name, server, network string, port uint16) {
	t.Helper()
	cmd := exec.Command(ip, "netns", "exec", ns, os.Args[0], "-test.run=^$")
	cmd.Env = append(os.Environ(), fmt.Sprintf("%s=%s|%s|%d|%s", envResolveConnect, name, server, port, network))
	if out, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("Go resolver in %s: %v: %s", ns, err, out)
	}
}

// connectIn makes one refused connect to ip:h.port from the namespace and
// waits for its record.
func (h *dnsHarness) connectIn(ns netns.NsHandle, ip string) named {
	h.t.Helper()
	var got named
	privtest.InNetns(h.t, ns, func() { got = h.connect(ip) })
	return got
}

// TestNativeDNSDockerNAT builds Docker's embedded-resolver topology in a
// network namespace: resolv.conf says 127.0.0.11, an nftables DNAT rule
// sends 127.0.0.11:53 to a real DNS server on 127.0.0.11:5353, so queries
// leave with destination port 5353 and answers come back from port 53.
// Clients no one here wrote (glibc's getent, busybox nslookup) and Go's
// resolver, over UDP and TCP, resolve there; every connect that follows
// carries the name. An answer injected at a socket that asked something
// else is still ignored and counted.
func TestNativeDNSDockerNAT(t *testing.T) {
	privtest.Require(t)
	ip := privtest.LookPath(t, "ip", "iproute2")
	getent := privtest.LookPath(t, "getent", "libc-bin")
	bb := busybox(t)
	h := newDNSHarness(t, zone{}, nil)
	name, ns := namedNetns(t, ip, "dk", "127.0.0.11", "198.18.9.2/24")
	srv := &dnsTestServer{zone: zone{
		"getent.docker.test./A": {"getent.docker.test. 60 IN A 127.0.9.1"},
		"bb.docker.test./A":     {"bb.docker.test. 60 IN A 127.0.9.2"},
		"go.docker.test./A":     {"go.docker.test. 60 IN CNAME edge.docker.test.", "edge.docker.test. 60 IN A 127.0.9.3"},
		"tcp.docker.test./A":    {"tcp.docker.test. 60 IN A 127.0.9.4"},
		"asked.docker.test./A":  {"asked.docker.test. 60 IN A 127.0.9.5"},
	}}
	privtest.InNetns(t, ns, func() {
		pc, ln := listenDNS(t, "127.0.0.11:5353")
		srv.serve(t, pc, ln)
	})
	// What Docker's DOCKER_OUTPUT chain does, in nftables.
	nftIn(t, ip, name, `table ip tcdocker {
	chain output {
		type nat hook output priority -100; policy accept;
		ip daddr 127.0.0.11 udp dport 53 dnat to 127.0.0.11:5353
		ip daddr 127.0.0.11 tcp dport 53 dnat to 127.0.0.11:5353
	}
}
`)
	translated := func() int64 { return counter(t, h.tel, "receiver_tcpconnect_dns_answers_translated") }

	t.Run("glibc getent", func(t *testing.T) {
		out, err := exec.Command(ip, "netns", "exec", name, getent, "ahostsv4", "getent.docker.test").CombinedOutput()
		if err != nil || !strings.Contains(string(out), "127.0.9.1") {
			t.Fatalf("getent ahostsv4 in %s: %v: %s", name, err, out)
		}
		wantNames(t, h.connectIn(ns, "127.0.9.1"), "getent.docker.test", "getent.docker.test")
	})
	t.Run("busybox nslookup", func(t *testing.T) {
		out, err := exec.Command(ip, "netns", "exec", name, bb, "nslookup", "bb.docker.test", "127.0.0.11").CombinedOutput()
		if err != nil || !strings.Contains(string(out), "127.0.9.2") {
			t.Fatalf("busybox nslookup in %s: %v: %s", name, err, out)
		}
		wantNames(t, h.connectIn(ns, "127.0.9.2"), "bb.docker.test", "bb.docker.test")
	})
	t.Run("Go resolver, UDP", func(t *testing.T) {
		resolveConnectIn(t, ip, name, "go.docker.test", "127.0.0.11:53", "udp", h.port)
		wantNames(t, h.waitRecord("127.0.9.3", 1)[0], "go.docker.test", "go.docker.test", "edge.docker.test")
	})
	t.Run("Go resolver, TCP", func(t *testing.T) {
		before := srv.tcp.Load()
		resolveConnectIn(t, ip, name, "tcp.docker.test", "127.0.0.11:53", "tcp", h.port)
		if srv.tcp.Load() == before {
			t.Fatal("the query did not come over TCP")
		}
		wantNames(t, h.waitRecord("127.0.9.4", 1)[0], "tcp.docker.test", "tcp.docker.test")
	})
	waitFor(t, "the translated-answers counter", func() bool { return translated() >= 4 })

	t.Run("injected answer ignored", func(t *testing.T) {
		unsolicited := func() int64 { return counter(t, h.tel, "receiver_tcpconnect_dns_answers_unsolicited") }
		before := unsolicited()
		privtest.InNetns(t, ns, func() {
			// A socket that asks the resolver something (so it is a DNS
			// socket, marked by its sendmsg to port 53) ...
			victim, err := net.ListenPacket("udp4", "127.0.0.1:0")
			if err != nil {
				t.Fatal(err)
			}
			defer victim.Close()
			q := new(mdns.Msg)
			q.SetQuestion("asked.docker.test.", mdns.TypeA)
			pkt, err := q.Pack()
			if err != nil {
				t.Fatal(err)
			}
			if _, err := victim.WriteTo(pkt, net.UDPAddrFromAddrPort(netip.MustParseAddrPort("127.0.0.11:53"))); err != nil {
				t.Fatal(err)
			}
			buf := make([]byte, 1500)
			_ = victim.SetReadDeadline(time.Now().Add(5 * time.Second))
			if _, _, err := victim.ReadFrom(buf); err != nil {
				t.Fatalf("the resolver's answer: %v", err)
			}
			// ... then gets an answer, from the resolver's address, with
			// the same id, to a question it did not ask.
			spoofer, err := net.ListenPacket("udp4", "127.0.0.11:53")
			if err != nil {
				t.Fatal(err)
			}
			defer spoofer.Close()
			m := new(mdns.Msg)
			m.SetQuestion("spoof.docker.test.", mdns.TypeA)
			m.Id, m.Response = q.Id, true
			rr, _ := mdns.NewRR("spoof.docker.test. 60 IN A 127.0.9.99")
			m.Answer = []mdns.RR{rr}
			if pkt, err = m.Pack(); err != nil {
				t.Fatal(err)
			}
			if _, err := spoofer.WriteTo(pkt, victim.LocalAddr()); err != nil {
				t.Fatal(err)
			}
			if _, _, err := victim.ReadFrom(buf); err != nil {
				t.Fatalf("the injected answer did not arrive: %v", err)
			}
		})
		waitFor(t, "the unsolicited counter", func() bool { return unsolicited() > before })
		if got := h.connectIn(ns, "127.0.9.99"); len(got.names) != 0 {
			t.Errorf("injected name accepted: %+v", got)
		}
		// The question the socket did ask was answered and named.
		wantNames(t, h.connectIn(ns, "127.0.9.5"), "asked.docker.test", "asked.docker.test")
	})
}

// TestNativeDNSServiceIP builds a DNS service behind a DNAT'd virtual IP
// (kube-dns's ClusterIP used from the host network): namespace "node"
// stands in for the host and sends 198.19.0.10:53 to a DNS server in
// namespace "pod" (198.18.53.2:53) with an nftables DNAT rule, over a veth
// pair. Queries leave for the backend; answers come back from the virtual
// IP. Every address is inside the two namespaces: nothing can leave the
// machine if a rule is missing.
func TestNativeDNSServiceIP(t *testing.T) {
	privtest.Require(t)
	ip := privtest.LookPath(t, "ip", "iproute2")
	bb := busybox(t)
	h := newDNSHarness(t, zone{}, nil)
	node, nodeNS := namedNetns(t, ip, "nd", "198.19.0.10", "198.18.53.1/24")
	podNS := privtest.NewNetns(t)
	// Move the node's veth peer (left in the test's namespace by namedNetns)
	// into the pod namespace.
	peer := node + "h"
	var podPID int
	{
		// ip needs a name or a pid for the target namespace: a sleeping
		// child of the pod namespace lends its pid.
		var cmd *exec.Cmd
		privtest.InNetns(t, podNS, func() {
			cmd = exec.Command("sleep", "600")
			if err := cmd.Start(); err != nil {
				t.Fatal(err)
			}
		})
		t.Cleanup(func() { _ = cmd.Process.Kill(); _ = cmd.Wait() })
		podPID = cmd.Process.Pid
	}
	ipRun(t, ip,
		[]string{"link", "set", peer, "netns", fmt.Sprint(podPID)},
		[]string{"-n", node, "route", "add", "198.19.0.10/32", "via", "198.18.53.2"},
	)
	privtest.InNetns(t, podNS, func() {
		ipRun(t, ip,
			[]string{"addr", "add", "198.18.53.2/24", "dev", peer},
			[]string{"link", "set", peer, "up"},
		)
	})
	srv := &dnsTestServer{zone: zone{
		"udp.svc.test./A": {"udp.svc.test. 60 IN A 127.0.9.20"},
		"tcp.svc.test./A": {"tcp.svc.test. 60 IN A 127.0.9.21"},
		"bb.svc.test./A":  {"bb.svc.test. 60 IN A 127.0.9.22"},
	}}
	privtest.InNetns(t, podNS, func() {
		pc, ln := listenDNS(t, "198.18.53.2:53")
		srv.serve(t, pc, ln)
	})
	nftIn(t, ip, node, `table ip tcsvc {
	chain output {
		type nat hook output priority -100; policy accept;
		ip daddr 198.19.0.10 udp dport 53 dnat to 198.18.53.2
		ip daddr 198.19.0.10 tcp dport 53 dnat to 198.18.53.2
	}
}
`)
	t.Run("Go resolver, UDP", func(t *testing.T) {
		resolveConnectIn(t, ip, node, "udp.svc.test", "198.19.0.10:53", "udp", h.port)
		wantNames(t, h.waitRecord("127.0.9.20", 1)[0], "udp.svc.test", "udp.svc.test")
	})
	t.Run("Go resolver, TCP", func(t *testing.T) {
		resolveConnectIn(t, ip, node, "tcp.svc.test", "198.19.0.10:53", "tcp", h.port)
		wantNames(t, h.waitRecord("127.0.9.21", 1)[0], "tcp.svc.test", "tcp.svc.test")
	})
	t.Run("busybox nslookup", func(t *testing.T) {
		out, err := exec.Command(ip, "netns", "exec", node, bb, "nslookup", "bb.svc.test", "198.19.0.10").CombinedOutput()
		if err != nil || !strings.Contains(string(out), "127.0.9.22") {
			t.Fatalf("busybox nslookup in %s: %v: %s", node, err, out)
		}
		wantNames(t, h.connectIn(nodeNS, "127.0.9.22"), "bb.svc.test", "bb.svc.test")
	})
	if got := counter(t, h.tel, "receiver_tcpconnect_dns_answers_translated"); got < 3 {
		t.Errorf("translated answers %d, want at least 3", got)
	}
}

// TestNativeDNSLocalStub puts dnsmasq (Debian's dnsmasq-base) in front of
// an upstream DNS server in a network namespace, as systemd-resolved or a
// node-local cache sits on a host. A client that asks the stub on port 53
// (glibc's getent, through resolv.conf) is named by its own exchange. A
// client whose exchange with its stub shows nothing (here: a stub on port
// 5353, which the capture does not recognise, standing in for nscd's unix
// socket or a stub reached over a rewritten port) is named through the
// stub's upstream answer, resolved in the same namespace (source netns).
func TestNativeDNSLocalStub(t *testing.T) {
	privtest.Require(t)
	ip := privtest.LookPath(t, "ip", "iproute2")
	getent := privtest.LookPath(t, "getent", "libc-bin")
	dnsmasq := privtest.LookPath(t, "dnsmasq", "dnsmasq-base")
	h := newDNSHarness(t, zone{}, nil)
	name, ns := namedNetns(t, ip, "st", "127.0.0.1", "198.18.10.2/24")
	upstream := &dnsTestServer{zone: zone{
		"glibc.stub.test./A":  {"glibc.stub.test. 60 IN A 127.0.9.40"},
		"hidden.stub.test./A": {"hidden.stub.test. 60 IN CNAME edge.stub.test.", "edge.stub.test. 60 IN A 127.0.9.41"},
		"ready.stub.test./A":  {"ready.stub.test. 60 IN A 127.0.9.49"},
	}}
	privtest.InNetns(t, ns, func() {
		pc, ln := listenDNS(t, "127.0.0.3:53")
		upstream.serve(t, pc, ln)
	})
	for _, port := range []string{"53", "5353"} {
		cmd := exec.Command(ip, "netns", "exec", name, dnsmasq, "--keep-in-foreground", "--conf-file=/dev/null",
			"--no-resolv", "--no-hosts", "--server=127.0.0.3", "--listen-address=127.0.0.1", "--bind-interfaces",
			"--port="+port, "--user=root", "--pid-file=", "--cache-size=100", "--log-facility=-")
		if err := cmd.Start(); err != nil {
			t.Fatalf("dnsmasq: %v", err)
		}
		t.Cleanup(func() { _ = cmd.Process.Kill(); _ = cmd.Wait() })
		stub := "127.0.0.1:" + port
		waitFor(t, "dnsmasq on "+stub, func() bool {
			var ok bool
			privtest.InNetns(t, ns, func() {
				m := new(mdns.Msg)
				m.SetQuestion("ready.stub.test.", mdns.TypeA)
				r, err := mdns.Exchange(m, stub)
				ok = err == nil && len(r.Answer) == 1
			})
			return ok
		})
	}

	t.Run("glibc through the stub", func(t *testing.T) {
		out, err := exec.Command(ip, "netns", "exec", name, getent, "ahostsv4", "glibc.stub.test").CombinedOutput()
		if err != nil || !strings.Contains(string(out), "127.0.9.40") {
			t.Fatalf("getent ahostsv4 in %s: %v: %s", name, err, out)
		}
		wantNames(t, h.connectIn(ns, "127.0.9.40"), "glibc.stub.test", "glibc.stub.test")
	})
	t.Run("client exchange unseen: named by the stub's upstream answer", func(t *testing.T) {
		resolveConnectIn(t, ip, name, "hidden.stub.test", "127.0.0.1:5353", "udp", h.port)
		got := h.waitRecord("127.0.9.41", 1)[0]
		wantNames(t, got, "hidden.stub.test", "hidden.stub.test", "edge.stub.test")
		if got.source != "netns" {
			t.Errorf("tcpconnect.dns.source = %q, want netns (the stub resolved it, not the client)", got.source)
		}
	})
}
