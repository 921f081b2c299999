package tcpconnectreceiver

import (
	"context"
	"fmt"
	"net"
	"net/http"
	"net/http/httptest"
	"net/netip"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"
	"unicode/utf8"

	"go.opentelemetry.io/collector/component/componenttest"
	"go.opentelemetry.io/collector/consumer/consumertest"
	"go.opentelemetry.io/collector/pdata/pcommon"
	"go.opentelemetry.io/collector/pdata/plog"
	"go.opentelemetry.io/collector/receiver/receivertest"
	"golang.org/x/sys/unix"

	"github.com/tcpconnect/tcpconnect/internal/privtest"
	"github.com/tcpconnect/tcpconnect/internal/procinfo"
	"github.com/tcpconnect/tcpconnect/tcpconnectreceiver/internal/metadata"
	"github.com/tcpconnect/tcpconnect/tcpconnectreceiver/internal/metadatatest"
)

func TestReceiverPrivileged(t *testing.T) {
	privtest.Require(t)
	cfg := createDefaultConfig()
	cfg.Attach = privtest.Mode()
	cfg.ExcludeSelf = false // the test's own connects are the ones to see
	cfg.PollInterval = 20 * time.Millisecond
	cfg.Batch.Timeout = 20 * time.Millisecond
	sink := new(consumertest.LogsSink)
	rcv, err := NewFactory().CreateLogs(context.Background(), receivertest.NewNopSettings(metadata.Type), cfg, sink)
	if err != nil {
		t.Fatal(err)
	}
	if err := rcv.Start(context.Background(), componenttest.NewNopHost()); err != nil {
		t.Fatalf("Start (attach %s): %v", cfg.Attach, err)
	}
	r := rcv.(*tcpconnectReceiver)
	mode := r.src.Mode()
	t.Logf("attach mode %s", mode)
	privtest.CheckAutoMode(t, mode)
	ids, err := r.src.(probeSource).ProgramIDs()
	if err != nil {
		t.Fatal(err)
	}
	self := int64(os.Getpid())
	exe, _ := os.Executable()

	// mark is how many records the sink holds: a subtest takes it before
	// its connect, and looks only at the records after it. An earlier
	// subtest's listener port may be handed out again once it is closed,
	// and its record is not this subtest's.
	all := func() []seen { return recordsWhere(sink, func(seen) bool { return true }) }
	mark := func() int { return len(all()) }
	// since returns the records after mark from that keep accepts.
	since := func(from int, keep func(seen) bool) []seen {
		var out []seen
		for _, s := range all()[from:] {
			if keep(s) {
				out = append(out, s)
			}
		}
		return out
	}
	// later is the listener of the connect that waitOne makes after the
	// one it waits for, whose record says the earlier ones are all in.
	_, later := listen(t, "tcp4", "127.0.0.1:0")
	// waitFor polls until ok, for at most 5 s, and says whether it is.
	waitFor := func(ok func() bool) bool {
		for end := time.Now().Add(5 * time.Second); time.Now().Before(end); time.Sleep(10 * time.Millisecond) {
			if ok() {
				return true
			}
		}
		return ok()
	}
	// waitOne waits until port has a record after mark from, then for the
	// record of a later connect (to later), and checks there is exactly
	// one. Every connect before the later one has closed its socket, so its
	// records and their outcomes are in the ring before the later record
	// and the reader sends them first (a record waits only for its
	// outcome): a duplicate would be in by then.
	waitOne := func(t *testing.T, from int, port uint16) seen {
		t.Helper()
		onPort := func(s seen) bool { return s.port == int64(port) }
		waitFor(func() bool { return len(since(from, onPort)) > 0 })
		if port != later.Port() {
			m := mark()
			if err := privtest.Connect(later, unix.SOCK_STREAM, false); err != nil {
				t.Fatalf("later connect: %v", err)
			}
			onLater := func(s seen) bool { return s.port == int64(later.Port()) && s.pid == self }
			if !waitFor(func() bool { return len(since(m, onLater)) > 0 }) {
				t.Fatalf("no record of the later connect to %s in 5 s", later)
			}
		}
		got := since(from, onPort)
		if len(got) != 1 {
			t.Fatalf("port %d: %d records, want exactly 1: %+v", port, len(got), got)
		}
		s := got[0]
		if s.event != EventName || s.mode != mode {
			t.Errorf("event %q mode %q, want %q %q", s.event, s.mode, EventName, mode)
		}
		if s.names != 0 {
			t.Errorf("tcpconnect.dns.names has %d names without DNS, want 0", s.names)
		}
		return s
	}
	checkSelf := func(t *testing.T, s seen, peer string) {
		t.Helper()
		if s.pid != self || s.exeName != filepath.Base(exe) || s.exePath != exe || s.peer != peer {
			t.Errorf("record %+v, want pid %d exe %s peer %s", s, self, exe, peer)
		}
	}

	tests := []struct {
		name        string
		network     string
		addr        string
		nonblocking bool
	}{
		{"ipv4 blocking", "tcp4", "127.0.0.1:0", false},
		{"ipv6 blocking", "tcp6", "[::1]:0", false},
		{"ipv4 nonblocking", "tcp4", "127.0.0.1:0", true},
		{"ipv6 nonblocking", "tcp6", "[::1]:0", true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, ap := listen(t, tt.network, tt.addr)
			from := mark()
			if err := privtest.Connect(ap, unix.SOCK_STREAM, tt.nonblocking); err != nil {
				t.Fatalf("connect %s: %v", ap, err)
			}
			checkSelf(t, waitOne(t, from, ap.Port()), ap.Addr().String())
		})
	}

	t.Run("refused", func(t *testing.T) {
		ln, ap := listen(t, "tcp4", "127.0.0.1:0")
		ln.Close()
		from := mark()
		if err := privtest.Connect(ap, unix.SOCK_STREAM, false); err != unix.ECONNREFUSED {
			t.Fatalf("connect to closed port: %v, want ECONNREFUSED", err)
		}
		checkSelf(t, waitOne(t, from, ap.Port()), "127.0.0.1")
	})

	t.Run("child process", func(t *testing.T) {
		_, ap := listen(t, "tcp4", "127.0.0.1:0")
		cmd := exec.Command(exe, "-test.run=^$")
		cmd.Env = append(os.Environ(), envChildConnect+"="+ap.String())
		from := mark()
		if out, err := cmd.CombinedOutput(); err != nil {
			t.Fatalf("child: %v: %s", err, out)
		}
		s := waitOne(t, from, ap.Port())
		if s.pid != int64(cmd.Process.Pid) || s.ppid != self || s.exeName != filepath.Base(exe) {
			t.Errorf("record %+v, want pid %d ppid %d exe %s", s, cmd.Process.Pid, self, filepath.Base(exe))
		}
	})

	t.Run("foreign client", func(t *testing.T) {
		srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) { fmt.Fprintln(w, "ok") }))
		defer srv.Close()
		argv, bin := foreignClient(srv.URL)
		if argv == nil {
			privtest.SkipOrFail(t, "no curl, wget or busybox here (Debian packages curl, wget, busybox-static)")
		}
		cmd := exec.Command(argv[0], argv[1:]...)
		from := mark()
		if out, err := cmd.CombinedOutput(); err != nil {
			t.Fatalf("%s: %v: %s", strings.Join(argv, " "), err, out)
		}
		ap := netip.MustParseAddrPort(srv.Listener.Addr().String())
		s := waitOne(t, from, ap.Port())
		real, _ := filepath.EvalSymlinks(bin)
		if s.pid != int64(cmd.Process.Pid) || s.exeName != filepath.Base(real) || s.peer != "127.0.0.1" {
			t.Errorf("record %+v, want pid %d exe %s peer 127.0.0.1", s, cmd.Process.Pid, filepath.Base(real))
		}
		t.Logf("%s: %+v", argv[0], s)
	})

	t.Run("udp and unix give none", func(t *testing.T) {
		// Only this process's records count: every other process on the
		// host connects too, and the receiver reports them all. The
		// marker is waitOne's later connect.
		marker := later
		uc, err := net.ListenPacket("udp4", "127.0.0.1:0")
		if err != nil {
			t.Fatal(err)
		}
		defer uc.Close()
		sock := filepath.Join(t.TempDir(), "s")
		ul, err := net.Listen("unix", sock)
		if err != nil {
			t.Fatal(err)
		}
		defer ul.Close()
		// The earlier subtests waited for their records: what comes after
		// this is the udp connect's, the unix connect's and the marker's.
		from := mark()
		udp := uc.LocalAddr().(*net.UDPAddr).AddrPort()
		if err := privtest.Connect(udp, unix.SOCK_DGRAM, false); err != nil {
			t.Fatalf("udp connect: %v", err)
		}
		c, err := net.Dial("unix", sock)
		if err != nil {
			t.Fatal(err)
		}
		c.Close()
		// The ring keeps order: once the marker's record is in, the
		// earlier connects' would be too.
		if err := privtest.Connect(marker, unix.SOCK_STREAM, false); err != nil {
			t.Fatal(err)
		}
		waitOne(t, from, marker.Port())
		if got := since(from, func(s seen) bool { return s.pid == self }); len(got) != 1 || got[0].port != int64(marker.Port()) {
			t.Errorf("records of this process for a udp connect to %s, a unix connect and the marker: %+v, want only the marker's (port %d)", udp, got, marker.Port())
		}
	})

	if err := rcv.Shutdown(context.Background()); err != nil {
		t.Fatalf("Shutdown: %v", err)
	}
	privtest.RequireUnloaded(t, ids)

	// The real lifecycle, twice, as mdatagen's generated test would run it.
	for i := range 2 {
		rcv, err := NewFactory().CreateLogs(context.Background(), receivertest.NewNopSettings(metadata.Type), cfg, consumertest.NewNop())
		if err != nil {
			t.Fatal(err)
		}
		if err := rcv.Start(context.Background(), componenttest.NewNopHost()); err != nil {
			t.Fatalf("Start %d: %v", i, err)
		}
		if err := rcv.Shutdown(context.Background()); err != nil {
			t.Fatalf("Shutdown %d: %v", i, err)
		}
	}
}

