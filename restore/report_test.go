package restore

import (
	"context"
	"encoding/json"
	"errors"
	"log/slog"
	"slices"
	"strings"
	"sync"
	"testing"

	snapfake "github.com/kubernetes-csi/external-snapshotter/client/v8/clientset/versioned/fake"
	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/client-go/kubernetes/fake"
	k8stesting "k8s.io/client-go/testing"

	"github.com/kbak/kbak/deploy"
	"github.com/kbak/kbak/internal/catalog"
	"github.com/kbak/kbak/internal/hint/hinttest"
	"github.com/kbak/kbak/internal/kube/kubetest"
	"github.com/kbak/kbak/internal/mover"
)

// A real restore says what its plan knew, not only --dry-run: the ordinals
// the backup could not restore, the namespace it created and the plan's
// notes are in the Result (and so in -o json and the table).
func TestRunReportsThePlan(t *testing.T) {
	tests := []struct {
		name        string
		m           *catalog.Manifest
		opts        Options
		objects     []runtime.Object
		snapshotsIn string
		wantSkipped []Skipped
		wantNotes   []string // substrings, one a note, in order
		wantNS      bool
	}{
		{
			name:    "a skipped ordinal in the middle",
			m:       manifest(vol("data", 0).kept("shop"), vol("data", 1).failed("snapshot timed out"), vol("data", 2).kept("shop")),
			objects: []runtime.Object{namespace("shop")}, snapshotsIn: "shop",
			wantSkipped: []Skipped{{Ordinal: 1, Reason: "volume data-db-1 was not backed up (failed: snapshot timed out)"}},
			wantNotes:   []string{"ordinal(s) 1 not restored: with 3 replicas the StatefulSet creates their claims empty"},
		},
		{
			name:    "a skipped last ordinal",
			m:       manifest(vol("data", 0).kept("shop"), vol("data", 1).failed("snapshot timed out")),
			objects: []runtime.Object{namespace("shop")}, snapshotsIn: "shop",
			wantSkipped: []Skipped{{Ordinal: 1, Reason: "volume data-db-1 was not backed up (failed: snapshot timed out)"}},
		},
		{
			name: "a new namespace",
			m:    manifest(vol("data", 0).kept("dr")),
			opts: Options{ToNamespace: "dr"}, snapshotsIn: "dr",
			wantNS: true,
		},
		{
			name:    "under another name beside the original",
			m:       manifest(vol("data", 0).kept("shop")),
			opts:    Options{ToName: "db2", CreateStatefulSet: true},
			objects: []runtime.Object{namespace("shop"), kubetest.StatefulSet("shop", "db").Replicas(3).Result()}, snapshotsIn: "shop",
			wantNotes: []string{
				"the re-created statefulset keeps the backup's selector",
				"service shop/db (the StatefulSet's serviceName) does not exist",
			},
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			kc := fake.NewClientset(append(tt.objects, storageClass("fast", driver, false))...)
			snaps := []runtime.Object{keptSnapshot(tt.snapshotsIn, 0, true), keptSnapshot(tt.snapshotsIn, 1, true), keptSnapshot(tt.snapshotsIn, 2, true)}
			deps := Deps{Kube: kc, Snap: snapfake.NewSimpleClientset(snaps...)}
			opts := fastOptions(tt.opts)
			opts.Spell = hinttest.Flags
			p, err := NewPlan(context.Background(), deps, tt.m, opts)
			if err != nil {
				t.Fatal(err)
			}
			bindersSucceed(kc)
			res, err := Run(context.Background(), deps, p)
			if err != nil && !errors.Is(err, ErrNotReady) { // the fake StatefulSet never becomes ready
				t.Fatal(err)
			}
			if res.CreatedNamespace != tt.wantNS {
				t.Errorf("createdNamespace %v, want %v", res.CreatedNamespace, tt.wantNS)
			}
			if !slices.Equal(res.Skipped, tt.wantSkipped) {
				t.Errorf("skipped %+v, want %+v", res.Skipped, tt.wantSkipped)
			}
			if len(res.Notes) != len(tt.wantNotes) {
				t.Fatalf("notes %q, want %d like %q", res.Notes, len(tt.wantNotes), tt.wantNotes)
			}
			for i, want := range tt.wantNotes {
				if !strings.Contains(res.Notes[i], want) {
					t.Errorf("note %q, want it to say %q", res.Notes[i], want)
				}
			}
			for _, n := range res.Notes {
				if strings.Contains(n, "will be created") {
					t.Errorf("note %q: createdNamespace says that", n)
				}
			}
			// -o json prints the Result as it is.
			b, err := json.Marshal(res)
			if err != nil {
				t.Fatal(err)
			}
			var back map[string]any
			if err := json.Unmarshal(b, &back); err != nil {
				t.Fatal(err)
			}
			if _, ok := back["skipped"]; ok != (len(tt.wantSkipped) > 0) {
				t.Errorf("json %s: skipped present %v", b, ok)
			}
			if _, ok := back["notes"]; ok != (len(tt.wantNotes) > 0) {
				t.Errorf("json %s: notes present %v", b, ok)
			}
		})
	}
}

