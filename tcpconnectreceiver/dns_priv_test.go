package tcpconnectreceiver

import (
	"context"
	"fmt"
	"net"
	"net/netip"
	"os"
	"os/exec"
	"slices"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	mdns "github.com/miekg/dns"
	"go.opentelemetry.io/collector/component/componenttest"
	"go.opentelemetry.io/collector/consumer/consumertest"
	"go.opentelemetry.io/collector/pdata/pcommon"
	"go.opentelemetry.io/collector/pdata/plog"
	"go.opentelemetry.io/collector/receiver"
	"go.opentelemetry.io/collector/receiver/receivertest"
	"go.opentelemetry.io/otel/attribute"
	"go.opentelemetry.io/otel/sdk/metric/metricdata"
	"go.opentelemetry.io/otel/sdk/metric/metricdata/metricdatatest"
	"golang.org/x/sys/unix"

	"github.com/tcpconnect/tcpconnect/internal/privtest"
	"github.com/tcpconnect/tcpconnect/tcpconnectreceiver/internal/metadata"
	"github.com/tcpconnect/tcpconnect/tcpconnectreceiver/internal/metadatatest"
)

// envResolveConnect makes the re-executed test binary a client that resolves
// a name with Go's resolver at a DNS server and connects to the answer:
// "name|server ip:port|connect port[|udp or tcp]".
const envResolveConnect = "TCPCONNECT_TEST_RESOLVE_CONNECT"

func init() {
	v := os.Getenv(envResolveConnect)
	if v == "" {
		return
	}
	f := strings.Split(v, "|")
	if len(f) != 3 && len(f) != 4 {
		fmt.Fprintln(os.Stderr, "bad", envResolveConnect, v)
		os.Exit(2)
	}
	network := "udp"
	if len(f) == 4 {
		network = f[3]
	}
	ips, err := goResolve(f[0], f[1], network, "ip4")
	if err != nil {
		fmt.Fprintln(os.Stderr, "resolve:", err)
		os.Exit(1)
	}
	port, _ := netip.ParseAddrPort("0.0.0.0:" + f[2])
	_ = privtest.Connect(netip.AddrPortFrom(ips[0], port.Port()), unix.SOCK_STREAM, false)
	os.Exit(0)
}

// The DNS server of these tests listens on a loopback address of its own;
// every answer points into 127.0.0.0/8 (or ::1), so all traffic stays local.
const dnsServer = "127.0.53.53:53"

// zone maps "name./TYPE" to the answer section served for that question.
type zone map[string][]string

// dnsTestServer is a real DNS server on the wire, UDP and TCP port 53.
type dnsTestServer struct {
	zone     zone
	truncate map[string]bool // names answered with TC=1 over UDP
	tcp      atomic.Int64    // questions that came over TCP
}

func (s *dnsTestServer) ServeDNS(w mdns.ResponseWriter, r *mdns.Msg) {
	m := new(mdns.Msg)
	m.SetReply(r)
	q := r.Question[0]
	name := strings.ToLower(q.Name)
	if w.LocalAddr().Network() == "tcp" {
		s.tcp.Add(1)
	} else if s.truncate[name] {
		m.Truncated = true
		_ = w.WriteMsg(m)
		return
	}
	for _, rr := range s.zone[name+"/"+mdns.TypeToString[q.Qtype]] {
		parsed, err := mdns.NewRR(rr)
		if err != nil {
			panic(err)
		}
		m.Answer = append(m.Answer, parsed)
	}
	_ = w.WriteMsg(m)
}

// serve starts s on a UDP and a TCP socket made with the given functions
// (so that they can belong to another network namespace).
func (s *dnsTestServer) serve(t *testing.T, pc net.PacketConn, ln net.Listener) {
	t.Helper()
	for _, srv := range []*mdns.Server{{PacketConn: pc, Handler: s}, {Listener: ln, Handler: s}} {
		started := make(chan struct{})
		srv.NotifyStartedFunc = func() { close(started) }
		go func() { _ = srv.ActivateAndServe() }()
		<-started
		t.Cleanup(func() { _ = srv.Shutdown() })
	}
	// Shutdown may leave the UDP socket to the serving goroutine to close:
	// close both here, so the next test can bind the address at once.
	t.Cleanup(func() { _ = pc.Close(); _ = ln.Close() })
}

