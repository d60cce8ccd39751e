package kube

import (
	"strings"
	"testing"

	"k8s.io/apimachinery/pkg/util/validation"
)

func TestName(t *testing.T) {
	long := strings.Repeat("a", 70)
	tests := []struct {
		name  string
		parts []string
		want  string
	}{
		{"short", []string{"kbak", "db-20261122T061900Z-ab12", "0", "data"}, "kbak-db-20261122t061900z-ab12-0-data"},
		{"invalid characters", []string{"kbak", "a_b.c"}, "kbak-a-b-c"},
		{"long keeps a hash", []string{"kbak", long, "0", "data"}, "kbak-" + strings.Repeat("a", 49) + "-"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got := Name(tt.parts...)
			if !strings.HasPrefix(got, tt.want) || (len(got) != len(tt.want) && !strings.HasSuffix(tt.want, "-")) {
				t.Errorf("Name(%q) = %q, want %q…", tt.parts, got, tt.want)
			}
			if errs := validation.IsDNS1123Label(got); len(errs) > 0 {
				t.Errorf("Name(%q) = %q is not a DNS label: %v", tt.parts, got, errs)
			}
		})
	}
	a, b := Name("kbak", long, "0", "data"), Name("kbak", long, "1", "data")
	if a == b {
		t.Errorf("long names of two ordinals collide: %q", a)
	}
	if a != Name("kbak", long, "0", "data") {
		t.Errorf("Name is not deterministic")
	}
}

func TestLabelValue(t *testing.T) {
	long := strings.Repeat("x", 100) + "-20261122T061900Z-ab12"
	for _, v := range []string{"db-20261122T061900Z-ab12", long} {
		got := LabelValue(v)
		if errs := validation.IsValidLabelValue(got); len(errs) > 0 {
			t.Errorf("LabelValue(%q) = %q: %v", v, got, errs)
		}
		if len(v) <= 63 && got != v {
			t.Errorf("LabelValue(%q) = %q, want it unchanged", v, got)
		}
	}
	if got := RunSelector("x"); got != "app.kubernetes.io/managed-by=kbak,kbak.io/backup-id=x" {
		t.Errorf("RunSelector = %q", got)
	}
}

func TestRunLabelsAndSelectors(t *testing.T) {
	if got := RestoreSelector("r"); got != "app.kubernetes.io/managed-by=kbak,kbak.io/restore-id=r" {
		t.Errorf("RestoreSelector = %q", got)
	}
	if got := ScheduleSelector("shop", "nightly"); got != "app.kubernetes.io/managed-by=kbak,kbak.io/schedule=nightly,kbak.io/schedule-namespace=shop" {
		t.Errorf("ScheduleSelector = %q", got)
	}
	if got := SchedulesSelector(); got != "app.kubernetes.io/managed-by=kbak,kbak.io/schedule" {
		t.Errorf("SchedulesSelector = %q", got)
	}
	tests := []struct {
		labels  map[string]string
		id      string
		restore bool
	}{
		{Labels("b", "db", RoleMover), "b", false},
		{RestoreLabels("r", "db", RoleMover), "r", true},
		{AgentLabels("kbak-agent"), "", false},
	}
	for _, tt := range tests {
		if id, restore := RunOf(tt.labels); id != tt.id || restore != tt.restore {
			t.Errorf("RunOf(%v) = %q, %v; want %q, %v", tt.labels, id, restore, tt.id, tt.restore)
		}
	}
	if _, ok := RestoreLabels("r", "db", "")[LabelBackupID]; ok {
		t.Error("a restore run's objects carry a backup id")
	}
}

// Everything a run makes carries the recommended labels with its role as
// the component; a restored claim sheds them with the other temporary
// labels, keeping only what says where it came from.
func TestRecommendedLabels(t *testing.T) {
	for _, l := range []map[string]string{Labels("db-1", "db", RoleMover), RestoreLabels("r-1", "db", RoleRestoreClaim), ScheduleLabels("nightly", "db")} {
		if l[LabelName] != "kbak" || l[LabelManagedBy] != "kbak" || l[LabelComponent] == "" {
			t.Errorf("labels %v lack app.kubernetes.io/name, managed-by or component", l)
		}
	}
	l := RestoreLabels("r-1", "db", RoleRestoreClaim)
	l[LabelRestoredFrom] = "db-1"
	for _, k := range TemporaryLabels {
		delete(l, k)
	}
	if len(l) != 2 || l[LabelRestoreID] != "r-1" || l[LabelRestoredFrom] != "db-1" {
		t.Errorf("a released claim keeps %v, want only the restore id and origin", l)
	}
	if AgentPodLabels("kbak-agent")[LabelManagedBy] != "" {
		t.Error("the agent's pod carries managed-by, which marks what cleanup deletes")
	}
}
