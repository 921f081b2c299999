package dns

import (
	"net/netip"
	"testing"
	"time"
)

func TestTrackerBounds(t *testing.T) {
	tr := NewTracker(10*time.Second, 4)
	flow := func(port uint16) Flow {
		return Flow{Client: netip.AddrPortFrom(client.Addr(), port), Server: server, Proto: ProtoUDP}
	}
	name := []byte("example.com")
	for i := range 6 {
		tr.Track(1, flow(uint16(1000+i)), name, Query{Scope: scopeA, SockCookie: uint64(1000 + i)}, t0)
	}
	s := tr.Stats()
	if s.Outstanding != 4 || s.Evicted != 2 || s.Tracked != 6 {
		t.Fatalf("stats %+v; want 4 outstanding, 2 evicted, 6 tracked", s)
	}
	if _, ok := tr.Match(1, flow(1000), name, 1000, t0); ok {
		t.Error("evicted query matched")
	}
	got, ok := tr.Match(1, flow(1005), name, 1005, t0.Add(time.Second))
	if !ok || got.Scope != scopeA || got.At != t0.UnixNano() {
		t.Fatalf("Match = %+v, %v; want the query in scopeA", got, ok)
	}
	// The rest expire.
	tr.Track(2, flow(2000), name, Query{Scope: scopeA, SockCookie: 2000}, t0.Add(10*time.Second))
	s = tr.Stats()
	if s.Outstanding != 1 || s.Expired != 3 || s.Matched != 1 || s.Unsolicited != 1 {
		t.Fatalf("stats %+v; want 1 outstanding, 3 expired, 1 matched, 1 unsolicited", s)
	}
}

func TestTrackerRetransmission(t *testing.T) {
	tr := NewTracker(10*time.Second, 16)
	f := Flow{Client: client, Server: server, Proto: ProtoUDP}
	name := []byte("example.com")
	tr.Track(1, f, name, Query{Scope: scopeA}, t0)
	tr.Track(1, f, name, Query{Scope: scopeA}, t0.Add(8*time.Second))
	// The retransmission restarted the timeout and expects a second answer.
	for i := range 2 {
		if _, ok := tr.Match(1, f, name, 0, t0.Add(12*time.Second)); !ok {
			t.Fatalf("answer %d not matched", i)
		}
	}
	if _, ok := tr.Match(1, f, name, 0, t0.Add(12*time.Second)); ok {
		t.Fatal("third answer matched")
	}
	if s := tr.Stats(); s.Outstanding != 0 || s.Expired != 0 {
		t.Fatalf("stats %+v", s)
	}
}

func TestTrackerAllocs(t *testing.T) {
	tr := NewTracker(0, 0)
	f := Flow{Client: client, Server: server, Proto: ProtoUDP}
	name := []byte("example.com")
	id := uint16(0)
	now := t0
	allocs := testing.AllocsPerRun(1000, func() {
		id++
		now = now.Add(time.Millisecond)
		tr.Track(id, f, name, Query{Scope: scopeA}, now)
		if _, ok := tr.Match(id, f, name, 0, now); !ok {
			t.Fatal("no match")
		}
	})
	if allocs != 0 {
		t.Errorf("Track+Match: %v allocs/op, want 0", allocs)
	}
}

func TestTrackerRingGrowth(t *testing.T) {
	tr := NewTracker(10*time.Second, 200)
	flow := func(port int) Flow {
		return Flow{Client: netip.AddrPortFrom(client.Addr(), uint16(port)), Server: server, Proto: ProtoUDP}
	}
	name := []byte("example.com")
	for i := range 50 {
		tr.Track(1, flow(i), name, Query{}, t0)
	}
	// These expire the first 50 and then grow the ring past a wrapped head.
	later := t0.Add(10 * time.Second)
	for i := 50; i < 300; i++ {
		tr.Track(1, flow(i), name, Query{}, later)
	}
	s := tr.Stats()
	if s.Outstanding != 200 || s.Expired != 50 || s.Evicted != 50 {
		t.Fatalf("stats %+v; want 200 outstanding, 50 expired, 50 evicted", s)
	}
	for i := range 300 {
		_, ok := tr.Match(1, flow(i), name, 0, later)
		if want := i >= 100; ok != want {
			t.Fatalf("query %d matched %v, want %v", i, ok, want)
		}
	}
}

func TestTrackerRetransmissionWhenFull(t *testing.T) {
	// With a full table, a retransmission pushes out the query's own
	// oldest slot; the query must stay tracked.
	tr := NewTracker(10*time.Second, 1)
	f := Flow{Client: client, Server: server, Proto: ProtoUDP}
	name := []byte("example.com")
	tr.Track(1, f, name, Query{Scope: scopeA}, t0)
	tr.Track(1, f, name, Query{Scope: scopeA}, t0.Add(time.Second))
	if q, ok := tr.Match(1, f, name, 0, t0.Add(2*time.Second)); !ok || q.Scope != scopeA {
		t.Fatalf("retransmitted query lost: %+v, %v; stats %+v", q, ok, tr.Stats())
	}
}
