package tcpconnectreceiver

import (
	"context"
	"net/netip"
	"slices"
	"testing"
	"time"

	"go.opentelemetry.io/collector/pdata/plog"
	"go.opentelemetry.io/collector/receiver/receivertest"

	"github.com/tcpconnect/tcpconnect/dns"
	"github.com/tcpconnect/tcpconnect/internal/event"
	"github.com/tcpconnect/tcpconnect/internal/procinfo"
	"github.com/tcpconnect/tcpconnect/tcpconnectreceiver/internal/metadata"
)

// fbRecord is what a record says about its outcome and client names.
type fbRecord struct {
	outcome, serverAddr, source, sni, host string
	alpn                                   []string
	ech, mismatch                          string // "true", "false", "" (absent)
}

func fbRecords(ld plog.Logs) []fbRecord {
	var out []fbRecord
	for i := 0; i < ld.ResourceLogs().Len(); i++ {
		lrs := ld.ResourceLogs().At(i).ScopeLogs().At(0).LogRecords()
		for k := 0; k < lrs.Len(); k++ {
			out = append(out, fbRecordOf(lrs.At(k).Attributes().AsRaw()))
		}
	}
	return out
}

// fbRecordOf reads a record's attributes.
func fbRecordOf(a map[string]any) fbRecord {
	str := func(k string) string {
		switch v := a[k].(type) {
		case string:
			return v
		case bool:
			if v {
				return "true"
			}
			return "false"
		case []any:
			if len(v) == 1 {
				return v[0].(string)
			}
		}
		return ""
	}
	r := fbRecord{outcome: str(attrOutcome), serverAddr: str(attrServerAddress), source: str(attrServerSource),
		sni: str(attrTLSServerName), host: str(attrHTTPHost), ech: str(attrTLSECH), mismatch: str(attrNameMismatch)}
	if l, ok := a[attrTLSALPN].([]any); ok {
		for _, p := range l {
			r.alpn = append(r.alpn, p.(string))
		}
	}
	return r
}