// TestReceiverPrivilegedHostileStrings: a process names its thread with
// bytes that are not UTF-8 (prctl(PR_SET_NAME)) and runs with a 1.4 MB
// command line that is not UTF-8 either, then connects. Its record is valid
// UTF-8 throughout, the command line capped and marked, both fixes counted.
func TestReceiverPrivilegedHostileStrings(t *testing.T) {
	privtest.Require(t)
	cfg := createDefaultConfig()
	cfg.Attach = privtest.Mode()
	cfg.IncludeCommandLine = true
	cfg.PollInterval = 20 * time.Millisecond
	cfg.Batch.Timeout = 20 * time.Millisecond
	sink := new(consumertest.LogsSink)
	tel := componenttest.NewTelemetry()
	defer func() { _ = tel.Shutdown(context.Background()) }()
	rcv, err := NewFactory().CreateLogs(context.Background(), metadatatest.NewSettings(tel), cfg, sink)
	if err != nil {
		t.Fatal(err)
	}
	if err := rcv.Start(context.Background(), componenttest.NewNopHost()); err != nil {
		t.Fatalf("Start (attach %s): %v", cfg.Attach, err)
	}
	ids, err := rcv.(*tcpconnectReceiver).src.(probeSource).ProgramIDs()
	if err != nil {
		t.Fatal(err)
	}

	_, ap := listen(t, "tcp4", "127.0.0.1:0")
	exe, _ := os.Executable()
	args := []string{"-test.run=^$"}
	for range 12 { // 12 arguments of 120,000 bytes: under MAX_ARG_STRLEN each
		args = append(args, strings.Repeat("A\xff", 60000))
	}
	cmd := exec.Command(exe, args...)
	cmd.Env = append(os.Environ(), envChildHostile+"="+ap.String())
	stdin, err := cmd.StdinPipe()
	if err != nil {
		t.Fatal(err)
	}
	var stderr strings.Builder
	cmd.Stderr = &stderr
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	defer func() {
		stdin.Close()
		if err := cmd.Wait(); err != nil {
			t.Errorf("child: %v: %s", err, stderr.String())
		}
	}()

	// The record of the child's connect, and the resource it is under.
	var res, rec pcommon.Map
	var batch plog.Logs
	for end := time.Now().Add(5 * time.Second); time.Now().Before(end) && batch == (plog.Logs{}); time.Sleep(10 * time.Millisecond) {
		for _, ld := range sink.AllLogs() {
			for _, rl := range ld.ResourceLogs().All() {
				for _, lr := range rl.ScopeLogs().At(0).LogRecords().All() {
					if intAttr(lr.Attributes(), attrNetPeerPort) == int64(ap.Port()) {
						res, rec, batch = rl.Resource().Attributes(), lr.Attributes(), ld
					}
				}
			}
		}
	}
	if batch == (plog.Logs{}) {
		t.Fatalf("no record of the child's connect to %s", ap)
	}
	t.Logf("thread.name %q, process.command_line %d bytes ending %q", strAttr(rec, attrThreadName), len(strAttr(res, attrProcessCmdLine)), strAttr(res, attrProcessCmdLine)[max(0, len(strAttr(res, attrProcessCmdLine))-12):])
	checkUTF8(t, batch)
	if pid := intAttr(res, attrProcessPID); pid != int64(cmd.Process.Pid) {
		t.Errorf("process.pid %d, want the child's %d", pid, cmd.Process.Pid)
	}
	if name := strAttr(rec, attrThreadName); !strings.Contains(name, "\uFFFD") || !strings.Contains(name, "evil") {
		t.Errorf("thread.name %q, want the child's name with U+FFFD for its invalid bytes", name)
	}
	cl := strAttr(res, attrProcessCmdLine)
	if len(cl) > cfg.MaxCommandLineBytes || !strings.HasPrefix(cl, exe+" -test.run=^$ A\uFFFDA\uFFFD") || !strings.HasSuffix(cl, procinfo.TruncationMarker) {
		t.Errorf("process.command_line %d bytes, %.60q...: want at most %d, the child's argv cleaned, ending in %q",
			len(cl), cl, cfg.MaxCommandLineBytes, procinfo.TruncationMarker)
	}
	if !utf8.ValidString(cl) {
		t.Errorf("process.command_line is not valid UTF-8")
	}
	waitFor(t, "the fixes counted", func() bool {
		return counter(t, tel, "receiver_tcpconnect_strings_sanitized") >= 2 && counter(t, tel, "receiver_tcpconnect_strings_truncated") >= 1
	})

	if err := rcv.Shutdown(context.Background()); err != nil {
		t.Fatalf("Shutdown: %v", err)
	}
	privtest.RequireUnloaded(t, ids)
}
