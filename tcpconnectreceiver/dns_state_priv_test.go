package tcpconnectreceiver

import (
	"os"
	"path/filepath"
	"testing"
	"time"
)

// TestDNSPrivilegedRestart: a name resolved before a restart of the
// receiver names a connect made after it, without resolving again, with an
// age that counts from the original answer (dns.state_file). A corrupt
// state file is logged, counted and ignored: the receiver starts with an
// empty cache and names new resolutions.
func TestDNSPrivilegedRestart(t *testing.T) {
	z := zone{
		"restart.test./A": {"restart.test. 300 IN CNAME edge.restart.test.", "edge.restart.test. 300 IN A 127.0.4.20"},
		"fresh.test./A":   {"fresh.test. 300 IN A 127.0.4.21"},
	}
	t.Run("names survive", func(t *testing.T) {
		path := filepath.Join(t.TempDir(), "dns.state")
		h := newDNSHarness(t, z, nil, func(c *Config) { c.DNS.StateFile = path })
		h.resolve("restart.test", "udp", "ip4")
		resolved := time.Now()
		wantNames(t, h.connect("127.0.4.20"), "restart.test", "restart.test", "edge.restart.test")
		h.stop()
		if fi, err := os.Stat(path); err != nil || fi.Size() == 0 {
			t.Fatalf("no state file after shutdown: %v", err)
		}
		time.Sleep(1500 * time.Millisecond)
		h.start()
		got := h.connect("127.0.4.20")
		wantNames(t, got, "restart.test", "restart.test", "edge.restart.test")
		if min := time.Since(resolved).Seconds() - 0.5; got.age < min || got.age > min+10 {
			t.Errorf("age %.3f s after the restart, want about %.3f s: counted from the original answer", got.age, min+0.5)
		}
		for name, want := range map[string]int64{
			"receiver_tcpconnect_dns_state_files_refused": 0,
			"receiver_tcpconnect_dns_state_names_skipped": 0,
			"receiver_tcpconnect_dns_state_writes_failed": 0,
		} {
			if got := counter(t, h.tel, name); got != want {
				t.Errorf("%s = %d, want %d", name, got, want)
			}
		}
	})
	t.Run("corrupt file ignored", func(t *testing.T) {
		path := filepath.Join(t.TempDir(), "dns.state")
		if err := os.WriteFile(path, []byte("TCDNSST\n\x01\x00\x00\x00garbage"), 0o600); err != nil {
			t.Fatal(err)
		}
		h := newDNSHarness(t, z, nil, func(c *Config) { c.DNS.StateFile = path })
		if got := counter(t, h.tel, "receiver_tcpconnect_dns_state_files_refused"); got != 1 {
			t.Errorf("files refused %d, want 1", got)
		}
		h.resolve("fresh.test", "udp", "ip4")
		wantNames(t, h.connect("127.0.4.21"), "fresh.test", "fresh.test")
	})
}
