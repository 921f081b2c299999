package bpf

import (
	"net"
	"testing"
	"time"

	"github.com/cilium/ebpf"
	"github.com/cilium/ebpf/asm"
	"github.com/cilium/ebpf/link"

	"github.com/tcpconnect/tcpconnect/internal/privtest"
)

// BenchmarkFirstBytesPacketCost measures what the first-bytes egress
// program costs per packet that is not a followed socket's first bytes: a
// loopback stream of small writes (TCP_NODELAY, one segment each) on a
// socket whose first bytes were taken already, and the peer's ACKs. The
// kernel's own accounting (BPF_ENABLE_STATS) over the stream's packets,
// next to a program that only returns, attached beside it (the floor that
// the accounting itself and the program call cost), and the DNS capture's
// egress and ingress programs, which every packet passes (dns-ns/pkt and
// dns-in-ns/pkt, over the same stream's packets). Run it as root:
//
//	go test -run '^$' -bench FirstBytesPacketCost -benchtime 200000x ./bpf/
func BenchmarkFirstBytesPacketCost(b *testing.B) {
	privtest.Require(b)
	stats, err := ebpf.EnableStats(0) // BPF_STATS_RUN_TIME
	if err != nil {
		privtest.SkipOrFail(b, "BPF_ENABLE_STATS (Linux 5.8): "+err.Error())
	}
	defer stats.Close()
	p := openForTest(b, Options{Outcome: true, FirstBytes: true, DNS: true})
	defer p.Close()
	var dns, dnsIn *ebpf.Program
	for _, prog := range p.progs {
		if info, err := prog.Info(); err == nil {
			switch info.Name {
			case "tc_dns_egress":
				dns = prog
			case "tc_dns_ingress":
				dnsIn = prog
			}
		}
	}
	if dns == nil || dnsIn == nil {
		b.Fatal("no DNS egress or ingress program")
	}
	null, err := ebpf.NewProgram(&ebpf.ProgramSpec{Type: ebpf.CGroupSKB, AttachType: ebpf.AttachCGroupInetEgress, License: "GPL",
		Instructions: asm.Instructions{asm.Mov.Imm(asm.R0, 1), asm.Return()}})
	if err != nil {
		b.Fatal(err)
	}
	defer null.Close()
	cg, err := CgroupV2Mount()
	if err != nil {
		b.Fatal(err)
	}
	l, err := link.AttachCgroup(link.CgroupOptions{Path: cg, Attach: ebpf.AttachCGroupInetEgress, Program: null})
	if err != nil {
		b.Fatal(err)
	}
	defer l.Close()
	c, err := net.Dial("tcp4", discardListener(b))
	if err != nil {
		b.Fatal(err)
	}
	defer c.Close()
	msg := make([]byte, 64)
	if _, err := c.Write(msg); err != nil { // the first bytes: captured, the mark gone
		b.Fatal(err)
	}
	time.Sleep(50 * time.Millisecond)
	prog := p.FirstBytesProgram()
	before, err := prog.Stats()
	if err != nil {
		b.Fatal(err)
	}
	nullBefore, err := null.Stats()
	if err != nil {
		b.Fatal(err)
	}
	dnsBefore, err := dns.Stats()
	if err != nil {
		b.Fatal(err)
	}
	dnsInBefore, err := dnsIn.Stats()
	if err != nil {
		b.Fatal(err)
	}
	b.ResetTimer()
	for range b.N {
		if _, err := c.Write(msg); err != nil {
			b.Fatal(err)
		}
	}
	b.StopTimer()
	time.Sleep(50 * time.Millisecond)
	after, err := prog.Stats()
	if err != nil {
		b.Fatal(err)
	}
	nullAfter, err := null.Stats()
	if err != nil {
		b.Fatal(err)
	}
	dnsAfter, err := dns.Stats()
	if err != nil {
		b.Fatal(err)
	}
	dnsInAfter, err := dnsIn.Stats()
	if err != nil {
		b.Fatal(err)
	}
	if n := dnsAfter.RunCount - dnsBefore.RunCount; n > 0 {
		b.ReportMetric(float64(dnsAfter.Runtime-dnsBefore.Runtime)/float64(n), "dns-ns/pkt")
	}
	if n := dnsInAfter.RunCount - dnsInBefore.RunCount; n > 0 {
		b.ReportMetric(float64(dnsInAfter.Runtime-dnsInBefore.Runtime)/float64(n), "dns-in-ns/pkt")
	}
	runs, nullRuns := after.RunCount-before.RunCount, nullAfter.RunCount-nullBefore.RunCount
	if runs == 0 || nullRuns == 0 {
		b.Fatal("the egress programs did not run")
	}
	b.ReportMetric(float64(after.Runtime-before.Runtime)/float64(runs), "prog-ns/pkt")
	b.ReportMetric(float64(nullAfter.Runtime-nullBefore.Runtime)/float64(nullRuns), "null-ns/pkt")
	b.ReportMetric(float64(runs)/float64(b.N), "pkts/write")
}
