package apiserver

import (
	"context"
	"os"
	"path/filepath"
	"regexp"
	"testing"

	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"
	rbacv1 "k8s.io/api/rbac/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"
	"sigs.k8s.io/yaml"
)

// shipped is what the test takes from deploy/kubernetes: the objects the
// gateway needs from the API (its namespace, service account and RBAC)
// and both collectors' configs.
type shipped struct {
	namespaces      []corev1.Namespace
	serviceAccounts []corev1.ServiceAccount
	clusterRoles    []rbacv1.ClusterRole
	bindings        []rbacv1.ClusterRoleBinding
	configs         map[string]string // app.kubernetes.io/component -> config.yaml
}

var docSep = regexp.MustCompile(`(?m)^---\s*$`)

// loadShipped reads the manifests the gateway's enrichment depends on.
func loadShipped(t testing.TB) shipped {
	t.Helper()
	s := shipped{configs: map[string]string{}}
	for _, f := range []string{"namespace.yaml", "gateway.yaml", "agent.yaml"} {
		data, err := os.ReadFile(filepath.Join("..", f))
		if err != nil {
			t.Fatal(err)
		}
		for _, doc := range docSep.Split(string(data), -1) {
			var head metav1.TypeMeta
			if err := yaml.Unmarshal([]byte(doc), &head); err != nil {
				t.Fatalf("%s: %v", f, err)
			}
			into := func(v any) {
				if err := yaml.UnmarshalStrict([]byte(doc), v); err != nil {
					t.Fatalf("%s: %s: %v", f, head.Kind, err)
				}
			}
			switch head.Kind {
			case "Namespace":
				var o corev1.Namespace
				into(&o)
				s.namespaces = append(s.namespaces, o)
			case "ServiceAccount":
				var o corev1.ServiceAccount
				into(&o)
				s.serviceAccounts = append(s.serviceAccounts, o)
			case "ClusterRole":
				var o rbacv1.ClusterRole
				into(&o)
				s.clusterRoles = append(s.clusterRoles, o)
			case "ClusterRoleBinding":
				var o rbacv1.ClusterRoleBinding
				into(&o)
				s.bindings = append(s.bindings, o)
			case "ConfigMap":
				var o corev1.ConfigMap
				into(&o)
				if c, ok := o.Data["config.yaml"]; ok {
					s.configs[o.Labels["app.kubernetes.io/component"]] = c
				}
			}
		}
	}
	if len(s.serviceAccounts) != 1 || s.configs["gateway"] == "" || s.configs["agent"] == "" {
		t.Fatalf("deploy/kubernetes: want one ServiceAccount (the gateway's) and the agent's and gateway's configs, have %d and %d configs",
			len(s.serviceAccounts), len(s.configs))
	}
	return s
}

// apply creates the gateway's namespace, service account and RBAC as
// `kubectl apply -f deploy/kubernetes` would.
func (s shipped) apply(t testing.TB, c *cluster) {
	t.Helper()
	ctx, opts := context.Background(), metav1.CreateOptions{}
	for _, o := range s.namespaces {
		if _, err := c.admin.CoreV1().Namespaces().Create(ctx, &o, opts); err != nil {
			t.Fatalf("create namespace %s: %v", o.Name, err)
		}
	}
	for _, o := range s.serviceAccounts {
		if _, err := c.admin.CoreV1().ServiceAccounts(o.Namespace).Create(ctx, &o, opts); err != nil {
			t.Fatalf("create service account %s: %v", o.Name, err)
		}
	}
	for _, o := range s.clusterRoles {
		if _, err := c.admin.RbacV1().ClusterRoles().Create(ctx, &o, opts); err != nil {
			t.Fatalf("create cluster role %s: %v", o.Name, err)
		}
	}
	for _, o := range s.bindings {
		if _, err := c.admin.RbacV1().ClusterRoleBindings().Create(ctx, &o, opts); err != nil {
			t.Fatalf("create cluster role binding %s: %v", o.Name, err)
		}
	}
}

// workloadNS is the namespace of the test's workloads.
const workloadNS = "shop"

// pod is a pod the test made and what the gateway should say about it.
type pod struct {
	name   string
	uid    types.UID
	labels map[string]string
	owner  string // the record attribute that names its owner
	ownerV string // and its value
}

