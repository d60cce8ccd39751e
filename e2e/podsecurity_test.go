//go:build e2e

package e2e

import (
	"fmt"
	"strings"
	"testing"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/utils/ptr"

	"github.com/kbak/kbak/deploy"
	"github.com/kbak/kbak/internal/catalog"
	"github.com/kbak/kbak/internal/doctor"
	"github.com/kbak/kbak/restore"
)

// enforcePodSecurity makes the API server's PodSecurity admission enforce
// level in ns.
func enforcePodSecurity(t *testing.T, e *env, ns, level string) {
	t.Helper()
	patch := fmt.Sprintf(`{"metadata":{"labels":{"pod-security.kubernetes.io/enforce":%q}}}`, level)
	if _, err := e.Kube.CoreV1().Namespaces().Patch(ctx(t), ns, types.MergePatchType, []byte(patch), metav1.PatchOptions{}); err != nil {
		t.Fatalf("label namespace %s: %v", ns, err)
	}
}

// restrictedApp makes a StatefulSet's pods pass Pod Security "restricted":
// uid 1001, gid 1001, fsGroup 1002 (changed on the volume's root only, as
// databases ask), no capabilities.
func restrictedApp(spec *corev1.PodSpec) {
	spec.SecurityContext = &corev1.PodSecurityContext{
		RunAsNonRoot: ptr.To(true), RunAsUser: ptr.To[int64](1001), RunAsGroup: ptr.To[int64](1001),
		FSGroup: ptr.To[int64](1002), FSGroupChangePolicy: ptr.To(corev1.FSGroupChangeOnRootMismatch),
		SeccompProfile: &corev1.SeccompProfile{Type: corev1.SeccompProfileTypeRuntimeDefault},
	}
	for i := range spec.Containers {
		spec.Containers[i].SecurityContext = &corev1.SecurityContext{
			AllowPrivilegeEscalation: ptr.To(false),
			Capabilities:             &corev1.Capabilities{Drop: []corev1.Capability{"ALL"}},
		}
	}
}

// databaseScript fills a volume as a database running as its own user
// does: private directories and files, a symlink, a hard link.
const databaseScript = `set -e
cd "$1"
mkdir -p pgdata/base/1 pgdata/pg_wal
echo "$2" > pgdata/PG_VERSION
head -c 131072 /dev/urandom > pgdata/base/1/16384
head -c 65536 /dev/urandom > pgdata/pg_wal/000000010000000000000001
ln -f pgdata/PG_VERSION pgdata/version.link
ln -sf base/1/16384 pgdata/current
chmod 0600 pgdata/PG_VERSION pgdata/base/1/16384 pgdata/pg_wal/000000010000000000000001
chmod 0700 pgdata pgdata/base pgdata/base/1 pgdata/pg_wal
sync
`

// In a namespace that enforces Pod Security "restricted", kbak's movers
// run as the application's user: a backup through a snapshot and one of
// live files, and the restore of both, round-trip a database-like tree with
// its owners and modes, and no pod kbak makes is refused. Privileged
// movers asked for there are refused before anything is created.
func TestMoversUnderRestricted(t *testing.T) {
	e := newEnv(t)
	ns := createNamespace(t, e, "psa-restricted")
	enforcePodSecurity(t, e, ns, "restricted")
	sts := applyStatefulSet(t, e, ns, "db", 1, e.SnapClass,
		withClaims(newClaim("data"), newClaim("wal").MountAt("/wal").Class(e.NoSnapClass)),
		withPodSpec(restrictedApp))
	for _, dir := range []string{"/data", "/wal"} {
		mustExec(t, e, ns, "db-0", "app", "sh", "-c", databaseScript, "write", dir, "restricted "+dir)
	}
	// The bed enforces what the label says: a root pod is refused.
	root := &corev1.Pod{ObjectMeta: metav1.ObjectMeta{Name: "root", Namespace: ns}, Spec: corev1.PodSpec{
		Containers: []corev1.Container{{Name: "main", Image: e.UtilImage, ImagePullPolicy: corev1.PullNever, Command: sleeper}},
	}}
	if _, err := e.Kube.CoreV1().Pods(ns).Create(ctx(t), root, metav1.CreateOptions{}); err == nil || !strings.Contains(err.Error(), "violates PodSecurity") {
		t.Fatalf("a root pod in a restricted namespace: %v, want refused by Pod Security admission", err)
	}
	want := readStatefulSetData(t, e, ns, sts)
	for key, rec := range want {
		if fi := rec["./pgdata/PG_VERSION"]; fi.UID != 1001 || fi.Mode != "0600" {
			t.Fatalf("%s: the app wrote PG_VERSION as %s, want uid 1001 mode 0600", key, fi)
		}
	}

	r := runKbak(t, e, "doctor", "sts/db", "-n", ns, "-o", "json")
	var checks []doctor.Check
	if err := decodeList(r, "DoctorCheckList", &checks); err != nil {
		t.Fatalf("decode doctor output: %v\n%s", err, r)
	}
	if c := findCheck(checks, "pod security in "+ns); c.Level != doctor.LevelOK || !strings.Contains(c.Detail, "enforces restricted: movers run unprivileged, as uid 1001") {
		t.Errorf("doctor's pod security check: %+v", c)
	}

	r = runKbak(t, e, "backup", "sts/db", "-n", ns, "--mover-security", "privileged")
	if r.code != 2 {
		t.Fatalf("--mover-security privileged under restricted: want exit 2, got %s", r)
	}
	lastErrorLine(t, r, "privileged", `"restricted"`, "--mover-security unprivileged")
	noLeftovers(t, e, ns, false)

	m, r := backupJSON(t, e, ns, "db", 0)
	if m.Status != catalog.StatusCompleted || m.MoverSecurity != string(deploy.SecurityUnprivileged) {
		t.Fatalf("backup status %s mover security %q, want Completed and unprivileged\n%s", m.Status, m.MoverSecurity, r)
	}
	methods := map[string]catalog.Method{}
	for _, v := range m.Volumes {
		methods[v.ClaimTemplate] = v.Method
		if v.Unreadable != 0 {
			t.Errorf("%s: %d unreadable files", v.PVC, v.Unreadable)
		}
	}
	if methods["data"] != catalog.MethodSnapshot || methods["wal"] != catalog.MethodFiles {
		t.Errorf("methods %v, want data by snapshot and wal by files", methods)
	}
	checkBackedUp(t, e, m, want)
	noLeftovers(t, e, ns, false)

	res, _ := restoreJSON(t, e, 0, m.ID, "--to-name", "copy", "--create-statefulset")
	if res.MoverSecurity != deploy.SecurityUnprivileged || !res.StatefulSetReady {
		t.Fatalf("restore mover security %q ready %v, want unprivileged and ready", res.MoverSecurity, res.StatefulSetReady)
	}
	checkOwnersSet(t, res)
	compareRecords(t, want, readStatefulSetData(t, e, ns, statefulSet(t, e, ns, "copy")))
	noLeftovers(t, e, ns, false)
}

