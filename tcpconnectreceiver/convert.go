package tcpconnectreceiver

import (
	"net/netip"
	"time"

	"go.opentelemetry.io/collector/pdata/pcommon"
	"go.opentelemetry.io/collector/pdata/plog"
	"go.opentelemetry.io/collector/pdata/xpdata"

	"github.com/tcpconnect/tcpconnect/internal/event"
	"github.com/tcpconnect/tcpconnect/internal/procinfo"
	"github.com/tcpconnect/tcpconnect/tcpconnectreceiver/internal/metadata"
)

// EventName is the event name of every log record the receiver emits.
const EventName = "net_tcp_connect"

// Record constants; the attribute names are in attributes.go.
const (
	severityText = "INFO"
	// recordAttributes is how many attributes every record has; thread.name,
	// tcpconnect.dns.names, tcpconnect.dns.age, tcpconnect.dns.source and
	// the outcome's attributes are added when present. The attribute slice
	// is allocated once at its final size.
	recordAttributes = 7
	// maxInterned bounds each of the batcher's string caches (IP text and
	// thread names); a full cache is emptied and refilled.
	maxInterned = 1024
)

// batcher builds one plog.Logs batch: one ResourceLogs per process
// incarnation (pid and start time), each with one ScopeLogs. It is used by the
// reader goroutine only.
type batcher struct {
	hostName     string
	hostFixes    procinfo.Fixes
	scopeVersion string
	commandLine  bool
	// maxBytes is batch.max_bytes, and headroom the most one record (with a
	// resource of its own) can add: a batch is full once it may not take
	// one more. Zero maxBytes means no bound (maxRecordBytes' batcher).
	maxBytes, headroom int

	logs  plog.Logs
	procs map[procinfo.Key]plog.LogRecordSlice
	attrs xpdata.MapBuilder // a record's attributes, moved into it when built
	n     int
	bytes int       // upper bound of the batch's protobuf size (see batch_size.go)
	first time.Time // when the batch's first record arrived

	// String values exported after procinfo.Clean changed them, counted per
	// record or resource that carries one, since the last takeFixes.
	sanitized, truncated int64

	// The last process added to: consecutive connects mostly come from the
	// same process, so most records skip the procs map.
	lastKey  procinfo.Key
	lastRecs plog.LogRecordSlice
	haveLast bool

	// Strings built once and shared by the records that carry the same
	// value (Go strings are immutable, so sharing them is invisible in the
	// output): the text of each destination IP and each thread name. Both
	// outlive batches and are bounded by maxInterned.
	ips   map[netip.Addr]string
	comms map[string]commText
	// The last IP and thread name looked up, with their text: a storm of
	// connects mostly repeats both, and a hit skips the map's hashing.
	lastIP       netip.Addr
	lastIPText   string
	haveIP       bool
	lastComm     [maxCommBytes]byte
	lastCommLen  int // -1: none
	lastCommText commText
}

// commText is a thread name as exported, and whether Clean replaced bytes
// of it.
type commText struct {
	s         string
	sanitized bool
}

// newUnboundedBatcher returns a batcher without a bound on its bytes. The
// host name and scope version are cleaned and capped like every string.
func newUnboundedBatcher(hostName, scopeVersion string, commandLine bool) *batcher {
	host, hostFixes := procinfo.Clean(hostName, maxHostNameBytes, false)
	version, _ := procinfo.Clean(scopeVersion, maxScopeVersionBytes, false)
	return &batcher{
		hostName:     host,
		hostFixes:    hostFixes,
		scopeVersion: version,
		commandLine:  commandLine,
		logs:         plog.NewLogs(),
		procs:        make(map[procinfo.Key]plog.LogRecordSlice),
		ips:          make(map[netip.Addr]string),
		comms:        make(map[string]commText),
		lastCommLen:  -1,
	}
}

// len returns the number of records in the batch.
func (b *batcher) len() int { return b.n }

// full reports whether the next record could take the batch past
// batch.max_bytes: then it must be sent first.
func (b *batcher) full() bool {
	return b.maxBytes > 0 && b.n > 0 && b.bytes > b.maxBytes-b.headroom
}

// take returns the batch and starts a new one.
func (b *batcher) take() (plog.Logs, int) {
	ld, n := b.logs, b.n
	b.logs = plog.NewLogs()
	clear(b.procs)
	b.haveLast = false
	b.lastRecs = plog.LogRecordSlice{}
	b.n = 0
	b.bytes = 0
	return ld, n
}

