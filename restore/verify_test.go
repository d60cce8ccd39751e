package restore

import (
	"context"
	"errors"
	"strings"
	"testing"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/client-go/kubernetes/fake"

	"github.com/kbak/kbak/internal/kube"
)

func TestCompare(t *testing.T) {
	plan := &Plan{Claims: []Claim{
		{Name: "data-db-0", SourcePVC: "data-db-0", Files: 10, RawBytes: 100},
		{Name: "data-db-1", SourcePVC: "data-db-1", Files: 11, RawBytes: 101},
	}}
	restored := func(pvc string, files, bytes int64) ClaimResult {
		return ClaimResult{PVC: pvc, Status: StatusRestored, Files: files, RawBytes: bytes}
	}
	tests := []struct {
		name    string
		claims  []ClaimResult
		want    bool
		wantErr string // in the first bad volume's error
	}{
		{"equal", []ClaimResult{restored("data-db-0", 10, 100), restored("data-db-1", 11, 101)}, true, ""},
		{"a file missing", []ClaimResult{restored("data-db-0", 9, 100), restored("data-db-1", 11, 101)}, false, "restored 9 files and 100 bytes, the backup recorded 10 files and 100 bytes"},
		{"bytes differ", []ClaimResult{restored("data-db-0", 10, 100), restored("data-db-1", 11, 1)}, false, "the backup recorded 11 files and 101 bytes"},
		{"mover failed", []ClaimResult{{PVC: "data-db-0", Status: StatusFailed, Error: "checksum mismatch"}, restored("data-db-1", 11, 101)}, false, "checksum mismatch"},
		{"not restored at all", []ClaimResult{restored("data-db-1", 11, 101)}, false, "not restored"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			res := &Result{Ordinals: []OrdinalResult{{Claims: tt.claims}}}
			out := &VerifyResult{}
			if got := compare(plan, res, out); got != tt.want {
				t.Errorf("ok = %v, want %v (%+v)", got, tt.want, out.Volumes)
			}
			for _, v := range out.Volumes {
				if !v.OK {
					if !strings.Contains(v.Error, tt.wantErr) {
						t.Errorf("error %q, want %q", v.Error, tt.wantErr)
					}
					break
				}
			}
		})
	}
}

func TestVerifyRestoreScratchNamespace(t *testing.T) {
	scratch := ScratchNamespace(backupID)
	leftover := namespace(scratch)
	leftover.Labels = kube.Labels("old-run", "db", kube.RoleVerify)
	foreign := namespace(scratch)
	tests := []struct {
		name    string
		objects []runtime.Object
		wantErr string
	}{
		{"fresh", nil, "test restore does not match"},
		{"leftover of an earlier test is replaced", []runtime.Object{leftover}, "test restore does not match"},
		{"a namespace of that name that kbak did not make", []runtime.Object{foreign}, "is not a kbak test namespace"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			kc := fake.NewClientset(append(tt.objects, storageClass("fast", driver, false))...)
			// Movers never run under the fake clientset, so every volume
			// fails: the test is about the namespace's life.
			res, err := VerifyRestore(context.Background(), Deps{Kube: kc}, manifest(vol("data", 0), vol("data", 1)), fastOptions(Options{}))
			if err == nil || !strings.Contains(err.Error(), tt.wantErr) {
				t.Fatalf("err = %v, want %q", err, tt.wantErr)
			}
			_, nsErr := kc.CoreV1().Namespaces().Get(context.Background(), scratch, metav1.GetOptions{})
			if tt.objects != nil && tt.objects[0] == foreign {
				if nsErr != nil {
					t.Errorf("a namespace kbak did not make was deleted")
				}
				return
			}
			if !errors.Is(err, ErrVerifyMismatch) {
				t.Errorf("err = %v, want ErrVerifyMismatch", err)
			}
			if nsErr == nil {
				t.Errorf("scratch namespace %s left behind", scratch)
			}
			if res == nil || len(res.Volumes) != 2 || res.OK {
				t.Errorf("result = %+v, want two failed volumes", res)
			}
		})
	}
}

func TestScratchNamespace(t *testing.T) {
	long := strings.Repeat("a", 50) + "-20261122T020000Z-3f2a"
	for _, id := range []string{backupID, long} {
		ns := ScratchNamespace(id)
		if len(ns) > 63 || !strings.HasPrefix(ns, "kbak-verify-") || ns != strings.ToLower(ns) {
			t.Errorf("ScratchNamespace(%s) = %s: want a DNS label starting kbak-verify-", id, ns)
		}
	}
	if ScratchNamespace(long) == ScratchNamespace(long[1:]) {
		t.Error("two long ids share a scratch namespace")
	}
}
