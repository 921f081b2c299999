package tcpconnectreceiver

import (
	"fmt"
	"net/netip"
	"strings"
	"time"

	"github.com/tcpconnect/tcpconnect/dns"
	"github.com/tcpconnect/tcpconnect/internal/event"
	"github.com/tcpconnect/tcpconnect/internal/firstbytes"
	"github.com/tcpconnect/tcpconnect/internal/procinfo"
)

// The largest record the configuration allows, and the configuration's
// bounds that follow from it. The record is built with the batcher's own
// code (convert.go), so this file uses the record building and is used by
// config.go's Validate and flush.go's newBatcher, never the other way: it
// takes what bounds a record as a recordCaps, not as the Config.

// Bounds of the configuration.
const (
	defaultBatchMaxBytes   = 2 << 20 // half the gRPC default: room for processors that add attributes
	maxBatchBytes          = 64 << 20
	minCommandLineBytes    = 64
	maxCommandLineBytesCap = 1 << 20
)

// recordCaps is what of the configuration bounds a record's size.
type recordCaps struct {
	commandLine      bool // include_command_line
	commandLineBytes int  // max_command_line_bytes
	aggregation      bool // aggregation.enabled: summary records' attributes
}

// maxRecordBytes returns the size bound of the largest record that caps
// allow, with a resource of its own: every string at its cap, the longest
// IP text, the most DNS names of the longest length. It builds that record
// with the batcher's own code, so that the bound follows what the batcher
// puts into a record.
func maxRecordBytes(caps recordCaps) int {
	long := func(n int) string { return strings.Repeat("x", n) }
	b := newUnboundedBatcher(long(maxHostNameBytes), long(maxScopeVersionBytes), caps.commandLine)
	info := &procinfo.Info{
		ExePath:     long(procinfo.MaxExePathBytes),
		ExeName:     long(procinfo.MaxExeNameBytes),
		Owner:       long(procinfo.MaxOwnerBytes),
		CommandLine: long(caps.commandLineBytes),
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
	if caps.aggregation {
		return b.bytes + summaryExtraBytes // a summary record's attributes
	}
	return b.bytes
}

// validateRecordBounds checks max_command_line_bytes and batch.max_bytes
// (batchMaxBytes) against caps.
func validateRecordBounds(caps recordCaps, batchMaxBytes int) []error {
	var errs []error
	if n := caps.commandLineBytes; n < minCommandLineBytes || n > maxCommandLineBytesCap {
		errs = append(errs, fmt.Errorf("max_command_line_bytes: must be between %d and %d, got %d", minCommandLineBytes, maxCommandLineBytesCap, n))
		return errs
	}
	if n := batchMaxBytes; n < 1 || n > maxBatchBytes {
		errs = append(errs, fmt.Errorf("batch.max_bytes: must be between 1 and %d, got %d", maxBatchBytes, n))
	} else if rec := maxRecordBytes(caps); n < rec {
		errs = append(errs, fmt.Errorf("batch.max_bytes: must hold the largest record, %d bytes with max_command_line_bytes %d and include_command_line %v, got %d", rec, caps.commandLineBytes, caps.commandLine, n))
	}
	return errs
}
