package main

import (
	"fmt"

	snapclient "github.com/kubernetes-csi/external-snapshotter/client/v8/clientset/versioned"
	"github.com/urfave/cli/v2"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/rest"
	"k8s.io/client-go/tools/clientcmd"

	"github.com/kbak/kbak/internal/kube"
)

// clientConfig is the kubeconfig as kubectl reads it, with --context and
// -n applied.
func clientConfig(c *cli.Context) clientcmd.ClientConfig {
	rules := clientcmd.NewDefaultClientConfigLoadingRules()
	if p := c.Path("kubeconfig"); p != "" {
		rules.ExplicitPath = p
	}
	overrides := &clientcmd.ConfigOverrides{CurrentContext: c.String("context")}
	if ns := c.String("namespace"); ns != "" {
		overrides.Context.Namespace = ns
	}
	return clientcmd.NewNonInteractiveDeferredLoadingClientConfig(rules, overrides)
}

// namespaceScope is the namespace a verb acts in: -n, else the kubeconfig
// context's, else "default", as kubectl does; reading it asks the API
// server nothing, so verbs that work from the repository alone keep doing
// so. all is set by -A (on the verbs that have it), and ns is then "".
func namespaceScope(c *cli.Context) (ns string, all bool, err error) {
	if c.Bool("all-namespaces") {
		if c.IsSet("namespace") {
			return "", false, usagef("-n %s and -A (--all-namespaces) contradict each other: give one", c.String("namespace"))
		}
		return "", true, nil
	}
	if ns := c.String("namespace"); ns != "" {
		return ns, false, nil
	}
	ns, _, err = clientConfig(c).Namespace()
	if clientcmd.IsEmptyConfig(err) {
		return "default", false, nil // no kubeconfig at all: kubectl's default
	}
	if err != nil {
		return "", false, fmt.Errorf("load kubeconfig namespace: %w (pass -n NAMESPACE, or -A for every namespace)", err)
	}
	return ns, false, nil
}

// cluster is what commands that talk to Kubernetes get from the flags.
type cluster struct {
	config    *rest.Config
	kube      kubernetes.Interface
	snapshots snapclient.Interface
	namespace string // -n, else the context's namespace, else "default"
}

// connect loads the kubeconfig the way kubectl does (--kubeconfig,
// KUBECONFIG, ~/.kube/config, then the in-cluster ServiceAccount); every
// request of its clients gets --request-timeout.
func connect(c *cli.Context) (*cluster, error) {
	cc := clientConfig(c)
	cfg, err := cc.ClientConfig()
	if err != nil {
		return nil, fmt.Errorf("load kubeconfig: %w (pass --kubeconfig or set KUBECONFIG)", err)
	}
	ns, _, err := cc.Namespace()
	if err != nil {
		return nil, fmt.Errorf("load kubeconfig namespace: %w", err)
	}
	cfg.UserAgent = "kbak/" + version
	// Not cfg.Timeout: it would also cut the log follows that last a whole
	// transfer and the exec streams of hooks.
	kube.WithRequestTimeout(cfg, c.Duration("request-timeout"))
	// Backups create many objects in a burst; the client's default 5 qps
	// would make a 10-ordinal StatefulSet wait on its own rate limiter.
	cfg.QPS, cfg.Burst = 50, 100
	kc, err := kubernetes.NewForConfig(cfg)
	if err != nil {
		return nil, fmt.Errorf("create Kubernetes client: %w", err)
	}
	sc, err := snapclient.NewForConfig(cfg)
	if err != nil {
		return nil, fmt.Errorf("create VolumeSnapshot client: %w", err)
	}
	return &cluster{config: cfg, kube: kc, snapshots: sc, namespace: ns}, nil
}
