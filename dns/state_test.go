package dns

import (
	"encoding/binary"
	"errors"
	"hash/crc32"
	"io/fs"
	"net/netip"
	"os"
	"path/filepath"
	"slices"
	"testing"
	"time"
)

const testBoot = "0f5b4e2c-8d3a-4c1e-9b7a-1d2e3f405162"

// stateCorrelator is a correlator with names in two namespaces: a CNAME
// chain with a short TTL, an IP resolved twice, an IPv6 address.
func stateCorrelator(t *testing.T) *Correlator {
	t.Helper()
	c := newCorrelator(t, nil)
	resolve(t, c, scopeA, 1, "www.example.com", t0, "www.example.com. 600 IN CNAME edge.example.net.", "edge.example.net. 30 IN A 192.0.2.1")
	resolve(t, c, scopeA, 2, "one.example", t0, "one.example. 300 IN A 192.0.2.2")
	resolve(t, c, scopeA, 3, "two.example", t0.Add(10*time.Second), "two.example. 300 IN A 192.0.2.2")
	resolve(t, c, scopeB, 4, "b.example", t0.Add(20*time.Second), "b.example. 900 IN A 192.0.2.1")
	c.cache.Insert(mustAddr("2001:db8::1"), scopeB, chainBytes([]string{"six.example"}), 120*time.Second, t0.Add(20*time.Second))
	return c
}

func TestStateRoundTrip(t *testing.T) {
	old := stateCorrelator(t)
	saved := t0.Add(25 * time.Second)
	data := old.AppendState(nil, testBoot, saved)

	tests := []struct {
		name    string
		at      time.Time // when the new correlator loads and looks up
		ip      string
		scope   Scope
		names   []string
		age     time.Duration
		skipped int
	}{
		{name: "chain, age from the original answer", at: saved.Add(time.Second), ip: "192.0.2.1", scope: scopeA,
			names: []string{"www.example.com", "edge.example.net"}, age: 26 * time.Second},
		{name: "two resolutions, newest first", at: saved.Add(time.Second), ip: "192.0.2.2", scope: scopeA,
			names: []string{"two.example", "one.example"}, age: 16 * time.Second},
		{name: "other namespace stays there", at: saved.Add(time.Second), ip: "192.0.2.1", scope: scopeB,
			names: []string{"b.example"}, age: 6 * time.Second},
		{name: "IPv6", at: saved.Add(time.Second), ip: "2001:db8::1", scope: scopeB,
			names: []string{"six.example"}, age: 6 * time.Second},
		// The chain's TTL was 30 s from t0: expired when loaded at t0+40s.
		{name: "expired names skipped", at: t0.Add(40 * time.Second), ip: "192.0.2.1", scope: scopeA, skipped: 2},
		{name: "remaining TTL kept", at: t0.Add(301 * time.Second), ip: "192.0.2.2", scope: scopeA,
			names: []string{"two.example"}, age: 291 * time.Second, skipped: 2 + 1 + 1}, // and six.example (120 s)
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			c := newCorrelator(t, nil)
			st, err := c.LoadState(data, testBoot, tt.at)
			if err != nil {
				t.Fatalf("LoadState: %v", err)
			}
			if st.Skipped != tt.skipped {
				t.Errorf("skipped %d, want %d (%+v)", st.Skipped, tt.skipped, st)
			}
			names, best, age, _ := c.Lookup(mustAddr(tt.ip), tt.scope, tt.at, nil)
			if !slices.Equal(names, tt.names) {
				t.Fatalf("names %q, want %q", names, tt.names)
			}
			if len(names) > 0 && (best != tt.names[0] || age != tt.age) {
				t.Errorf("best %q age %s, want %q %s", best, age, tt.names[0], tt.age)
			}
			checkCache(t, c.cache)
		})
	}
	t.Run("saved again, same bytes", func(t *testing.T) {
		c := newCorrelator(t, nil)
		if _, err := c.LoadState(data, testBoot, saved); err != nil {
			t.Fatal(err)
		}
		again := c.AppendState(nil, testBoot, saved)
		if len(again) != len(data) {
			t.Errorf("re-saved %d bytes, first save %d", len(again), len(data))
		}
	})
}

