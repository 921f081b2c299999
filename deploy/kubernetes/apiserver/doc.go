// Package apiserver holds, in its tests, the test of the gateway's
// Kubernetes enrichment against a real control plane: a kube-apiserver
// built from k8s.io/kubernetes (this module's tool) on a real etcd, on
// loopback, with pods created through its API; the node agent and the
// gateway distributions with the shipped configs (deploy/kubernetes) in
// between; and records from processes in cgroups named as the kubelet
// names a pod's container. `make k8s-test` builds everything and runs it.
//
// It is its own Go module, so that neither the main module nor
// deploy/kubernetes depends on k8s.io/kubernetes; its go.mod replaces each
// k8s.io staging module with the release that matches the kube-apiserver,
// as k8s.io/kubernetes's own go.mod does with its staging folders.
package apiserver