func findCheck(checks []doctor.Check, name string) doctor.Check {
	for _, c := range checks {
		if c.Name == name {
			return c
		}
	}
	return doctor.Check{Name: name, Level: "missing"}
}

// checkOwnersSet fails for every entry below a claim's root whose owner
// the restore could not set: the app's own files round-trip whole. (A
// fresh volume's root is the kubelet's, and the mover only sets what it
// owns.)
func checkOwnersSet(t *testing.T, res *restore.Result) {
	t.Helper()
	for _, o := range res.Ordinals {
		for _, c := range o.Claims {
			for _, n := range c.OwnersNotSetNames {
				if n != "." {
					t.Errorf("%s: owner of %s not set (%d in all)", c.PVC, n, c.OwnersNotSet)
				}
			}
		}
	}
}

// Under Pod Security "baseline" kbak's movers run as root with baseline's
// capabilities: an application running as root, with files of several
// owners, round-trips through both methods; privileged movers are refused
// before anything is created, even where the namespace opts in.
func TestMoversUnderBaseline(t *testing.T) {
	e := newEnv(t)
	ns := createNamespace(t, e, "psa-baseline")
	enforcePodSecurity(t, e, ns, "baseline")
	patch := `{"metadata":{"annotations":{"kbak.io/privileged-movers":"true"}}}`
	if _, err := e.Kube.CoreV1().Namespaces().Patch(ctx(t), ns, types.MergePatchType, []byte(patch), metav1.PatchOptions{}); err != nil {
		t.Fatal(err)
	}
	sts := applyStatefulSet(t, e, ns, "db", 1, e.SnapClass,
		withClaims(newClaim("data"), newClaim("wal").MountAt("/wal").Class(e.NoSnapClass)))
	want := writeOrdinalData(t, e, ns, sts)

	r := runKbak(t, e, "backup", "sts/db", "-n", ns, "--mover-security", "privileged")
	if r.code != 2 {
		t.Fatalf("--mover-security privileged under baseline: want exit 2, got %s", r)
	}
	lastErrorLine(t, r, "privileged", `"baseline"`)
	noLeftovers(t, e, ns, false)

	m, r := backupJSON(t, e, ns, "db", 0)
	if m.Status != catalog.StatusCompleted || m.MoverSecurity != string(deploy.SecurityBaseline) {
		t.Fatalf("backup status %s mover security %q, want Completed and baseline\n%s", m.Status, m.MoverSecurity, r)
	}
	checkBackedUp(t, e, m, want)

	res, _ := restoreJSON(t, e, 0, m.ID, "--to-name", "copy", "--create-statefulset")
	if res.MoverSecurity != deploy.SecurityBaseline || !res.StatefulSetReady {
		t.Fatalf("restore mover security %q ready %v, want baseline and ready", res.MoverSecurity, res.StatefulSetReady)
	}
	for _, o := range res.Ordinals {
		for _, c := range o.Claims {
			if c.OwnersNotSet != 0 {
				t.Errorf("%s: a root restore could not set %d owners: %v", c.PVC, c.OwnersNotSet, c.OwnersNotSetNames)
			}
		}
	}
	compareRecords(t, want, readStatefulSetData(t, e, ns, statefulSet(t, e, ns, "copy")))
	noLeftovers(t, e, ns, false)
}
