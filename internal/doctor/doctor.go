package doctor

import (
	"context"
	"fmt"
	"slices"
	"strings"

	snapclient "github.com/kubernetes-csi/external-snapshotter/client/v8/clientset/versioned"
	authv1 "k8s.io/api/authorization/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/kubernetes"

	"github.com/kbak/kbak/deploy"
	"github.com/kbak/kbak/internal/hint"
	"github.com/kbak/kbak/internal/kube"
	"github.com/kbak/kbak/internal/moverrun"
)

// Level grades a finding.
type Level string

// Levels. Only LevelFail makes the doctor's verdict negative.
const (
	LevelOK   Level = "ok"
	LevelWarn Level = "warn"
	LevelFail Level = "fail"
)

// Check is one finding.
type Check struct {
	Name   string `json:"name"`
	Level  Level  `json:"level"`
	Detail string `json:"detail"`
	Advice string `json:"advice,omitempty"`
}

// Failed reports whether any check failed.
func Failed(checks []Check) bool {
	return slices.ContainsFunc(checks, func(c Check) bool { return c.Level == LevelFail })
}

// Options say where to look.
type Options struct {
	Namespace   string
	StatefulSet string // optional: also check this StatefulSet's claims
	// Spell names settings in the advice, in the caller's terms; default
	// hint.Plain.
	Spell hint.Spelling
}

// need is one permission kbak uses, with what it is for.
type need struct {
	group, resource, sub, verb string
	clusterWide                bool
	why                        string
}

// needs lists what a backup and a restore do in the cluster.
var needs = []need{
	{"apps", "statefulsets", "", "get", false, "read the StatefulSet"},
	{"", "persistentvolumeclaims", "", "list", false, "find claims"},
	{"", "persistentvolumeclaims", "", "create", false, "temporary and restored PVCs"},
	{"", "persistentvolumeclaims", "", "delete", false, "remove temporary PVCs"},
	{"", "pods", "", "create", false, "start mover pods"},
	{"", "pods", "", "delete", false, "remove mover pods"},
	{"", "pods", "log", "get", false, "read mover progress"},
	{"", "pods", "exec", "create", false, "run hooks"},
	{"", "secrets", "", "create", false, "hand store credentials to movers"},
	{"", "secrets", "", "delete", false, "remove the run's credentials"},
	{"", "secrets", "", "list", false, "find the Secrets of killed runs"},
	{"", "secrets", "", "patch", false, "mark the run's Secrets alive"},
	{"snapshot.storage.k8s.io", "volumesnapshots", "", "create", false, "cut snapshots"},
	{"snapshot.storage.k8s.io", "volumesnapshots", "", "delete", false, "remove snapshots"},
	{"", "events", "", "create", false, "record each backup on its StatefulSet"},
	{"", "persistentvolumes", "", "get", true, "find a claim's CSI driver"},
	{"storage.k8s.io", "storageclasses", "", "list", true, "check storage classes"},
	{"snapshot.storage.k8s.io", "volumesnapshotclasses", "", "list", true, "choose snapshot classes"},
	{"snapshot.storage.k8s.io", "volumesnapshotcontents", "", "get", true, "record snapshot handles"},
}

// groupNeeds are what a group snapshot adds, asked only where the cluster
// serves the group snapshot API. A backup that cuts no group snapshot
// (--group never, or no group class for its driver) does without them, so
// a missing one is a warning.
var groupNeeds = []need{
	{"", "persistentvolumeclaims", "", "patch", false, "label the claims a group snapshot selects"},
	{groupAPIGroup, "volumegroupsnapshots", "", "create", false, "cut group snapshots"},
	{groupAPIGroup, "volumegroupsnapshots", "", "delete", false, "remove group snapshots"},
	{groupAPIGroup, "volumegroupsnapshotclasses", "", "list", true, "choose group snapshot classes"},
	{groupAPIGroup, "volumegroupsnapshotcontents", "", "get", true, "end the quiesce as soon as a group is cut"},
}

// groupAPIGroup and groupAPIVersion are the group snapshot API kbak speaks.
const (
	groupAPIGroup   = "groupsnapshot.storage.k8s.io"
	groupAPIVersion = groupAPIGroup + "/v1beta2"
)

