package tcpconnectreceiver

import (
	"fmt"
	"net"
	"net/netip"
	"os"
	"os/exec"
	"slices"
	"strings"
	"testing"
	"time"

	mdns "github.com/miekg/dns"
	"go.opentelemetry.io/collector/pdata/pcommon"
	"go.opentelemetry.io/collector/pdata/plog"
	"golang.org/x/sys/unix"

	"github.com/tcpconnect/tcpconnect/internal/privtest"
)

// TestDNSPrivileged runs the correlator end to end: real DNS packets on the
// wire, captured in the kernel, matched to their queries, and the names on
// the connects that follow.
func TestDNSPrivileged(t *testing.T) {
	z := zone{
		"a.test./A":         {"a.test. 60 IN A 127.0.4.1"},
		"mapped.test./AAAA": {"mapped.test. 60 IN AAAA ::ffff:127.0.4.2"},
		"six.test./AAAA":    {"six.test. 60 IN AAAA ::1"},
		"www.chain.test./A": {"www.chain.test. 60 IN CNAME c1.chain.test.", "c1.chain.test. 60 IN CNAME c2.chain.test.",
			"c2.chain.test. 60 IN CNAME c3.chain.test.", "c3.chain.test. 60 IN A 127.0.4.3"},
		"one.test./A":   {"one.test. 60 IN A 127.0.4.4"},
		"two.test./A":   {"two.test. 60 IN A 127.0.4.4"},
		"ttl.test./A":   {"ttl.test. 1 IN A 127.0.4.5"},
		"big.test./A":   {"big.test. 60 IN A 127.0.4.6"},
		"bb.test./A":    {"bb.test. 60 IN A 127.0.4.7"},
		"real.test./A":  {"real.test. 60 IN A 127.0.4.9"},
		"multi.test./A": {"multi.test. 60 IN A 127.0.4.10", "multi.test. 60 IN A 127.0.4.11"},
	}
	for i := range 1000 {
		name := fmt.Sprintf("o%d.order.test.", i)
		z[name+"/A"] = []string{fmt.Sprintf("%s 60 IN A 127.1.%d.%d", name, i/250, i%250+1)}
	}
	h := newDNSHarness(t, z, map[string]bool{"big.test.": true})

	t.Run("A", func(t *testing.T) {
		h.resolve("a.test", "udp", "ip4")
		wantNames(t, h.connect("127.0.4.1"), "a.test", "a.test")
	})
	t.Run("AAAA v4-mapped", func(t *testing.T) {
		// Go's resolver unmaps the AAAA answer ::ffff:127.0.4.2.
		ips := h.resolve("mapped.test", "udp", "ip")
		if len(ips) != 1 || ips[0].Unmap() != netip.MustParseAddr("127.0.4.2") {
			t.Fatalf("resolved %v", ips)
		}
		// An AF_INET6 socket to the v4-mapped address: reported as IPv4.
		wantNames(t, h.connect("::ffff:127.0.4.2"), "mapped.test", "mapped.test")
	})
	t.Run("AAAA", func(t *testing.T) {
		h.resolve("six.test", "udp", "ip6")
		got := h.connect("::1")
		if got.server != "six.test" || !slices.Contains(got.names, "six.test") {
			t.Errorf("record %+v, want six.test", got)
		}
	})
	t.Run("CNAME chain of three", func(t *testing.T) {
		h.resolve("www.chain.test", "udp", "ip4")
		wantNames(t, h.connect("127.0.4.3"), "www.chain.test",
			"www.chain.test", "c1.chain.test", "c2.chain.test", "c3.chain.test")
	})
	t.Run("two names one IP", func(t *testing.T) {
		h.resolve("one.test", "udp", "ip4")
		h.resolve("two.test", "udp", "ip4")
		got := h.connect("127.0.4.4")
		// The newer resolution comes first and is the best name.
		wantNames(t, got, "two.test", "two.test", "one.test")
	})
	t.Run("several addresses", func(t *testing.T) {
		h.resolve("multi.test", "udp", "ip4")
		wantNames(t, h.connect("127.0.4.10"), "multi.test", "multi.test")
		wantNames(t, h.connect("127.0.4.11"), "multi.test", "multi.test")
	})
	t.Run("names gone after TTL", func(t *testing.T) {
		h.resolve("ttl.test", "udp", "ip4")
		wantNames(t, h.connect("127.0.4.5"), "ttl.test", "ttl.test")
		time.Sleep(1500 * time.Millisecond) // TTL 1 s, min_ttl 1 s
		got := h.connect("127.0.4.5")
		if len(got.names) != 0 || got.server != "127.0.4.5" {
			t.Errorf("after the TTL: %+v, want no names and server.address = the IP", got)
		}
	})
	t.Run("DNS over TCP after a truncated UDP answer", func(t *testing.T) {
		before := h.srv.tcp.Load()
		h.resolve("big.test", "udp", "ip4")
		if h.srv.tcp.Load() == before {
			t.Fatal("the resolver did not retry over TCP")
		}
		wantNames(t, h.connect("127.0.4.6"), "big.test", "big.test")
	})
	t.Run("busybox nslookup", func(t *testing.T) {
		bb := busybox(t)
		out, err := exec.Command(bb, "nslookup", "bb.test", strings.TrimSuffix(dnsServer, ":53")).CombinedOutput()
		if err != nil || !strings.Contains(string(out), "127.0.4.7") {
			t.Fatalf("busybox nslookup: %v: %s", err, out)
		}
		// nslookup resolved, this process connects: same namespace, names found.
		wantNames(t, h.connect("127.0.4.7"), "bb.test", "bb.test")
	})
	t.Run("spoofed unsolicited answer ignored", func(t *testing.T) {
		unsolicited := func() int64 { return counter(t, h.tel, "receiver_tcpconnect_dns_answers_unsolicited") }
		before := unsolicited()
		victim, err := net.ListenPacket("udp4", "127.0.0.1:0")
		if err != nil {
			t.Fatal(err)
		}
		defer victim.Close()
		spoofer, err := net.ListenPacket("udp4", "127.0.54.54:53")
		if err != nil {
			t.Fatal(err)
		}
		defer spoofer.Close()
		m := new(mdns.Msg)
		m.SetQuestion("spoof.test.", mdns.TypeA)
		m.Response = true
		rr, _ := mdns.NewRR("spoof.test. 60 IN A 127.0.4.8")
		m.Answer = []mdns.RR{rr}
		pkt, err := m.Pack()
		if err != nil {
			t.Fatal(err)
		}
		if _, err := spoofer.WriteTo(pkt, victim.LocalAddr()); err != nil {
			t.Fatal(err)
		}
		got := h.connect("127.0.4.8")
		if len(got.names) != 0 || got.server != "127.0.4.8" {
			t.Errorf("spoofed name accepted: %+v", got)
		}
		waitFor(t, "the unsolicited counter", func() bool { return unsolicited() > before })
		// A real resolution still works after it.
		h.resolve("real.test", "udp", "ip4")
		wantNames(t, h.connect("127.0.4.9"), "real.test", "real.test")
	})
	t.Run("order: connect right after the answer, 1000 times", func(t *testing.T) {
		start := time.Now()
		for i := range 1000 {
			name := fmt.Sprintf("o%d.order.test", i)
			ips := h.resolve(name, "udp", "ip4")
			if err := privtest.Connect(netip.AddrPortFrom(ips[0], h.port), unix.SOCK_STREAM, false); err != unix.ECONNREFUSED {
				t.Fatalf("connect %s: %v", ips[0], err)
			}
		}
		t.Logf("1000 resolves and connects took %s", time.Since(start))
		misses := 0
		for i := range 1000 {
			ip := fmt.Sprintf("127.1.%d.%d", i/250, i%250+1)
			got := h.waitRecord(ip, 1)
			if want := fmt.Sprintf("o%d.order.test", i); len(got) != 1 || got[0].server != want || got[0].outcome != "refused" {
				misses++
				if misses <= 5 {
					t.Errorf("%s: %+v, want one record named %s, refused", ip, got, want)
				}
			}
		}
		if misses > 0 {
			t.Errorf("%d of 1000 connects missed their name", misses)
		}
	})
}

