package hint

import (
	"errors"
	"fmt"
	"testing"
)

func flags(r Ref) string {
	if r.Value == "" {
		return "--" + string(r.Setting)
	}
	return "--" + string(r.Setting) + " " + r.Value
}

func TestRender(t *testing.T) {
	base := errors.New("no VolumeSnapshotClass for driver d")
	err := fmt.Errorf("back up shop/db: %w", Errorf("%w: create one or use %s", base, Set(Method, "files")))
	if got := err.Error(); got != "back up shop/db: no VolumeSnapshotClass for driver d: create one or use method files" {
		t.Errorf("plain text %q", got)
	}
	if got := Render(err, flags); got != "back up shop/db: no VolumeSnapshotClass for driver d: create one or use --method files" {
		t.Errorf("rendered %q", got)
	}
	if !errors.Is(err, base) || !Advised(err, Method) || Advised(err, Repo) {
		t.Error("the facts or the setting are lost")
	}
	joined := errors.Join(Errorf("a: drop %s", Of(SecretName)), Errorf("b: pass %s", Of(Repo)))
	if got := Render(joined, flags); got != "a: drop --secret\nb: pass --repo" {
		t.Errorf("joined %q", got)
	}
	nested := Errorf("restore: %w (see %s)", Errorf("bad: pass %s", Of(Repo)), Of(Kubeconfig))
	if got := Render(nested, flags); got != "restore: bad: pass --repo (see --kubeconfig)" {
		t.Errorf("nested %q", got)
	}
	if got := Sprintf(flags, "map it with %s (%d classes)", Set(StorageClassMap, "fast=CLASS"), 2); got != "map it with --storage-class-map fast=CLASS (2 classes)" {
		t.Errorf("Sprintf %q", got)
	}
}
