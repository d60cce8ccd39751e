package main

import (
	"context"
	"fmt"
	"runtime"
	"runtime/debug"
	"time"

	"github.com/urfave/cli/v2"
	"k8s.io/client-go/discovery"
)

// serverVersionTimeout bounds how long kbak version waits for the API
// server: the version of kbak itself must not wait on a cluster.
const serverVersionTimeout = 3 * time.Second

// versionInfo is kbak version -o json|yaml: a Version.
type versionInfo struct {
	Version   string `json:"version"`
	Commit    string `json:"commit"`
	GoVersion string `json:"goVersion"`
	Platform  string `json:"platform"`
	// Kubernetes is the API server's version, when it answered in time;
	// KubernetesError says why not.
	Kubernetes      string `json:"kubernetes,omitempty"`
	KubernetesError string `json:"kubernetesError,omitempty"`
}

func versionCommand() *cli.Command {
	return &cli.Command{
		Name:  "version",
		Usage: "print kbak's version, commit and Go version, and the Kubernetes version of the cluster",
		Description: `Asks the API server of the kubeconfig's context for its version, for at most
` + serverVersionTimeout.String() + `; an unreachable cluster is no failure. --client asks nothing.

EXAMPLES:
   kbak version
   kbak version --client -o json`,
		Flags: flags(clusterFlags(), []cli.Flag{
			&cli.BoolFlag{Name: "client", Usage: "only kbak's own version: do not ask the API server"},
			outputFlag(), verboseFlag(),
		}),
		Action: func(c *cli.Context) error {
			format, err := outputFormat(c)
			if err != nil {
				return err
			}
			if c.NArg() > 0 {
				return usagef("version takes no arguments, got %q", c.Args().First())
			}
			v := versionInfo{Version: version, Commit: buildCommit(), GoVersion: runtime.Version(), Platform: runtime.GOOS + "/" + runtime.GOARCH}
			if !c.Bool("client") {
				v.Kubernetes, err = serverVersion(c.Context, c)
				if err != nil {
					v.KubernetesError = errorLine(err)
				}
			}
			if structured(format) {
				return printStructured(c, format, "Version", v)
			}
			w := stdout(c)
			fmt.Fprintf(w, "kbak:       %s\ncommit:     %s\nGo:         %s %s\n", v.Version, v.Commit, v.GoVersion, v.Platform)
			switch {
			case v.Kubernetes != "":
				fmt.Fprintf(w, "Kubernetes: %s\n", v.Kubernetes)
			case v.KubernetesError != "":
				fmt.Fprintf(w, "Kubernetes: unknown (%s)\n", v.KubernetesError)
			}
			return nil
		},
	}
}

// buildCommit is the VCS revision the binary was built from, as the Go
// toolchain records it ("-dirty" when the tree had changes).
func buildCommit() string {
	if commit != "" {
		return commit
	}
	info, ok := debug.ReadBuildInfo()
	if !ok {
		return "unknown"
	}
	rev, dirty := "", false
	for _, s := range info.Settings {
		switch s.Key {
		case "vcs.revision":
			rev = s.Value
		case "vcs.modified":
			dirty = s.Value == "true"
		}
	}
	if rev == "" {
		return "unknown"
	}
	if dirty {
		rev += "-dirty"
	}
	return rev
}

// serverVersion asks the API server of the kubeconfig's context for its
// version, within serverVersionTimeout.
func serverVersion(ctx context.Context, c *cli.Context) (string, error) {
	cfg, err := clientConfig(c).ClientConfig()
	if err != nil {
		return "", fmt.Errorf("no cluster: %w", err)
	}
	cfg.Timeout = serverVersionTimeout
	dc, err := discovery.NewDiscoveryClientForConfig(cfg)
	if err != nil {
		return "", err
	}
	ctx, cancel := context.WithTimeout(ctx, serverVersionTimeout)
	defer cancel()
	type answer struct {
		v   string
		err error
	}
	done := make(chan answer, 1)
	go func() {
		info, err := dc.ServerVersion()
		if err != nil {
			done <- answer{err: err}
			return
		}
		done <- answer{v: info.GitVersion}
	}()
	select {
	case a := <-done:
		return a.v, a.err
	case <-ctx.Done():
		return "", fmt.Errorf("the API server at %s did not answer within %s", cfg.Host, serverVersionTimeout)
	}
}
