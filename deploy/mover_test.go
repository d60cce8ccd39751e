package deploy

import (
	"os/exec"
	"slices"
	"strings"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
)

func TestUploadArgs(t *testing.T) {
	got := Upload{Repo: "s3://b/p?endpoint=http://10.88.0.1:7070", Key: "kbak/v1/ns/db/id/volumes/data-db-0.tar.zst", ResultKey: "kbak/v1/ns/db/id/volumes/data-db-0.json", SizeHint: 1 << 30, Compression: "zstd:1"}.Args()
	want := []string{"mover", "upload", "--repo", "s3://b/p?endpoint=http://10.88.0.1:7070", "--source", "/data",
		"--key", "kbak/v1/ns/db/id/volumes/data-db-0.tar.zst", "--result-key", "kbak/v1/ns/db/id/volumes/data-db-0.json",
		"--size-hint", "1073741824", "--compression", "zstd:1"}
	if !slices.Equal(got, want) {
		t.Errorf("UploadArgs = %q\nwant %q", got, want)
	}
	got = Upload{Repo: "s3://b", Key: "k.tree", ResultKey: "k.json", Compression: "zstd:1", LockDays: 30, LockMode: "governance"}.Args()
	want = []string{"mover", "upload", "--repo", "s3://b", "--source", "/data", "--key", "k.tree", "--result-key", "k.json",
		"--size-hint", "0", "--compression", "zstd:1", "--lock-days", "30", "--lock-mode", "governance"}
	if !slices.Equal(got, want) {
		t.Errorf("UploadArgs with Object Lock = %q\nwant %q", got, want)
	}
	download := []string{"mover", "download", "--repo", "s3://b", "--key", "k", "--sha256", "abc", "--target", "/data"}
	for _, tt := range []struct {
		d    Download
		want []string
	}{
		{Download{Repo: "s3://b", Key: "k", SHA256: "abc"}, download},
		{Download{Repo: "s3://b", Key: "k", SHA256: "abc", RestoreDevices: true}, append(slices.Clone(download), "--restore-devices")},
		{Download{Repo: "s3://b", Key: "k", SHA256: "abc", RestoreSetID: true}, append(slices.Clone(download), "--restore-setid")},
		{Download{Repo: "s3://b", Key: "k", SHA256: "abc", RestoreDevices: true, RestoreSetID: true}, append(slices.Clone(download), "--restore-devices", "--restore-setid")},
	} {
		if got := tt.d.Args(); !slices.Equal(got, tt.want) {
			t.Errorf("%+v.Args() = %q\nwant %q", tt.d, got, tt.want)
		}
	}
}

// A restore mover keeps only the capabilities of what it restores: owners,
// modes and times always; device nodes MKNOD; set-id bits and file
// capabilities FSETID and SETFCAP. A backup mover only reads.
func TestMoverPodCapabilities(t *testing.T) {
	tests := []struct {
		name string
		m    MoverPod
		want []corev1.Capability
	}{
		{"backup", MoverPod{}, []corev1.Capability{"DAC_READ_SEARCH"}},
		{"restore", MoverPod{Restore: true}, []corev1.Capability{"CHOWN", "DAC_OVERRIDE", "FOWNER"}},
		{"restore with devices", MoverPod{Restore: true, RestoreDevices: true}, []corev1.Capability{"CHOWN", "DAC_OVERRIDE", "FOWNER", "MKNOD"}},
		{"restore with set-id", MoverPod{Restore: true, RestoreSetID: true}, []corev1.Capability{"CHOWN", "DAC_OVERRIDE", "FOWNER", "FSETID", "SETFCAP"}},
		{"restore with both", MoverPod{Restore: true, RestoreDevices: true, RestoreSetID: true}, []corev1.Capability{"CHOWN", "DAC_OVERRIDE", "FOWNER", "MKNOD", "FSETID", "SETFCAP"}},
		{"backup ignores the restore fields", MoverPod{RestoreDevices: true, RestoreSetID: true}, []corev1.Capability{"DAC_READ_SEARCH"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			tt.m.Name, tt.m.Claim = "p", "c"
			sc := tt.m.Pod().Spec.Containers[0].SecurityContext
			if sc == nil || sc.Capabilities == nil {
				t.Fatal("no capabilities in the security context")
			}
			if !slices.Equal(sc.Capabilities.Drop, []corev1.Capability{"ALL"}) || !slices.Equal(sc.Capabilities.Add, tt.want) {
				t.Errorf("capabilities drop %v add %v, want drop [ALL] add %v", sc.Capabilities.Drop, sc.Capabilities.Add, tt.want)
			}
			if *sc.AllowPrivilegeEscalation || sc.Privileged != nil && *sc.Privileged {
				t.Errorf("security context %+v: no privilege escalation", sc)
			}
		})
	}
}

