package dns

import (
	"bytes"
	"flag"
	"os"
	"path/filepath"
	"testing"

	mdns "github.com/miekg/dns"
)

var update = flag.Bool("update", false, "rewrite the seed packets in ../testdata/dns")

// seedDir holds real DNS wire messages: *.bin is one UDP payload (a whole
// message), *.tcp one TCP segment payload (length-prefixed messages).
const seedDir = "../testdata/dns"

// seeds returns the seed packets by file name, built with miekg/dns.
func seeds(tb testing.TB) map[string][]byte {
	tb.Helper()
	frame := func(msgs ...[]byte) []byte {
		var b []byte
		for _, m := range msgs {
			b = append(append(b, tcpFrame(m)...), m...)
		}
		return b
	}
	cname3 := wire(tb, 3, "www.example.com", mdns.TypeA,
		"www.example.com. 3600 IN CNAME a.cdn.net.",
		"a.cdn.net. 600 IN CNAME b.cdn.net.",
		"b.cdn.net. 60 IN CNAME c.edge.net.",
		"c.edge.net. 20 IN A 192.0.2.1",
		"c.edge.net. 300 IN A 192.0.2.2")
	return map[string][]byte{
		"query-a.bin": wire(tb, 1, "example.com", mdns.TypeA),
		"a.bin":       wire(tb, 1, "example.com", mdns.TypeA, "example.com. 300 IN A 93.184.216.34"),
		"aaaa.bin": wire(tb, 2, "example.com", mdns.TypeAAAA,
			"example.com. 120 IN AAAA 2606:2800:220:1:248:1893:25c8:1946"),
		"cname3.bin": cname3,
		"two-names-1.bin": wire(tb, 4, "api.example.com", mdns.TypeA,
			"api.example.com. 60 IN CNAME lb.example.net.", "lb.example.net. 60 IN A 192.0.2.80"),
		"two-names-2.bin": wire(tb, 5, "www.example.org", mdns.TypeA,
			"www.example.org. 60 IN CNAME lb.example.net.", "lb.example.net. 60 IN A 192.0.2.80"),
		"ttl0.bin": wire(tb, 6, "zero.example", mdns.TypeA, "zero.example. 0 IN A 192.0.2.6"),
		"mapped.bin": wire(tb, 7, "mapped.example", mdns.TypeAAAA,
			"mapped.example. 60 IN AAAA ::ffff:192.0.2.9"),
		"mixed.bin": wire(tb, 8, "Mixed.Example", mdns.TypeA,
			"mixed.example. 60 IN TXT \"v=spf1 -all\"",
			"MIXED.example. 60 IN A 192.0.2.8",
			"mixed.example. 60 IN MX 10 mail.mixed.example."),
		"nxdomain.bin":  rcode(wire(tb, 9, "nope.example", mdns.TypeA, []string{}...), mdns.RcodeNameError),
		"truncated.bin": cname3[:len(cname3)-5],
		"loop.bin": wire(tb, 10, "a.example", mdns.TypeA,
			"a.example. 60 IN CNAME b.example.", "b.example. 60 IN CNAME a.example."),
		"tcp-query-answer.tcp": frame(wire(tb, 11, "tcp.example", mdns.TypeA),
			wire(tb, 11, "tcp.example", mdns.TypeA, "tcp.example. 60 IN A 192.0.2.11")),
		"tcp-split.tcp": frame(cname3)[:40],
	}
}

// TestSeedFiles checks that the committed seed packets are what the
// generator builds; go test -run TestSeedFiles -update rewrites them.
func TestSeedFiles(t *testing.T) {
	for name, want := range seeds(t) {
		path := filepath.Join(seedDir, name)
		if *update {
			if err := os.WriteFile(path, want, 0o644); err != nil {
				t.Fatal(err)
			}
			continue
		}
		got, err := os.ReadFile(path)
		if err != nil {
			t.Fatalf("%v (run go test ./dns -run TestSeedFiles -update)", err)
		}
		if !bytes.Equal(got, want) {
			t.Errorf("%s differs from the generator (run go test ./dns -run TestSeedFiles -update)", path)
		}
	}
}

// readSeeds returns the seed files' contents and whether each is a TCP
// segment.
func readSeeds(tb testing.TB) (data [][]byte, tcp []bool) {
	tb.Helper()
	for _, pattern := range []string{"*.bin", "*.tcp"} {
		files, err := filepath.Glob(filepath.Join(seedDir, pattern))
		if err != nil {
			tb.Fatal(err)
		}
		for _, f := range files {
			b, err := os.ReadFile(f)
			if err != nil {
				tb.Fatal(err)
			}
			data = append(data, b)
			tcp = append(tcp, filepath.Ext(f) == ".tcp")
		}
	}
	if len(data) == 0 {
		tb.Fatalf("no seed files in %s", seedDir)
	}
	return data, tcp
}
