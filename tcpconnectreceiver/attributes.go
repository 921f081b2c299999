package tcpconnectreceiver

import semconv "go.opentelemetry.io/otel/semconv/v1.43.0"

// Attribute names: OpenTelemetry semantic conventions (semconv) where they
// have the attribute; tcpconnect.* are this receiver's own.
const (
	attrHostName       = string(semconv.HostNameKey)
	attrProcessPID     = string(semconv.ProcessPIDKey)
	attrProcessPPID    = string(semconv.ProcessParentPIDKey)
	attrProcessExeName = string(semconv.ProcessExecutableNameKey)
	attrProcessExePath = string(semconv.ProcessExecutablePathKey)
	attrProcessOwner   = string(semconv.ProcessOwnerKey)
	attrProcessRealUID = string(semconv.ProcessRealUserIDKey)
	attrProcessCmdLine = string(semconv.ProcessCommandLineKey)
	attrContainerID    = string(semconv.ContainerIDKey)
	attrK8sPodUID      = string(semconv.K8SPodUIDKey)
	attrNetTransport   = string(semconv.NetworkTransportKey)
	attrNetType        = string(semconv.NetworkTypeKey)
	attrNetPeerAddress = string(semconv.NetworkPeerAddressKey)
	attrNetPeerPort    = string(semconv.NetworkPeerPortKey)
	attrServerAddress  = string(semconv.ServerAddressKey)
	attrServerPort     = string(semconv.ServerPortKey)
	attrThreadID       = string(semconv.ThreadIDKey)
	attrThreadName     = string(semconv.ThreadNameKey)
	attrErrorType      = string(semconv.ErrorTypeKey)
	attrDNSNames       = "tcpconnect.dns.names"
	attrDNSNameAge     = "tcpconnect.dns.age"
	attrDNSSource      = "tcpconnect.dns.source"
	attrAttachMode     = "tcpconnect.attach_mode"
	attrOutcome        = "tcpconnect.outcome"
	attrConnectTime    = "tcpconnect.connect.duration"
	// The names the client sent in its first bytes (convert_names.go).
	// tls.client.server_name is semconv's (deprecated there for
	// server.address, which this record keeps for the best name) and
	// http.request.header.<key> its header attribute; the semconv package
	// has no constant for either.
	attrTLSServerName = "tls.client.server_name"
	attrTLSALPN       = "tcpconnect.tls.alpn"
	attrTLSECH        = "tcpconnect.tls.ech"
	attrHTTPHost      = "http.request.header.host"
	attrServerSource  = "tcpconnect.server.address.source"
	attrNameMismatch  = "tcpconnect.name.mismatch"
)
