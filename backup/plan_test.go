package backup

import (
	"errors"
	"strings"
	"testing"

	corev1 "k8s.io/api/core/v1"

	"github.com/kbak/kbak/internal/catalog"
	"github.com/kbak/kbak/internal/hint"
	"github.com/kbak/kbak/internal/hint/hinttest"
	"github.com/kbak/kbak/internal/kube"
)

func TestChooseMethod(t *testing.T) {
	rwo := []corev1.PersistentVolumeAccessMode{corev1.ReadWriteOnce}
	rwop := []corev1.PersistentVolumeAccessMode{corev1.ReadWriteOncePod}
	running := &corev1.Pod{}
	running.Name = "db-0"
	withClass := classChoice{class: "snap"}
	noClass := classChoice{err: errors.New("no VolumeSnapshotClass for driver d: create one or use --method files")}
	tests := []struct {
		name       string
		method     Method
		modes      []corev1.PersistentVolumeAccessMode
		pod        *corev1.Pod
		choice     classChoice
		want       catalog.Method
		wantClass  string
		wantErrSub string
	}{
		{"auto with a class snapshots", MethodAuto, rwo, running, withClass, catalog.MethodSnapshot, "snap", ""},
		{"auto without a class copies files", MethodAuto, rwo, running, noClass, catalog.MethodFiles, "", ""},
		{"auto RWOP without a class and a pod fails", MethodAuto, rwop, running, noClass, "", "", "ReadWriteOncePod and mounted by pod db-0"},
		{"auto RWOP without a pod copies files", MethodAuto, rwop, nil, noClass, catalog.MethodFiles, "", ""},
		{"snapshot forced without a class fails", MethodSnapshot, rwo, running, noClass, "", "", "create one or use --method files"},
		{"snapshot forced", MethodSnapshot, rwop, running, withClass, catalog.MethodSnapshot, "snap", ""},
		{"files forced ignores the class", MethodFiles, rwo, running, withClass, catalog.MethodFiles, "", ""},
		{"files forced on live RWOP fails", MethodFiles, rwop, running, withClass, "", "", "use --method snapshot"},
		{"files forced on idle RWOP", MethodFiles, rwop, nil, noClass, catalog.MethodFiles, "", ""},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			c := kube.Claim{Name: "data-db-0", AccessModes: tt.modes, Pod: tt.pod, Driver: "d"}
			got, class, err := chooseMethod(tt.method, c, tt.choice)
			if tt.wantErrSub != "" {
				if err == nil || !strings.Contains(hint.Render(err, hinttest.Flags), tt.wantErrSub) {
					t.Fatalf("err = %v, want %q", err, tt.wantErrSub)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if got != tt.want || class != tt.wantClass {
				t.Errorf("got %s %q, want %s %q", got, class, tt.want, tt.wantClass)
			}
		})
	}
}
