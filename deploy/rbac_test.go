package deploy

import (
	"slices"
	"testing"

	rbacv1 "k8s.io/api/rbac/v1"
)

// allows reports whether rules grant verb on group/resource (named name,
// "" for a collection), as the RBAC authorizer decides it.
func allows(rules []rbacv1.PolicyRule, verb, group, resource, name string) bool {
	match := func(list []string, v string) bool {
		return slices.Contains(list, v) || slices.Contains(list, rbacv1.ResourceAll)
	}
	for _, r := range rules {
		if !match(r.Verbs, verb) || !match(r.APIGroups, group) || !match(r.Resources, resource) {
			continue
		}
		if len(r.ResourceNames) == 0 || (name != "" && slices.Contains(r.ResourceNames, name)) {
			return true
		}
	}
	return false
}

type apiCall struct{ verb, group, resource, name string }

// backupCalls are the API calls of `kbak backup` in its namespace, as in
// backup/ and internal/kube/.
var backupCalls = []apiCall{
	{"get", "apps", "statefulsets", "db"},
	{"list", "", "persistentvolumeclaims", ""},
	{"create", "", "persistentvolumeclaims", ""},
	{"get", "", "persistentvolumeclaims", "kbak-x"},
	{"delete", "", "persistentvolumeclaims", "kbak-x"},
	{"create", "", "pods", ""},
	{"get", "", "pods", "db-0"},
	{"list", "", "pods", ""},
	{"delete", "", "pods", "kbak-x"},
	{"get", "", "pods/log", "kbak-x"},
	{"create", "snapshot.storage.k8s.io", "volumesnapshots", ""},
	{"get", "snapshot.storage.k8s.io", "volumesnapshots", "kbak-x"},
	{"list", "snapshot.storage.k8s.io", "volumesnapshots", ""},
	{"patch", "snapshot.storage.k8s.io", "volumesnapshots", "kbak-x"},
	{"delete", "snapshot.storage.k8s.io", "volumesnapshots", "kbak-x"},
	{"patch", "", "persistentvolumeclaims", "data-db-0"},
	{"create", "groupsnapshot.storage.k8s.io", "volumegroupsnapshots", ""},
	{"get", "groupsnapshot.storage.k8s.io", "volumegroupsnapshots", "kbak-x"},
	{"list", "groupsnapshot.storage.k8s.io", "volumegroupsnapshots", ""},
	{"delete", "groupsnapshot.storage.k8s.io", "volumegroupsnapshots", "kbak-x"},
}

var clusterCalls = []apiCall{
	{"get", "", "persistentvolumes", "pv-1"},
	{"get", "snapshot.storage.k8s.io", "volumesnapshotclasses", "csi"},
	{"list", "snapshot.storage.k8s.io", "volumesnapshotclasses", ""},
	{"get", "snapshot.storage.k8s.io", "volumesnapshotcontents", "snapcontent-1"},
	{"get", "groupsnapshot.storage.k8s.io", "volumegroupsnapshotclasses", "csi"},
	{"list", "groupsnapshot.storage.k8s.io", "volumegroupsnapshotclasses", ""},
	{"get", "groupsnapshot.storage.k8s.io", "volumegroupsnapshotcontents", "groupsnapcontent-1"},
	{"get", "", "namespaces", "kube-system"},
}

func TestBackupRules(t *testing.T) {
	hookCall := apiCall{"create", "", "pods/exec", "db-0"}
	secretCall := apiCall{"get", "", "secrets", "store"}
	denied := []apiCall{
		{"get", "", "secrets", "other"},
		{"list", "", "secrets", ""},
		{"create", "", "secrets", ""},
		{"watch", "", "secrets", ""},
		{"delete", "", "secrets", "store"},
		{"update", "apps", "statefulsets", "db"},
		{"delete", "apps", "statefulsets", "db"},
		{"update", "", "persistentvolumeclaims", "data-db-0"},
		{"update", "groupsnapshot.storage.k8s.io", "volumegroupsnapshots", "kbak-x"},
		{"deletecollection", "", "persistentvolumeclaims", ""},
		{"create", "", "pods/attach", "db-0"},
		{"create", "", "serviceaccounts/token", "default"},
		{"create", "rbac.authorization.k8s.io", "roles", ""},
	}
	tests := []struct {
		name   string
		secret string
		hooks  bool
	}{
		{"credentials from a Secret", "store", false},
		{"hooks", "store", true},
		{"no Secret", "", false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			rules := BackupRules(tt.secret, "", tt.hooks)
			for _, c := range backupCalls {
				if !allows(rules, c.verb, c.group, c.resource, c.name) {
					t.Errorf("backup needs %s %s/%s %s", c.verb, c.group, c.resource, c.name)
				}
			}
			if got := allows(rules, hookCall.verb, hookCall.group, hookCall.resource, hookCall.name); got != tt.hooks {
				t.Errorf("pods/exec allowed %v with hooks %v", got, tt.hooks)
			}
			if got := allows(rules, secretCall.verb, secretCall.group, secretCall.resource, secretCall.name); got != (tt.secret != "") {
				t.Errorf("get secret store allowed %v with --secret %q", got, tt.secret)
			}
			for _, c := range denied {
				if allows(rules, c.verb, c.group, c.resource, c.name) {
					t.Errorf("%s %s/%s %s is allowed, backup does not need it", c.verb, c.group, c.resource, c.name)
				}
			}
			// Bound in a namespace, get on namespaces reads that one only:
			// the API server gives a namespace's own name as the request's
			// namespace. Its Pod Security level decides how movers run.
			if !allows(rules, "get", "", "namespaces", "shop") {
				t.Error("backup needs get on its namespace")
			}
			for _, c := range clusterCalls {
				if c.resource == "namespaces" {
					continue
				}
				if allows(rules, c.verb, c.group, c.resource, c.name) {
					t.Errorf("namespaced rules name cluster-scoped %s", c.resource)
				}
			}
			for _, r := range rules {
				for _, f := range [][]string{r.Verbs, r.APIGroups, r.Resources} {
					if slices.Contains(f, "*") {
						t.Errorf("wildcard in rule %+v", r)
					}
				}
			}
		})
	}
}

func TestClusterReadRules(t *testing.T) {
	rules := ClusterReadRules()
	for _, c := range clusterCalls {
		if !allows(rules, c.verb, c.group, c.resource, c.name) {
			t.Errorf("backup needs %s %s/%s %s", c.verb, c.group, c.resource, c.name)
		}
	}
	for _, c := range []apiCall{
		{"get", "", "namespaces", "shop"},
		{"list", "", "namespaces", ""},
		{"list", "", "persistentvolumes", ""},
		{"delete", "", "persistentvolumes", "pv-1"},
		{"get", "", "secrets", "store"},
		{"list", "", "secrets", ""},
		{"create", "snapshot.storage.k8s.io", "volumesnapshotcontents", ""},
		{"delete", "snapshot.storage.k8s.io", "volumesnapshotcontents", "c"},
	} {
		if allows(rules, c.verb, c.group, c.resource, c.name) {
			t.Errorf("cluster rules allow %s %s/%s %s", c.verb, c.group, c.resource, c.name)
		}
	}
	for _, r := range rules {
		for _, v := range r.Verbs {
			if v != "get" && v != "list" {
				t.Errorf("cluster rule %+v writes", r)
			}
		}
	}
}
