package receiver

import (
	"net/netip"
	"time"

	"go.opentelemetry.io/collector/pdata/pcommon"
	"go.opentelemetry.io/collector/pdata/plog"

	"github.com/tcpconnect/tcpconnect/internal/event"
	"github.com/tcpconnect/tcpconnect/internal/procinfo"
	"github.com/tcpconnect/tcpconnect/receiver/internal/metadata"
)

// EventName is the event name of every log record the receiver emits.
const EventName = "net_tcp_connect"

// Attribute names. Standard ones are OpenTelemetry semantic conventions;
// tcpconnect.* are this receiver's own.
const (
	attrHostName       = "host.name"
	attrProcessPID     = "process.pid"
	attrProcessPPID    = "process.parent_pid"
	attrProcessExeName = "process.executable.name"
	attrProcessExePath = "process.executable.path"
	attrProcessOwner   = "process.owner"
	attrProcessRealUID = "process.real_user.id"
	attrProcessCmdLine = "process.command_line"
	attrContainerID    = "container.id"
	attrK8sPodUID      = "k8s.pod.uid"
	attrNetTransport   = "network.transport"
	attrNetType        = "network.type"
	attrNetPeerAddress = "network.peer.address"
	attrNetPeerPort    = "network.peer.port"
	attrServerAddress  = "server.address"
	attrServerPort     = "server.port"
	attrThreadID       = "thread.id"
	attrThreadName     = "thread.name"
	attrDNSNames       = "tcpconnect.dns.names"
	attrDNSNameAge     = "tcpconnect.dns.age"
	attrAttachMode     = "tcpconnect.attach_mode"
	severityText       = "INFO"
	// recordAttributes is how many attributes every record has; thread.name
	// and tcpconnect.dns.age are added when present. The attribute slice is
	// allocated once at its final size.
	recordAttributes = 9
	// maxInterned bounds each of the batcher's string caches (IP text and
	// thread names); a full cache is emptied and refilled.
	maxInterned = 1024
)

// lookup is what the DNS correlator found for one connect.
type lookup struct {
	names []string      // every name, best first; empty when none
	best  string        // the best name, "" when none
	age   time.Duration // time since the answer that gave best
}

// batcher builds one plog.Logs batch: one ResourceLogs per process
// incarnation (pid and start time), each with one ScopeLogs. It is used by the
// reader goroutine only.
type batcher struct {
	hostName     string
	scopeVersion string
	commandLine  bool

	logs  plog.Logs
	procs map[procinfo.Key]plog.LogRecordSlice
	n     int
	first time.Time // when the batch's first record arrived

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
	comms map[string]string
}

func newBatcher(hostName, scopeVersion string, commandLine bool) *batcher {
	return &batcher{
		hostName:     hostName,
		scopeVersion: scopeVersion,
		commandLine:  commandLine,
		logs:         plog.NewLogs(),
		procs:        make(map[procinfo.Key]plog.LogRecordSlice),
		ips:          make(map[netip.Addr]string),
		comms:        make(map[string]string),
	}
}

// len returns the number of records in the batch.
func (b *batcher) len() int { return b.n }

// take returns the batch and starts a new one.
func (b *batcher) take() (plog.Logs, int) {
	ld, n := b.logs, b.n
	b.logs = plog.NewLogs()
	clear(b.procs)
	b.haveLast = false
	b.lastRecs = plog.LogRecordSlice{}
	b.n = 0
	return ld, n
}

// add appends the log record of one connect. ts is the kernel time of the
// connect and observed the read time, both wall clock. p is used only when
// the process has no resource in the batch yet.
func (b *batcher) add(c *event.Connect, p *procinfo.Info, dns lookup, ts, observed time.Time) {
	key := procinfo.Key{PID: c.TGID, StartTimeNs: c.StartTimeNs}
	recs, ok := b.records(key)
	if !ok {
		recs = b.addProcess(key, c, p)
	}
	b.appendRecord(recs, c, dns, ts, observed)
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
	b.fillResource(rl.Resource().Attributes(), c, p)
	sl := rl.ScopeLogs().AppendEmpty()
	sl.Scope().SetName(metadata.ScopeName)
	sl.Scope().SetVersion(b.scopeVersion)
	recs := sl.LogRecords()
	b.procs[key] = recs
	b.lastKey, b.lastRecs, b.haveLast = key, recs, true
	return recs
}