func listenDNS(t *testing.T, addr string) (net.PacketConn, net.Listener) {
	t.Helper()
	pc, err := net.ListenPacket("udp", addr)
	if err != nil {
		t.Fatalf("dns server udp %s: %v", addr, err)
	}
	ln, err := net.Listen("tcp", addr)
	if err != nil {
		pc.Close()
		t.Fatalf("dns server tcp %s: %v", addr, err)
	}
	return pc, ln
}

// goResolve asks server with Go's own resolver (network "udp" lets it fall
// back to TCP on truncation, as it does by itself).
func goResolve(name, server, network, family string) ([]netip.Addr, error) {
	r := &net.Resolver{PreferGo: true, Dial: func(ctx context.Context, net_, _ string) (net.Conn, error) {
		var d net.Dialer
		if network == "tcp" {
			net_ = "tcp"
		}
		return d.DialContext(ctx, net_, server)
	}}
	// Room for the resolver's own retry (5 s per attempt) when a UDP query
	// is lost on a loaded machine: the tests are about names, not delivery.
	ctx, cancel := context.WithTimeout(context.Background(), 15*time.Second)
	defer cancel()
	return r.LookupNetIP(ctx, family, name)
}

// named is a connect record's DNS view.
type named struct {
	pid    int64
	server string
	names  []string
	age    float64
	source string // tcpconnect.dns.source
	// outcome and errType: tcpconnect.outcome and error.type.
	outcome, errType string
}

// namedRecords returns the records to ip:port in the sink.
func namedRecords(sink *consumertest.LogsSink, ip string, port uint16) []named {
	var out []named
	for _, ld := range sink.AllLogs() {
		forEachRecord(ld, func(res, a pcommon.Map) {
			if strAttr(a, attrNetPeerAddress) != ip || intAttr(a, attrNetPeerPort) != int64(port) {
				return
			}
			n := named{pid: intAttr(res, attrProcessPID), server: strAttr(a, attrServerAddress),
				outcome: strAttr(a, attrOutcome), errType: strAttr(a, attrErrorType)}
			if v, ok := a.Get(attrDNSNames); ok {
				for _, s := range v.Slice().AsRaw() {
					n.names = append(n.names, s.(string))
				}
			}
			if v, ok := a.Get(attrDNSNameAge); ok {
				n.age = v.Double()
			}
			n.source = strAttr(a, attrDNSSource)
			out = append(out, n)
		})
	}
	return out
}

// dnsHarness is one receiver with DNS on, a DNS server and a closed port to
// connect to (a refused connect is still a connect attempt).
type dnsHarness struct {
	t    *testing.T
	sink *consumertest.LogsSink
	tel  *componenttest.Telemetry
	srv  *dnsTestServer
	port uint16

	cfg     *Config
	rcv     receiver.Logs // nil while stopped
	started int
}