// Run performs every check. Errors talking to the API server are findings,
// not failures of Run, except when the server cannot be reached at all.
func Run(ctx context.Context, kc kubernetes.Interface, sc snapclient.Interface, opts Options) ([]Check, error) {
	var out []Check
	add := func(name string, l Level, detail, advice string) {
		out = append(out, Check{Name: name, Level: l, Detail: detail, Advice: advice})
	}

	ver, err := kc.Discovery().ServerVersion()
	if err != nil {
		return nil, hint.Errorf("reach the Kubernetes API server: %w (check %s and %s)", err, hint.Of(hint.Kubeconfig), hint.Of(hint.Context))
	}
	add("api server", LevelOK, "Kubernetes "+ver.GitVersion, "")

	snapshotAPI := false
	if res, err := kc.Discovery().ServerResourcesForGroupVersion("snapshot.storage.k8s.io/v1"); err != nil {
		add("snapshot API", LevelWarn, "snapshot.storage.k8s.io/v1 is not served",
			"install the VolumeSnapshot CRDs and the snapshot-controller (external-snapshotter) for the snapshot method; until then kbak copies live files")
	} else {
		var names []string
		for _, r := range res.APIResources {
			if !strings.Contains(r.Name, "/") {
				names = append(names, r.Name)
			}
		}
		slices.Sort(names)
		snapshotAPI = true
		add("snapshot API", LevelOK, "snapshot.storage.k8s.io/v1: "+strings.Join(names, ", "), "")
	}

	drivers, err := kc.StorageV1().CSIDrivers().List(ctx, metav1.ListOptions{})
	if err != nil {
		add("CSI drivers", LevelWarn, "cannot list CSIDrivers: "+err.Error(), "grant list on csidrivers.storage.k8s.io")
	}
	classesByDriver := map[string][]string{}
	defaultByDriver := map[string]string{}
	if snapshotAPI {
		vscs, err := sc.SnapshotV1().VolumeSnapshotClasses().List(ctx, metav1.ListOptions{})
		if err != nil {
			add("snapshot classes", LevelWarn, "cannot list VolumeSnapshotClasses: "+err.Error(), "grant list on volumesnapshotclasses")
		} else {
			for _, c := range vscs.Items {
				classesByDriver[c.Driver] = append(classesByDriver[c.Driver], c.Name)
				if c.Annotations[kube.DefaultSnapshotClassAnnotation] == "true" {
					defaultByDriver[c.Driver] = c.Name
				}
			}
		}
	}
	groupDefaults := map[string]string{}
	groupAPI := false
	if snapshotAPI {
		_, err := kc.Discovery().ServerResourcesForGroupVersion(groupAPIVersion)
		groupAPI = err == nil
		out = append(out, groupClasses(ctx, sc, groupAPI, groupDefaults))
	}
	if drivers != nil {
		if len(drivers.Items) == 0 {
			add("CSI drivers", LevelWarn, "no CSIDriver objects", "kbak's snapshot method needs a CSI driver; in-tree and hostPath volumes are copied as files")
		}
		for _, d := range drivers.Items {
			name := "CSI driver " + d.Name
			switch {
			case defaultByDriver[d.Name] != "" && groupDefaults[d.Name] != "":
				add(name, LevelOK, "default VolumeSnapshotClass "+defaultByDriver[d.Name]+" and VolumeGroupSnapshotClass "+groupDefaults[d.Name]+": method auto snapshots its volumes, group auto cuts a StatefulSet's claims on it in one group snapshot", "")
			case defaultByDriver[d.Name] != "":
				add(name, LevelOK, "default VolumeSnapshotClass "+defaultByDriver[d.Name]+": method auto snapshots its volumes", "")
			case len(classesByDriver[d.Name]) > 0:
				add(name, LevelWarn, "VolumeSnapshotClasses "+strings.Join(classesByDriver[d.Name], ", ")+" but none is the default",
					hint.Sprintf(opts.Spell, "annotate one with %s=true, or pass %s", kube.DefaultSnapshotClassAnnotation, hint.Of(hint.SnapshotClass)))
			default:
				add(name, LevelWarn, "no VolumeSnapshotClass: method auto copies its volumes' live files",
					"create a VolumeSnapshotClass for "+d.Name+" if the driver supports snapshots")
			}
		}
	}

	if scs, err := kc.StorageV1().StorageClasses().List(ctx, metav1.ListOptions{}); err != nil {
		add("storage classes", LevelWarn, "cannot list StorageClasses: "+err.Error(), "grant list on storageclasses.storage.k8s.io")
	} else {
		for _, c := range scs.Items {
			method := "files"
			if len(classesByDriver[c.Provisioner]) > 0 {
				method = "snapshot"
			}
			mode := "Immediate"
			if c.VolumeBindingMode != nil {
				mode = string(*c.VolumeBindingMode)
			}
			add("storage class "+c.Name, LevelOK, fmt.Sprintf("provisioner %s, %s binding: method auto uses %s", c.Provisioner, mode, method), "")
		}
	}

	out = append(out, permissions(ctx, kc, opts.Namespace, groupAPI)...)
	out = append(out, podSecurity(ctx, kc, opts))

	if opts.StatefulSet != "" {
		out = append(out, statefulSet(ctx, kc, opts, classesByDriver)...)
	}
	return out, nil
}

