package deploy

import (
	"bytes"
	"fmt"

	corev1 "k8s.io/api/core/v1"
	rbacv1 "k8s.io/api/rbac/v1"
	"k8s.io/apimachinery/pkg/runtime"
	"sigs.k8s.io/yaml"

	"github.com/kbak/kbak/internal/kube"
)

// KustomizeDir is where the kustomize base lives in the repository.
const KustomizeDir = "deploy/kustomize"

const generatedHeader = "# Generated from the typed manifests in deploy/agent.go by `go test ./deploy -update`; do not edit.\n"

// BaseAgentConfig is the agent configuration of the kustomize base: no
// schedules yet, so the agent idles until an overlay replaces it.
const BaseAgentConfig = `# kbak agent configuration. Replace it in an overlay:
#
#   configMapGenerator:
#   - name: kbak-agent
#     namespace: kbak
#     behavior: replace
#     files: [agent.yaml]
#
# and, for each namespace a schedule backs up, a RoleBinding there to the
# ClusterRole kbak:agent:kbak:kbak-agent:backup for ServiceAccount
# kbak/kbak-agent (kbak deploy agent --config agent.yaml prints them).
listen: ":9090"
repo: s3://kbak-backups
secret: kbak-store
schedules: []
`

// BaseAgent is the agent the kustomize base deploys.
func BaseAgent() Agent {
	return Agent{Secret: "kbak-store", Config: []byte(BaseAgentConfig)}
}

// KustomizeBase renders the files of the kustomize base: the agent's
// objects grouped by purpose, its configuration from a configMapGenerator
// (so an overlay can replace it and a change rolls the pod), and the
// kustomization.yaml that lists them.
func KustomizeBase() (map[string][]byte, error) {
	files := map[string][]byte{}
	groups := []struct {
		file string
		objs []runtime.Object
	}{{file: "namespace.yaml"}, {file: "serviceaccount.yaml"}, {file: "rbac.yaml"}, {file: "deployment.yaml"}, {file: "service.yaml"}}
	for _, o := range BaseAgent().Objects() {
		i := -1
		switch o.(type) {
		case *corev1.Namespace:
			i = 0
		case *corev1.ServiceAccount:
			i = 1
		case *rbacv1.ClusterRole, *rbacv1.ClusterRoleBinding, *rbacv1.RoleBinding:
			i = 2
		case *corev1.ConfigMap:
			continue // made by the configMapGenerator
		case *corev1.Service:
			i = 4
		default:
			i = 3
		}
		groups[i].objs = append(groups[i].objs, o)
	}
	var kust bytes.Buffer
	kust.WriteString(generatedHeader)
	kust.WriteString("apiVersion: kustomize.config.k8s.io/v1beta1\nkind: Kustomization\nresources:\n")
	for _, g := range groups {
		y, err := YAML(g.objs...)
		if err != nil {
			return nil, fmt.Errorf("render %s: %w", g.file, err)
		}
		files[g.file] = append([]byte(generatedHeader), y...)
		fmt.Fprintf(&kust, "- %s\n", g.file)
	}
	a := BaseAgent().withDefaults()
	fmt.Fprintf(&kust, "configMapGenerator:\n- name: %s\n  namespace: %s\n  files:\n  - %s\n", a.Name, a.Namespace, AgentConfigKey)
	files["kustomization.yaml"] = kust.Bytes()
	files[AgentConfigKey] = []byte(BaseAgentConfig)
	sm, err := serviceMonitor(a)
	if err != nil {
		return nil, err
	}
	files[ServiceMonitorComponent+"/servicemonitor.yaml"] = append([]byte(generatedHeader), sm...)
	files[ServiceMonitorComponent+"/kustomization.yaml"] = []byte(generatedHeader +
		"# An optional component: add it to an overlay of this base with\n" +
		"#   components:\n#   - <path to this base>/" + ServiceMonitorComponent + "\n" +
		"# to have the Prometheus Operator scrape the agent.\n" +
		"apiVersion: kustomize.config.k8s.io/v1alpha1\nkind: Component\nresources:\n- servicemonitor.yaml\n")
	return files, nil
}

// ServiceMonitorComponent is the folder, inside the kustomize base, of the
// optional component with the agent's ServiceMonitor.
const ServiceMonitorComponent = "components/servicemonitor"

// serviceMonitor renders the Prometheus Operator's ServiceMonitor of agent
// a's Service, which selects it by the Service's own labels.
func serviceMonitor(a Agent) ([]byte, error) {
	labels := kube.AgentLabels(a.Name)
	return yaml.Marshal(map[string]any{
		"apiVersion": "monitoring.coreos.com/v1",
		"kind":       "ServiceMonitor",
		"metadata":   map[string]any{"name": a.Name, "namespace": a.Namespace, "labels": labels},
		"spec": map[string]any{
			"selector":  map[string]any{"matchLabels": labels},
			"endpoints": []any{map[string]any{"port": "metrics", "path": "/metrics", "interval": "60s"}},
		},
	})
}
