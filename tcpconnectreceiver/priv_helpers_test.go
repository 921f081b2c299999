package tcpconnectreceiver

import (
	"fmt"
	"io"
	"net"
	"net/netip"
	"os"
	"os/exec"
	"runtime"
	"testing"
	"unsafe"

	"go.opentelemetry.io/collector/consumer/consumertest"
	"go.opentelemetry.io/collector/pdata/pcommon"
	"golang.org/x/sys/unix"

	"github.com/tcpconnect/tcpconnect/internal/privtest"
)

// envChildConnect makes the test binary, re-executed as a child, connect to
// the address it holds and exit (see TestMain's caller below).
const envChildConnect = "TCPCONNECT_TEST_CHILD_CONNECT"

// envChildHostile makes the re-executed child name its thread hostileComm,
// connect to the address it holds, and wait for its stdin to close before
// it exits (so that its /proc entry is there for the receiver).
const envChildHostile = "TCPCONNECT_TEST_CHILD_HOSTILE"

// hostileComm is a thread name that is not UTF-8 (15 bytes, the most).
const hostileComm = "\xff\xfeevil\xc3-thr\xe2\x82"

func init() {
	// A child re-executed by TestReceiverPrivileged: connect and exit before
	// any test (or goleak) runs. Not state: it reads the environment once.
	if addr := os.Getenv(envChildConnect); addr != "" {
		err := privtest.Connect(netip.MustParseAddrPort(addr), unix.SOCK_STREAM, false)
		if err != nil {
			fmt.Fprintln(os.Stderr, "child connect:", err)
			os.Exit(1)
		}
		os.Exit(0)
	}
	if addr := os.Getenv(envChildHostile); addr != "" {
		if err := hostileChild(netip.MustParseAddrPort(addr)); err != nil {
			fmt.Fprintln(os.Stderr, "hostile child:", err)
			os.Exit(1)
		}
		os.Exit(0)
	}
}

// hostileChild names its thread hostileComm with prctl(PR_SET_NAME), as
// any unprivileged process may, connects from that thread to ap, and waits
// for stdin to close.
func hostileChild(ap netip.AddrPort) error {
	runtime.LockOSThread() // the name is the thread's: connect from it
	name := []byte(hostileComm + "\x00")
	if err := unix.Prctl(unix.PR_SET_NAME, uintptr(unsafe.Pointer(&name[0])), 0, 0, 0); err != nil {
		return fmt.Errorf("prctl(PR_SET_NAME): %w", err)
	}
	if err := privtest.Connect(ap, unix.SOCK_STREAM, false); err != nil {
		return fmt.Errorf("connect %s: %w", ap, err)
	}
	_, err := io.Copy(io.Discard, os.Stdin)
	return err
}

// seen is one connect record as the receiver emitted it.
type seen struct {
	pid, ppid int64
	exeName   string
	exePath   string
	peer      string
	port      int64
	mode      string
	event     string
	names     int
	// For a failure's message: when the connect was made (the record's
	// Timestamp, from the kernel's clock), when the receiver read it, and
	// its outcome. (Once, in the VM, one connect came back twice.)
	ts, observed string
	outcome      string
}

// recordsWhere returns the records in sink that keep accepts, in the order
// they reached the sink.
func recordsWhere(sink *consumertest.LogsSink, keep func(seen) bool) []seen {
	var out []seen
	for _, ld := range sink.AllLogs() {
		for i := 0; i < ld.ResourceLogs().Len(); i++ {
			rl := ld.ResourceLogs().At(i)
			res := rl.Resource().Attributes()
			for j := 0; j < rl.ScopeLogs().Len(); j++ {
				sl := rl.ScopeLogs().At(j)
				lrs := sl.LogRecords()
				for k := 0; k < lrs.Len(); k++ {
					lr := lrs.At(k)
					a := lr.Attributes()
					names := 0
					if v, ok := a.Get(attrDNSNames); ok {
						names = v.Slice().Len()
					}
					s := seen{
						pid: intAttr(res, attrProcessPID), ppid: intAttr(res, attrProcessPPID),
						exeName: strAttr(res, attrProcessExeName), exePath: strAttr(res, attrProcessExePath),
						peer: strAttr(a, attrNetPeerAddress), port: intAttr(a, attrNetPeerPort),
						mode: strAttr(sl.Scope().Attributes(), attrAttachMode), event: lr.EventName(), names: names,
						ts: lr.Timestamp().String(), observed: lr.ObservedTimestamp().String(), outcome: strAttr(a, attrOutcome),
					}
					if keep(s) {
						out = append(out, s)
					}
				}
			}
		}
	}
	return out
}

func intAttr(m pcommon.Map, k string) int64 {
	v, _ := m.Get(k)
	return v.Int()
}

func strAttr(m pcommon.Map, k string) string {
	v, _ := m.Get(k)
	return v.Str()
}

func listen(t *testing.T, network, addr string) (net.Listener, netip.AddrPort) {
	t.Helper()
	ln, err := net.Listen(network, addr)
	if err != nil {
		privtest.SkipOrFail(t, fmt.Sprintf("no %s listener here: %v", network, err))
	}
	t.Cleanup(func() { ln.Close() })
	return ln, ln.Addr().(*net.TCPAddr).AddrPort()
}

// foreignClient returns a command line that fetches url with an HTTP client
// no one here wrote: curl, wget or busybox wget.
func foreignClient(url string) ([]string, string) {
	if p, err := exec.LookPath("curl"); err == nil {
		return []string{p, "-s", "-o", "/dev/null", url}, p
	}
	if p, err := exec.LookPath("wget"); err == nil {
		return []string{p, "-q", "-O", "/dev/null", url}, p
	}
	for _, p := range []string{"/bin/busybox", "/usr/bin/busybox"} {
		if _, err := os.Stat(p); err == nil {
			return []string{p, "wget", "-q", "-O", "/dev/null", url}, p
		}
	}
	if p, err := exec.LookPath("busybox"); err == nil {
		return []string{p, "wget", "-q", "-O", "/dev/null", url}, p
	}
	return nil, ""
}
