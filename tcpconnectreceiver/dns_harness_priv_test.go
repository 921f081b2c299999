package tcpconnectreceiver

import (
	"context"
	"fmt"
	"net"
	"net/netip"
	"os"
	"slices"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	mdns "github.com/miekg/dns"
	"go.opentelemetry.io/collector/component/componenttest"
	"go.opentelemetry.io/collector/consumer/consumertest"
	"go.opentelemetry.io/collector/pdata/pcommon"
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
	srv  *dnsTestServer // nil: newReceiverHarness, no DNS server
	port uint16

	cfg     *Config
	rcv     receiver.Logs // nil while stopped
	started int
}

// newDNSHarness starts a DNS server for zone z (truncating the answers to
// the names in truncate over UDP) and a receiver (newReceiverHarness) that
// reports connects to a closed port.
func newDNSHarness(t *testing.T, z zone, truncate map[string]bool, opts ...func(*Config)) *dnsHarness {
	privtest.Require(t)
	srv := &dnsTestServer{zone: z, truncate: truncate}
	pc, ln := listenDNS(t, dnsServer)
	srv.serve(t, pc, ln)

	ln, err := net.Listen("tcp4", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	port := ln.Addr().(*net.TCPAddr).AddrPort().Port()
	ln.Close()
	h := newReceiverHarness(t, port, opts...)
	h.srv = srv
	return h
}

// newReceiverHarness starts a receiver (attach mode privtest.Mode(),
// polling and flushing every 20 ms) that reports connects to port only,
// with opts applied to its config; its harness has no DNS server.
func newReceiverHarness(t *testing.T, port uint16, opts ...func(*Config)) *dnsHarness {
	privtest.Require(t)
	h := &dnsHarness{t: t, sink: new(consumertest.LogsSink), tel: componenttest.NewTelemetry(), port: port}
	t.Cleanup(func() { _ = h.tel.Shutdown(context.Background()) })

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
