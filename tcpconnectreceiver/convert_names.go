package tcpconnectreceiver

import (
	"strings"
	"time"

	"go.opentelemetry.io/collector/pdata/xpdata"

	"github.com/tcpconnect/tcpconnect/dns"
	"github.com/tcpconnect/tcpconnect/internal/firstbytes"
)

// lookup is what the DNS correlator found for one connect.
type lookup struct {
	names  []string      // every name, best first; empty when none
	best   string        // the best name, "" when none
	age    time.Duration // time since the answer that gave best
	source dns.Source    // where best came from; SourceNone when none
}

// The values of tcpconnect.server.address.source.
const (
	sourceDNS  = "dns"
	sourceTLS  = "tls"
	sourceHTTP = "http"
)

// serverAddress returns server.address and where it came from: the best DNS
// name, else the DNS name the client sent (SNI, HTTP Host), else the IP
// (source "").
func serverAddress(dns lookup, fb *fbResult, ip string) (addr, source string) {
	if dns.best != "" {
		return dns.best, sourceDNS
	}
	if name := fb.clientName(); name != "" {
		if fb.kind == firstbytes.KindTLS {
			return name, sourceTLS
		}
		return name, sourceHTTP
	}
	return ip, ""
}

// appendServerAddress appends server.address and its source, and returns
// their size bound.
func appendServerAddress(m *xpdata.MapBuilder, dns lookup, fb *fbResult, ip string) int {
	addr, source := serverAddress(dns, fb, ip)
	size := appendStr(m, attrServerAddress, addr)
	if source != "" {
		size += appendStr(m, attrServerSource, source)
	}
	return size
}

// nameMismatch reports whether the client's name is among none of the DNS
// names: compared case-insensitively, one trailing dot ignored on each
// side, no wildcard matching.
func nameMismatch(client string, names []string) bool {
	client = strings.TrimSuffix(client, ".")
	for _, n := range names {
		if strings.EqualFold(strings.TrimSuffix(n, "."), client) {
			return false
		}
	}
	return true
}

// clientNameAttrs returns how many attributes appendClientName and
// appendServerAddress's source add for fb, beyond server.address.
func clientNameAttrs(dns lookup, fb *fbResult) int {
	n := 0
	if _, source := serverAddress(dns, fb, ""); source != "" {
		n++
	}
	if fb == nil {
		return n
	}
	if fb.name != "" {
		n++
	}
	if len(fb.alpn) > 0 {
		n++
	}
	if fb.ech {
		n++
	}
	if fb.clientName() != "" && len(dns.names) > 0 {
		n++
	}
	return n
}

// appendClientName appends the names the client sent in its first bytes
// (fb, nil when none) and the mismatch flag, and returns their size bound.
func appendClientName(m *xpdata.MapBuilder, dns lookup, fb *fbResult) int {
	if fb == nil {
		return 0
	}
	size := 0
	switch {
	case fb.name == "":
	case fb.kind == firstbytes.KindTLS:
		size += appendStr(m, attrTLSServerName, fb.name)
	default:
		host := m.AppendEmpty(attrHTTPHost).SetEmptySlice()
		host.AppendEmpty().SetStr(fb.name)
		size += attrOverhead + len(attrHTTPHost) + elemOverhead + len(fb.name)
	}
	if len(fb.alpn) > 0 {
		alpn := m.AppendEmpty(attrTLSALPN).SetEmptySlice()
		alpn.EnsureCapacity(len(fb.alpn))
		size += attrOverhead + len(attrTLSALPN)
		for _, p := range fb.alpn {
			alpn.AppendEmpty().SetStr(p)
			size += elemOverhead + len(p)
		}
	}
	if fb.ech {
		m.AppendEmpty(attrTLSECH).SetBool(true)
		size += attrOverhead + len(attrTLSECH) + 1
	}
	if name := fb.clientName(); name != "" && len(dns.names) > 0 {
		m.AppendEmpty(attrNameMismatch).SetBool(nameMismatch(name, dns.names))
		size += attrOverhead + len(attrNameMismatch) + 1
	}
	return size
}
