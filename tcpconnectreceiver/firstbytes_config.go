package tcpconnectreceiver

import (
	"fmt"

	"github.com/tcpconnect/tcpconnect/bpf"
)

// FirstBytesConfig configures the names a client sends in the first bytes
// of a connection (issue 19): the kernel copies what each socket the
// outcome follows sends once connected, up to MaxBytes, and the receiver
// parses a TLS ClientHello (server name, ALPN, ECH) or an HTTP/1.x request
// head (Host). The record waits for them within outcome.max_wait. Only
// sockets the outcome follows are captured: with outcome.enabled false,
// first bytes are off whatever this section says.
type FirstBytesConfig struct {
	// TLS reports a ClientHello's server name (tls.client.server_name),
	// ALPN (tcpconnect.tls.alpn) and ECH flag (tcpconnect.tls.ech).
	TLS bool `mapstructure:"tls"`
	// HTTP reports an HTTP/1.x request's Host (http.request.header.host).
	HTTP bool `mapstructure:"http"`
	// MaxBytes bounds the bytes captured per socket (1 to 65536): a
	// ClientHello with post-quantum key shares is about 2 KiB; one longer
	// than the bound is cut and counted as truncated.
	MaxBytes int `mapstructure:"max_bytes"`
}

func defaultFirstBytesConfig() FirstBytesConfig {
	return FirstBytesConfig{TLS: true, HTTP: true, MaxBytes: bpf.DefaultFirstBytes}
}

// on reports whether first bytes are captured with outcome tracking on.
func (f FirstBytesConfig) on() bool { return f.TLS || f.HTTP }

// validate checks the fields when a source is on.
func (f FirstBytesConfig) validate() []error {
	if !f.on() {
		return nil
	}
	if f.MaxBytes < 1 || f.MaxBytes > bpf.MaxFirstBytes {
		return []error{fmt.Errorf("first_bytes.max_bytes: must be between 1 and %d, got %d", bpf.MaxFirstBytes, f.MaxBytes)}
	}
	return nil
}
