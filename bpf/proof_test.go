package bpf

import (
	"errors"
	"net"
	"os"
	"strings"
	"testing"
	"time"

	"golang.org/x/sys/unix"

	"github.com/tcpconnect/tcpconnect/internal/event"
	"github.com/tcpconnect/tcpconnect/internal/privtest"
)

// TestProbeProof checks the attach proof of the mode under test: it passed,
// it learned this process's tgid, its connect is never reported, and
// ExcludeSelf leaves this process's own connects out by that tgid.
func TestProbeProof(t *testing.T) {
	p := openForTest(t, Options{})
	defer p.Close()
	last := p.Attempts()[len(p.Attempts())-1]
	if last.Err != nil || last.Mode != p.Mode() || last.ProofSkipped != "" || last.Proof <= 0 {
		t.Fatalf("mode %s: last attempt %+v, want a proven one", p.Mode(), last)
	}
	if got := p.SelfTGID(); int(got) != os.Getpid() {
		t.Fatalf("SelfTGID() = %d, want %d", got, os.Getpid())
	}
	// p's own proof connect was made before its reader existed: it must not
	// be in the ring.
	drainRound(t, p, 0, func(raw []byte) {
		var c event.Connect
		if event.Type(raw) == event.TypeConnect && event.DecodeConnect(raw, &c) == nil &&
			int(c.TGID) == os.Getpid() && strings.HasPrefix(string(c.Comm()), "tcpc-") {
			t.Errorf("the proof connect was reported: %+v", c)
		}
	})

	q := openForTest(t, Options{ExcludeSelf: true})
	defer q.Close()
	ln, err := net.Listen("tcp4", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	ap := ln.Addr().(*net.TCPAddr).AddrPort()
	if err := privtest.Connect(ap, unix.SOCK_STREAM, false); err != nil {
		t.Fatalf("connect: %v", err)
	}
	ours := func(c *event.Connect) bool { return c.DstPort == ap.Port() && int(c.TGID) == os.Getpid() }
	if got := readConnects(t, p, 3*time.Second, ours, 1); len(got) != 1 {
		t.Fatalf("the probe without ExcludeSelf got %d records of the connect, want 1", len(got))
	}
	if got := connectsNow(t, q, ours); len(got) != 0 {
		t.Fatalf("the probe with ExcludeSelf reported this process's connect: %+v", got)
	}
}

// TestReadLSMState reads the active LSM list, mounting securityfs privately
// when it is not mounted (the build machine), or from the mount (the VM).
func TestReadLSMState(t *testing.T) {
	privtest.Require(t)
	s := readLSMState()
	if s.err != nil {
		t.Fatalf("read the LSM list: %v", s.err)
	}
	if !strings.Contains(","+s.list+",", ",capability,") {
		t.Fatalf("LSM list %q has no capability LSM: not the kernel's list", s.list)
	}
	t.Logf("active LSMs: %s", s.list)
}

// TestProbeLSMExpectation runs in the VM only (make unit skips it): the
// harness boots each kernel with bpf in its active LSM list and once
// without, and says which in TCPCONNECT_EXPECT_LSM. Without bpf active, an
// lsm program attaches but never runs, and the proof must catch exactly
// that; asked for explicitly, lsm must fail with the reason. With bpf
// active, the same proof passes.
func TestProbeLSMExpectation(t *testing.T) {
	privtest.Require(t)
	want := os.Getenv(privtest.EnvExpectLSM)
	if want != "active" && want != "inactive" {
		t.Fatalf("%s=%q: want active or inactive (the VM harness sets it; make unit skips this test)", privtest.EnvExpectLSM, want)
	}
	s := readLSMState()
	if s.err != nil || s.bpfInactive() != (want == "inactive") {
		t.Fatalf("LSM list %q (err %v), want bpf %s", s.list, s.err, want)
	}

	// The programs themselves, past the list check: attach, then prove.
	p := &Probe{}
	a := &probeAttacher{p: p, opts: Options{RingBytes: 1 << 16, WakeupBytes: 1 << 14}}
	if err := a.attach(ModeLSM); err != nil {
		t.Fatalf("attach lsm: %v", err)
	}
	ids, err := p.ProgramIDs()
	if err != nil {
		t.Fatal(err)
	}
	_, _, err = a.prove(ModeLSM)
	a.detach()
	privtest.RequireUnloaded(t, ids)
	if want == "inactive" && !errors.Is(err, ErrNotProven) {
		t.Fatalf("lsm attached without bpf active: proof error %v, want %v", err, ErrNotProven)
	}
	if want == "active" && err != nil {
		t.Fatalf("lsm with bpf active: proof failed: %v", err)
	}

	// Asked for explicitly.
	q, err := Open(Options{Mode: ModeLSM})
	if want == "active" {
		if err != nil {
			t.Fatalf("Open(lsm): %v", err)
		}
		q.Close()
		return
	}
	if err == nil {
		q.Close()
		t.Fatal("Open(lsm) succeeded without bpf an active LSM")
	}
	if !errors.Is(err, ErrLSMInactive) || !strings.Contains(err.Error(), "boot with lsm=") {
		t.Fatalf("Open(lsm) error %q: want the reason and how to boot", err)
	}
	var oe *OpenError
	if !errors.As(err, &oe) || len(oe.Attempts) != 1 || oe.Attempts[0].Mode != ModeLSM {
		t.Fatalf("Open(lsm) error %#v: want an OpenError with the one lsm attempt", err)
	}
}

// TestProbeCgroupSubtreeUnproven attaches the cgroup mode below a cgroup2
// mount's root, which need not hold the collector: it is used, unproven, and
// says why (a proof there could fail although the mode works for the
// subtree).
func TestProbeCgroupSubtreeUnproven(t *testing.T) {
	privtest.Require(t)
	root, err := CgroupV2Mount()
	if err != nil {
		t.Fatal(err)
	}
	sub, err := os.MkdirTemp(root, "tcpconnect-test-")
	if err != nil {
		t.Fatalf("create a child cgroup: %v", err)
	}
	defer os.Remove(sub)
	p, err := Open(Options{Mode: ModeCgroup, CgroupPath: sub, ExcludeSelf: true})
	if err != nil {
		t.Fatalf("Open(cgroup, %s): %v", sub, err)
	}
	defer p.Close()
	last := p.Attempts()[len(p.Attempts())-1]
	if last.Err != nil || last.Proof != 0 || !strings.Contains(last.ProofSkipped, "not a cgroup2 mount root") {
		t.Fatalf("attempt %+v: want an unproven cgroup mode that says why", last)
	}
	if p.SelfTGID() != 0 {
		t.Fatalf("SelfTGID() = %d without a proof", p.SelfTGID())
	}
}
