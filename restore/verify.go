package restore

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"time"

	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/util/wait"

	"github.com/kbak/kbak/internal/catalog"
	"github.com/kbak/kbak/internal/kube"
)

// VerifyResult is the outcome of a test restore.
type VerifyResult struct {
	BackupID  string           `json:"backupID"`
	RunID     string           `json:"runID"`
	Namespace string           `json:"namespace"` // the scratch namespace, removed again
	OK        bool             `json:"ok"`
	Volumes   []VerifiedVolume `json:"volumes"`
	// NotVerified lists volumes the backup holds no data for.
	NotVerified []string `json:"notVerified,omitempty"`
}

// VerifiedVolume compares one restored volume with the manifest.
type VerifiedVolume struct {
	PVC       string `json:"pvc"`
	Ordinal   int    `json:"ordinal"`
	OK        bool   `json:"ok"`
	WantFiles int64  `json:"wantFiles"`
	GotFiles  int64  `json:"gotFiles"`
	WantBytes int64  `json:"wantRawBytes"`
	GotBytes  int64  `json:"gotRawBytes"`
	Error     string `json:"error,omitempty"`
}

// ScratchNamespace is the namespace a test restore of backup id uses.
func ScratchNamespace(id string) string { return kube.Name("kbak-verify", id) }

// VerifyRestore restores every backed-up volume of m from the store into a
// scratch namespace, kbak-verify-<id>, and compares each volume's file count
// and byte total, as the mover extracted them after checking the sha256,
// with the manifest. The namespace is created for the test and deleted on
// every path. Of opts it uses the repository, credentials, mover and
// timeout settings and StorageClassMap; the rest is set for the test. A
// volume that differs or fails gives an error wrapping ErrVerifyMismatch
// with the result; errors before anything ran come with a nil result.
func VerifyRestore(ctx context.Context, deps Deps, m *catalog.Manifest, opts Options) (*VerifyResult, error) {
	deps.setDefaults()
	opts.setDefaults()
	if m == nil || deps.Kube == nil {
		return nil, errors.New("restore: a manifest and a Kubernetes client are required")
	}
	ns := ScratchNamespace(m.ID)
	runID := opts.ID
	if runID == "" {
		id, err := newRunID(m.StatefulSet, deps.Now(), deps.Rand)
		if err != nil {
			return nil, err
		}
		runID = id
	}
	log := deps.Log.With("backup_id", m.ID, "restore_id", runID, "namespace", ns)

	if err := createScratch(ctx, deps, ns, runID, m, opts); err != nil {
		return nil, err
	}
	defer func() {
		ctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), opts.CleanupTimeout)
		defer cancel()
		deleteNamespace(ctx, deps, ns, runID, log)
		if err := waitNamespaceGone(ctx, deps, ns, opts); err != nil {
			log.Warn("scratch namespace still there (delete it with kubectl delete namespace)", "err", err)
		}
	}()

	o := opts
	o.ID, o.ToNamespace, o.ToName = runID, ns, ""
	o.Ordinals, o.CreateStatefulSet, o.FromStore, o.NoCreateNamespace = nil, false, true, true
	o.everyVolume = true
	plan, err := NewPlan(ctx, deps, m, o)
	if err != nil {
		return nil, fmt.Errorf("plan test restore of %s: %w", m.ID, err)
	}
	out := &VerifyResult{BackupID: m.ID, RunID: runID, Namespace: ns}
	for _, v := range m.Volumes {
		if v.Status != catalog.VolumeCompleted {
			out.NotVerified = append(out.NotVerified, fmt.Sprintf("%s (%s)", v.PVC, strings.ToLower(string(v.Status))))
		}
	}
	res, runErr := Run(ctx, deps, plan)
	if res == nil {
		return nil, fmt.Errorf("test restore of %s: %w", m.ID, runErr)
	}
	if ctx.Err() != nil {
		return nil, fmt.Errorf("test restore of %s interrupted: %w", m.ID, context.Cause(ctx))
	}
	out.OK = compare(plan, res, out)
	if !out.OK {
		var bad []string
		for _, v := range out.Volumes {
			if !v.OK {
				bad = append(bad, v.PVC+": "+v.Error)
			}
		}
		return out, fmt.Errorf("%w: %s: %s", ErrVerifyMismatch, m.ID, strings.Join(bad, "; "))
	}
	return out, nil
}

