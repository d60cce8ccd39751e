package deploy

import (
	"bytes"
	"flag"
	"io/fs"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	appsv1 "k8s.io/api/apps/v1"
	rbacv1 "k8s.io/api/rbac/v1"
	"sigs.k8s.io/yaml"

	"github.com/kbak/kbak/internal/kube"
)

var update = flag.Bool("update", false, "rewrite the kustomize base in deploy/kustomize from the typed manifests")

// TestKustomizeBaseUpToDate fails when deploy/kustomize drifts from the
// typed manifests; `go test ./deploy -update` rewrites it.
func TestKustomizeBaseUpToDate(t *testing.T) {
	files, err := KustomizeBase()
	if err != nil {
		t.Fatal(err)
	}
	dir := "kustomize"
	if *update {
		if err := os.MkdirAll(dir, 0o755); err != nil {
			t.Fatal(err)
		}
		for name, data := range files {
			if err := os.MkdirAll(filepath.Dir(filepath.Join(dir, name)), 0o755); err != nil {
				t.Fatal(err)
			}
			if err := os.WriteFile(filepath.Join(dir, name), data, 0o644); err != nil {
				t.Fatal(err)
			}
		}
	}
	err = filepath.WalkDir(dir, func(path string, e fs.DirEntry, err error) error {
		if err != nil || e.IsDir() {
			return err
		}
		name, _ := filepath.Rel(dir, path)
		if _, ok := files[filepath.ToSlash(name)]; !ok {
			t.Errorf("%s/%s is not generated: delete it, or generate it in KustomizeBase", dir, name)
		}
		return nil
	})
	if err != nil {
		t.Fatalf("%v: run go test ./deploy -update", err)
	}
	for name, want := range files {
		got, err := os.ReadFile(filepath.Join(dir, name))
		if err != nil || !bytes.Equal(got, want) {
			t.Errorf("%s/%s differs from the typed manifests: run go test ./deploy -update", dir, name)
		}
	}
}

// TestKustomizeBuild runs `kubectl kustomize` on the base, with the test
// bed's kubectl or one on PATH.
func TestKustomizeBuild(t *testing.T) {
	kubectl := filepath.Join(os.Getenv("KBAK_E2E_DIR"), "bin", "kubectl")
	if _, err := os.Stat(kubectl); err != nil {
		if kubectl, err = exec.LookPath("kubectl"); err != nil {
			if os.Getenv("CI") == "true" {
				t.Fatal("no kubectl to build the kustomize base: bring up the test bed or put kubectl on PATH")
			}
			t.Skip("no kubectl: bring up the test bed (make e2e-up) or put kubectl on PATH")
		}
	}
	out, err := exec.Command(kubectl, "kustomize", "kustomize").CombinedOutput()
	if err != nil {
		t.Fatalf("kubectl kustomize deploy/kustomize: %v\n%s", err, out)
	}
	for _, want := range []string{"kind: Deployment", "kind: ConfigMap", "name: kbak-agent-", "kind: ClusterRoleBinding"} {
		if !strings.Contains(string(out), want) {
			t.Errorf("kustomize output lacks %q:\n%s", want, out)
		}
	}
	if strings.Contains(string(out), "ServiceMonitor") {
		t.Error("the base has the ServiceMonitor, which needs the Prometheus Operator: it belongs in the optional component")
	}

	// An overlay with the optional component adds a ServiceMonitor that
	// selects the agent's Service.
	base, err := filepath.Abs("kustomize")
	if err != nil {
		t.Fatal(err)
	}
	overlay := t.TempDir()
	rel, err := filepath.Rel(overlay, base) // kustomize takes no absolute roots
	if err != nil {
		t.Fatal(err)
	}
	kust := "resources:\n- " + rel + "\ncomponents:\n- " + rel + "/" + ServiceMonitorComponent + "\n"
	if err := os.WriteFile(filepath.Join(overlay, "kustomization.yaml"), []byte(kust), 0o644); err != nil {
		t.Fatal(err)
	}
	out, err = exec.Command(kubectl, "kustomize", overlay).CombinedOutput()
	if err != nil {
		t.Fatalf("kubectl kustomize of an overlay with the component: %v\n%s", err, out)
	}
	var monitor, service map[string]any
	for _, doc := range strings.Split(string(out), "\n---\n") {
		var o map[string]any
		if err := yaml.Unmarshal([]byte(doc), &o); err != nil {
			t.Fatal(err)
		}
		switch o["kind"] {
		case "ServiceMonitor":
			monitor = o
		case "Service":
			service = o
		}
	}
	if monitor == nil || service == nil {
		t.Fatalf("overlay output has no ServiceMonitor or Service:\n%s", out)
	}
	sel := monitor["spec"].(map[string]any)["selector"].(map[string]any)["matchLabels"].(map[string]any)
	labels := service["metadata"].(map[string]any)["labels"].(map[string]any)
	for k, v := range sel {
		if labels[k] != v {
			t.Errorf("the ServiceMonitor selects %s=%v, the Service has %v", k, v, labels[k])
		}
	}
}

func TestAgentObjects(t *testing.T) {
	a := Agent{Namespace: "ops", Secret: "store", Config: []byte("schedules: []\n"), BackupNamespaces: []string{"shop", "blog", "shop"}}
	var bindings []string
	var dep *appsv1.Deployment
	for _, o := range a.Objects() {
		switch o := o.(type) {
		case *rbacv1.RoleBinding:
			bindings = append(bindings, o.Namespace)
			if o.RoleRef.Kind != "ClusterRole" || o.RoleRef.Name != "kbak:agent:ops:kbak-agent:backup" || o.Subjects[0].Namespace != "ops" {
				t.Errorf("RoleBinding %+v", o)
			}
		case *rbacv1.ClusterRoleBinding:
			if o.RoleRef.Name != "kbak:agent:ops:kbak-agent:read" {
				t.Errorf("the cluster-wide binding grants %s, want only the read role", o.RoleRef.Name)
			}
		case *appsv1.Deployment:
			dep = o
		}
	}
	if !slices.Equal(bindings, []string{"blog", "shop"}) {
		t.Errorf("backup permissions bound in %v, want blog and shop once each", bindings)
	}
	if dep == nil {
		t.Fatal("no Deployment")
	}
	c := dep.Spec.Template.Spec.Containers[0]
	if !slices.Equal(c.Args, []string{"agent", "--config", "/etc/kbak/agent.yaml"}) || c.Ports[0].ContainerPort != DefaultAgentPort ||
		*dep.Spec.Replicas != 1 || dep.Spec.Strategy.Type != appsv1.RecreateDeploymentStrategyType {
		t.Errorf("deployment %+v", dep.Spec)
	}
	if dep.Spec.Template.Labels[kube.LabelManagedBy] != "" {
		t.Error("the agent pod is labelled managed-by=kbak, which kbak gc deletes")
	}
	before := dep.Spec.Template.Annotations[kube.AnnotationConfigHash]
	a.Config = []byte("schedules: []\nlisten: :9091\n")
	for _, o := range a.Objects() {
		if d, ok := o.(*appsv1.Deployment); ok && d.Spec.Template.Annotations[kube.AnnotationConfigHash] == before {
			t.Error("a changed configuration does not change the pod template")
		}
	}
}
