package schedule

import (
	"fmt"
	"net"
	"strconv"

	"k8s.io/apimachinery/pkg/runtime"
	"sigs.k8s.io/yaml"

	"github.com/kbak/kbak/deploy"
)

// AgentObjects renders the manifests that run the agent with cfg in a
// cluster (`kbak deploy agent`): a takes the image, namespace and name; the
// configuration, the namespaces it backs up, the Secret and the port come
// from cfg.
func AgentObjects(cfg Config, a deploy.Agent) ([]runtime.Object, error) {
	data, err := yaml.Marshal(cfg)
	if err != nil {
		return nil, fmt.Errorf("encode agent configuration: %w", err)
	}
	a.Config = data
	a.Secret = cfg.Secret
	if cfg.Listen != "" {
		_, port, err := net.SplitHostPort(cfg.Listen)
		if err != nil {
			return nil, fmt.Errorf("listen address %q: %w: write host:port or :port, e.g. :9090", cfg.Listen, err)
		}
		p, err := strconv.ParseUint(port, 10, 16)
		if err != nil || p == 0 {
			return nil, fmt.Errorf("listen address %q: a pod needs a fixed port, e.g. :9090", cfg.Listen)
		}
		a.Port = int32(p)
	}
	for _, s := range cfg.Schedules {
		if s.Secret != cfg.Secret {
			// The Role grants get on one Secret name in every namespace.
			return nil, fmt.Errorf("schedule %s uses secret %q, the others %q: in a cluster the agent reads one Secret name; give every namespace a Secret of that name", s.Name, s.Secret, cfg.Secret)
		}
		a.BackupNamespaces = append(a.BackupNamespaces, s.Namespace)
		if s.PreHook != "" || s.PostHook != "" || s.HoldHook != "" {
			a.Hooks = true
		}
	}
	return a.Objects(), nil
}
