package apiserver

import (
	"context"
	"crypto/rand"
	"crypto/rsa"
	"crypto/x509"
	"encoding/pem"
	"errors"
	"fmt"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	authenticationv1 "k8s.io/api/authentication/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/rest"
)

// Environment variables naming what the test runs; `make k8s-test` sets
// them all. envRequire=1 (CI) turns every skip into a failure.
const (
	envRequire   = "TCPCONNECT_REQUIRE_PRIVILEGED"
	envAgent     = "TCPCONNECT_COLLECTOR"
	envGateway   = "TCPCONNECT_GATEWAY"
	envAPIServer = "TCPCONNECT_KUBE_APISERVER"
	envEtcd      = "TCPCONNECT_ETCD"
)

// Bounds of the waits: hang detectors, not speed targets (the API server's
// first start on a loaded two-core machine takes tens of seconds).
const (
	startTimeout   = 3 * time.Minute
	recordsTimeout = 30 * time.Second
	pollEvery      = 100 * time.Millisecond
	stopTimeout    = 10 * time.Second
)

// adminToken is the static bearer token of the test's own client, a member
// of system:masters (--token-auth-file): the API server's RBAC authorizer
// lets that group do anything, as a cluster's admin kubeconfig does.
const adminToken = "tcpconnect-k8s-test-admin"

// skipOrFail skips t with reason, or fails it when envRequire=1 says that
// everything must run (the rule of internal/privtest, which this module does
// not import).
func skipOrFail(t testing.TB, reason string) {
	t.Helper()
	if os.Getenv(envRequire) == "1" {
		t.Fatalf("%s, and %s=1 forbids skipping", reason, envRequire)
	}
	t.Skip(reason) // skip-ok: privtest.SkipOrFail's rule, restated (own module)
}

// binary returns the absolute path of the executable that env names (or
// def), or skips or fails t when it is missing.
func binary(t testing.TB, env, def string) string {
	t.Helper()
	p := os.Getenv(env)
	if p == "" {
		p = def
	}
	abs, err := exec.LookPath(p)
	if err == nil {
		abs, err = filepath.Abs(abs)
	}
	if err != nil {
		skipOrFail(t, fmt.Sprintf("needs %s (set %s; `make k8s-test` builds or installs it): %v", p, env, err))
	}
	return abs
}

// freePort returns a TCP port on 127.0.0.1 that was free a moment ago.
func freePort(t testing.TB) int {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatalf("find a free port: %v", err)
	}
	defer l.Close()
	return l.Addr().(*net.TCPAddr).Port
}

// syncBuffer is a strings.Builder that a process's output and the test may
// use at once.
type syncBuffer struct {
	mu  sync.Mutex
	buf strings.Builder
}

// Write appends p.
func (b *syncBuffer) Write(p []byte) (int, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.Write(p)
}

// String returns what was written so far.
func (b *syncBuffer) String() string {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.String()
}

// process is a program the test started; it is stopped (SIGTERM, then
// SIGKILL) when the test ends, and its output logged if the test failed.
type process struct {
	name string
	cmd  *exec.Cmd
	out  *syncBuffer
	done chan struct{} // closed when the process has exited
	err  error         // Wait's result, valid once done is closed
}

// start runs cmd as the process name.
func start(t testing.TB, name string, cmd *exec.Cmd) *process {
	t.Helper()
	p := &process{name: name, cmd: cmd, out: &syncBuffer{}, done: make(chan struct{})}
	cmd.Stdout, cmd.Stderr = p.out, p.out
	// If the test binary dies, the kernel ends the process too.
	cmd.SysProcAttr = &syscall.SysProcAttr{Pdeathsig: syscall.SIGKILL}
	if err := cmd.Start(); err != nil {
		t.Fatalf("start %s: %v", name, err)
	}
	go func() {
		p.err = cmd.Wait()
		close(p.done)
	}()
	t.Cleanup(func() {
		p.stop(t)
		if t.Failed() {
			t.Logf("%s output (last 8 KiB):\n%s", name, tail(p.out.String(), 8<<10))
		}
	})
	return p
}

