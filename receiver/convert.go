package receiver

import (
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
	attrHostName        = "host.name"
	attrProcessPID      = "process.pid"
	attrProcessPPID     = "process.parent_pid"
	attrProcessExeName  = "process.executable.name"
	attrProcessExePath  = "process.executable.path"
	attrProcessOwner    = "process.owner"
	attrProcessRealUID  = "process.real_user.id"
	attrProcessCmdLine  = "process.command_line"
	attrContainerID     = "container.id"
	attrK8sPodUID       = "k8s.pod.uid"
	attrNetTransport    = "network.transport"
	attrNetType         = "network.type"
	attrNetPeerAddress  = "network.peer.address"
	attrNetPeerPort     = "network.peer.port"
	attrServerAddress   = "server.address"
	attrServerPort      = "server.port"
	attrThreadID        = "thread.id"
	attrThreadName      = "thread.name"
	attrDNSNames        = "tcpconnect.dns.names"
	attrDNSNameAge      = "tcpconnect.dns.age"
	attrAttachMode      = "tcpconnect.attach_mode"
	severityText        = "INFO"
	recordAttributesCap = 12
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
}

func newBatcher(hostName, scopeVersion string, commandLine bool) *batcher {
	return &batcher{
		hostName:     hostName,
		scopeVersion: scopeVersion,
		commandLine:  commandLine,
		logs:         plog.NewLogs(),
		procs:        make(map[procinfo.Key]plog.LogRecordSlice),
	}
}

// len returns the number of records in the batch.
func (b *batcher) len() int { return b.n }

// take returns the batch and starts a new one.
func (b *batcher) take() (plog.Logs, int) {
	ld, n := b.logs, b.n
	b.logs = plog.NewLogs()
	clear(b.procs)
	b.n = 0
	return ld, n
}

// add appends the log record of one connect. ts is the kernel time of the
// connect and observed the read time, both wall clock.
func (b *batcher) add(c *event.Connect, p *procinfo.Info, dns lookup, ts, observed time.Time) {
	key := procinfo.Key{PID: c.TGID, StartTimeNs: c.StartTimeNs}
	recs, ok := b.procs[key]
	if !ok {
		rl := b.logs.ResourceLogs().AppendEmpty()
		b.fillResource(rl.Resource().Attributes(), c, p)
		sl := rl.ScopeLogs().AppendEmpty()
		sl.Scope().SetName(metadata.ScopeName)
		sl.Scope().SetVersion(b.scopeVersion)
		recs = sl.LogRecords()
		b.procs[key] = recs
	}
	if b.n == 0 {
		b.first = observed
	}
	b.n++
	fillRecord(recs.AppendEmpty(), c, dns, ts, observed)
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

func fillRecord(lr plog.LogRecord, c *event.Connect, dns lookup, ts, observed time.Time) {
	lr.SetEventName(EventName)
	lr.SetSeverityNumber(plog.SeverityNumberInfo)
	lr.SetSeverityText(severityText)
	lr.SetTimestamp(pcommon.NewTimestampFromTime(ts))
	lr.SetObservedTimestamp(pcommon.NewTimestampFromTime(observed))

	attrs := lr.Attributes()
	attrs.EnsureCapacity(recordAttributesCap)
	attrs.PutStr(attrNetTransport, "tcp")
	if c.Dst.Is4() {
		attrs.PutStr(attrNetType, "ipv4")
	} else {
		attrs.PutStr(attrNetType, "ipv6")
	}
	ip := c.Dst.String()
	attrs.PutStr(attrNetPeerAddress, ip)
	attrs.PutInt(attrNetPeerPort, int64(c.DstPort))
	if dns.best != "" {
		attrs.PutStr(attrServerAddress, dns.best)
	} else {
		attrs.PutStr(attrServerAddress, ip)
	}
	attrs.PutInt(attrServerPort, int64(c.DstPort))
	attrs.PutInt(attrThreadID, int64(c.TID))
	if comm := c.Comm(); len(comm) > 0 {
		attrs.PutStr(attrThreadName, string(comm))
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
