//go:build e2e

package e2e

import (
	"context"
	"fmt"
	"slices"
	"strings"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	"github.com/kbak/kbak/internal/kube"
)

// A kbak killed outright (SIGKILL) during a backup's upload cleans up
// nothing: its Secrets, one holding the operator's own store credentials
// and one the repository's write key, stay behind. The next backup in that
// namespace removes them once no pod of the dead run is going and it has
// not marked them alive for --dead-run-age, before it makes its own; at its
// end no kbak Secret is left in the namespace.
func TestKilledBackupSecretsGoAtTheNextBackup(t *testing.T) {
	t.Parallel() // waits more than it works: beside the other waiters
	e := newEnv(t)
	ns := createNamespace(t, e, "bk-sigkill")
	applyStatefulSet(t, e, ns, "db", 1, e.SnapClass, withClaims(newClaim("data").Size("2Gi")))
	// Enough incompressible data that the upload is still running when the
	// signal arrives: kbak reports progress every 10 seconds.
	mustExec(t, e, ns, "db-0", "app", "sh", "-c", "head -c 800000000 /dev/urandom > /data/big.bin && sync")
	er := newEncryptedRepo(t, e, ns)
	env := []string{"KBAK_REPO=" + er.url, "KBAK_KEY_FILE=" + er.writeKey}

	cmd, _, errb := kbakCmdEnv(t, e, env, "backup", "sts/db", "-n", ns)
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	// Kill once a mover reports bytes moved, as TestBackupInterrupted
	// interrupts.
	deadline := time.Now().Add(5 * time.Minute)
	for !strings.Contains(errb.String(), "/s") {
		if time.Now().After(deadline) {
			_ = cmd.Process.Kill()
			t.Fatalf("the upload never started:\n%s", errb.String())
		}
		time.Sleep(100 * time.Millisecond)
	}
	if err := cmd.Process.Kill(); err != nil {
		t.Fatal(err)
	}
	_ = cmd.Wait()
	t.Logf("killed kbak; its stderr:\n%s", indent(errb.String()))

	secrets := func(c context.Context) ([]corev1.Secret, error) {
		list, err := e.Kube.CoreV1().Secrets(ns).List(c, metav1.ListOptions{LabelSelector: kube.ManagedSelector()})
		if err != nil {
			return nil, err
		}
		return list.Items, nil
	}
	left, err := secrets(ctx(t))
	if err != nil {
		t.Fatal(err)
	}
	var dead string
	var names []string
	for _, s := range left {
		names = append(names, s.Name)
		dead = s.Labels[kube.LabelBackupID]
		if s.Annotations[kube.AnnotationAlive] == "" {
			t.Errorf("secret %s of the run is not marked alive (%s)", s.Name, kube.AnnotationAlive)
		}
	}
	slices.Sort(names)
	if want := []string{kube.Name("kbak", dead, "creds"), kube.Name("kbak", dead, "key")}; dead == "" || !slices.Equal(names, want) {
		t.Fatalf("secrets after the kill %v, want the dead run's credentials and key %v", names, want)
	}
	pods, err := e.Kube.CoreV1().Pods(ns).List(ctx(t), metav1.ListOptions{LabelSelector: kube.RunSelector(dead)})
	if err != nil {
		t.Fatal(err)
	}
	if !slices.ContainsFunc(pods.Items, func(p corev1.Pod) bool { return p.Status.Phase == corev1.PodRunning }) {
		t.Errorf("no mover of the killed run is running: the kill came after the upload (%d pods)", len(pods.Items))
	}

	// Nothing deletes the dead run's mover: it finishes its upload.
	waitFor(t, "the dead run's mover to end", 10*time.Minute, func(c context.Context) (string, bool, error) {
		pods, err := e.Kube.CoreV1().Pods(ns).List(c, metav1.ListOptions{LabelSelector: kube.RunSelector(dead)})
		if err != nil {
			return "", false, err
		}
		var going []string
		for _, p := range pods.Items {
			if p.Status.Phase != corev1.PodSucceeded && p.Status.Phase != corev1.PodFailed {
				going = append(going, fmt.Sprintf("%s %s", p.Name, p.Status.Phase))
			}
		}
		return strings.Join(going, ", "), len(going) == 0, nil
	})
	// The dead run's last sign of life must be older than the age given.
	time.Sleep(6 * time.Second)

	r := runKbakEnv(t, e, env, "backup", "sts/db", "-n", ns, "--dead-run-age", "5s")
	if r.code != 0 {
		t.Fatalf("the next backup: %s", r)
	}
	waitFor(t, "no kbak Secret in the namespace", time.Minute, func(c context.Context) (string, bool, error) {
		left, err := secrets(c)
		if err != nil {
			return "", false, err
		}
		var names []string
		for _, s := range left {
			names = append(names, s.Name)
		}
		return strings.Join(names, ", "), len(left) == 0, nil
	})
}