func tail(s string, n int) string {
	if len(s) > n {
		return s[len(s)-n:]
	}
	return s
}

// stop ends the process: SIGTERM, and SIGKILL after stopTimeout.
func (p *process) stop(t testing.TB) {
	t.Helper()
	select {
	case <-p.done:
		return
	default:
	}
	if err := p.cmd.Process.Signal(syscall.SIGTERM); err != nil && !errors.Is(err, os.ErrProcessDone) {
		t.Errorf("%s: SIGTERM: %v", p.name, err)
	}
	select {
	case <-p.done:
	case <-time.After(stopTimeout):
		t.Errorf("%s: still running %s after SIGTERM, killing it", p.name, stopTimeout)
		_ = p.cmd.Process.Kill()
		<-p.done
	}
}

// waitFor polls ready until it returns nil, failing t when the process
// exits or startTimeout passes first.
func (p *process) waitFor(t testing.TB, what string, ready func() error) {
	t.Helper()
	deadline := time.Now().Add(startTimeout)
	for {
		err := ready()
		if err == nil {
			return
		}
		select {
		case <-p.done:
			t.Fatalf("%s exited (%v) before %s:\n%s", p.name, p.err, what, tail(p.out.String(), 8<<10))
		default:
		}
		if time.Now().After(deadline) {
			t.Fatalf("%s: not %s after %s (last: %v):\n%s", p.name, what, startTimeout, err, tail(p.out.String(), 8<<10))
		}
		time.Sleep(pollEvery)
	}
}

// httpOK returns nil when GET url with client answers 200.
func httpOK(client *http.Client, url, token string) error {
	req, err := http.NewRequest(http.MethodGet, url, nil)
	if err != nil {
		return err
	}
	if token != "" {
		req.Header.Set("Authorization", "Bearer "+token)
	}
	resp, err := client.Do(req)
	if err != nil {
		return err
	}
	_ = resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		return fmt.Errorf("GET %s: %s", url, resp.Status)
	}
	return nil
}

// startEtcd runs a one-member etcd on loopback and returns its client URL.
func startEtcd(t testing.TB) string {
	t.Helper()
	bin := binary(t, envEtcd, "etcd")
	dir := t.TempDir()
	client := "http://127.0.0.1:" + strconv.Itoa(freePort(t))
	peer := "http://127.0.0.1:" + strconv.Itoa(freePort(t))
	p := start(t, "etcd", exec.Command(bin,
		"--name=k8s-test",
		"--data-dir="+filepath.Join(dir, "data"),
		"--listen-client-urls="+client, "--advertise-client-urls="+client,
		"--listen-peer-urls="+peer, "--initial-advertise-peer-urls="+peer,
		"--initial-cluster=k8s-test="+peer,
		"--log-level=warn"))
	hc := &http.Client{Timeout: 2 * time.Second}
	p.waitFor(t, "healthy", func() error { return httpOK(hc, client+"/health", "") })
	return client
}

// cluster is a running kube-apiserver and what its clients need.
type cluster struct {
	host   string // https://127.0.0.1:PORT
	port   int
	caFile string // the API server's self-signed CA (its --cert-dir's)
	admin  *kubernetes.Clientset
}

