package dns

import (
	"fmt"
	"net/netip"
	"slices"
	"testing"
	"time"
)

// TestNamespaceFlood: one network namespace that floods the cache with
// 100,000 answers must not evict another namespace's names.
func TestNamespaceFlood(t *testing.T) {
	for _, cross := range []string{CrossNamespaceNone, CrossNamespacePublicOnly} {
		t.Run(cross, func(t *testing.T) {
			cfg := DefaultConfig()
			cfg.CrossNamespace = cross
			c := NewCache(cfg)
			ip := func(base byte, i int) netip.Addr {
				return netip.AddrFrom4([4]byte{base, byte(i >> 16), byte(i >> 8), byte(i)})
			}
			const own = 1000
			for i := range own {
				c.Insert(ip(10, i), scopeA, chainBytes([]string{fmt.Sprintf("a%d.example", i)}), time.Hour, t0)
			}
			for i := range 100_000 {
				c.Insert(ip(11, i), scopeB, chainBytes([]string{fmt.Sprintf("flood%d.example", i)}), time.Hour, t0.Add(time.Second))
			}
			for i := range own {
				want := fmt.Sprintf("a%d.example", i)
				if names, _, _, _ := c.Lookup(ip(10, i), scopeA, t0.Add(2*time.Second), nil); !slices.Equal(names, []string{want}) {
					t.Fatalf("after the flood, %v = %q, want [%s]", ip(10, i), names, want)
				}
			}
			st := c.Stats()
			if st.Entries != DefaultMaxEntries || st.Namespaces != 2 || st.Evictions != 100_000+own-DefaultMaxEntries {
				t.Fatalf("stats %+v", st)
			}
			checkCache(t, c)
		})
	}
}

// TestCrossNamespace: by default a connect gets only names resolved in its
// own network namespace; with public_only, names from other namespaces
// name public addresses only, after its own.
func TestCrossNamespace(t *testing.T) {
	public := []string{"93.184.216.34", "8.8.8.8", "2606:2800:220:1:248:1893:25c8:1946", "::ffff:93.184.216.34"}
	private := []string{
		"10.1.2.3", "172.16.0.1", "192.168.1.1", // RFC 1918
		"127.0.0.1", "127.1.2.3", "::1", // loopback
		"169.254.169.254", "fe80::1", // link-local
		"100.64.0.1", "100.127.255.254", // CGNAT
		"fd00::1", "fc00::1", // ULA
		"0.1.2.3", "192.0.0.9", "192.0.2.1", "198.51.100.1", "203.0.113.1", "198.18.0.1", "240.0.0.1", "255.255.255.255", "0.0.0.0", "::",
		"224.0.0.251", "ff02::fb", // multicast
		"64:ff9b::a00:1", "2002:a00:1::1", "2001::1", "2001:db8::1", "fec0::1", "::10.0.0.1",
	}
	for _, cross := range []string{CrossNamespaceNone, CrossNamespacePublicOnly} {
		for _, ips := range [][]string{public, private} {
			for _, s := range ips {
				ip := netip.MustParseAddr(s)
				t.Run(cross+"/"+s, func(t *testing.T) {
					cfg := DefaultConfig()
					cfg.CrossNamespace = cross
					c := NewCache(cfg)
					c.Insert(ip, scopeB, chainBytes([]string{"other.example"}), time.Minute, t0)
					wantOther := cross == CrossNamespacePublicOnly && slices.Contains(public, s)
					if got := IsPublic(ip); got != slices.Contains(public, s) {
						t.Fatalf("IsPublic(%v) = %v", ip, got)
					}
					names, _, _, src := c.Lookup(ip, scopeA, t0, nil)
					if wantOther != (src == SourceOtherNetNS) || wantOther != slices.Equal(names, []string{"other.example"}) {
						t.Fatalf("other namespace's names = %q, %v; want them: %v", names, src, wantOther)
					}
					c.Insert(ip, scopeA, chainBytes([]string{"own.example"}), time.Minute, t0)
					names, best, _, src := c.Lookup(ip, scopeA, t0.Add(time.Second), nil)
					want := []string{"own.example"}
					if wantOther {
						want = append(want, "other.example")
					}
					if !slices.Equal(names, want) || best != "own.example" || src != SourceProcess {
						t.Fatalf("names, best, source = %q, %q, %v; want %q, own.example, process", names, best, src, want)
					}
				})
			}
		}
	}
}

func TestLookupSource(t *testing.T) {
	ip := netip.MustParseAddr("93.184.216.34")
	sibling := Scope{NetNS: scopeA.NetNS, TGID: 999, CgroupID: scopeA.CgroupID}
	tests := []struct {
		name     string
		inserts  []Scope
		scope    Scope
		wantBest string
		want     Source
	}{
		{"the process itself", []Scope{scopeA}, scopeA, "n0.example", SourceProcess},
		{"another process of the namespace", []Scope{sibling}, scopeA, "n0.example", SourceNetNS},
		{"own process before a newer sibling", []Scope{scopeA, {NetNS: scopeA.NetNS, TGID: 999, CgroupID: 77}}, scopeA, "n0.example", SourceProcess},
		{"connect without a process", []Scope{scopeA}, Scope{NetNS: scopeA.NetNS}, "n0.example", SourceNetNS},
		{"another namespace", []Scope{scopeB}, scopeA, "n0.example", SourceOtherNetNS},
		{"nothing", nil, scopeA, "", SourceNone},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			cfg := DefaultConfig()
			cfg.CrossNamespace = CrossNamespacePublicOnly
			c := NewCache(cfg)
			for i, s := range tt.inserts {
				c.Insert(ip, s, chainBytes([]string{fmt.Sprintf("n%d.example", i)}), time.Minute, t0.Add(time.Duration(i)*time.Second))
			}
			_, best, _, src := c.Lookup(ip, tt.scope, t0.Add(time.Minute/2), nil)
			if best != tt.wantBest || src != tt.want {
				t.Fatalf("best, source = %q, %v; want %q, %v", best, src, tt.wantBest, tt.want)
			}
		})
	}
	if got := []string{SourceNone.String(), SourceProcess.String(), SourceNetNS.String(), SourceOtherNetNS.String()}; !slices.Equal(got, []string{"", "process", "netns", "other_netns"}) {
		t.Fatalf("Source strings = %q", got)
	}
}