// What a mover left out of a claim is in the claim's result and, with the
// setting that restores it, in the notes; only for claims that were kept.
func TestRunReportsWithheld(t *testing.T) {
	p := &Plan{RunID: "db-restore-1", Namespace: "shop", StatefulSet: "db"}
	r := &run{opts: Options{Spell: hinttest.Flags}, plan: p, log: slog.New(slog.DiscardHandler)}
	names := func(prefix string, n int) []string {
		var out []string
		for i := range n {
			out = append(out, prefix+string(rune('a'+i)))
		}
		return out
	}
	jobs := []*job{
		{claim: Claim{Ordinal: 0, Name: "data-db-0", Template: "data", Source: SourceStore},
			result: &mover.Result{Files: 3, SkippedDevices: 12, SkippedDeviceNames: names("dev/", 10), ClearedSetID: 1, ClearedSetIDNames: []string{"bin/su"}}},
		{claim: Claim{Ordinal: 1, Name: "data-db-1", Template: "data", Source: SourceStore},
			result: &mover.Result{Files: 3}},
		{claim: Claim{Ordinal: 2, Name: "data-db-2", Template: "data", Source: SourceStore},
			result: &mover.Result{Files: 3, ClearedSetID: 2, ClearedSetIDNames: []string{"a", "b"}}},
		{claim: Claim{Ordinal: 2, Name: "log-db-2", Template: "log", Source: SourceStore}, err: errors.New("mover failed")},
	}
	res := &Result{Ordinals: r.outcome(jobs)}
	c := res.Ordinals[0].Claims[0]
	if c.SkippedDevices != 12 || len(c.SkippedDeviceNames) != 10 || c.ClearedSetID != 1 || !slices.Equal(c.ClearedSetIDNames, []string{"bin/su"}) {
		t.Errorf("claim result %+v: want the mover's counts and names", c)
	}
	got := r.withheldNotes(res)
	want := []string{
		"data-db-0: 12 device node(s) of the backup not created (dev/a, dev/b, dev/c, dev/d, dev/e, dev/f, dev/g, dev/h, dev/i, dev/j, …): --restore-devices creates them",
		"data-db-0: 1 file(s) restored without their setuid/setgid bits or file capabilities (bin/su): --restore-setid keeps them",
	}
	if !slices.Equal(got, want) {
		t.Errorf("notes:\n%s\nwant:\n%s", strings.Join(got, "\n"), strings.Join(want, "\n"))
	}
}

// The movers get --restore-devices and --restore-setid when the restore
// does, and the capabilities for them only then.
func TestRunPassesRestoreSettingsToMovers(t *testing.T) {
	for _, tt := range []struct {
		name     string
		opts     Options
		wantArgs []string
		wantCaps []corev1.Capability
	}{
		{"by default", Options{}, nil, []corev1.Capability{"CHOWN", "DAC_OVERRIDE", "FOWNER"}},
		{"devices", Options{RestoreDevices: true}, []string{"--restore-devices"}, []corev1.Capability{"CHOWN", "DAC_OVERRIDE", "FOWNER", "MKNOD"}},
		{"set-id", Options{RestoreSetID: true}, []string{"--restore-setid"}, []corev1.Capability{"CHOWN", "DAC_OVERRIDE", "FOWNER", "FSETID", "SETFCAP"}},
		{"both", Options{RestoreDevices: true, RestoreSetID: true}, []string{"--restore-devices", "--restore-setid"},
			[]corev1.Capability{"CHOWN", "DAC_OVERRIDE", "FOWNER", "MKNOD", "FSETID", "SETFCAP"}},
	} {
		t.Run(tt.name, func(t *testing.T) {
			kc := fake.NewClientset(namespace("shop"), storageClass("fast", driver, false))
			deps := Deps{Kube: kc}
			tt.opts.Credentials = &deploy.Credentials{AccessKeyID: "id", SecretAccessKey: "secret"}
			p, err := NewPlan(context.Background(), deps, manifest(vol("data", 0)), fastOptions(tt.opts))
			if err != nil {
				t.Fatal(err)
			}
			var mu sync.Mutex
			var pods []*corev1.Pod
			kc.PrependReactor("create", "pods", func(a k8stesting.Action) (bool, runtime.Object, error) {
				mu.Lock()
				pods = append(pods, a.(k8stesting.CreateAction).GetObject().(*corev1.Pod).DeepCopy())
				mu.Unlock()
				return false, nil, nil
			})
			// The fake runs no pod: the mover times out and the restore fails.
			if _, err := Run(context.Background(), deps, p); !errors.Is(err, ErrFailed) {
				t.Fatalf("err = %v, want ErrFailed", err)
			}
			if len(pods) == 0 {
				t.Fatal("no mover pod")
			}
			c := pods[0].Spec.Containers[0]
			wantArgs := append(deploy.Download{Repo: p.opts.Repo, Key: p.Claims[0].Key, SHA256: p.Claims[0].SHA256}.Args(), tt.wantArgs...)
			if !slices.Equal(c.Args, wantArgs) {
				t.Errorf("args %q, want %q", c.Args, wantArgs)
			}
			if got := c.SecurityContext.Capabilities.Add; !slices.Equal(got, tt.wantCaps) {
				t.Errorf("capabilities %v, want %v", got, tt.wantCaps)
			}
		})
	}
}
