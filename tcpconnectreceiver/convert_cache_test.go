package tcpconnectreceiver

import (
	"fmt"
	"net/netip"
	"testing"
	"time"

	"go.opentelemetry.io/collector/pdata/plog"

	"github.com/tcpconnect/tcpconnect/internal/event"
	"github.com/tcpconnect/tcpconnect/internal/procinfo"
)

// TestBatcherCaches checks that the batcher's shortcuts do not show in its
// output: the last-process shortcut starts afresh with each batch, and the
// IP and thread-name caches give the right text past their bound.
func TestBatcherCaches(t *testing.T) {
	b := newBatcher("h", "v", createDefaultConfig())
	info := &procinfo.Info{ExeName: "x"}
	now := time.Date(2026, 11, 26, 12, 0, 0, 0, time.UTC)
	add := func(pid uint32, dst netip.AddrPort, comm string) {
		t.Helper()
		var c event.Connect
		raw := connectRec{hook: event.HookCgroup, dst: dst, startNs: 1, tgid: pid, tid: pid, comm: comm, exe: "x"}.raw()
		if err := event.DecodeConnect(raw, &c); err != nil {
			t.Fatal(err)
		}
		b.add(&c, info, lookup{}, outcomeResult{}, now, now)
	}
	type rec struct {
		pid        int64
		ip, server string
		comm       string
	}
	records := func(ld plog.Logs) (out []rec) {
		for _, rl := range ld.ResourceLogs().All() {
			pid, _ := rl.Resource().Attributes().Get(attrProcessPID)
			for _, lr := range rl.ScopeLogs().At(0).LogRecords().All() {
				a := lr.Attributes()
				ip, _ := a.Get(attrNetPeerAddress)
				srv, _ := a.Get(attrServerAddress)
				comm, _ := a.Get(attrThreadName)
				out = append(out, rec{pid.Int(), ip.Str(), srv.Str(), comm.Str()})
			}
		}
		return out
	}

	a1 := netip.MustParseAddrPort("10.0.0.1:80")
	add(1, a1, "one")
	add(1, a1, "one")
	first, n := b.take()
	if n != 2 || first.ResourceLogs().Len() != 1 {
		t.Fatalf("first batch: %d records, %d resources", n, first.ResourceLogs().Len())
	}
	// The same process again after take: a new resource in the new batch,
	// nothing added to the batch taken.
	add(1, a1, "one")
	add(2, a1, "two")
	add(1, a1, "one")
	second, n := b.take()
	if n != 3 || second.ResourceLogs().Len() != 2 || first.LogRecordCount() != 2 {
		t.Fatalf("second batch: %d records, %d resources; first now %d records", n, second.ResourceLogs().Len(), first.LogRecordCount())
	}
	if got := records(second); len(got) != 3 || got[0].pid != 1 || got[1].pid != 1 || got[2].pid != 2 {
		t.Fatalf("second batch records %+v", got)
	}

	// More distinct IPs and thread names than the caches hold, each value
	// twice or three times in a row (the last-value shortcuts) and names of
	// one length that differ in a byte.
	var want []rec
	for i := range 3*maxInterned + 7 {
		ip := netip.AddrFrom4([4]byte{10, 1, byte(i >> 8), byte(i)})
		if i%2 == 1 {
			ip = netip.AddrFrom16([16]byte{0: 0x20, 1: 0x01, 14: byte(i >> 8), 15: byte(i)})
		}
		comm := fmt.Sprintf("t%d", i%(maxInterned+3))
		for range 2 + i%2 {
			add(3, netip.AddrPortFrom(ip, 443), comm)
			want = append(want, rec{3, ip.String(), ip.String(), comm})
		}
	}
	if len(b.ips) > maxInterned || len(b.comms) > maxInterned {
		t.Errorf("caches hold %d IPs and %d names, bound %d", len(b.ips), len(b.comms), maxInterned)
	}
	ld, _ := b.take()
	got := records(ld)
	if len(got) != len(want) {
		t.Fatalf("%d records, want %d", len(got), len(want))
	}
	for i := range want {
		if got[i] != want[i] {
			t.Fatalf("record %d: %+v, want %+v", i, got[i], want[i])
		}
	}
}
