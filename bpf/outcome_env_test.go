package bpf

import (
	"fmt"
	"net/netip"
	"os"
	"path/filepath"
	"strconv"
	"testing"

	"github.com/cilium/ebpf"
	"github.com/cilium/ebpf/asm"
	"github.com/cilium/ebpf/link"
	"github.com/vishvananda/netlink"
	"github.com/vishvananda/netns"
	"golang.org/x/sys/unix"

	"github.com/tcpconnect/tcpconnect/internal/privtest"
)

// The outcome test's network: a client namespace joined by a veth pair to a
// router namespace that drops what goes to dropNet (a blackhole route: SYNs
// vanish, the client times out) and answers what goes to rejectNet with ICMP
// host unreachable, as a router does when no host answers its ARP requests
// (rejectNet is on a link where no one answers; the router gives up after one
// 100 ms probe). Routes and ARP do what nftables drop and reject rules would,
// with nothing but the kernel: the VM guest has no nft binary. And the ICMP
// error arrives after the connect() call returned, as from a real router: a
// reject rule in the same host answers while the connecting socket is still
// locked, which the kernel keeps as a soft error only (see event.Outcome).
var (
	clientAddr = netip.MustParsePrefix("198.18.9.2/24")
	routerAddr = netip.MustParsePrefix("198.18.9.1/24")
	dropNet    = netip.MustParsePrefix("198.18.10.0/24")
	rejectNet  = netip.MustParsePrefix("198.18.11.0/24")
	// rejectGw is the router's address on rejectNet's silent link.
	rejectGw = netip.MustParsePrefix("198.18.11.254/24")
)

// outcomeNet is the client namespace.
type outcomeNet struct {
	client netns.NsHandle
}

// enter runs fn on the calling goroutine, locked to its thread, in the
// client namespace: sockets and child processes made there live in it.
// It locks the thread itself: a subtest's goroutine is not the locked one
// of its parent, and an unlocked goroutine that switched namespaces could
// come back on another thread and leave this one in the client namespace
// for whatever ran there next (in the VM, a later test's [::1] listener
// was made in it and its connect from the host namespace was refused).
func (n *outcomeNet) enter(t *testing.T, fn func()) {
	t.Helper()
	privtest.InNetns(t, n.client, fn)
}

// writeSysctl writes a sysctl of the current thread's network namespace.
func writeSysctl(name, value string) error {
	return os.WriteFile(filepath.Join("/proc/sys", name), []byte(value), 0o644)
}