// startAPIServer runs kube-apiserver on loopback against etcd: serving
// certificates it makes itself (--cert-dir), a service-account key pair
// that signs and verifies the tokens it issues, the test's admin token, and
// RBAC authorization, so that the gateway reads what the shipped
// ClusterRole grants and nothing more. No scheduler, controller manager or
// kubelet: pods stay Pending, with the UIDs the API server gave them.
func startAPIServer(t testing.TB, etcd string) *cluster {
	t.Helper()
	bin := binary(t, envAPIServer, "kube-apiserver")
	dir := t.TempDir()
	key, err := rsa.GenerateKey(rand.Reader, 2048)
	if err != nil {
		t.Fatal(err)
	}
	keyFile := filepath.Join(dir, "sa.key")
	der, err := x509.MarshalPKCS8PrivateKey(key)
	if err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(keyFile, pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: der}), 0o600); err != nil {
		t.Fatal(err)
	}
	tokens := filepath.Join(dir, "tokens.csv")
	if err := os.WriteFile(tokens, []byte(adminToken+`,tcpconnect-test-admin,tcpconnect-test-admin,"system:masters"`+"\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	certDir := filepath.Join(dir, "certs")
	port := freePort(t)
	p := start(t, "kube-apiserver", exec.Command(bin,
		"--etcd-servers="+etcd,
		"--bind-address=127.0.0.1",
		"--advertise-address=127.0.0.1",
		// The kubernetes Service's endpoints would be this loopback
		// address, which the reconciler refuses; nothing here uses them.
		"--endpoint-reconciler-type=none",
		"--secure-port="+strconv.Itoa(port),
		"--cert-dir="+certDir,
		"--service-cluster-ip-range=10.96.0.0/24",
		"--service-account-issuer=https://kubernetes.default.svc.cluster.local",
		"--service-account-key-file="+keyFile,
		"--service-account-signing-key-file="+keyFile,
		"--token-auth-file="+tokens,
		"--authorization-mode=RBAC",
		"--v=1"))
	c := &cluster{
		host:   "https://127.0.0.1:" + strconv.Itoa(port),
		port:   port,
		caFile: filepath.Join(certDir, "apiserver.crt"),
	}
	// The serving certificate appears first, then /readyz turns 200 once
	// etcd, the RBAC bootstrap policy and the system namespaces are in.
	p.waitFor(t, "serving its certificate", func() error {
		_, err := os.Stat(c.caFile)
		return err
	})
	cfg := c.config(adminToken)
	hc, err := rest.HTTPClientFor(cfg)
	if err != nil {
		t.Fatal(err)
	}
	hc.Timeout = 5 * time.Second
	p.waitFor(t, "ready", func() error { return httpOK(hc, c.host+"/readyz", adminToken) })
	if c.admin, err = kubernetes.NewForConfig(cfg); err != nil {
		t.Fatal(err)
	}
	return c
}

// config is a client configuration for the bearer token.
func (c *cluster) config(token string) *rest.Config {
	return &rest.Config{
		Host:            c.host,
		BearerToken:     token,
		TLSClientConfig: rest.TLSClientConfig{CAFile: c.caFile},
	}
}

// serviceAccountDir writes what the kubelet projects into a pod of service
// account name in namespace ns, at /var/run/secrets/kubernetes.io/
// serviceaccount: a token the API server issues for it (TokenRequest), the
// cluster's CA, the namespace.
func (c *cluster) serviceAccountDir(t testing.TB, ns, name string) string {
	t.Helper()
	ctx := context.Background()
	exp := int64(3600)
	tr, err := c.admin.CoreV1().ServiceAccounts(ns).CreateToken(ctx, name,
		&authenticationv1.TokenRequest{Spec: authenticationv1.TokenRequestSpec{ExpirationSeconds: &exp}}, metav1.CreateOptions{})
	if err != nil {
		t.Fatalf("TokenRequest for service account %s/%s: %v", ns, name, err)
	}
	ca, err := os.ReadFile(c.caFile)
	if err != nil {
		t.Fatal(err)
	}
	dir := t.TempDir()
	for f, data := range map[string][]byte{"token": []byte(tr.Status.Token), "ca.crt": ca, "namespace": []byte(ns)} {
		if err := os.WriteFile(filepath.Join(dir, f), data, 0o644); err != nil {
			t.Fatal(err)
		}
	}
	return dir
}