// compare fills out.Volumes from the planned and the restored claims and
// reports whether every one matched.
func compare(plan *Plan, res *Result, out *VerifyResult) bool {
	got := map[string]ClaimResult{}
	for _, o := range res.Ordinals {
		for _, c := range o.Claims {
			got[c.PVC] = c
		}
	}
	ok := len(plan.Claims) > 0
	for _, c := range plan.Claims {
		v := VerifiedVolume{PVC: c.SourcePVC, Ordinal: c.Ordinal, WantFiles: c.Files, WantBytes: c.RawBytes}
		r, found := got[c.Name]
		switch {
		case !found:
			v.Error = "not restored"
		case r.Status != StatusRestored:
			v.Error = r.Error
		default:
			v.GotFiles, v.GotBytes = r.Files, r.RawBytes
			if v.GotFiles != v.WantFiles || v.GotBytes != v.WantBytes {
				v.Error = fmt.Sprintf("restored %d files and %d bytes, the backup recorded %d files and %d bytes", v.GotFiles, v.GotBytes, v.WantFiles, v.WantBytes)
			}
		}
		v.OK = v.Error == ""
		ok = ok && v.OK
		out.Volumes = append(out.Volumes, v)
	}
	return ok
}

// createScratch creates the scratch namespace; one left by an earlier test
// of the same backup that died is deleted first.
func createScratch(ctx context.Context, deps Deps, ns, runID string, m *catalog.Manifest, opts Options) error {
	api := deps.Kube.CoreV1().Namespaces()
	labels := kube.RestoreLabels(runID, m.StatefulSet, kube.RoleVerify)
	labels[kube.LabelRestoredFrom] = kube.LabelValue(m.ID)
	obj := &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: ns, Labels: labels}}
	_, err := api.Create(ctx, obj, metav1.CreateOptions{})
	if apierrors.IsAlreadyExists(err) {
		old, gerr := api.Get(ctx, ns, metav1.GetOptions{})
		if gerr != nil {
			return fmt.Errorf("get namespace %s: %w", ns, gerr)
		}
		if old.Labels[kube.LabelManagedBy] != kube.ManagedByValue || old.Labels[kube.LabelRole] != kube.RoleVerify {
			return fmt.Errorf("namespace %s exists and is not a kbak test namespace: delete or rename it to test-restore this backup", ns)
		}
		deps.Log.Info("deleting the scratch namespace of an earlier test restore", "namespace", ns)
		if err := api.Delete(ctx, ns, metav1.DeleteOptions{}); err != nil && !apierrors.IsNotFound(err) {
			return fmt.Errorf("delete namespace %s: %w", ns, err)
		}
		if err := waitNamespaceGone(ctx, deps, ns, opts); err != nil {
			return err
		}
		_, err = api.Create(ctx, obj, metav1.CreateOptions{})
	}
	if err != nil {
		return fmt.Errorf("create namespace %s: %w", ns, err)
	}
	return nil
}

func waitNamespaceGone(ctx context.Context, deps Deps, ns string, opts Options) error {
	err := wait.PollUntilContextTimeout(ctx, opts.PollInterval, opts.CleanupTimeout, true, func(ctx context.Context) (bool, error) {
		_, err := deps.Kube.CoreV1().Namespaces().Get(ctx, ns, metav1.GetOptions{})
		return apierrors.IsNotFound(err), nil
	})
	if err != nil {
		return fmt.Errorf("wait for namespace %s to go: not gone after %s", ns, opts.CleanupTimeout.Round(time.Second))
	}
	return nil
}