// TestJoinFirstBytes replays a connect, its outcome and first-bytes records
// through the reader: what goes out before max_wait (sent), what only when
// it passed (held), what each record says and what was counted.
func TestJoinFirstBytes(t *testing.T) {
	const tid, boot = 10, 1000
	conn := trackedRecord(tid, 443, boot, true)
	est := outcomeRaw(tid, boot, boot+1, event.KindEstablished, 0)
	hello := clientHello(t, "Front.Example.", "h2", "http/1.1")
	get := []byte("GET /x HTTP/1.1\r\nHost: WWW.Example.com:8080\r\n\r\n")
	cat := func(parts ...[][]byte) [][]byte { return slices.Concat(parts...) }
	one := func(b ...[]byte) [][]byte { return b }
	tests := []struct {
		name    string
		dns     dnsSink
		fbOff   bool
		feed    [][]byte
		held    bool // goes out only once max_wait passed
		want    fbRecord
		result  int // the fb* counted; -1 none
		lost    int64
		unmatch int64
	}{
		{name: "tls one piece", feed: cat(one(conn, est), fbPieces(tid, boot, hello, 2048)),
			want: fbRecord{outcome: "established", serverAddr: "front.example", source: "tls", sni: "front.example", alpn: []string{"h2", "http/1.1"}}, result: fbTLS},
		{name: "tls three pieces", feed: cat(one(conn, est), fbPieces(tid, boot, hello, 700)),
			want: fbRecord{outcome: "established", serverAddr: "front.example", source: "tls", sni: "front.example", alpn: []string{"h2", "http/1.1"}}, result: fbTLS},
		{name: "tls named by dns, same name", dns: namesDNS{"front.example"}, feed: cat(one(conn, est), fbPieces(tid, boot, hello, 2048)),
			want: fbRecord{outcome: "established", serverAddr: "front.example", source: "dns", sni: "front.example", alpn: []string{"h2", "http/1.1"}, mismatch: "false"}, result: fbTLS},
		{name: "tls fronted", dns: namesDNS{"a.example", "cdn.example"}, feed: cat(one(conn, est), fbPieces(tid, boot, hello, 2048)),
			want: fbRecord{outcome: "established", serverAddr: "a.example", source: "dns", sni: "front.example", alpn: []string{"h2", "http/1.1"}, mismatch: "true"}, result: fbTLS},
		{name: "http host", feed: cat(one(conn, est), fbPieces(tid, boot, get, 2048)),
			want: fbRecord{outcome: "established", serverAddr: "www.example.com", source: "http", host: "www.example.com"}, result: fbHTTP},
		{name: "http ip literal", feed: cat(one(conn, est), fbPieces(tid, boot, []byte("GET / HTTP/1.0\r\nHost: [2001:DB8::1]:80\r\n\r\n"), 2048)),
			want: fbRecord{outcome: "established", serverAddr: "127.0.0.1", host: "[2001:db8::1]"}, result: fbHTTP},
		{name: "closed before sending", feed: one(conn, est, fbRaw(tid, boot, fbFlagClosed, 0, 0, nil)),
			want: fbRecord{outcome: "established", serverAddr: "127.0.0.1"}, result: fbNone},
		{name: "closed mid-hello", feed: cat(one(conn, est), fbPieces(tid, boot, hello, 700)[:1], one(fbRaw(tid, boot, fbFlagClosed, 700, uint32(len(hello)), nil))),
			want: fbRecord{outcome: "established", serverAddr: "127.0.0.1"}, result: fbTruncated},
		{name: "other protocol", feed: cat(one(conn, est), fbPieces(tid, boot, []byte("SSH-2.0-OpenSSH_9.2\r\n"), 2048)),
			want: fbRecord{outcome: "established", serverAddr: "127.0.0.1"}, result: fbOther},
		{name: "malformed hello", feed: cat(one(conn, est), fbPieces(tid, boot, []byte{0x16, 3, 1, 0, 4, 1, 0xff, 0xff, 0xff}, 2048)),
			want: fbRecord{outcome: "established", serverAddr: "127.0.0.1"}, result: fbMalformed},
		{name: "server speaks first: held to max_wait", feed: one(conn, est), held: true,
			want: fbRecord{outcome: "established", serverAddr: "127.0.0.1"}, result: fbNone},
		{name: "hello cut short: held, truncated", feed: cat(one(conn, est), fbPieces(tid, boot, hello, 700)[:1]), held: true,
			want: fbRecord{outcome: "established", serverAddr: "127.0.0.1"}, result: fbTruncated},
		{name: "refused: at once", feed: one(conn, outcomeRaw(tid, boot, boot+1, event.KindRefused, 111)),
			want: fbRecord{outcome: "refused", serverAddr: "127.0.0.1"}, result: -1},
		{name: "first bytes off: at once", fbOff: true, feed: one(conn, est),
			want: fbRecord{outcome: "established", serverAddr: "127.0.0.1"}, result: -1},
		{name: "first piece missing", feed: cat(one(conn, est), fbPieces(tid, boot, hello, 700)[1:]),
			want: fbRecord{outcome: "established", serverAddr: "127.0.0.1"}, result: fbNone, lost: 1, unmatch: 1},
		{name: "piece without its record", feed: one(fbRaw(tid, boot, fbFlagClosed, 0, 0, nil)), result: -1, unmatch: 1},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			cfg := createDefaultConfig()
			cfg.Outcome.MaxWait = time.Minute
			if tt.fbOff {
				cfg.FirstBytes.TLS, cfg.FirstBytes.HTTP = false, false
			}
			set := receivertest.NewNopSettings(metadata.Type)
			tel, err := metadata.NewTelemetryBuilder(set.TelemetrySettings)
			if err != nil {
				t.Fatal(err)
			}
			sink := tt.dns
			if sink == nil {
				sink = namesDNS{}
			}
			batch := newBatcher("host-1", "v1", cfg)
			rd := newReader(readerDeps{cfg: cfg, log: set.Logger, tel: tel, dns: sink, batch: batch,
				procs: procinfo.New(procinfo.Config{ProcRoot: t.TempDir()})})
			now := time.Unix(1e9, 0)
			for _, raw := range tt.feed {
				rd.handle(raw, now)
			}
			sent := batch.len()
			rd.join.expire(context.Background(), now.Add(time.Minute), false)
			ld, _ := batch.take()
			got := fbRecords(ld)
			wantN := 1
			if tt.name == "piece without its record" {
				wantN = 0
			}
			if len(got) != wantN {
				t.Fatalf("%d records, want %d", len(got), wantN)
			}
			if wantN == 1 {
				if held := sent == 0; held != tt.held {
					t.Errorf("held to max_wait %v, want %v", held, tt.held)
				}
				if g := got[0]; !slices.Equal(g.alpn, tt.want.alpn) || g.outcome != tt.want.outcome || g.serverAddr != tt.want.serverAddr ||
					g.source != tt.want.source || g.sni != tt.want.sni || g.host != tt.want.host || g.ech != tt.want.ech || g.mismatch != tt.want.mismatch {
					t.Errorf("record %+v, want %+v", g, tt.want)
				}
			}
			for r, n := range rd.c.fb {
				if want := int64(0); r == tt.result && n != 1 || r != tt.result && n != want {
					t.Errorf("first bytes %s counted %d", fbResultNames[r], n)
				}
			}
			if rd.c.fbLost != tt.lost || rd.c.fbUnmatched != tt.unmatch {
				t.Errorf("lost %d unmatched %d, want %d %d", rd.c.fbLost, rd.c.fbUnmatched, tt.lost, tt.unmatch)
			}
			if rd.join.fb != nil && len(rd.join.fb.free) != len(rd.join.fb.asms) {
				t.Errorf("%d of %d reassembly buffers free", len(rd.join.fb.free), len(rd.join.fb.asms))
			}
		})
	}
}

// namesDNS is a dnsSink that names every destination with its names.
type namesDNS []string

func (namesDNS) HandleDNS(*event.DNS, time.Time) {}
func (n namesDNS) Lookup(_ netip.Addr, _ dns.Scope, _ time.Time, dst []string) ([]string, string, time.Duration, dns.Source) {
	if len(n) == 0 {
		return dst, "", 0, dns.SourceNone
	}
	dst = append(dst, n...)
	return dst, dst[0], time.Second, dns.SourceProcess
}
func (namesDNS) Stats() dns.Stats  { return dns.Stats{} }
func (namesDNS) Sweep(_ time.Time) {}

// TestNameMismatch is the domain-fronting rule: case and one trailing dot
// do not count, a wildcard does not match.
func TestNameMismatch(t *testing.T) {
	for _, tt := range []struct {
		client string
		names  []string
		want   bool
	}{
		{"a.example", []string{"a.example"}, false},
		{"a.example", []string{"cdn.example", "A.Example."}, false},
		{"a.example.", []string{"a.example"}, false},
		{"A.EXAMPLE", []string{"a.example."}, false},
		{"b.example", []string{"a.example"}, true},
		{"b.a.example", []string{"*.a.example"}, true},
		{"a.example..", []string{"a.example"}, true},
		{"a.example", []string{"a.example.com"}, true},
	} {
		if got := nameMismatch(tt.client, tt.names); got != tt.want {
			t.Errorf("nameMismatch(%q, %q) = %v, want %v", tt.client, tt.names, got, tt.want)
		}
	}
}
