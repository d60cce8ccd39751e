package deploy

import (
	rbacv1 "k8s.io/api/rbac/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
)

// API groups of the objects kbak touches.
const (
	groupCore          = ""
	groupApps          = "apps"
	groupSnapshot      = "snapshot.storage.k8s.io"
	groupGroupSnapshot = "groupsnapshot.storage.k8s.io"
	groupRBAC          = "rbac.authorization.k8s.io"
)

// BackupRules are the namespaced permissions of `kbak backup` in the
// StatefulSet's namespace, and nothing more: every rule matches an API call
// in backup/ or internal/kube/.
//
// secret is the store credentials Secret given with --secret; kbak only
// checks its keys, the mover pods read it through the kubelet, so get on that
// one name is enough and kbak never creates Secrets. An empty secret grants
// nothing on Secrets. hooks adds pods/exec, which a backup without
// --pre-hook/--post-hook does not need.
//
// keySecret is the Secret with the write key of an encrypted repository
// (--key-secret): kbak reads it, the movers mount it.
func BackupRules(secret, keySecret string, hooks bool) []rbacv1.PolicyRule {
	rules := []rbacv1.PolicyRule{
		// discovery: the StatefulSet, its claims and its pods (for the node
		// of a ReadWriteOnce volume and for hooks)
		{APIGroups: []string{groupApps}, Resources: []string{"statefulsets"}, Verbs: []string{"get"}},
		// temporary claims from snapshots; list and delete find them again
		// at cleanup by label. patch puts the label kbak.io/group on the
		// source claims while their VolumeGroupSnapshot is cut, and takes
		// it off: a merge patch of that one label
		{APIGroups: []string{groupCore}, Resources: []string{"persistentvolumeclaims"}, Verbs: []string{"create", "delete", "get", "list", "patch"}},
		// mover pods: created, polled, their logs streamed, deleted
		{APIGroups: []string{groupCore}, Resources: []string{"pods"}, Verbs: []string{"create", "delete", "get", "list"}},
		{APIGroups: []string{groupCore}, Resources: []string{"pods/log"}, Verbs: []string{"get"}},
		// patch marks a snapshot kept (--keep-snapshots) and releases it
		{APIGroups: []string{groupSnapshot}, Resources: []string{"volumesnapshots"}, Verbs: []string{"create", "delete", "get", "list", "patch"}},
		// one VolumeGroupSnapshot a CSI driver (--group), deleted with the
		// run; its members are VolumeSnapshots
		{APIGroups: []string{groupGroupSnapshot}, Resources: []string{"volumegroupsnapshots"}, Verbs: []string{"create", "delete", "get", "list"}},
		// the Event each run records on the StatefulSet
		{APIGroups: []string{groupCore}, Resources: []string{"events"}, Verbs: []string{"create"}},
		// the namespace's Pod Security level, which decides how movers
		// run; bound in the namespace, this reads that namespace only
		{APIGroups: []string{groupCore}, Resources: []string{"namespaces"}, Verbs: []string{"get"}},
	}
	if hooks {
		rules = append(rules, rbacv1.PolicyRule{APIGroups: []string{groupCore}, Resources: []string{"pods/exec"}, Verbs: []string{"create"}})
	}
	var names []string
	for _, s := range []string{secret, keySecret} {
		if s != "" {
			names = append(names, s)
		}
	}
	if len(names) > 0 {
		rules = append(rules, rbacv1.PolicyRule{APIGroups: []string{groupCore}, Resources: []string{"secrets"}, Verbs: []string{"get"}, ResourceNames: names})
	}
	return rules
}

// ClusterReadRules are the cluster-scoped reads of `kbak backup`: the bound
// volume of each claim, the snapshot classes and the content behind a
// snapshot, and the kube-system namespace whose UID is the cluster id in
// every manifest. Nothing is written at cluster scope.
func ClusterReadRules() []rbacv1.PolicyRule {
	return []rbacv1.PolicyRule{
		{APIGroups: []string{groupCore}, Resources: []string{"persistentvolumes"}, Verbs: []string{"get"}},
		{APIGroups: []string{groupSnapshot}, Resources: []string{"volumesnapshotclasses"}, Verbs: []string{"get", "list"}},
		{APIGroups: []string{groupSnapshot}, Resources: []string{"volumesnapshotcontents"}, Verbs: []string{"get"}},
		{APIGroups: []string{groupGroupSnapshot}, Resources: []string{"volumegroupsnapshotclasses"}, Verbs: []string{"get", "list"}},
		// a group's content tells first that the storage cut the group,
		// which ends the quiesce
		{APIGroups: []string{groupGroupSnapshot}, Resources: []string{"volumegroupsnapshotcontents"}, Verbs: []string{"get"}},
		{APIGroups: []string{groupCore}, Resources: []string{"namespaces"}, Verbs: []string{"get"}, ResourceNames: []string{metav1.NamespaceSystem}},
	}
}

func role(ns, name string, labels map[string]string, rules []rbacv1.PolicyRule) *rbacv1.Role {
	return &rbacv1.Role{
		TypeMeta:   metav1.TypeMeta{APIVersion: "rbac.authorization.k8s.io/v1", Kind: "Role"},
		ObjectMeta: metav1.ObjectMeta{Name: name, Namespace: ns, Labels: labels},
		Rules:      rules,
	}
}

func clusterRole(name string, labels map[string]string, rules []rbacv1.PolicyRule) *rbacv1.ClusterRole {
	return &rbacv1.ClusterRole{
		TypeMeta:   metav1.TypeMeta{APIVersion: "rbac.authorization.k8s.io/v1", Kind: "ClusterRole"},
		ObjectMeta: metav1.ObjectMeta{Name: name, Labels: labels},
		Rules:      rules,
	}
}

// roleBinding binds a Role (kind "Role") or a ClusterRole (kind
// "ClusterRole", granted only in ns) to a ServiceAccount.
func roleBinding(ns, name string, labels map[string]string, kind, roleName string, sa subject) *rbacv1.RoleBinding {
	return &rbacv1.RoleBinding{
		TypeMeta:   metav1.TypeMeta{APIVersion: "rbac.authorization.k8s.io/v1", Kind: "RoleBinding"},
		ObjectMeta: metav1.ObjectMeta{Name: name, Namespace: ns, Labels: labels},
		RoleRef:    rbacv1.RoleRef{APIGroup: groupRBAC, Kind: kind, Name: roleName},
		Subjects:   []rbacv1.Subject{sa.subject()},
	}
}

func clusterRoleBinding(name string, labels map[string]string, roleName string, sa subject) *rbacv1.ClusterRoleBinding {
	return &rbacv1.ClusterRoleBinding{
		TypeMeta:   metav1.TypeMeta{APIVersion: "rbac.authorization.k8s.io/v1", Kind: "ClusterRoleBinding"},
		ObjectMeta: metav1.ObjectMeta{Name: name, Labels: labels},
		RoleRef:    rbacv1.RoleRef{APIGroup: groupRBAC, Kind: "ClusterRole", Name: roleName},
		Subjects:   []rbacv1.Subject{sa.subject()},
	}
}

// subject names a ServiceAccount.
type subject struct{ namespace, name string }

func (s subject) subject() rbacv1.Subject {
	return rbacv1.Subject{Kind: rbacv1.ServiceAccountKind, Namespace: s.namespace, Name: s.name}
}
