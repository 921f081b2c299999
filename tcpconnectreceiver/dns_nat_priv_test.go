package tcpconnectreceiver

import (
	"fmt"
	"net"
	"net/netip"
	"os/exec"
	"strings"
	"testing"
	"time"

	mdns "github.com/miekg/dns"
	"github.com/vishvananda/netlink"
	"github.com/vishvananda/netns"
	"golang.org/x/sys/unix"

	"github.com/tcpconnect/tcpconnect/internal/privtest"
)

// dockerZone is what the DNS server behind Docker's embedded resolver
// address serves.
var dockerZone = zone{
	"getent.docker.test./A": {"getent.docker.test. 60 IN A 127.0.9.1"},
	"bb.docker.test./A":     {"bb.docker.test. 60 IN A 127.0.9.2"},
	"go.docker.test./A":     {"go.docker.test. 60 IN CNAME edge.docker.test.", "edge.docker.test. 60 IN A 127.0.9.3"},
	"tcp.docker.test./A":    {"tcp.docker.test. 60 IN A 127.0.9.4"},
	"asked.docker.test./A":  {"asked.docker.test. 60 IN A 127.0.9.5"},
}

// dockerResolver sets up Docker's embedded-resolver topology in ns: a real
// DNS server on 127.0.0.11:5353 and an nftables DNAT rule sending
// 127.0.0.11:53 there, so queries leave with destination port 5353 and
// answers come back from port 53. It returns the server.
func dockerResolver(t *testing.T, ns netns.NsHandle) *dnsTestServer {
	t.Helper()
	srv := &dnsTestServer{zone: dockerZone}
	privtest.InNetns(t, ns, func() {
		pc, ln := listenDNS(t, "127.0.0.11:5353")
		srv.serve(t, pc, ln)
	})
	dnat(t, ns, netip.MustParseAddrPort("127.0.0.11:53"), netip.MustParseAddrPort("127.0.0.11:5353"))
	return srv
}

