package tcpconnectreceiver

import (
	"fmt"
	"net/netip"
	"strings"
	"time"

	"go.opentelemetry.io/collector/pdata/pcommon"
	"go.opentelemetry.io/collector/pdata/xpdata"

	"github.com/tcpconnect/tcpconnect/dns"
	"github.com/tcpconnect/tcpconnect/internal/event"
	"github.com/tcpconnect/tcpconnect/internal/firstbytes"
	"github.com/tcpconnect/tcpconnect/internal/procinfo"
)

// A batch's size in bytes is bounded, so that a batch cannot exceed the
// request limits of OTLP receivers downstream (gRPC's default is 4 MiB): a
// process chooses the length of its command line, and a record of its own
// could otherwise make a whole batch, with other processes' records, be
// refused. Every string a record carries is capped (procinfo's caps,
// max_command_line_bytes, DNS names' length and number), so a record's size has
// a bound, maxRecordBytes; batch.max_bytes must hold one such record, and a
// batch is sent once it may not hold one more.
//
// The batcher adds up an upper bound of the protobuf size of what it puts
// into the batch as it puts it, at a few additions per attribute: the
// lengths of keys and values and, per field, its tag and length varint at
// their largest. TestBatchBytesBound checks it against plog's exact size.

// Bounds of the configuration and the strings not capped by procinfo.
const (
	defaultBatchMaxBytes   = 2 << 20 // half the gRPC default: room for processors that add attributes
	maxBatchBytes          = 64 << 20
	minCommandLineBytes    = 64
	maxCommandLineBytesCap = 1 << 20
	maxHostNameBytes       = 255 // the kernel's is 64 (HOST_NAME_MAX)
	maxScopeVersionBytes   = 64
	maxCommBytes           = 64  // the kernel's comm is 15 bytes: 31 once its invalid bytes are replaced
	maxDNSNameBytes        = 254 // a dnsmessage.Name: 255 bytes with its trailing dot
)

// Upper bounds of the protobuf encoding (opentelemetry-proto logs.proto,
// common.proto) around the lengths of keys and values.
const (
	// attrOverhead: a KeyValue's tag and length, its key's tag and length
	// (keys are short), the AnyValue's tag and length and the value's tag
	// and length, each length below 2 MiB (a varint of 3 bytes).
	attrOverhead = 16
	// intBytes and doubleBytes: an int value's varint, a double's fixed64.
	intBytes    = 10
	doubleBytes = 8
	// elemOverhead: one string in an ArrayValue (AnyValue tag and length,
	// string tag and length).
	elemOverhead = 8
	// recordOverhead: a LogRecord's tag and length, its two fixed64
	// timestamps, severity number, and the tags and lengths of the severity
	// text and event name (whose lengths are added).
	recordOverhead = 4 + 9 + 9 + 2 + 2 + 2
	// resourceOverhead: the tags and lengths (up to 5 bytes) of ResourceLogs,
	// Resource, ScopeLogs and Scope, and the tags and lengths of the scope
	// name and version (whose lengths are added).
	resourceOverhead = 4*6 + 2*2
)

// putStr puts a string attribute and returns its size bound.
func putStr(m pcommon.Map, k, v string) int {
	m.PutStr(k, v)
	return attrOverhead + len(k) + len(v)
}

// putInt puts an int attribute and returns its size bound.
func putInt(m pcommon.Map, k string, v int64) int {
	m.PutInt(k, v)
	return attrOverhead + len(k) + intBytes
}

// appendStr appends a string attribute to a record's attributes (no check
// for an existing key: fillRecord puts each key once) and returns its size
// bound.
func appendStr(m *xpdata.MapBuilder, k, v string) int {
	m.AppendEmpty(k).SetStr(v)
	return attrOverhead + len(k) + len(v)
}

// appendInt appends an int attribute like appendStr.
func appendInt(m *xpdata.MapBuilder, k string, v int64) int {
	m.AppendEmpty(k).SetInt(v)
	return attrOverhead + len(k) + intBytes
}

// maxRecordBytes returns the size bound of the largest record that cfg
// allows, with a resource of its own: every string at its cap, the longest
// IP text, the most DNS names of the longest length. It builds that record
// with the batcher's own code, so that the bound follows what the batcher
// puts into a record.
func maxRecordBytes(cfg *Config) int {
	long := func(n int) string { return strings.Repeat("x", n) }
	b := newUnboundedBatcher(long(maxHostNameBytes), long(maxScopeVersionBytes), cfg.IncludeCommandLine)
	info := &procinfo.Info{
		ExePath:     long(procinfo.MaxExePathBytes),
		ExeName:     long(procinfo.MaxExeNameBytes),
		Owner:       long(procinfo.MaxOwnerBytes),
		CommandLine: long(cfg.MaxCommandLineBytes),
		Container:   procinfo.Container{ID: long(64), PodUID: long(36)},
	}
	c := &event.Connect{Hook: event.HookCgroup, Dst: netip.MustParseAddr("ffff:ffff:ffff:ffff:ffff:ffff:ffff:ffff")}
	// The correlator returns at most dns.max_names_per_ip names.
	names := make([]string, dns.MaxMaxNamesPerIP)
	for i := range names {
		names[i] = long(maxDNSNameBytes)
	}
	// A comm of invalid bytes between valid ones grows most when cleaned.
	comm := []byte(strings.Repeat("\xffa", 8)[:15])
	recs := b.addProcess(procinfo.Key{}, c, info)
	// The client's names: TLS's are the longest (a name, every ALPN
	// protocol kept at its most, the ECH flag, the mismatch flag).
	res := maxOutcomeResult()
	alpn := make([]string, firstbytes.MaxALPN)
	for i := range alpn {
		alpn[i] = long(255) // an ALPN protocol's length is one byte
	}
	res.fb = &fbResult{kind: firstbytes.KindTLS, name: long(firstbytes.MaxName), alpn: alpn, ech: true}
	b.appendRecord(recs, c, comm, lookup{names: names, best: names[0], age: time.Second}, res, time.Time{}, time.Time{})
	if cfg.Aggregation.Enabled {
		return b.bytes + summaryExtraBytes // a summary record's attributes
	}
	return b.bytes
}

// validateRecordBounds checks max_command_line_bytes and batch.max_bytes.
func (c *Config) validateRecordBounds() []error {
	var errs []error
	if n := c.MaxCommandLineBytes; n < minCommandLineBytes || n > maxCommandLineBytesCap {
		errs = append(errs, fmt.Errorf("max_command_line_bytes: must be between %d and %d, got %d", minCommandLineBytes, maxCommandLineBytesCap, n))
		return errs
	}
	if n := c.Batch.MaxBytes; n < 1 || n > maxBatchBytes {
		errs = append(errs, fmt.Errorf("batch.max_bytes: must be between 1 and %d, got %d", maxBatchBytes, n))
	} else if rec := maxRecordBytes(c); n < rec {
		errs = append(errs, fmt.Errorf("batch.max_bytes: must hold the largest record, %d bytes with max_command_line_bytes %d and include_command_line %v, got %d", rec, c.MaxCommandLineBytes, c.IncludeCommandLine, n))
	}
	return errs
}
