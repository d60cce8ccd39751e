package main

import (
	"strings"
	"testing"
	"time"
)

// Without -n, list and prune act on the kubeconfig context's namespace
// only; -A widens them to every namespace; -n with -A is a usage error
// that touches nothing.
func TestVerbsDefaultToTheContextNamespace(t *testing.T) {
	t.Setenv("AWS_EC2_METADATA_DISABLED", "true")
	repo := "file://" + t.TempDir()
	t.Setenv("KBAK_REPO", repo)
	inNamespace(t, "shop")
	now := time.Now().UTC().Truncate(time.Second)
	shopOld := writeBackup(t, repo, "shop", "db", now.Add(-2*time.Hour), false)
	shopNew := writeBackup(t, repo, "shop", "db", now.Add(-time.Hour), false)
	otherOld := writeBackup(t, repo, "other", "db", now.Add(-2*time.Hour), false)
	otherNew := writeBackup(t, repo, "other", "db", now.Add(-time.Hour), false)

	listed := func(t *testing.T, args ...string) string {
		t.Helper()
		code, out, errs := kbak(t, append([]string{"list"}, args...)...)
		if code != exitOK {
			t.Fatalf("list %v: exit %d: %s", args, code, errs)
		}
		return out
	}
	if out := listed(t); !strings.Contains(out, shopNew) || strings.Contains(out, otherNew) {
		t.Errorf("list without -n shows another namespace's backups or not the context's:\n%s", out)
	}
	if out := listed(t, "-n", "other"); strings.Contains(out, shopNew) || !strings.Contains(out, otherNew) {
		t.Errorf("list -n other:\n%s", out)
	}
	if out := listed(t, "-A"); !strings.Contains(out, shopNew) || !strings.Contains(out, otherNew) {
		t.Errorf("list -A:\n%s", out)
	}
	code, _, errs := kbak(t, "prune", "-A", "-n", "shop", "--keep-last", "1")
	if code != exitUsage {
		t.Errorf("prune -A -n shop: exit %d, want %d", code, exitUsage)
	}
	oneErrorLine(t, errs, "-A")

	// The data-safety promise: prune without -n leaves other namespaces be.
	if code, out, errs := kbak(t, "prune", "--keep-last", "1"); code != exitOK || !strings.Contains(out, shopOld) || strings.Contains(out, otherOld) {
		t.Fatalf("prune: exit %d:\n%s%s", code, out, errs)
	}
	if out := listed(t, "-A"); strings.Contains(out, shopOld) || !strings.Contains(out, otherOld) || !strings.Contains(out, shopNew) {
		t.Errorf("after prune in the context's namespace:\n%s", out)
	}
	if code, _, errs := kbak(t, "prune", "-A", "--keep-last", "1"); code != exitOK {
		t.Fatalf("prune -A: exit %d: %s", code, errs)
	}
	if out := listed(t, "-A"); strings.Contains(out, otherOld) || !strings.Contains(out, otherNew) {
		t.Errorf("after prune -A:\n%s", out)
	}
}

func TestVerbsWithoutANamespace(t *testing.T) {
	for _, args := range [][]string{
		{"repo", "init", "-n", "shop"},
		{"key", "list", "-n", "shop"},
		{"delete", "db-20260101T000000Z-abcd", "-n", "shop"},
		{"describe", "db-20260101T000000Z-abcd", "-n", "shop"},
		{"verify", "db-20260101T000000Z-abcd", "-n", "shop"},
		{"agent", "--config", "x.yaml", "-n", "shop"},
	} {
		code, _, errs := kbak(t, args...)
		if code != exitUsage {
			t.Errorf("%v: exit %d, want %d", args, code, exitUsage)
		}
		oneErrorLine(t, errs, "-n")
	}
}

// delete asks on a terminal, refuses to go on without --yes elsewhere,
// and --dry-run deletes nothing.
func TestDeleteAsks(t *testing.T) {
	t.Setenv("AWS_EC2_METADATA_DISABLED", "true")
	repo := "file://" + t.TempDir()
	t.Setenv("KBAK_REPO", repo)
	inNamespace(t, "shop")
	id := writeBackup(t, repo, "shop", "db", time.Now().Add(-time.Hour), false)
	still := func(t *testing.T) bool {
		t.Helper()
		_, out, _ := kbak(t, "list")
		return strings.Contains(out, id)
	}
	withConsole := func(t *testing.T, tty bool, answer string) {
		saved := console
		console = terminal{in: strings.NewReader(answer), tty: func() bool { return tty }}
		t.Cleanup(func() { console = saved })
	}

	withConsole(t, false, "")
	code, _, errs := kbak(t, "delete", id)
	if code != exitUsage || !still(t) {
		t.Fatalf("delete without --yes and no terminal: exit %d, want %d and the backup kept", code, exitUsage)
	}
	oneErrorLine(t, errs, "--yes")

	code, out, errs := kbak(t, "delete", id, "--dry-run")
	if code != exitOK || !strings.Contains(out, "would delete backup "+id) || !strings.Contains(out, "namespace shop") || !still(t) {
		t.Fatalf("delete --dry-run: exit %d:\n%s%s", code, out, errs)
	}

	withConsole(t, true, "n\n")
	code, out, errs = kbak(t, "delete", id)
	if code != exitOK || !strings.Contains(errs, "Delete backup "+id) || !strings.Contains(errs, "not deleted") || !still(t) {
		t.Fatalf("delete answered no: exit %d:\n%s%s", code, out, errs)
	}

	withConsole(t, true, "y\n")
	code, out, errs = kbak(t, "delete", id)
	if code != exitOK || !strings.Contains(out, "deleted "+id) || still(t) {
		t.Fatalf("delete answered yes: exit %d:\n%s%s", code, out, errs)
	}
}

// gc removes the leftovers of the context's namespace only; -A those of
// every namespace.
func TestGCDefaultsToTheContextNamespace(t *testing.T) {
	t.Setenv("AWS_EC2_METADATA_DISABLED", "true")
	t.Setenv("KBAK_REPO", "file://"+t.TempDir())
	inNamespace(t, "shop")
	// An upload without a manifest is what a crashed backup leaves.
	for _, ns := range []string{"shop", "other"} {
		code, _, errs := kbak(t, "mover", "upload", "--source", t.TempDir(), "--progress-interval", "0",
			"--key", "kbak/v1/"+ns+"/db/db-20260101T000000Z-dead/volumes/data-db-0.tar.zst")
		if code != exitOK {
			t.Fatalf("mover upload exit %d: %s", code, errs)
		}
	}
	code, out, errs := kbak(t, "gc", "--grace", "0s", "--no-cluster")
	if code != exitOK || !strings.Contains(out, "shop") || strings.Contains(out, "other") {
		t.Fatalf("gc: exit %d:\n%s%s", code, out, errs)
	}
	code, out, errs = kbak(t, "gc", "-A", "--grace", "0s", "--no-cluster")
	if code != exitOK || strings.Contains(out, "shop") || !strings.Contains(out, "other") {
		t.Fatalf("gc -A: exit %d:\n%s%s", code, out, errs)
	}
}