// appendRecord appends the log record of connect c to recs, the records of
// c's process in this batch.
func (b *batcher) appendRecord(recs plog.LogRecordSlice, c *event.Connect, dns lookup, ts, observed time.Time) {
	if b.n == 0 {
		b.first = observed
	}
	b.n++
	b.fillRecord(recs.AppendEmpty(), c, dns, ts, observed)
}

// ipString returns the text of ip, formatted once per address.
func (b *batcher) ipString(ip netip.Addr) string {
	if s, ok := b.ips[ip]; ok {
		return s
	}
	if len(b.ips) >= maxInterned {
		clear(b.ips)
	}
	s := ip.String()
	b.ips[ip] = s
	return s
}

// commString returns comm as a string, converted once per distinct name.
func (b *batcher) commString(comm []byte) string {
	if s, ok := b.comms[string(comm)]; ok {
		return s
	}
	if len(b.comms) >= maxInterned {
		clear(b.comms)
	}
	s := string(comm)
	b.comms[s] = s
	return s
}

func (b *batcher) fillResource(attrs pcommon.Map, c *event.Connect, p *procinfo.Info) {
	attrs.EnsureCapacity(10)
	if b.hostName != "" {
		attrs.PutStr(attrHostName, b.hostName)
	}
	attrs.PutInt(attrProcessPID, int64(c.TGID))
	attrs.PutInt(attrProcessPPID, int64(c.PPID))
	attrs.PutStr(attrProcessExeName, p.ExeName)
	if p.ExePath != "" {
		attrs.PutStr(attrProcessExePath, p.ExePath)
	}
	if p.Owner != "" {
		attrs.PutStr(attrProcessOwner, p.Owner)
	}
	attrs.PutInt(attrProcessRealUID, int64(c.UID))
	if b.commandLine && p.CommandLine != "" {
		attrs.PutStr(attrProcessCmdLine, p.CommandLine)
	}
	if p.Container.ID != "" {
		attrs.PutStr(attrContainerID, p.Container.ID)
	}
	if p.Container.PodUID != "" {
		attrs.PutStr(attrK8sPodUID, p.Container.PodUID)
	}
}

func (b *batcher) fillRecord(lr plog.LogRecord, c *event.Connect, dns lookup, ts, observed time.Time) {
	lr.SetEventName(EventName)
	lr.SetSeverityNumber(plog.SeverityNumberInfo)
	lr.SetSeverityText(severityText)
	lr.SetTimestamp(pcommon.NewTimestampFromTime(ts))
	lr.SetObservedTimestamp(pcommon.NewTimestampFromTime(observed))

	comm := c.Comm()
	n := recordAttributes
	if len(comm) > 0 {
		n++
	}
	if len(dns.names) > 0 {
		n++
	}
	attrs := lr.Attributes()
	attrs.EnsureCapacity(n)
	attrs.PutStr(attrNetTransport, "tcp")
	if c.Dst.Is4() {
		attrs.PutStr(attrNetType, "ipv4")
	} else {
		attrs.PutStr(attrNetType, "ipv6")
	}
	ip := b.ipString(c.Dst)
	attrs.PutStr(attrNetPeerAddress, ip)
	attrs.PutInt(attrNetPeerPort, int64(c.DstPort))
	if dns.best != "" {
		attrs.PutStr(attrServerAddress, dns.best)
	} else {
		attrs.PutStr(attrServerAddress, ip)
	}
	attrs.PutInt(attrServerPort, int64(c.DstPort))
	attrs.PutInt(attrThreadID, int64(c.TID))
	if len(comm) > 0 {
		attrs.PutStr(attrThreadName, b.commString(comm))
	}
	names := attrs.PutEmptySlice(attrDNSNames)
	names.EnsureCapacity(len(dns.names))
	for _, n := range dns.names {
		names.AppendEmpty().SetStr(n)
	}
	if len(dns.names) > 0 {
		attrs.PutDouble(attrDNSNameAge, dns.age.Seconds())
	}
	attrs.PutStr(attrAttachMode, c.Hook.String())
}