// busybox returns the path of a static busybox (the VM's initramfs has it at
// /bin/busybox), or skips or fails t (privtest.SkipOrFail).
func busybox(t *testing.T) string {
	t.Helper()
	for _, p := range []string{"/bin/busybox", "/usr/bin/busybox"} {
		if _, err := os.Stat(p); err == nil {
			return p
		}
	}
	return privtest.LookPath(t, "busybox", "busybox-static")
}

// TestDNSPrivilegedNetnsScope: a process in another network namespace, with
// its own DNS server, resolves a name to a loopback IP and connects to it.
// A connect to that IP here, in the host's namespace, is to another
// endpoint: it must not get the other namespace's name, not before this
// namespace resolved a name of its own and not after. Each record says its
// names came from the connecting process itself.
func TestDNSPrivilegedNetnsScope(t *testing.T) {
	h := newDNSHarness(t, zone{"host-view.test./A": {"host-view.test. 60 IN A 127.0.7.7"}}, nil)

	ns := privtest.NewNetns(t)
	cmd := exec.Command(os.Args[0], "-test.run=^$")
	cmd.Env = append(os.Environ(), fmt.Sprintf("%s=ns-view.test|%s|%d", envResolveConnect, dnsServer, h.port))
	var (
		out []byte
		err error
	)
	privtest.InNetns(t, ns, func() {
		// The namespace's own DNS server: its sockets belong to the namespace.
		inner := &dnsTestServer{zone: zone{"ns-view.test./A": {"ns-view.test. 60 IN A 127.0.7.7"}}}
		pc, ln := listenDNS(t, dnsServer)
		inner.serve(t, pc, ln)
		out, err = cmd.CombinedOutput()
	})
	if err != nil {
		t.Fatalf("client in netns: %v: %s", err, out)
	}
	child := h.waitRecord("127.0.7.7", 1)[0]
	if child.pid != int64(cmd.Process.Pid) {
		t.Fatalf("record pid %d, want the child %d", child.pid, cmd.Process.Pid)
	}

	unnamed := h.connect("127.0.7.7")
	h.resolve("host-view.test", "udp", "ip4")
	here := h.connect("127.0.7.7")
	wantNames(t, child, "ns-view.test", "ns-view.test")
	wantNames(t, unnamed, "127.0.7.7")
	wantNames(t, here, "host-view.test", "host-view.test")
	for _, r := range []named{child, here} {
		if r.source != "process" {
			t.Errorf("%s: tcpconnect.dns.source = %q, want process", r.server, r.source)
		}
	}
	if unnamed.source != "" {
		t.Errorf("unnamed record: tcpconnect.dns.source = %q, want none", unnamed.source)
	}
}

