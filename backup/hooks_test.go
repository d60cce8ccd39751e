package backup

import (
	"slices"
	"testing"

	"github.com/kbak/kbak/internal/kube"
	"github.com/kbak/kbak/internal/kube/kubetest"
)

func TestHookTargets(t *testing.T) {
	p0 := kubetest.Pod(ns, "db", 0, "n").Result()
	p1 := kubetest.Pod(ns, "db", 1, "n").Result()
	vols := []*volume{
		{claim: kube.Claim{Name: "data-db-0", Pod: p0}},
		{claim: kube.Claim{Name: "logs-db-0", Pod: p0}},
		{claim: kube.Claim{Name: "data-db-1", Pod: p1}},
		{claim: kube.Claim{Name: "data-db-2"}}, // no running pod: nothing to quiesce
	}
	tests := []struct {
		container string
		want      []hookTarget
	}{
		{"", []hookTarget{{"db-0", "app"}, {"db-1", "app"}}},
		{"sidecar", []hookTarget{{"db-0", "sidecar"}, {"db-1", "sidecar"}}},
	}
	for _, tt := range tests {
		r := &run{opts: Options{HookContainer: tt.container}}
		if got := r.hookTargets(vols); !slices.Equal(got, tt.want) {
			t.Errorf("container %q: targets %v, want %v", tt.container, got, tt.want)
		}
	}
}
