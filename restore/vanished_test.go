package restore

import (
	"context"
	"errors"
	"strings"
	"testing"

	snapfake "github.com/kubernetes-csi/external-snapshotter/client/v8/clientset/versioned/fake"
	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/client-go/kubernetes/fake"
	k8stesting "k8s.io/client-go/testing"
)

// A restored claim that someone else deletes before the restore hands it
// over (a `kbak gc` with a short grace, a person) fails the restore: it never
// reports data as restored that is not there, and a StatefulSet it would
// create does not make an empty claim in its place.
func TestRunFailsWhenARestoredClaimVanishes(t *testing.T) {
	for _, create := range []bool{false, true} {
		name := "claims only"
		if create {
			name = "with --create-statefulset"
		}
		t.Run(name, func(t *testing.T) {
			kc := fake.NewClientset(namespace("shop"), storageClass("fast", driver, false))
			sc := snapfake.NewSimpleClientset(keptSnapshot("shop", 0, true), keptSnapshot("shop", 1, true))
			deps := Deps{Kube: kc, Snap: sc}
			p, err := NewPlan(context.Background(), deps, manifest(vol("data", 0).kept("shop"), vol("data", 1).kept("shop")), fastOptions(Options{CreateStatefulSet: create}))
			if err != nil {
				t.Fatal(err)
			}
			bindersSucceed(kc)
			// data-db-1 is deleted just before the restore releases it.
			pvcs := corev1.SchemeGroupVersion.WithResource("persistentvolumeclaims")
			kc.PrependReactor("patch", "persistentvolumeclaims", func(a k8stesting.Action) (bool, runtime.Object, error) {
				if pa := a.(k8stesting.PatchAction); pa.GetName() == "data-db-1" {
					if err := kc.Tracker().Delete(pvcs, pa.GetNamespace(), pa.GetName()); err != nil && !apierrors.IsNotFound(err) {
						t.Errorf("delete %s: %v", pa.GetName(), err)
					}
				}
				return false, nil, nil
			})

			res, err := Run(context.Background(), deps, p)
			if !errors.Is(err, ErrFailed) || !strings.Contains(err.Error(), "data-db-1") {
				t.Fatalf("err = %v, want ErrFailed naming data-db-1", err)
			}
			if res == nil {
				t.Fatal("no result")
			}
			if res.StatefulSetCreated {
				t.Error("the StatefulSet was created: it would make an empty data-db-1")
			}
			if _, err := kc.AppsV1().StatefulSets("shop").Get(context.Background(), "db", metav1.GetOptions{}); !apierrors.IsNotFound(err) {
				t.Errorf("StatefulSet shop/db: %v, want none", err)
			}
		})
	}
}
