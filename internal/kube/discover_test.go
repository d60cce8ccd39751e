package kube

import (
	"context"
	"errors"
	"strings"
	"testing"

	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/client-go/kubernetes/fake"

	"github.com/kbak/kbak/internal/hint"
	"github.com/kbak/kbak/internal/hint/hinttest"
	"github.com/kbak/kbak/internal/kube/kubetest"
)

const ns = "shop"

func TestDiscover(t *testing.T) {
	sts := kubetest.StatefulSet(ns, "db").Replicas(3).Claim("data", "fast", "1Gi").Claim("logs", "slow", "1Gi").Result()
	var objs []runtime.Object
	add := func(b *kubetest.ClaimBuilder) {
		objs = append(objs, b.Result())
		if b.PV() != nil {
			objs = append(objs, b.PV())
		}
	}
	add(kubetest.Claim(ns, "data-db-0", "fast").Bound("csi.fast").Size("2Gi"))
	add(kubetest.Claim(ns, "logs-db-0", "slow").Bound(""))
	add(kubetest.Claim(ns, "data-db-1", "fast").Bound("csi.fast").AccessModes(corev1.ReadWriteOncePod))
	add(kubetest.Claim(ns, "logs-db-1", "slow")) // pending
	// ordinal 2 has no claims; ordinals 3 and 10 are left from a scale-down.
	add(kubetest.Claim(ns, "data-db-3", "fast").Bound("csi.fast"))
	add(kubetest.Claim(ns, "data-db-10", "fast").Bound("csi.fast"))
	add(kubetest.Claim(ns, "data-db-03", "fast").Bound("csi.fast"))  // not a controller name
	add(kubetest.Claim(ns, "data-db-x-0", "fast").Bound("csi.fast")) // another StatefulSet
	add(kubetest.Claim(ns, "data-dbx-4", "fast").Bound("csi.fast"))  // another StatefulSet
	objs = append(objs, sts,
		kubetest.Pod(ns, "db", 0, "node-a").Result(),
		kubetest.Pod(ns, "db", 1, "").Phase(corev1.PodPending).Result(), // not scheduled
	)
	kc := fake.NewClientset(objs...)

	d, err := Discover(context.Background(), kc, ns, "db")
	if err != nil {
		t.Fatal(err)
	}
	type row struct {
		name, class, driver, size, problem, pod string
		ordinal                                 int
	}
	var got []row
	for _, c := range append(d.Claims, d.Retained...) {
		r := row{name: c.Name, class: c.StorageClass, driver: c.Driver, size: c.Size.String(), ordinal: c.Ordinal, pod: podName(c.Pod)}
		if c.Problem != "" {
			r.problem = strings.Fields(c.Problem)[len(strings.Fields(c.Problem))-1]
		}
		got = append(got, r)
	}
	want := []row{
		{"data-db-0", "fast", "csi.fast", "2Gi", "", "db-0", 0},
		{"logs-db-0", "slow", "", "1Gi", "", "db-0", 0},
		{"data-db-1", "fast", "csi.fast", "1Gi", "", "", 1},
		{"logs-db-1", "slow", "", "1Gi", "Pending)", "", 1},
		{"data-db-2", "", "", "0", "started)", "", 2},
		{"logs-db-2", "", "", "0", "started)", "", 2},
		{"data-db-3", "fast", "csi.fast", "1Gi", "", "", 3},
		{"data-db-10", "fast", "csi.fast", "1Gi", "", "", 10},
	}
	if len(got) != len(want) {
		t.Fatalf("got %d claims %+v, want %d", len(got), got, len(want))
	}
	for i := range want {
		if got[i] != want[i] {
			t.Errorf("claim %d = %+v, want %+v", i, got[i], want[i])
		}
	}
	if len(d.Claims) != 6 || !d.Retained[0].Retained {
		t.Errorf("got %d current claims, retained flag %v", len(d.Claims), d.Retained[0].Retained)
	}
	if !d.Claims[2].HasAccessMode(corev1.ReadWriteOncePod) {
		t.Errorf("data-db-1 lost its access mode")
	}
}

func podName(p *corev1.Pod) string {
	if p == nil {
		return ""
	}
	return p.Name
}

func TestDiscoverErrors(t *testing.T) {
	tests := []struct {
		name    string
		objs    []runtime.Object
		want    error
		wantMsg string
	}{
		{"unknown statefulset", nil, ErrStatefulSetNotFound, "statefulset shop/db not found: check the name and -n"},
		{"no claim templates", []runtime.Object{kubetest.StatefulSet(ns, "db").Result()}, ErrNoClaimTemplates, "statefulset shop/db has no volumeClaimTemplates"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, err := Discover(context.Background(), fake.NewClientset(tt.objs...), ns, "db")
			// As the command line shows it.
			if msg := hint.Render(err, hinttest.Flags); !errors.Is(err, tt.want) || !strings.HasPrefix(msg, tt.wantMsg) {
				t.Errorf("err = %v, want %v starting %q", msg, tt.want, tt.wantMsg)
			}
		})
	}
}

func TestDiscoverBlock(t *testing.T) {
	c := kubetest.Claim(ns, "data-db-0", "fast").Block().Bound("csi.fast")
	kc := fake.NewClientset(kubetest.StatefulSet(ns, "db").Claim("data", "fast", "1Gi").Result(), c.Result(), c.PV())
	d, err := Discover(context.Background(), kc, ns, "db")
	if err != nil {
		t.Fatal(err)
	}
	if d.Claims[0].OK() || !strings.Contains(d.Claims[0].Problem, "raw block") {
		t.Errorf("block claim problem = %q", d.Claims[0].Problem)
	}
}