// TestDNSPrivilegedDockerNAT builds Docker's embedded-resolver topology in
// a network namespace (dockerResolver). busybox nslookup and Go's resolver,
// over UDP and TCP, resolve there; every connect that follows carries the
// name. An answer injected at a socket that asked something else is still
// ignored and counted. (glibc: TestNativeDNSDockerNATGlibc.)
func TestDNSPrivilegedDockerNAT(t *testing.T) {
	h := newDNSHarness(t, zone{}, nil)
	bb := busybox(t)
	ns := privtest.NewNetns(t)
	srv := dockerResolver(t, ns)
	env := func(name, network string) string {
		return fmt.Sprintf("%s=%s|127.0.0.11:53|%d|%s", envResolveConnect, name, h.port, network)
	}

	t.Run("busybox nslookup", func(t *testing.T) {
		out, err := execIn(t, ns, bb, "nslookup", "bb.docker.test", "127.0.0.11")
		if err != nil || !strings.Contains(out, "127.0.9.2") {
			t.Fatalf("busybox nslookup: %v: %s", err, out)
		}
		wantNames(t, h.connectIn(ns, "127.0.9.2"), "bb.docker.test", "bb.docker.test")
	})
	t.Run("Go resolver, UDP", func(t *testing.T) {
		inNetnsRun(t, ns, env("go.docker.test", "udp"))
		wantNames(t, h.waitRecord("127.0.9.3", 1)[0], "go.docker.test", "go.docker.test", "edge.docker.test")
	})
	t.Run("Go resolver, TCP", func(t *testing.T) {
		before := srv.tcp.Load()
		inNetnsRun(t, ns, env("tcp.docker.test", "tcp"))
		if srv.tcp.Load() == before {
			t.Fatal("the query did not come over TCP")
		}
		wantNames(t, h.waitRecord("127.0.9.4", 1)[0], "tcp.docker.test", "tcp.docker.test")
	})
	waitFor(t, "the translated-answers counter", func() bool {
		return counter(t, h.tel, "receiver_tcpconnect_dns_answers_translated") >= 3
	})

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

// TestNativeDNSDockerNATGlibc: glibc's getaddrinfo (getent) behind
// Docker's embedded resolver (dockerResolver), with resolv.conf saying
// 127.0.0.11 through `ip netns exec`, which the VM lacks.
func TestNativeDNSDockerNATGlibc(t *testing.T) {
	privtest.Require(t)
	ip := privtest.LookPath(t, "ip", "iproute2")
	getent := privtest.LookPath(t, "getent", "libc-bin")
	h := newDNSHarness(t, zone{}, nil)
	name, ns := namedNetns(t, ip, "dk", "127.0.0.11", "198.18.9.2/24")
	dockerResolver(t, ns)
	out, err := exec.Command(ip, "netns", "exec", name, getent, "ahostsv4", "getent.docker.test").CombinedOutput()
	if err != nil || !strings.Contains(string(out), "127.0.9.1") {
		t.Fatalf("getent ahostsv4 in %s: %v: %s", name, err, out)
	}
	wantNames(t, h.connectIn(ns, "127.0.9.1"), "getent.docker.test", "getent.docker.test")
	if got := counter(t, h.tel, "receiver_tcpconnect_dns_answers_translated"); got < 1 {
		t.Errorf("translated answers %d, want at least 1", got)
	}
}

// TestDNSPrivilegedServiceIP builds a DNS service behind a DNAT'd virtual
// IP (kube-dns's ClusterIP used from the host network): namespace "node"
// stands in for the host and sends 198.19.0.10:53 to a DNS server in
// namespace "pod" (198.18.53.2:53) with an nftables DNAT rule, over a veth
// pair. Queries leave for the backend; answers come back from the virtual
// IP. Every address is inside the two namespaces: nothing can leave the
// machine if a rule is missing.
func TestDNSPrivilegedServiceIP(t *testing.T) {
	h := newDNSHarness(t, zone{}, nil)
	bb := busybox(t)
	node, pod := privtest.NewNetns(t), privtest.NewNetns(t)
	vethPair(t, node, pod, "198.18.53.1/24", "198.18.53.2/24")
	nh, err := netlink.NewHandleAt(node, unix.NETLINK_ROUTE)
	if err != nil {
		t.Fatal(err)
	}
	defer nh.Close()
	vip := netip.MustParseAddr("198.19.0.10")
	if err := nh.RouteAdd(&netlink.Route{Dst: &net.IPNet{IP: vip.AsSlice(), Mask: net.CIDRMask(32, 32)},
		Gw: net.ParseIP("198.18.53.2")}); err != nil {
		t.Fatalf("route to the virtual IP: %v", err)
	}
	srv := &dnsTestServer{zone: zone{
		"udp.svc.test./A": {"udp.svc.test. 60 IN A 127.0.9.20"},
		"tcp.svc.test./A": {"tcp.svc.test. 60 IN A 127.0.9.21"},
		"bb.svc.test./A":  {"bb.svc.test. 60 IN A 127.0.9.22"},
	}}
	privtest.InNetns(t, pod, func() {
		pc, ln := listenDNS(t, "198.18.53.2:53")
		srv.serve(t, pc, ln)
	})
	dnat(t, node, netip.AddrPortFrom(vip, 53), netip.MustParseAddrPort("198.18.53.2:53"))
	env := func(name, network string) string {
		return fmt.Sprintf("%s=%s|198.19.0.10:53|%d|%s", envResolveConnect, name, h.port, network)
	}

	t.Run("Go resolver, UDP", func(t *testing.T) {
		inNetnsRun(t, node, env("udp.svc.test", "udp"))
		wantNames(t, h.waitRecord("127.0.9.20", 1)[0], "udp.svc.test", "udp.svc.test")
	})
	t.Run("Go resolver, TCP", func(t *testing.T) {
		inNetnsRun(t, node, env("tcp.svc.test", "tcp"))
		wantNames(t, h.waitRecord("127.0.9.21", 1)[0], "tcp.svc.test", "tcp.svc.test")
	})
	t.Run("busybox nslookup", func(t *testing.T) {
		out, err := execIn(t, node, bb, "nslookup", "bb.svc.test", "198.19.0.10")
		if err != nil || !strings.Contains(out, "127.0.9.22") {
			t.Fatalf("busybox nslookup: %v: %s", err, out)
		}
		wantNames(t, h.connectIn(node, "127.0.9.22"), "bb.svc.test", "bb.svc.test")
	})
	waitFor(t, "the translated-answers counter", func() bool {
		return counter(t, h.tel, "receiver_tcpconnect_dns_answers_translated") >= 3
	})
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