func TestStateRefused(t *testing.T) {
	data := stateCorrelator(t).AppendState(nil, testBoot, t0)
	flip := func(i int) []byte {
		d := slices.Clone(data)
		d[i] ^= 0x10
		return d
	}
	version := slices.Clone(data)
	binary.LittleEndian.PutUint32(version[8:], 2)
	tests := []struct {
		name string
		data []byte
		boot string
		want error
	}{
		{name: "empty", data: nil, boot: testBoot, want: ErrStateCorrupt},
		{name: "truncated", data: data[:len(data)/2], boot: testBoot, want: ErrStateCorrupt},
		{name: "last byte missing", data: data[:len(data)-1], boot: testBoot, want: ErrStateCorrupt},
		{name: "a name byte flipped", data: flip(len(data) - 8), boot: testBoot, want: ErrStateCorrupt},
		{name: "foreign version", data: version, boot: testBoot, want: ErrStateVersion},
		{name: "not a state file", data: []byte("{\"names\": []}\n and more"), boot: testBoot, want: ErrStateVersion},
		{name: "another boot", data: data, boot: "another-boot", want: ErrStateBoot},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			c := newCorrelator(t, nil)
			resolve(t, c, scopeA, 9, "kept.example", t0, "kept.example. 300 IN A 192.0.2.9")
			st, err := c.LoadState(tt.data, tt.boot, t0)
			if !errors.Is(err, tt.want) {
				t.Fatalf("LoadState: %v, want %v", err, tt.want)
			}
			if st != (StateStats{}) {
				t.Errorf("stats %+v, want none", st)
			}
			// Nothing changed: the name learned before is there, no other.
			if s := c.Stats(); s.CacheEntries != 1 {
				t.Errorf("%d entries, want 1", s.CacheEntries)
			}
		})
	}
	t.Run("every prefix", func(t *testing.T) {
		for n := range len(data) {
			c := newCorrelator(t, nil)
			if _, err := c.LoadState(data[:n], testBoot, t0); err == nil {
				t.Fatalf("prefix of %d bytes loaded", n)
			}
		}
	})
}

func TestStateFile(t *testing.T) {
	dir := t.TempDir()
	path := filepath.Join(dir, "dns.state")
	if _, err := ReadStateFile(path); !errors.Is(err, fs.ErrNotExist) {
		t.Fatalf("missing file: %v, want ErrNotExist", err)
	}
	data := stateCorrelator(t).AppendState(nil, testBoot, t0)
	for range 2 { // the second write replaces the first
		if err := WriteStateFile(path, data); err != nil {
			t.Fatal(err)
		}
	}
	got, err := ReadStateFile(path)
	if err != nil || !slices.Equal(got, data) {
		t.Fatalf("read back %d bytes, %v; wrote %d", len(got), err, len(data))
	}
	fi, err := os.Stat(path)
	if err != nil || fi.Mode().Perm() != 0o600 {
		t.Errorf("mode %v, %v; want 0600", fi.Mode(), err)
	}
	ents, _ := os.ReadDir(dir)
	if len(ents) != 1 {
		t.Errorf("directory holds %d files, want the state file only", len(ents))
	}
	if err := WriteStateFile(filepath.Join(dir, "missing", "dns.state"), data); err == nil {
		t.Error("write into a missing directory succeeded")
	}
}

func TestStateBounded(t *testing.T) {
	c := newCorrelator(t, func(cfg *Config) { cfg.MaxEntries = 100; cfg.MaxNamesPerIP = 2 })
	for i := range 1000 {
		ip := mustAddr("10.0.0.0").As4()
		ip[2], ip[3] = byte(i>>8), byte(i)
		for k := range 4 {
			c.cache.Insert(mustAddr4(ip), scopeA, chainBytes([]string{string(rune('a'+k)) + ".bounded.example"}), time.Hour, t0)
		}
	}
	data := c.AppendState(nil, testBoot, t0)
	// 100 entries of 2 names of 17 bytes, with the header and checksum.
	want := len(stateMagic) + 4 + 1 + len(testBoot) + 4 + 100*(stateEntryFixed+2*(stateNameFixed+17)) + 4
	if len(data) != want {
		t.Errorf("state of a full cache: %d bytes, want %d", len(data), want)
	}
}

// FuzzLoadState loads arbitrary bytes: it never panics, and a file it
// accepts leaves the cache consistent. Seeds: a valid file and mutations.
func FuzzLoadState(f *testing.F) {
	c := newCorrelator(f, nil)
	resolve(f, c, scopeA, 1, "www.example.com", t0, "www.example.com. 600 IN CNAME edge.example.net.", "edge.example.net. 300 IN A 192.0.2.1")
	valid := c.AppendState(nil, testBoot, t0)
	f.Add(valid)
	f.Add(valid[:len(valid)-5])
	f.Add([]byte(stateMagic))
	f.Fuzz(func(t *testing.T, data []byte) {
		data = slices.Clone(data) // the checksum is rewritten below
		c := newCorrelator(t, func(cfg *Config) { cfg.MaxEntries = 64 })
		// Accept any checksum, so that the fuzzer reaches the entries.
		if len(data) >= 4 {
			binary.LittleEndian.PutUint32(data[len(data)-4:], crc(data[:len(data)-4]))
		}
		st, err := c.LoadState(data, testBoot, t0)
		if err != nil {
			if st != (StateStats{}) || c.Stats().CacheEntries != 0 {
				t.Fatalf("refused file changed the cache: %+v", st)
			}
			return
		}
		checkCache(t, c.cache)
		for _, ip := range []string{"192.0.2.1", "::1", "10.0.0.1"} {
			names, _, age, _ := c.Lookup(mustAddr(ip), scopeA, t0, nil)
			for _, n := range names {
				if !validStateName([]byte(n)) {
					t.Fatalf("invalid name %q restored", n)
				}
			}
			if age < 0 {
				t.Fatalf("negative age %s", age)
			}
		}
	})
}

func mustAddr(s string) netip.Addr { return netip.MustParseAddr(s) }

func mustAddr4(b [4]byte) netip.Addr { return netip.AddrFrom4(b) }

func crc(b []byte) uint32 { return crc32.Checksum(b, castagnoli) }
