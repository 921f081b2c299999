// Package e2e holds the end-to-end tests of the otelcol-tcpconnect
// distribution: they run the ocb-built collector binary as a separate process,
// with real configuration files, the way a user runs it.
//
// The binary is the one `make build` writes, _build/otelcol-tcpconnect at the
// repository root, or the path in the environment variable
// TCPCONNECT_COLLECTOR. Tests that need it, or root, skip with the reason when
// either is missing, and fail instead when TCPCONNECT_REQUIRE_PRIVILEGED=1
// (see internal/privtest). TCPCONNECT_ATTACH picks the receiver's attach mode
// (default auto).
//
// The container tests (container_test.go, `make container-test`) run the
// node agent image named by TCPCONNECT_IMAGE with podman, as the Kubernetes
// DaemonSet runs it; `make e2e` leaves them out.
//
// The tests use only the loopback interface and free ports, bound every wait,
// and stop every process they started.
package e2e
