// Package tcpconnectreceiver implements the tcpconnect receiver: an OpenTelemetry
// Collector logs receiver that reports every outbound TCP connect attempt on
// a Linux host (event net_tcp_connect) from eBPF programs (package bpf).
//
// The files follow the collector's conventions: config.go (configuration and
// validation), factory.go (NewFactory), receiver.go (the reader and sender
// loops), convert.go (kernel record to plog), batch_size.go (the bound on a
// batch's size in bytes), dns_seam.go (the DNS correlator behind an
// interface), dns_state.go (dns.state_file: load at start, save
// periodically and at shutdown). internal/metadata is generated
// by mdatagen from metadata.yaml.
package tcpconnectreceiver

//go:generate go tool mdatagen metadata.yaml