// createWorkloads makes, through the API, a Deployment with a ReplicaSet
// it owns and a Pod that ReplicaSet owns, and a DaemonSet with a Pod it
// owns, each with labels, as the controllers would (none runs here).
func createWorkloads(t testing.TB, c *cluster) (web, probe pod) {
	t.Helper()
	ctx, opts := context.Background(), metav1.CreateOptions{}
	if _, err := c.admin.CoreV1().Namespaces().Create(ctx, &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: workloadNS}}, opts); err != nil {
		t.Fatalf("create namespace %s: %v", workloadNS, err)
	}
	// The service-account controller makes every namespace's default
	// account; the ServiceAccount admission plugin wants it for a pod.
	if _, err := c.admin.CoreV1().ServiceAccounts(workloadNS).Create(ctx, &corev1.ServiceAccount{ObjectMeta: metav1.ObjectMeta{Name: "default"}}, opts); err != nil {
		t.Fatalf("create the default service account: %v", err)
	}
	podSpec := corev1.PodSpec{Containers: []corev1.Container{{Name: "app", Image: "registry.example/app:1"}}}
	owner := func(kind, name string, uid types.UID) []metav1.OwnerReference {
		yes := true
		return []metav1.OwnerReference{{APIVersion: "apps/v1", Kind: kind, Name: name, UID: uid, Controller: &yes, BlockOwnerDeletion: &yes}}
	}

	// Deployment web -> ReplicaSet web-<pod-template-hash> -> Pod.
	webLabels := map[string]string{"app.kubernetes.io/name": "web", "app.kubernetes.io/component": "frontend", "tier": "front"}
	const hash = "7c9d5b6f4d"
	dep, err := c.admin.AppsV1().Deployments(workloadNS).Create(ctx, &appsv1.Deployment{
		ObjectMeta: metav1.ObjectMeta{Name: "web", Labels: webLabels},
		Spec: appsv1.DeploymentSpec{
			Selector: &metav1.LabelSelector{MatchLabels: map[string]string{"app.kubernetes.io/name": "web"}},
			Template: corev1.PodTemplateSpec{ObjectMeta: metav1.ObjectMeta{Labels: webLabels}, Spec: podSpec},
		},
	}, opts)
	if err != nil {
		t.Fatalf("create deployment: %v", err)
	}
	rsLabels := with(webLabels, "pod-template-hash", hash)
	rs, err := c.admin.AppsV1().ReplicaSets(workloadNS).Create(ctx, &appsv1.ReplicaSet{
		ObjectMeta: metav1.ObjectMeta{Name: "web-" + hash, Labels: rsLabels, OwnerReferences: owner("Deployment", dep.Name, dep.UID)},
		Spec: appsv1.ReplicaSetSpec{
			Selector: &metav1.LabelSelector{MatchLabels: map[string]string{"app.kubernetes.io/name": "web", "pod-template-hash": hash}},
			Template: corev1.PodTemplateSpec{ObjectMeta: metav1.ObjectMeta{Labels: rsLabels}, Spec: podSpec},
		},
	}, opts)
	if err != nil {
		t.Fatalf("create replica set: %v", err)
	}
	wp, err := c.admin.CoreV1().Pods(workloadNS).Create(ctx, &corev1.Pod{
		ObjectMeta: metav1.ObjectMeta{Name: rs.Name + "-x7k2p", Labels: rsLabels, OwnerReferences: owner("ReplicaSet", rs.Name, rs.UID)},
		Spec:       podSpec,
	}, opts)
	if err != nil {
		t.Fatalf("create the replica set's pod: %v", err)
	}

	// DaemonSet node-probe -> Pod.
	probeLabels := map[string]string{"app.kubernetes.io/name": "node-probe", "app.kubernetes.io/component": "monitor"}
	ds, err := c.admin.AppsV1().DaemonSets(workloadNS).Create(ctx, &appsv1.DaemonSet{
		ObjectMeta: metav1.ObjectMeta{Name: "node-probe", Labels: probeLabels},
		Spec: appsv1.DaemonSetSpec{
			Selector: &metav1.LabelSelector{MatchLabels: map[string]string{"app.kubernetes.io/name": "node-probe"}},
			Template: corev1.PodTemplateSpec{ObjectMeta: metav1.ObjectMeta{Labels: probeLabels}, Spec: podSpec},
		},
	}, opts)
	if err != nil {
		t.Fatalf("create daemon set: %v", err)
	}
	pp, err := c.admin.CoreV1().Pods(workloadNS).Create(ctx, &corev1.Pod{
		ObjectMeta: metav1.ObjectMeta{Name: ds.Name + "-q4m8z", Labels: with(probeLabels, "controller-revision-hash", "5f8b6c7d9"), OwnerReferences: owner("DaemonSet", ds.Name, ds.UID)},
		Spec:       podSpec,
	}, opts)
	if err != nil {
		t.Fatalf("create the daemon set's pod: %v", err)
	}
	return pod{name: wp.Name, uid: wp.UID, labels: wp.Labels, owner: "k8s.deployment.name", ownerV: dep.Name},
		pod{name: pp.Name, uid: pp.UID, labels: pp.Labels, owner: "k8s.daemonset.name", ownerV: ds.Name}
}

func with(m map[string]string, k, v string) map[string]string {
	out := map[string]string{k: v}
	for a, b := range m {
		out[a] = b
	}
	return out
}
