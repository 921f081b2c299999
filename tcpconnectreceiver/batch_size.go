package tcpconnectreceiver

import (
	"go.opentelemetry.io/collector/pdata/pcommon"
	"go.opentelemetry.io/collector/pdata/xpdata"
)

// A batch's size in bytes is bounded, so that a batch cannot exceed the
// request limits of OTLP receivers downstream (gRPC's default is 4 MiB): a
// process chooses the length of its command line, and a record of its own
// could otherwise make a whole batch, with other processes' records, be
// refused. Every string a record carries is capped (procinfo's caps,
// max_command_line_bytes, DNS names' length and number), so a record's size has
// a bound, maxRecordBytes (record_bound.go); batch.max_bytes must hold one
// such record, and a batch is sent once it may not hold one more.
//
// The batcher adds up an upper bound of the protobuf size of what it puts
// into the batch as it puts it, at a few additions per attribute: the
// lengths of keys and values and, per field, its tag and length varint at
// their largest. TestBatchBytesBound checks it against plog's exact size.

// Caps of the strings not capped by procinfo.
const (
	maxHostNameBytes     = 255 // the kernel's is 64 (HOST_NAME_MAX)
	maxScopeVersionBytes = 64
	maxCommBytes         = 64  // the kernel's comm is 15 bytes: 31 once its invalid bytes are replaced
	maxDNSNameBytes      = 254 // a dnsmessage.Name: 255 bytes with its trailing dot
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
