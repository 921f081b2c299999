// Package kubernetes holds the Kubernetes manifests of the tcpconnect node
// agent and its gateway (the YAML files here and in helm/) and, in its
// tests, their validation: every manifest decodes strictly into the
// k8s.io/api types (an unknown or misspelt field fails), the deployment
// rules hold (host PID, named capabilities, probes on the health check, a
// grace period that covers the shutdown bound, ...), and every embedded
// collector configuration passes `validate` of the distribution that runs it.
//
// It is its own Go module, so that the main module does not depend on
// k8s.io/api. `make deploy-test` builds both distributions and runs it.
package kubernetes
