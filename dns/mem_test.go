package dns

import (
	"fmt"
	"net/netip"
	"runtime"
	"testing"
	"time"
)

// memCase is one cache-fill workload of BenchmarkCacheMemory.
type memCase struct {
	name  string
	chain func(i int) []string
}

// memCases are the fills measured: 1-3 names per IP with names shared as
// behind a CDN (two IPs per answer, a CNAME target per 16 IPs, a second
// target per 64), and the bench/run.sh cache fill (every IP has its own
// question name and CNAME target).
var memCases = []memCase{
	{"names=1-3/shared", func(i int) []string {
		names := []string{
			fmt.Sprintf("api%d.service.example.com", i/2),
			fmt.Sprintf("edge%d.cdn.example.net", i/16),
			fmt.Sprintf("e%d.a.akamaiedge.net", i/64),
		}
		return names[:1+i%3]
	}},
	{"names=2/unique", func(i int) []string {
		return []string{fmt.Sprintf("h%d-%08x.bench.test", i, uint32(i)*2654435761), fmt.Sprintf("c%d.cdn.bench.test", i)}
	}},
}

// memEntries is the number of distinct IPs a memory fill inserts.
const memEntries = 100000

// memIP returns the i-th IP of a fill: IPv4, every 8th one IPv6.
func memIP(i int) netip.Addr {
	if i%8 == 7 {
		return netip.AddrFrom16([16]byte{0x20, 0x01, 0x0d, 0xb8, 12: byte(i >> 24), 13: byte(i >> 16), 14: byte(i >> 8), 15: byte(i)})
	}
	return netip.AddrFrom4([4]byte{10, byte(i >> 16), byte(i >> 8), byte(i)})
}

// memFill is the input of one memory fill: memEntries IPs and their chains.
type memFill struct {
	ips    []netip.Addr
	chains [][][]byte
}

func newMemFill(mc memCase) memFill {
	f := memFill{ips: make([]netip.Addr, memEntries), chains: make([][][]byte, memEntries)}
	for i := range memEntries {
		f.ips[i], f.chains[i] = memIP(i), chainBytes(mc.chain(i))
	}
	return f
}

// fillBytes fills a cache with f and returns the live heap it added, in
// bytes per entry.
func fillBytes(tb testing.TB, f memFill) float64 {
	cfg := DefaultConfig()
	cfg.MaxEntries = 2 * memEntries // as bench/run.sh's cache fill
	var before, after runtime.MemStats
	runtime.GC()
	runtime.ReadMemStats(&before)
	c := NewCache(cfg)
	for i, ip := range f.ips {
		c.Insert(ip, scopeA, f.chains[i], 300*time.Second, t0.Add(time.Duration(i)*time.Microsecond))
	}
	runtime.GC()
	runtime.ReadMemStats(&after)
	if st := c.Stats(); st.Entries != memEntries {
		tb.Fatalf("%d entries, want %d", st.Entries, memEntries)
	}
	runtime.KeepAlive(c)
	runtime.KeepAlive(f) // its chains are not the cache's
	return float64(int64(after.HeapAlloc)-int64(before.HeapAlloc)) / memEntries
}

// BenchmarkCacheMemory reports the live heap of a cache holding 100,000
// (IP, scope) entries, in bytes per entry (B/entry), after a GC; ns/op is
// the time of one fill (100,000 inserts into a new cache).
func BenchmarkCacheMemory(b *testing.B) {
	for _, mc := range memCases {
		b.Run(mc.name, func(b *testing.B) {
			f := newMemFill(mc)
			var per float64
			for b.Loop() {
				per = fillBytes(b, f)
			}
			b.ReportMetric(per, "B/entry")
		})
	}
}

// TestCacheMemory logs the bytes per entry of the memory fills (run with
// -v); it fails when a fill takes more than 250 bytes per entry.
func TestCacheMemory(t *testing.T) {
	if testing.Short() {
		t.Skip("fills 100,000 entries") // skip-ok: only under -short, which make unit does not set
	}
	for _, mc := range memCases {
		per := fillBytes(t, newMemFill(mc))
		t.Logf("%s: %.1f bytes per entry", mc.name, per)
		if per > 250 {
			t.Errorf("%s: %.1f bytes per entry, want <= 250", mc.name, per)
		}
	}
}
