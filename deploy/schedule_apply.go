package deploy

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"

	appsv1 "k8s.io/api/apps/v1"
	batchv1 "k8s.io/api/batch/v1"
	corev1 "k8s.io/api/core/v1"
	rbacv1 "k8s.io/api/rbac/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/client-go/kubernetes"
	"sigs.k8s.io/yaml"
)

// FieldManager owns the fields kbak applies, so a second apply updates them
// and leaves fields set by others alone.
const FieldManager = "kbak"

// manifestJSON is obj as a manifest: no status and no null creation
// timestamps, which typed objects marshal but nobody writes.
func manifestJSON(obj runtime.Object) ([]byte, error) {
	raw, err := json.Marshal(obj)
	if err != nil {
		return nil, fmt.Errorf("encode %T: %w", obj, err)
	}
	var m map[string]any
	if err := json.Unmarshal(raw, &m); err != nil {
		return nil, fmt.Errorf("encode %T: %w", obj, err)
	}
	delete(m, "status")
	dropNullTimestamps(m)
	return json.Marshal(m)
}

func dropNullTimestamps(v any) {
	switch v := v.(type) {
	case map[string]any:
		for k, e := range v {
			if k == "creationTimestamp" && e == nil {
				delete(v, k)
				continue
			}
			dropNullTimestamps(e)
		}
	case []any:
		for _, e := range v {
			dropNullTimestamps(e)
		}
	}
}

// YAML renders objects as one multi-document YAML stream, as
// `--dry-run=client -o yaml` prints it and `kubectl apply -f` reads it.
func YAML(objs ...runtime.Object) ([]byte, error) {
	var buf bytes.Buffer
	for i, obj := range objs {
		j, err := manifestJSON(obj)
		if err != nil {
			return nil, err
		}
		y, err := yaml.JSONToYAML(j)
		if err != nil {
			return nil, fmt.Errorf("encode %T as YAML: %w", obj, err)
		}
		if i > 0 {
			buf.WriteString("---\n")
		}
		buf.Write(y)
	}
	return buf.Bytes(), nil
}

// List renders objects as one JSON v1 List, the form in which `kubectl
// apply -f` reads several objects from one JSON document.
func List(objs ...runtime.Object) ([]byte, error) {
	items := make([]json.RawMessage, 0, len(objs))
	for _, obj := range objs {
		j, err := manifestJSON(obj)
		if err != nil {
			return nil, err
		}
		items = append(items, j)
	}
	b, err := json.Marshal(struct {
		APIVersion string            `json:"apiVersion"`
		Kind       string            `json:"kind"`
		Items      []json.RawMessage `json:"items"`
	}{"v1", "List", items})
	if err != nil {
		return nil, fmt.Errorf("encode List: %w", err)
	}
	return b, nil
}

// Apply creates or updates objs in order with server-side apply. It stops at
// the first error, naming the object; what was applied before stays, and a
// second Apply (or `kbak schedule delete`) finishes or undoes it.
func Apply(ctx context.Context, kc kubernetes.Interface, objs ...runtime.Object) error {
	force := true
	opts := metav1.PatchOptions{FieldManager: FieldManager, Force: &force}
	for _, obj := range objs {
		data, err := manifestJSON(obj)
		if err != nil {
			return err
		}
		var kind, ns, name string
		switch o := obj.(type) {
		case *corev1.Namespace:
			kind, name = "Namespace", o.Name
			_, err = kc.CoreV1().Namespaces().Patch(ctx, name, types.ApplyPatchType, data, opts)
		case *corev1.ServiceAccount:
			kind, ns, name = "ServiceAccount", o.Namespace, o.Name
			_, err = kc.CoreV1().ServiceAccounts(ns).Patch(ctx, name, types.ApplyPatchType, data, opts)
		case *corev1.ConfigMap:
			kind, ns, name = "ConfigMap", o.Namespace, o.Name
			_, err = kc.CoreV1().ConfigMaps(ns).Patch(ctx, name, types.ApplyPatchType, data, opts)
		case *corev1.Service:
			kind, ns, name = "Service", o.Namespace, o.Name
			_, err = kc.CoreV1().Services(ns).Patch(ctx, name, types.ApplyPatchType, data, opts)
		case *rbacv1.Role:
			kind, ns, name = "Role", o.Namespace, o.Name
			_, err = kc.RbacV1().Roles(ns).Patch(ctx, name, types.ApplyPatchType, data, opts)
		case *rbacv1.RoleBinding:
			kind, ns, name = "RoleBinding", o.Namespace, o.Name
			_, err = kc.RbacV1().RoleBindings(ns).Patch(ctx, name, types.ApplyPatchType, data, opts)
		case *rbacv1.ClusterRole:
			kind, name = "ClusterRole", o.Name
			_, err = kc.RbacV1().ClusterRoles().Patch(ctx, name, types.ApplyPatchType, data, opts)
		case *rbacv1.ClusterRoleBinding:
			kind, name = "ClusterRoleBinding", o.Name
			_, err = kc.RbacV1().ClusterRoleBindings().Patch(ctx, name, types.ApplyPatchType, data, opts)
		case *batchv1.CronJob:
			kind, ns, name = "CronJob", o.Namespace, o.Name
			_, err = kc.BatchV1().CronJobs(ns).Patch(ctx, name, types.ApplyPatchType, data, opts)
		case *appsv1.Deployment:
			kind, ns, name = "Deployment", o.Namespace, o.Name
			_, err = kc.AppsV1().Deployments(ns).Patch(ctx, name, types.ApplyPatchType, data, opts)
		default:
			return fmt.Errorf("apply %T: kbak does not apply this kind", obj)
		}
		if err != nil {
			if ns != "" {
				return fmt.Errorf("apply %s %s/%s: %w", kind, ns, name, err)
			}
			return fmt.Errorf("apply %s %s: %w", kind, name, err)
		}
	}
	return nil
}