// newOutcomeNet builds the namespaces. The caller has locked its OS thread.
func newOutcomeNet(t *testing.T) *outcomeNet {
	t.Helper()
	must := func(what string, err error) {
		t.Helper()
		if err != nil {
			t.Fatalf("outcome net: %s: %v", what, err)
		}
	}
	origin, err := netns.Get()
	must("current netns", err)
	t.Cleanup(func() { origin.Close() })
	defer func() { must("back to origin", netns.Set(origin)) }()

	router, err := netns.New()
	must("router netns", err)
	t.Cleanup(func() { router.Close() })
	must("router forwarding", writeSysctl("net/ipv4/ip_forward", "1"))
	must("router icmp rate", writeSysctl("net/ipv4/icmp_ratelimit", "0"))

	client, err := netns.New()
	must("client netns", err)
	t.Cleanup(func() { client.Close() })
	// Two SYNs, then ETIMEDOUT: about 3 s instead of two minutes.
	must("client syn retries", writeSysctl("net/ipv4/tcp_syn_retries", "1"))

	suffix := strconv.Itoa(os.Getpid() % 100000)
	veth := &netlink.Veth{LinkAttrs: netlink.LinkAttrs{Name: "tco" + suffix}, PeerName: "tcr" + suffix}
	must("add veth pair (needs the veth module)", netlink.LinkAdd(veth))
	peer, err := netlink.LinkByName(veth.PeerName)
	must("peer link", err)
	must("move peer", netlink.LinkSetNsFd(peer, int(router)))
	c, err := netlink.LinkByName(veth.Name)
	must("client link", err)
	must("client addr", netlink.AddrAdd(c, &netlink.Addr{IPNet: ipNet(clientAddr)}))
	must("client up", netlink.LinkSetUp(c))
	lo, err := netlink.LinkByName("lo")
	must("client lo", err)
	must("client lo up", netlink.LinkSetUp(lo))
	must("client default route", netlink.RouteAdd(&netlink.Route{LinkIndex: c.Attrs().Index, Gw: routerAddr.Addr().AsSlice()}))

	h, err := netlink.NewHandleAt(router, unix.NETLINK_ROUTE)
	must("netlink in router", err)
	defer h.Close()
	peer, err = h.LinkByName(veth.PeerName)
	must("peer in router", err)
	must("router addr", h.AddrAdd(peer, &netlink.Addr{IPNet: ipNet(routerAddr)}))
	must("router up", h.LinkSetUp(peer))
	must("blackhole route", h.RouteAdd(&netlink.Route{Dst: ipNet(dropNet), Type: unix.RTN_BLACKHOLE}))
	// rejectNet's link: a veth pair inside the router, the far end without
	// an address, so no ARP request for rejectNet is ever answered.
	silent := &netlink.Veth{LinkAttrs: netlink.LinkAttrs{Name: "tcu" + suffix}, PeerName: "tcv" + suffix}
	must("add silent veth pair", h.LinkAdd(silent))
	near, err := h.LinkByName(silent.Name)
	must("silent link", err)
	far, err := h.LinkByName(silent.PeerName)
	must("silent far end", err)
	must("silent addr", h.AddrAdd(near, &netlink.Addr{IPNet: ipNet(rejectGw)}))
	must("silent up", h.LinkSetUp(near))
	must("silent far end up", h.LinkSetUp(far))
	must("enter router", netns.Set(router))
	must("one ARP probe", writeSysctl("net/ipv4/neigh/"+silent.Name+"/mcast_solicit", "1"))
	must("100 ms ARP wait", writeSysctl("net/ipv4/neigh/"+silent.Name+"/retrans_time_ms", "100"))
	return &outcomeNet{client: client}
}

// denyCgroup makes a child of the cgroup v2 root with a connect4 program that
// returns 0 (EPERM), and returns an open descriptor of it for
// SysProcAttr.CgroupFD.
func denyCgroup(t *testing.T) int {
	t.Helper()
	root, err := CgroupV2Mount()
	if err != nil {
		t.Fatal(err)
	}
	dir := filepath.Join(root, fmt.Sprintf("tcpconnect-deny-%d", os.Getpid()))
	if err := os.Mkdir(dir, 0o755); err != nil {
		t.Fatalf("make cgroup: %v", err)
	}
	t.Cleanup(func() { _ = os.Remove(dir) })
	prog, err := ebpf.NewProgram(&ebpf.ProgramSpec{
		Type: ebpf.CGroupSockAddr, AttachType: ebpf.AttachCGroupInet4Connect, License: "GPL",
		Instructions: asm.Instructions{asm.Mov.Imm(asm.R0, 0), asm.Return()},
	})
	if err != nil {
		t.Fatalf("load deny program: %v", err)
	}
	t.Cleanup(func() { prog.Close() })
	l, err := link.AttachCgroup(link.CgroupOptions{Path: dir, Attach: ebpf.AttachCGroupInet4Connect, Program: prog})
	if err != nil {
		t.Fatalf("attach deny program: %v", err)
	}
	t.Cleanup(func() { l.Close() })
	fd, err := unix.Open(dir, unix.O_RDONLY|unix.O_DIRECTORY|unix.O_CLOEXEC, 0)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { unix.Close(fd) })
	return fd
}