// groupClasses lists the VolumeGroupSnapshotClasses, and fills defaults
// with each driver's default one.
func groupClasses(ctx context.Context, sc snapclient.Interface, served bool, defaults map[string]string) Check {
	const name = "group snapshot classes"
	if !served {
		return Check{Name: name, Level: LevelWarn, Detail: groupAPIVersion + " is not served: --group auto cuts every claim on its own",
			Advice: "install the VolumeGroupSnapshot CRDs of external-snapshotter v8.4 or later (they serve v1beta2) for crash-consistent group snapshots"}
	}
	list, err := sc.GroupsnapshotV1beta2().VolumeGroupSnapshotClasses().List(ctx, metav1.ListOptions{})
	if err != nil {
		return Check{Name: name, Level: LevelWarn, Detail: "cannot list VolumeGroupSnapshotClasses: " + err.Error(), Advice: "grant list on volumegroupsnapshotclasses"}
	}
	if len(list.Items) == 0 {
		return Check{Name: name, Level: LevelOK, Detail: "none: --group auto cuts every claim on its own"}
	}
	var classes []string
	for _, c := range list.Items {
		d := c.Name + " (" + c.Driver
		if c.Annotations[kube.DefaultGroupSnapshotClassAnnotation] == "true" {
			d += ", default"
			defaults[c.Driver] = c.Name
		}
		classes = append(classes, d+")")
	}
	slices.Sort(classes)
	return Check{Name: name, Level: LevelOK, Detail: strings.Join(classes, ", ")}
}

// permissions asks the API server, per need, whether the current user may;
// with groupAPI, also for what group snapshots add.
func permissions(ctx context.Context, kc kubernetes.Interface, ns string, groupAPI bool) []Check {
	const advice = "bind a Role with these verbs (`kbak schedule create --dry-run=client -o yaml` prints one)"
	missing, err := missingPermissions(ctx, kc, ns, needs)
	if err != nil {
		return []Check{{Name: "permissions", Level: LevelWarn, Detail: "cannot ask the API server: " + err.Error(), Advice: "grant create on selfsubjectaccessreviews"}}
	}
	var out []Check
	if len(missing) > 0 {
		out = append(out, Check{Name: "permissions in " + ns, Level: LevelFail, Detail: "missing: " + strings.Join(missing, "; "), Advice: advice})
	} else {
		out = append(out, Check{Name: "permissions in " + ns, Level: LevelOK, Detail: fmt.Sprintf("all %d permissions kbak uses are granted", len(needs))})
	}
	if !groupAPI {
		return out
	}
	missing, err = missingPermissions(ctx, kc, ns, groupNeeds)
	switch {
	case err != nil:
		out = append(out, Check{Name: "group snapshot permissions in " + ns, Level: LevelWarn, Detail: "cannot ask the API server: " + err.Error()})
	case len(missing) > 0:
		out = append(out, Check{Name: "group snapshot permissions in " + ns, Level: LevelWarn,
			Detail: "missing: " + strings.Join(missing, "; "), Advice: advice + ", or pass --group never: a backup that cuts a group snapshot fails without them"})
	default:
		out = append(out, Check{Name: "group snapshot permissions in " + ns, Level: LevelOK, Detail: fmt.Sprintf("all %d permissions group snapshots use are granted", len(groupNeeds))})
	}
	return out
}