func TestMoverPod(t *testing.T) {
	tests := []struct {
		name    string
		m       MoverPod
		env     []string // names, in order
		volumes int
	}{
		{"no credentials", MoverPod{Name: "p", Claim: "c", ReadOnly: true}, []string{"TMPDIR"}, 2},
		{"keys only", MoverPod{Name: "p", Claim: "c", ReadOnly: true, Secret: SecretRef{Name: "s"}}, []string{"TMPDIR", KeyAccessKeyID, KeySecretAccessKey}, 2},
		{"token and CA", MoverPod{Name: "p", Claim: "c", ReadOnly: true, Secret: SecretRef{Name: "s", SessionToken: true, CABundle: true}},
			[]string{"TMPDIR", KeyAccessKeyID, KeySecretAccessKey, KeySessionToken, "AWS_CA_BUNDLE"}, 3},
		{"pinned to a node", MoverPod{Name: "p", Claim: "c", ReadOnly: true, NodeName: "n1"}, []string{"TMPDIR"}, 2},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			pod := tt.m.Pod()
			spec := pod.Spec
			if spec.RestartPolicy != corev1.RestartPolicyNever || spec.NodeName != tt.m.NodeName {
				t.Errorf("restartPolicy %s nodeName %q", spec.RestartPolicy, spec.NodeName)
			}
			if len(spec.Volumes) != tt.volumes {
				t.Fatalf("%d volumes, want %d", len(spec.Volumes), tt.volumes)
			}
			pvc := spec.Volumes[0].PersistentVolumeClaim
			c := spec.Containers[0]
			if pvc == nil || pvc.ClaimName != "c" || !pvc.ReadOnly || !c.VolumeMounts[0].ReadOnly || c.VolumeMounts[0].MountPath != "/data" {
				t.Errorf("data volume %+v mount %+v: want claim c read-only at /data", pvc, c.VolumeMounts[0])
			}
			// Spooled parts and file caches need a writable scratch directory.
			if tmp := spec.Volumes[1].EmptyDir; tmp == nil || c.VolumeMounts[1].MountPath != "/tmp" || c.VolumeMounts[1].ReadOnly {
				t.Errorf("scratch volume %+v mount %+v: want an emptyDir at /tmp", spec.Volumes[1], c.VolumeMounts[1])
			}
			if c.Image != DefaultMoverImage || c.ImagePullPolicy != corev1.PullIfNotPresent {
				t.Errorf("image %s pull %s", c.Image, c.ImagePullPolicy)
			}
			var names []string
			for _, e := range c.Env {
				names = append(names, e.Name)
				// Credentials are only ever references to the Secret.
				if e.Name != "AWS_CA_BUNDLE" && e.Name != "TMPDIR" && (e.Value != "" || e.ValueFrom == nil || e.ValueFrom.SecretKeyRef.Name != "s" || e.ValueFrom.SecretKeyRef.Key != e.Name) {
					t.Errorf("env %s = %+v, want a secretKeyRef to s/%s", e.Name, e, e.Name)
				}
			}
			if !slices.Equal(names, tt.env) {
				t.Errorf("env %v, want %v", names, tt.env)
			}
			if tt.m.Secret.CABundle {
				if ca := spec.Volumes[2].Secret; ca == nil || ca.SecretName != "s" || ca.Items[0].Key != KeyCABundle {
					t.Errorf("CA volume %+v", spec.Volumes[2])
				}
			}
			if sc := c.SecurityContext; sc == nil || *sc.AllowPrivilegeEscalation || !slices.Equal(sc.Capabilities.Add, []corev1.Capability{"DAC_READ_SEARCH"}) {
				t.Errorf("security context %+v", sc)
			}
		})
	}
}

func TestCredentialsSecret(t *testing.T) {
	s := CredentialsSecret("ns", "creds", map[string]string{"a": "b"}, Credentials{AccessKeyID: "AK", SecretAccessKey: "SK"})
	if string(s.Data[KeyAccessKeyID]) != "AK" || string(s.Data[KeySecretAccessKey]) != "SK" || len(s.Data) != 2 {
		t.Errorf("data = %v", s.Data)
	}
	if s.Labels["a"] != "b" || s.Namespace != "ns" || s.Name != "creds" {
		t.Errorf("meta = %+v", s.ObjectMeta)
	}
}

func TestMoverPodActiveDeadline(t *testing.T) {
	tests := []struct {
		name     string
		deadline time.Duration
		want     int64 // 0: not set
	}{
		{"none", 0, 0},
		{"whole seconds", 35 * time.Minute, 2100},
		{"a part second rounded up", 35*time.Minute + time.Millisecond, 2101},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got := MoverPod{Name: "p", Claim: "c", ActiveDeadline: tt.deadline}.Pod().Spec.ActiveDeadlineSeconds
			switch {
			case tt.want == 0 && got != nil:
				t.Errorf("activeDeadlineSeconds %d, want none", *got)
			case tt.want != 0 && (got == nil || *got != tt.want):
				t.Errorf("activeDeadlineSeconds %v, want %d", got, tt.want)
			}
		})
	}
}

// A build's default mover image is the one `make image` of that version
// writes: the Makefile and MoverImage derive the tag alike.
func TestMoverImageMatchesMakefile(t *testing.T) {
	for _, version := range []string{"v1.4.0", "v1.4.0-3-gabc1234-dirty", "v2.0.0+build.7/x", "dev", ""} {
		want := MoverImage(version)
		out, err := exec.Command("make", "-s", "-n", "-C", "..", "image", "VERSION="+version).CombinedOutput()
		if err != nil {
			t.Fatalf("make -n image: %v\n%s", err, out)
		}
		if !strings.Contains(string(out), " --ref "+want+" ") {
			t.Errorf("version %q: make image writes\n%s\nwant --ref %s", version, out, want)
		}
	}
	if got := MoverImage("v1.4.0"); got != "kbak.local/kbak:v1.4.0" {
		t.Errorf("MoverImage(v1.4.0) = %s", got)
	}
	if got := MoverImage(strings.Repeat("a", 200)); len(got) != len(MoverImageName)+1+128 {
		t.Errorf("a tag is at most 128 characters: %s", got)
	}
}