// takeFixes returns the counts of string values exported sanitized and
// truncated since its last call.
func (b *batcher) takeFixes() (sanitized, truncated int64) {
	sanitized, truncated = b.sanitized, b.truncated
	b.sanitized, b.truncated = 0, 0
	return sanitized, truncated
}

// add appends the log record of one connect. ts is the kernel time of the
// connect and observed the read time, both wall clock. p is used only when
// the process has no resource in the batch yet.
func (b *batcher) add(c *event.Connect, p *procinfo.Info, dns lookup, res outcomeResult, ts, observed time.Time) {
	key := procinfo.Key{PID: c.TGID, StartTimeNs: c.StartTimeNs}
	recs, ok := b.records(key)
	if !ok {
		recs = b.addProcess(key, c, p)
	}
	b.appendRecord(recs, c, c.Comm(), dns, res, ts, observed)
}

// hasProcess reports whether process key has a resource in the batch, so
// that add will not need its procinfo.Info.
func (b *batcher) hasProcess(key procinfo.Key) bool {
	_, ok := b.records(key)
	return ok
}

// records returns the log records of process key in the batch, if it has a
// resource there already.
func (b *batcher) records(key procinfo.Key) (plog.LogRecordSlice, bool) {
	if b.haveLast && key == b.lastKey {
		return b.lastRecs, true
	}
	recs, ok := b.procs[key]
	if ok {
		b.lastKey, b.lastRecs, b.haveLast = key, recs, true
	}
	return recs, ok
}

// addProcess adds the resource and scope of process key (of c, described by
// p) to the batch and returns its empty log records.
func (b *batcher) addProcess(key procinfo.Key, c *event.Connect, p *procinfo.Info) plog.LogRecordSlice {
	rl := b.logs.ResourceLogs().AppendEmpty()
	b.bytes += resourceOverhead + len(metadata.ScopeName) + len(b.scopeVersion) + b.fillResource(rl.Resource().Attributes(), c, p)
	sl := rl.ScopeLogs().AppendEmpty()
	sl.Scope().SetName(metadata.ScopeName)
	sl.Scope().SetVersion(b.scopeVersion)
	// The attach mode is the receiver's, not the process's nor the
	// record's: an attribute of the instrumentation scope (the receiver),
	// once per resource instead of once per record.
	b.bytes += putStr(sl.Scope().Attributes(), attrAttachMode, c.Hook.String())
	recs := sl.LogRecords()
	b.procs[key] = recs
	b.lastKey, b.lastRecs, b.haveLast = key, recs, true
	return recs
}

// appendRecord appends the log record of connect c, from thread comm, to
// recs, the records of c's process in this batch.
func (b *batcher) appendRecord(recs plog.LogRecordSlice, c *event.Connect, comm []byte, dns lookup, res outcomeResult, ts, observed time.Time) {
	if b.n == 0 {
		b.first = observed
	}
	b.n++
	b.bytes += b.fillRecord(recs.AppendEmpty(), c, comm, dns, res, ts, observed)
}

// ipString returns the text of ip, formatted once per address.
func (b *batcher) ipString(ip netip.Addr) string {
	if b.haveIP && ip == b.lastIP {
		return b.lastIPText
	}
	s, ok := b.ips[ip]
	if !ok {
		if len(b.ips) >= maxInterned {
			clear(b.ips)
		}
		s = ip.String()
		b.ips[ip] = s
	}
	b.lastIP, b.lastIPText, b.haveIP = ip, s, true
	return s
}

// commString returns comm as it is exported: valid UTF-8, converted and
// checked once per distinct name.
func (b *batcher) commString(comm []byte) commText {
	if len(comm) == b.lastCommLen && string(comm) == string(b.lastComm[:b.lastCommLen]) {
		return b.lastCommText
	}
	t, ok := b.comms[string(comm)]
	if !ok {
		if len(b.comms) >= maxInterned {
			clear(b.comms)
		}
		raw := string(comm)
		var f procinfo.Fixes
		t.s, f = procinfo.Clean(raw, maxCommBytes, false)
		t.sanitized = f&procinfo.Sanitized != 0
		b.comms[raw] = t
	}
	if len(comm) <= len(b.lastComm) {
		b.lastCommLen = copy(b.lastComm[:], comm)
		b.lastCommText = t
	}
	return t
}

// count adds the fixes of one exported string value to the counters.
func (b *batcher) count(f procinfo.Fixes) {
	if f&procinfo.Sanitized != 0 {
		b.sanitized++
	}
	if f&procinfo.Truncated != 0 {
		b.truncated++
	}
}

