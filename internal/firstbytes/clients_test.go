package firstbytes

import (
	"context"
	"crypto/tls"
	"net"
	"net/http"
	"os/exec"
	"strings"
	"testing"
	"time"

	"github.com/tcpconnect/tcpconnect/internal/privtest"
)

// lookTool finds a client binary; a missing one skips (fails where the
// privileged suite is required, as in CI, where make deps-test installs it).
func lookTool(t *testing.T, name string) string {
	t.Helper()
	p, err := exec.LookPath(name)
	if err != nil {
		privtest.SkipOrFail(t, name+" not installed (make deps-test)")
	}
	return p
}

// run runs a client for at most 20 s; its exit status is not the test's
// concern (the server's view is).
func run(t *testing.T, name string, args ...string) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	cmd := exec.CommandContext(ctx, name, args...)
	cmd.Stdin = strings.NewReader("")
	out, err := cmd.CombinedOutput()
	if ctx.Err() != nil {
		t.Fatalf("%s timed out: %v\n%s", name, err, out)
	}
}

// TestCurlAndOpenSSLClients: curl (--resolve: a name no DNS query shows)
// and openssl s_client against a crypto/tls server on loopback, the
// server's ClientHelloInfo the oracle.
func TestCurlAndOpenSSLClients(t *testing.T) {
	addr, seen := tlsServer(t, &tls.Config{})
	_, port, _ := net.SplitHostPort(addr)
	t.Run("curl", func(t *testing.T) {
		curl := lookTool(t, "curl")
		run(t, curl, "-sk", "--max-time", "10", "--resolve", "curl.example:"+port+":127.0.0.1", "https://curl.example:"+port+"/")
		h := waitHello(t, seen)
		if h.serverName != "curl.example" || len(h.protos) == 0 {
			t.Fatalf("the server saw %q, ALPN %q", h.serverName, h.protos)
		}
		checkAgainstServer(t, h.raw, h, false)
	})
	t.Run("openssl", func(t *testing.T) {
		openssl := lookTool(t, "openssl")
		run(t, openssl, "s_client", "-connect", addr, "-servername", "OpenSSL.Example", "-alpn", "h2,http/1.1,x-custom")
		h := waitHello(t, seen)
		if h.serverName == "" || len(h.protos) != 3 {
			t.Fatalf("the server saw %q, ALPN %q", h.serverName, h.protos)
		}
		checkAgainstServer(t, h.raw, h, false)
	})
}

// httpServer serves HTTP on a loopback port and sends, for each request,
// the net/http server's view and the raw bytes it read first.
func httpServer(t *testing.T) (string, <-chan httpSeen) {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	seen := make(chan httpSeen, 4)
	srv := &http.Server{
		Handler: http.HandlerFunc(func(w http.ResponseWriter, req *http.Request) {
			rc := req.Context().Value(connKey{}).(*recordingConn)
			seen <- httpSeen{host: req.Host, method: req.Method, uri: req.RequestURI, raw: rc.bytes()}
			_, _ = w.Write([]byte("ok"))
		}),
		ConnContext: func(ctx context.Context, c net.Conn) context.Context {
			return context.WithValue(ctx, connKey{}, c)
		},
		ReadHeaderTimeout: 10 * time.Second,
	}
	go func() { _ = srv.Serve(recordingListener{ln}) }()
	t.Cleanup(func() { srv.Close() })
	return ln.Addr().String(), seen
}

type connKey struct{}

type httpSeen struct {
	host, method, uri string
	raw               []byte
}

type recordingListener struct{ net.Listener }

func (l recordingListener) Accept() (net.Conn, error) {
	c, err := l.Listener.Accept()
	if err != nil {
		return nil, err
	}
	return &recordingConn{Conn: c}, nil
}

// TestHTTPClients: curl and busybox wget against net/http on loopback; the
// server's Request (Host, Method, RequestURI) is the oracle.
func TestHTTPClients(t *testing.T) {
	addr, seen := httpServer(t)
	for _, tc := range []struct {
		name string
		tool string
		args []string
	}{
		{"curl_host_header", "curl", []string{"-s", "--max-time", "10", "http://" + addr + "/a/b?c=d", "-H", "Host: Fronted.Example:8443"}},
		{"curl_default_host", "curl", []string{"-s", "--max-time", "10", "-X", "DELETE", "http://" + addr + "/x"}},
		{"busybox_wget", "busybox", []string{"wget", "-q", "-O", "/dev/null", "--header", "Host: wget.example", "http://" + addr + "/wget"}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			run(t, lookTool(t, tc.tool), tc.args...)
			var h httpSeen
			select {
			case h = <-seen:
			case <-time.After(20 * time.Second):
				t.Fatal("the server saw no request")
			}
			var p Parser
			var r Result
			if s := p.Parse(h.raw, &r); s != StatusOK || r.Kind != KindHTTP {
				t.Fatalf("parse %q: %s %s (%s)", h.raw, r.Kind, s, r.Reason)
			}
			wantHost := strings.ToLower(h.host)
			if hh, _, err := net.SplitHostPort(wantHost); err == nil {
				wantHost = hh
			}
			if string(r.Name()) != wantHost || string(r.Method) != h.method || string(r.Target) != h.uri {
				t.Errorf("parsed %q %q host %q; the server saw %q %q host %q", r.Method, r.Target, r.Name(), h.method, h.uri, h.host)
			}
			if r.NameIsIP != (net.ParseIP(wantHost) != nil) {
				t.Errorf("NameIsIP %v for %q", r.NameIsIP, wantHost)
			}
		})
	}
}
