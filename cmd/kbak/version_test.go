package main

import (
	"encoding/json"
	"net/http"
	"net/http/httptest"
	"os"
	"runtime"
	"strings"
	"testing"
	"time"

	"github.com/kbak/kbak/internal/nettest"
)

func TestVersion(t *testing.T) {
	t.Setenv("KUBECONFIG", "")
	api := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.URL.Path != "/version" {
			http.NotFound(w, r)
			return
		}
		w.Header().Set("Content-Type", "application/json")
		w.Write([]byte(`{"major":"1","minor":"34","gitVersion":"v1.34.2"}`))
	}))
	t.Cleanup(api.Close)

	code, out, errs := kbak(t, "--version")
	if code != exitOK || out != version+"\n" {
		t.Errorf("--version: exit %d, stdout %q (%s); want the version alone", code, out, errs)
	}

	code, out, errs = kbak(t, "version", "--kubeconfig", kubeconfigFor(t, api.URL))
	if code != exitOK || !strings.Contains(out, "kbak:       "+version+"\n") || !strings.Contains(out, runtime.Version()) ||
		!strings.Contains(out, "commit:") || !strings.Contains(out, "Kubernetes: v1.34.2\n") {
		t.Errorf("version: exit %d:\n%s%s", code, out, errs)
	}

	code, out, errs = kbak(t, "version", "--client", "-o", "json", "--kubeconfig", kubeconfigFor(t, api.URL))
	var v struct {
		APIVersion, Kind, Version, GoVersion, Kubernetes string
	}
	if err := json.Unmarshal([]byte(out), &v); err != nil || code != exitOK || v.Kind != "Version" || v.APIVersion != "kbak.io/v1" ||
		v.Version != version || v.GoVersion != runtime.Version() || v.Kubernetes != "" {
		t.Errorf("version --client -o json: exit %d, %+v (%v): %s", code, v, err, errs)
	}

	// A cluster that never answers costs a few seconds, and is no failure.
	silent := nettest.SilentServer(t)
	start := time.Now()
	code, out, errs = kbak(t, "version", "--kubeconfig", kubeconfigFor(t, "http://"+silent))
	if code != exitOK || !strings.Contains(out, "Kubernetes: unknown (") || time.Since(start) > serverVersionTimeout+2*time.Second {
		t.Errorf("version against a silent server: exit %d after %s:\n%s%s", code, time.Since(start), out, errs)
	}
}

// -v is --verbose before or after any command; help COMMAND is the
// command's help.
func TestVerboseAndHelp(t *testing.T) {
	t.Setenv("AWS_EC2_METADATA_DISABLED", "true")
	t.Setenv("KBAK_REPO", "file://"+t.TempDir())
	inNamespace(t, "shop")
	for _, args := range [][]string{{"-v", "list"}, {"list", "-v"}, {"repo", "info", "-v"}, {"schedule", "delete", "-v", "--help"}} {
		code, _, errs := kbak(t, args...)
		if strings.Contains(errs, "flag provided but not defined") {
			t.Errorf("%v: exit %d: %s", args, code, errs)
		}
	}
	for _, args := range [][]string{{"--help"}, {"help"}, {"list", "--help"}, {"schedule", "create", "-h"}} {
		code, out, errs := kbak(t, args...)
		if code != exitOK || !strings.HasPrefix(out, "NAME:\n") {
			t.Errorf("%v: exit %d:\n%s%s", args, code, out, errs)
		}
	}
	code, out, errs := kbak(t, "help", "backup")
	if code != exitOK || !strings.Contains(out, "kbak backup - ") || !strings.Contains(out, "--pre-hook") {
		t.Errorf("help backup: exit %d:\n%s%s", code, out, errs)
	}
	code, out, _ = kbak(t, "help", "schedule", "create")
	if code != exitOK || !strings.Contains(out, "--cron") {
		t.Errorf("help schedule create: exit %d:\n%s", code, out)
	}
}

func TestCompletion(t *testing.T) {
	for shell, want := range map[string]string{
		"bash": "complete -o bashdefault -o default -o nospace -F _kbak_bash_autocomplete kbak",
		"zsh":  "compdef _kbak_zsh_autocomplete kbak",
		"fish": "-c kbak -n '__fish_kbak_no_subcommand' -a 'backup'",
	} {
		code, out, errs := kbak(t, "completion", shell)
		if code != exitOK || !strings.Contains(out, want) {
			t.Errorf("completion %s: exit %d, no %q:\n%s%s", shell, code, want, out, errs)
		}
	}
	code, _, errs := kbak(t, "completion", "powershell")
	if code != exitUsage {
		t.Errorf("completion powershell: exit %d, want %d", code, exitUsage)
	}
	oneErrorLine(t, errs, "bash, zsh or fish")
	// What the scripts ask kbak for (urfave/cli reads os.Args for it).
	args := []string{"kbak", "--generate-bash-completion"}
	saved := os.Args
	os.Args = args
	t.Cleanup(func() { os.Args = saved })
	code, out, _ := kbak(t, args[1:]...)
	if code != exitOK || !strings.Contains(out, "backup\n") || !strings.Contains(out, "completion\n") {
		t.Errorf("--generate-bash-completion: exit %d:\n%s", code, out)
	}
}
