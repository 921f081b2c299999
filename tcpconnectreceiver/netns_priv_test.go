package tcpconnectreceiver

import (
	"fmt"
	"net/netip"
	"os"
	"os/exec"
	"strings"
	"testing"

	"github.com/google/nftables"
	"github.com/google/nftables/binaryutil"
	"github.com/google/nftables/expr"
	"github.com/vishvananda/netlink"
	"github.com/vishvananda/netns"
	"golang.org/x/sys/unix"

	"github.com/tcpconnect/tcpconnect/internal/privtest"
)

// namedNetns makes a network namespace with `ip netns add` (so that `ip
// netns exec` gives its processes /etc/netns/NAME/resolv.conf, here
// "nameserver <resolver>"), its loopback up, and a veth pair inside it
// whose end eth0 has addr (an RFC 2544 test address: getaddrinfo's
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
	// Both ends of the veth pair stay in the namespace: nothing is added
	// to the test's own.
	ipRun(t, ip,
		[]string{"-n", name, "link", "set", "lo", "up"},
		[]string{"-n", name, "link", "add", "eth0", "type", "veth", "peer", "name", "eth1"},
		[]string{"-n", name, "addr", "add", addr, "dev", "eth0"},
		[]string{"-n", name, "link", "set", "eth0", "up"},
		[]string{"-n", name, "link", "set", "eth1", "up"},
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

// dnat adds to network namespace ns (never the test's own) an nftables
// nat table whose output chain sends UDP and TCP for from to to, as
// Docker's DOCKER_OUTPUT chain and kube-proxy's service rules do: the rule
// goes in over netlink (github.com/google/nftables), so that it needs no
// nft binary and runs in the VM too.
func dnat(t *testing.T, ns netns.NsHandle, from, to netip.AddrPort) {
	t.Helper()
	c, err := nftables.New(nftables.WithNetNSFd(int(ns)))
	if err != nil {
		t.Fatalf("nftables: %v", err)
	}
	defer c.CloseLasting()
	table := c.AddTable(&nftables.Table{Family: nftables.TableFamilyIPv4, Name: "tcdnat"})
	chain := c.AddChain(&nftables.Chain{Name: "output", Table: table, Type: nftables.ChainTypeNAT,
		Hooknum: nftables.ChainHookOutput, Priority: nftables.ChainPriorityNATDest})
	for _, proto := range []byte{unix.IPPROTO_UDP, unix.IPPROTO_TCP} {
		c.AddRule(&nftables.Rule{Table: table, Chain: chain, Exprs: []expr.Any{
			&expr.Meta{Key: expr.MetaKeyL4PROTO, Register: 1},
			&expr.Cmp{Op: expr.CmpOpEq, Register: 1, Data: []byte{proto}},
			&expr.Payload{DestRegister: 1, Base: expr.PayloadBaseNetworkHeader, Offset: 16, Len: 4},
			&expr.Cmp{Op: expr.CmpOpEq, Register: 1, Data: from.Addr().AsSlice()},
			&expr.Payload{DestRegister: 1, Base: expr.PayloadBaseTransportHeader, Offset: 2, Len: 2},
			&expr.Cmp{Op: expr.CmpOpEq, Register: 1, Data: binaryutil.BigEndian.PutUint16(from.Port())},
			&expr.Immediate{Register: 1, Data: to.Addr().AsSlice()},
			&expr.Immediate{Register: 2, Data: binaryutil.BigEndian.PutUint16(to.Port())},
			&expr.NAT{Type: expr.NATTypeDestNAT, Family: unix.NFPROTO_IPV4, RegAddrMin: 1, RegProtoMin: 2},
		}})
	}
	if err := c.Flush(); err != nil {
		t.Fatalf("nftables DNAT %s -> %s: %v", from, to, err)
	}
}

// inNetnsRun runs the test binary as a child in network namespace ns with
// the environment variable env set.
func inNetnsRun(t *testing.T, ns netns.NsHandle, env string) {
	t.Helper()
	cmd := exec.Command(os.Args[0], "-test.run=^$")
	cmd.Env = append(os.Environ(), env)
	var out []byte
	var err error
	privtest.InNetns(t, ns, func() { out, err = cmd.CombinedOutput() })
	if err != nil {
		t.Fatalf("child in netns (%s): %v: %s", env, err, out)
	}
}

// execIn runs a command in network namespace ns and returns its output.
func execIn(t *testing.T, ns netns.NsHandle, name string, args ...string) (string, error) {
	t.Helper()
	var out []byte
	var err error
	privtest.InNetns(t, ns, func() { out, err = exec.Command(name, args...).CombinedOutput() })
	return string(out), err
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

// vethPair links namespaces a and b with a veth pair, addresses aAddr and
// bAddr (CIDR), both ends up.
func vethPair(t *testing.T, a, b netns.NsHandle, aAddr, bAddr string) {
	t.Helper()
	ah, err := netlink.NewHandleAt(a, unix.NETLINK_ROUTE)
	if err != nil {
		t.Fatal(err)
	}
	defer ah.Close()
	bh, err := netlink.NewHandleAt(b, unix.NETLINK_ROUTE)
	if err != nil {
		t.Fatal(err)
	}
	defer bh.Close()
	veth := &netlink.Veth{LinkAttrs: netlink.LinkAttrs{Name: "tcva"}, PeerName: "tcvb", PeerNamespace: netlink.NsFd(b)}
	if err := ah.LinkAdd(veth); err != nil {
		t.Fatalf("veth: %v", err)
	}
	for _, end := range []struct {
		h    *netlink.Handle
		name string
		addr string
	}{{ah, "tcva", aAddr}, {bh, "tcvb", bAddr}} {
		l, err := end.h.LinkByName(end.name)
		if err != nil {
			t.Fatal(err)
		}
		addr, err := netlink.ParseAddr(end.addr)
		if err != nil {
			t.Fatal(err)
		}
		if err := end.h.AddrAdd(l, addr); err != nil {
			t.Fatalf("address %s: %v", end.addr, err)
		}
		if err := end.h.LinkSetUp(l); err != nil {
			t.Fatal(err)
		}
	}
}