// missingPermissions names the needs the current user may not.
func missingPermissions(ctx context.Context, kc kubernetes.Interface, ns string, list []need) ([]string, error) {
	var missing []string
	for _, n := range list {
		attrs := &authv1.ResourceAttributes{Group: n.group, Resource: n.resource, Subresource: n.sub, Verb: n.verb}
		if !n.clusterWide {
			attrs.Namespace = ns
		}
		r, err := kc.AuthorizationV1().SelfSubjectAccessReviews().Create(ctx,
			&authv1.SelfSubjectAccessReview{Spec: authv1.SelfSubjectAccessReviewSpec{ResourceAttributes: attrs}}, metav1.CreateOptions{})
		if err != nil {
			return nil, err
		}
		if !r.Status.Allowed {
			res := n.resource
			if n.sub != "" {
				res += "/" + n.sub
			}
			missing = append(missing, fmt.Sprintf("%s %s (%s)", n.verb, res, n.why))
		}
	}
	return missing, nil
}

// podSecurity reports the namespace's Pod Security level and how movers
// will run there: for a StatefulSet, as its backup resolves it.
func podSecurity(ctx context.Context, kc kubernetes.Interface, opts Options) Check {
	c := Check{Name: "pod security in " + opts.Namespace, Level: LevelOK}
	ps, err := kube.NamespacePodSecurity(ctx, kc, opts.Namespace)
	if err != nil {
		c.Level, c.Detail = LevelWarn, err.Error()
		return c
	}
	level := "enforces " + ps.Enforce
	if ps.Enforce == kube.LevelPrivileged {
		level = "enforces no level"
	}
	if ps.PrivilegedMovers {
		level += ", opted in to privileged movers (" + kube.AnnotationPrivilegedMovers + ")"
	}
	if ps.Unknown {
		c.Level, c.Advice = LevelWarn, "grant get on the namespace, so kbak sees its Pod Security level"
		level = "level unknown (cannot read the namespace)"
	}
	var app deploy.RunAs
	if opts.StatefulSet != "" {
		sts, err := kc.AppsV1().StatefulSets(opts.Namespace).Get(ctx, opts.StatefulSet, metav1.GetOptions{})
		if err != nil {
			c.Detail = level
			return c // the StatefulSet's own check says why
		}
		app = deploy.RunAsOf(&sts.Spec.Template.Spec)
	} else if ps.Enforce == kube.LevelRestricted {
		c.Detail = level + ": movers run unprivileged, as the StatefulSet's user (its pod template must set runAsUser)"
		return c
	}
	mode, err := moverrun.ResolveSecurity(deploy.SecurityAuto, ps, app, moverrun.SecurityNeeds{})
	if err != nil {
		c.Level, c.Detail = LevelFail, level+": "+hint.Render(err, opts.Spell)
		return c
	}
	c.Detail = fmt.Sprintf("%s: movers run %s", level, describeSecurity(mode, app))
	return c
}

func describeSecurity(s deploy.Security, app deploy.RunAs) string {
	switch s {
	case deploy.SecurityUnprivileged:
		return fmt.Sprintf("unprivileged, as uid %d", *app.User)
	case deploy.SecurityBaseline:
		return "as root with baseline's capabilities (baseline)"
	}
	return "privileged (root with DAC_READ_SEARCH)"
}

// statefulSet reports, per claim, whether and how it would be backed up.
func statefulSet(ctx context.Context, kc kubernetes.Interface, opts Options, classesByDriver map[string][]string) []Check {
	ns, name := opts.Namespace, opts.StatefulSet
	d, err := kube.Discover(ctx, kc, ns, name)
	if err != nil {
		return []Check{{Name: "statefulset " + ns + "/" + name, Level: LevelFail, Detail: hint.Render(err, opts.Spell)}}
	}
	var out []Check
	for _, c := range d.Claims {
		check := Check{Name: "claim " + c.Name}
		switch {
		case !c.OK():
			check.Level, check.Detail = LevelFail, c.Problem
		case len(classesByDriver[c.Driver]) > 0:
			check.Level, check.Detail = LevelOK, fmt.Sprintf("%s on %s (%s): snapshot", c.Size.String(), c.StorageClass, c.Driver)
		default:
			check.Level, check.Detail = LevelOK, fmt.Sprintf("%s on %s (%s): live files", c.Size.String(), c.StorageClass, c.Driver)
			if c.Pod == nil {
				check.Level, check.Advice = LevelWarn, "no running pod: the mover will mount the volume wherever it can attach"
			}
		}
		out = append(out, check)
	}
	for _, c := range d.Retained {
		out = append(out, Check{Name: "claim " + c.Name, Level: LevelWarn, Detail: "left by an earlier scale-down", Advice: hint.Sprintf(opts.Spell, "backed up only with %s", hint.Of(hint.IncludeRetained))})
	}
	return out
}