func newDNSHarness(t *testing.T, z zone, truncate map[string]bool, opts ...func(*Config)) *dnsHarness {
	privtest.Require(t)
	h := &dnsHarness{t: t, sink: new(consumertest.LogsSink), tel: componenttest.NewTelemetry(),
		srv: &dnsTestServer{zone: z, truncate: truncate}}
	t.Cleanup(func() { _ = h.tel.Shutdown(context.Background()) })
	pc, ln := listenDNS(t, dnsServer)
	h.srv.serve(t, pc, ln)

	ln, err := net.Listen("tcp4", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	h.port = ln.Addr().(*net.TCPAddr).AddrPort().Port()
	ln.Close()

	cfg := createDefaultConfig()
	cfg.Attach = privtest.Mode()
	cfg.ExcludeSelf = false
	cfg.PollInterval = 20 * time.Millisecond
	cfg.Batch.Timeout = 20 * time.Millisecond
	cfg.DNS.MinTTL = time.Second
	// Only the test's own port: the host's other connects stay in the kernel.
	cfg.Filter.IncludePorts = []int{int(h.port)}
	for _, o := range opts {
		o(cfg)
	}
	h.cfg = cfg
	t.Cleanup(func() {
		if h.rcv != nil {
			h.stop()
		}
	})
	h.start()
	return h
}

// start creates and starts the receiver.
func (h *dnsHarness) start() {
	t := h.t
	set := receivertest.NewNopSettings(metadata.Type)
	set.TelemetrySettings = h.tel.NewTelemetrySettings()
	rcv, err := NewFactory().CreateLogs(context.Background(), set, h.cfg, h.sink)
	if err != nil {
		t.Fatal(err)
	}
	if err := rcv.Start(context.Background(), componenttest.NewNopHost()); err != nil {
		t.Fatalf("Start (attach %s): %v", h.cfg.Attach, err)
	}
	h.rcv = rcv
	if h.started++; h.started > 1 {
		return // the attach metrics below count since the first start
	}
	src := rcv.(*tcpconnectReceiver).src
	privtest.CheckAutoMode(t, src.Mode())
	// The mode in use was proven although the port filter leaves out the
	// proof connect's port, and each mode left before it is counted.
	metadatatest.AssertEqualReceiverTcpconnectAttachProven(t, h.tel, []metricdata.DataPoint[int64]{
		{Value: 1, Attributes: attribute.NewSet(attribute.String("mode", src.Mode()))},
	}, metricdatatest.IgnoreTimestamp())
	if got, want := counter(t, h.tel, "receiver_tcpconnect_attach_modes_left"), int64(len(src.Attempts())-1); got != want {
		t.Errorf("attach modes left: %d, want %d (attempts %+v)", got, want, src.Attempts())
	}
}

// stop shuts the receiver down.
func (h *dnsHarness) stop() {
	if err := h.rcv.Shutdown(context.Background()); err != nil {
		h.t.Errorf("Shutdown: %v", err)
	}
	h.rcv = nil
}

// connect makes one refused connect to ip and waits for its record.
func (h *dnsHarness) connect(ip string) named {
	h.t.Helper()
	before := len(namedRecords(h.sink, netip.MustParseAddr(ip).Unmap().String(), h.port))
	if err := privtest.Connect(netip.AddrPortFrom(netip.MustParseAddr(ip), h.port), unix.SOCK_STREAM, false); err != unix.ECONNREFUSED {
		h.t.Fatalf("connect %s: %v, want ECONNREFUSED", ip, err)
	}
	got := h.waitRecord(netip.MustParseAddr(ip).Unmap().String(), before+1)[before]
	// The record waited for its outcome (outcome is on by default), and
	// still carries its names.
	if got.outcome != "refused" || got.errType != "ECONNREFUSED" {
		h.t.Errorf("record to %s: outcome %q error.type %q, want refused ECONNREFUSED", ip, got.outcome, got.errType)
	}
	return got
}

// waitRecord waits until ip has n records and returns them.
func (h *dnsHarness) waitRecord(ip string, n int) []named {
	h.t.Helper()
	var got []named
	for end := time.Now().Add(10 * time.Second); time.Now().Before(end); time.Sleep(10 * time.Millisecond) {
		if got = namedRecords(h.sink, ip, h.port); len(got) >= n {
			return got
		}
	}
	h.t.Fatalf("%s: %d records, want %d", ip, len(got), n)
	return nil
}

func (h *dnsHarness) resolve(name, network, family string) []netip.Addr {
	h.t.Helper()
	ips, err := goResolve(name, dnsServer, network, family)
	if err != nil {
		h.t.Fatalf("resolve %s: %v", name, err)
	}
	return ips
}

func wantNames(t *testing.T, got named, server string, names ...string) {
	t.Helper()
	if got.server != server || !slices.Equal(got.names, names) {
		t.Errorf("record server.address=%q names=%q, want %q %q", got.server, got.names, server, names)
	}
}

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
