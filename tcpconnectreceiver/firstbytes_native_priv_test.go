package tcpconnectreceiver

import (
	"context"
	"os/exec"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/tcpconnect/tcpconnect/internal/privtest"
)

// runClient runs a foreign client for at most 10 s. Its exit status is not
// checked: these clients give up on the test's self-signed certificate or
// on a server that answers nothing, after they sent their first bytes,
// which is what the test is about.
func runClient(t *testing.T, name string, args ...string) string {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	cmd := exec.CommandContext(ctx, name, args...)
	cmd.Stdin = strings.NewReader("")
	out, _ := cmd.CombinedOutput()
	return string(out)
}

// TestNativeFirstBytesForeignClients: clients no one here wrote (curl,
// OpenSSL's s_client: the host's, not in the VM's initramfs) against the
// same real servers. curl --resolve and s_client -servername name a server
// whose IP no DNS answer gave; curl -H Host names an HTTP server; s_client
// sending the DNS name with a trailing dot or in upper case is not a
// mismatch, and another name is.
func TestNativeFirstBytesForeignClients(t *testing.T) {
	curl := privtest.LookPath(t, "curl", "curl")
	openssl := privtest.LookPath(t, "openssl", "openssl")
	const maxWait = 10 * time.Second
	h := newDNSHarness(t, zone{"front-n.test./A": {"front-n.test. 60 IN A 127.0.20.4"}, "dot-n.test./A": {"dot-n.test. 60 IN A 127.0.20.5"}}, nil,
		func(c *Config) { c.Outcome.MaxWait = maxWait })
	port := h.port
	p := strconv.Itoa(int(port))

	t.Run("curl_resolve", func(t *testing.T) {
		seen := tlsServer(t, "127.0.20.1:"+p)
		out := runClient(t, curl, "-sk", "--max-time", "5", "--resolve", "curl.test:"+p+":127.0.20.1", "https://curl.test:"+p+"/")
		s := recvHello(t, seen)
		got := waitFBRecord(t, h.sink, "127.0.20.1", port, 1, maxWait/2)
		wantRecord(t, got, fbRecord{outcome: "established", serverAddr: s.serverName, source: "tls", sni: s.serverName, alpn: s.protos})
		if s.serverName != "curl.test" {
			t.Errorf("server saw %q (curl: %s)", s.serverName, out)
		}
	})
	t.Run("openssl_servername", func(t *testing.T) {
		seen := tlsServer(t, "127.0.20.2:"+p)
		out := runClient(t, openssl, "s_client", "-connect", "127.0.20.2:"+p, "-servername", "ossl.test", "-alpn", "h2,http/1.1")
		s := recvHello(t, seen)
		got := waitFBRecord(t, h.sink, "127.0.20.2", port, 1, maxWait/2)
		wantRecord(t, got, fbRecord{outcome: "established", serverAddr: s.serverName, source: "tls", sni: s.serverName, alpn: s.protos})
		if s.serverName != "ossl.test" || len(s.protos) != 2 {
			t.Errorf("server saw %q %q (s_client: %s)", s.serverName, s.protos, out)
		}
	})
	t.Run("curl_host_header", func(t *testing.T) {
		hosts := httpServer(t, "127.0.20.3:"+p)
		out := runClient(t, curl, "-s", "--max-time", "5", "-o", "/dev/null", "-H", "Host: Curl-Host.test:8080", "http://127.0.20.3:"+p+"/")
		var host string
		select {
		case host = <-hosts:
		case <-time.After(10 * time.Second):
			t.Fatalf("the HTTP server saw no request (curl: %s)", out)
		}
		got := waitFBRecord(t, h.sink, "127.0.20.3", port, 1, maxWait/2)
		want := strings.ToLower(strings.TrimSuffix(host, ":8080"))
		wantRecord(t, got, fbRecord{outcome: "established", serverAddr: want, source: "http", host: want})
	})
	t.Run("openssl_fronting", func(t *testing.T) {
		seen := tlsServer(t, "127.0.20.4:"+p)
		h.resolve("front-n.test", "udp", "ip4")
		for i, tc := range []struct{ sni, mismatch string }{
			{"other.test", "true"},
			{"FRONT-N.TEST", "false"},
		} {
			out := runClient(t, openssl, "s_client", "-connect", "127.0.20.4:"+p, "-servername", tc.sni)
			s := recvHello(t, seen)
			got := waitFBRecord(t, h.sink, "127.0.20.4", port, i+1, maxWait/2)
			wantSNI := strings.TrimSuffix(strings.ToLower(tc.sni), ".")
			wantRecord(t, got, fbRecord{outcome: "established", serverAddr: "front-n.test", source: "dns", sni: wantSNI, alpn: s.protos, mismatch: tc.mismatch})
			if !strings.EqualFold(strings.TrimSuffix(s.serverName, "."), wantSNI) {
				t.Errorf("server saw %q for -servername %s (s_client: %s)", s.serverName, tc.sni, out)
			}
		}
	})
	t.Run("openssl_trailing_dot", func(t *testing.T) {
		// Go's TLS server refuses an SNI with a trailing dot (RFC 6066
		// forbids it; OpenSSL sends it as given): a server that reads the
		// ClientHello and closes.
		readOnceServer(t, "127.0.20.5:"+p)
		h.resolve("dot-n.test", "udp", "ip4")
		runClient(t, openssl, "s_client", "-connect", "127.0.20.5:"+p, "-servername", "dot-n.test.")
		got := waitFBRecord(t, h.sink, "127.0.20.5", port, 1, maxWait/2)
		wantRecord(t, got, fbRecord{outcome: "established", serverAddr: "dot-n.test", source: "dns", sni: "dot-n.test", mismatch: "false"})
	})
}