// fillResource puts the resource attributes of c's process, described by p,
// into attrs and returns their size bound (batch_size.go).
func (b *batcher) fillResource(attrs pcommon.Map, c *event.Connect, p *procinfo.Info) int {
	attrs.EnsureCapacity(10)
	n := 0
	if b.hostName != "" {
		n += putStr(attrs, attrHostName, b.hostName)
		b.count(b.hostFixes)
	}
	n += putInt(attrs, attrProcessPID, int64(c.TGID))
	n += putInt(attrs, attrProcessPPID, int64(c.PPID))
	// p's strings are clean and capped (procinfo.Info), its counts say
	// which were not as the process had them.
	n += putStr(attrs, attrProcessExeName, p.ExeName)
	if p.ExePath != "" {
		n += putStr(attrs, attrProcessExePath, p.ExePath)
	}
	if p.Owner != "" {
		n += putStr(attrs, attrProcessOwner, p.Owner)
	}
	n += putInt(attrs, attrProcessRealUID, int64(c.UID))
	if b.commandLine && p.CommandLine != "" {
		n += putStr(attrs, attrProcessCmdLine, p.CommandLine)
	}
	b.sanitized += int64(p.Sanitized)
	b.truncated += int64(p.Truncated)
	if p.Container.ID != "" {
		n += putStr(attrs, attrContainerID, p.Container.ID)
	}
	if p.Container.PodUID != "" {
		n += putStr(attrs, attrK8sPodUID, p.Container.PodUID)
	}
	return n
}

// fillRecord fills lr with the connect c from thread comm and its outcome
// res, and returns its size bound (batch_size.go). The record is new, so its
// attributes are appended with the batcher's MapBuilder at their exact
// number, without the search for an existing key that each pcommon.Map Put
// makes.
func (b *batcher) fillRecord(lr plog.LogRecord, c *event.Connect, comm []byte, dns lookup, res outcomeResult, ts, observed time.Time) int {
	lr.SetEventName(EventName)
	lr.SetSeverityNumber(plog.SeverityNumberInfo)
	lr.SetSeverityText(severityText)
	lr.SetTimestamp(pcommon.NewTimestampFromTime(ts))
	lr.SetObservedTimestamp(pcommon.NewTimestampFromTime(observed))
	size := recordOverhead + len(EventName) + len(severityText)

	n := recordAttributes
	if len(comm) > 0 {
		n++
	}
	if len(dns.names) > 0 {
		n += 3
	}
	n += clientNameAttrs(dns, res.fb)
	if res.kind != event.KindNone {
		n++
		if res.errType != "" {
			n++
		}
		if res.kind != event.KindPending {
			n++
		}
	}
	m := &b.attrs
	m.EnsureCapacity(n)
	size += appendStr(m, attrNetTransport, "tcp")
	if c.Dst.Is4() {
		size += appendStr(m, attrNetType, "ipv4")
	} else {
		size += appendStr(m, attrNetType, "ipv6")
	}
	ip := b.ipString(c.Dst)
	size += appendStr(m, attrNetPeerAddress, ip)
	size += appendInt(m, attrNetPeerPort, int64(c.DstPort))
	size += appendServerAddress(m, dns, res.fb, ip)
	size += appendInt(m, attrServerPort, int64(c.DstPort))
	size += appendInt(m, attrThreadID, int64(c.TID))
	if len(comm) > 0 {
		t := b.commString(comm)
		size += appendStr(m, attrThreadName, t.s)
		if t.sanitized {
			b.sanitized++
		}
	}
	// No names: no attribute (an empty list would cost two allocations).
	if len(dns.names) > 0 {
		names := m.AppendEmpty(attrDNSNames).SetEmptySlice()
		names.EnsureCapacity(len(dns.names))
		size += attrOverhead + len(attrDNSNames)
		for _, n := range dns.names {
			names.AppendEmpty().SetStr(n)
			size += elemOverhead + len(n)
		}
		m.AppendEmpty(attrDNSNameAge).SetDouble(dns.age.Seconds())
		size += attrOverhead + len(attrDNSNameAge) + doubleBytes
		size += appendStr(m, attrDNSSource, dns.source.String())
	}
	size += appendClientName(m, dns, res.fb)
	if res.kind != event.KindNone {
		size += appendStr(m, attrOutcome, res.kind.String())
		if res.errType != "" {
			size += appendStr(m, attrErrorType, res.errType)
		}
		if res.kind != event.KindPending {
			m.AppendEmpty(attrConnectTime).SetDouble(res.duration.Seconds())
			size += attrOverhead + len(attrConnectTime) + doubleBytes
		}
	}
	m.UnsafeIntoMap(lr.Attributes())
	return size
}