// TestNativeGlibcResolver uses glibc's getaddrinfo (getent ahosts) inside a
// named network namespace whose /etc/netns/NAME/resolv.conf points at the
// namespace's own DNS server, then connects from there. Needs iproute2's
// `ip netns` and glibc's getent: the build machine has both, the VM's
// initramfs does not, so it runs natively only (make unit).
func TestNativeGlibcResolver(t *testing.T) {
	privtest.Require(t)
	ip := privtest.LookPath(t, "ip", "iproute2")
	getent := privtest.LookPath(t, "getent", "libc-bin")
	h := newDNSHarness(t, zone{}, nil)
	// resolv.conf points at the namespace's own server; the namespace gets a
	// non-loopback IPv4 address because getaddrinfo's AI_ADDRCONFIG (getent
	// ahosts sets it) asks no DNS for IPv4 without one (RFC 2544 test range).
	name, target := namedNetns(t, ip, "glibc", strings.TrimSuffix(dnsServer, ":53"), "198.18.8.2/24")
	privtest.InNetns(t, target, func() {
		inner := &dnsTestServer{zone: zone{"glibc.test./A": {"glibc.test. 60 IN A 127.0.8.8"}}}
		pc, ln := listenDNS(t, dnsServer)
		inner.serve(t, pc, ln)
	})

	out, err := exec.Command(ip, "netns", "exec", name, getent, "ahostsv4", "glibc.test").CombinedOutput()
	if err != nil || !strings.Contains(string(out), "127.0.8.8") {
		t.Fatalf("getent ahostsv4 glibc.test in %s: %v: %s", name, err, out)
	}
	// getent resolved in that namespace; a connect from there is named.
	cmd := exec.Command(ip, "netns", "exec", name, os.Args[0], "-test.run=^$")
	cmd.Env = append(os.Environ(), envChildConnect+"="+netip.AddrPortFrom(netip.MustParseAddr("127.0.8.8"), h.port).String())
	if out, err := cmd.CombinedOutput(); err != nil && !strings.Contains(string(out), "refused") {
		t.Fatalf("connect in netns: %v: %s", err, out)
	}
	wantNames(t, h.waitRecord("127.0.8.8", 1)[0], "glibc.test", "glibc.test")
}

// forEachRecord calls fn with each record's resource and record attributes.
func forEachRecord(ld plog.Logs, fn func(res, rec pcommon.Map)) {
	for i := 0; i < ld.ResourceLogs().Len(); i++ {
		rl := ld.ResourceLogs().At(i)
		for j := 0; j < rl.ScopeLogs().Len(); j++ {
			lrs := rl.ScopeLogs().At(j).LogRecords()
			for k := 0; k < lrs.Len(); k++ {
				fn(rl.Resource().Attributes(), lrs.At(k).Attributes())
			}
		}
	}
}
