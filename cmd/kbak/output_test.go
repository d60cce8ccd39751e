package main

import (
	"bytes"
	"encoding/json"
	"flag"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	"k8s.io/client-go/kubernetes/scheme"
)

var update = flag.Bool("update", false, "rewrite the golden files under testdata/ with what kbak prints now")

// archiveDependent are the values that depend on the owner of the files
// the test archives (the user running it): digests and compressed sizes.
var archiveDependent = regexp.MustCompile(`(\s"?(?:sha256|storedBytes)"?: )"?[0-9a-f]+"?`)

var compressedSize = regexp.MustCompile(`\b\d+ B\b`)

// golden compares got with testdata/name, or rewrites it with -update.
func golden(t *testing.T, name, got string) {
	t.Helper()
	got = archiveDependent.ReplaceAllString(got, "${1}PINNED")
	if strings.HasSuffix(name, ".txt") {
		// A table's compressed sizes: digits pinned, width kept.
		got = compressedSize.ReplaceAllStringFunc(got, func(s string) string {
			return strings.Repeat("N", len(s)-2) + " B"
		})
	}
	path := filepath.Join("testdata", name)
	if *update {
		if err := os.WriteFile(path, []byte(got), 0o644); err != nil {
			t.Fatal(err)
		}
		return
	}
	want, err := os.ReadFile(path)
	if err != nil {
		t.Fatalf("%v (run go test -run %s -update to write it)", err, t.Name())
	}
	if got != string(want) {
		t.Errorf("output differs from %s (go test -run %s -update rewrites it):\n--- got\n%s\n--- want\n%s", path, t.Name(), got, want)
	}
}

// pinnedRepo is a repository whose backups have fixed IDs, times and sizes:
// two of shop/db, one of shop/cache and one of other/db.
func pinnedRepo(t *testing.T) (repo string, ids []string) {
	t.Helper()
	t.Setenv("AWS_EC2_METADATA_DISABLED", "true")
	repo = "file://" + t.TempDir()
	t.Setenv("KBAK_REPO", repo)
	inNamespace(t, "shop")
	at := time.Date(2026, 11, 22, 2, 0, 0, 0, time.UTC)
	for i, b := range []struct{ ns, sts string }{{"shop", "db"}, {"shop", "db"}, {"shop", "cache"}, {"other", "db"}} {
		created := at.Add(time.Duration(i) * time.Hour)
		ids = append(ids, writeBackupFrom(t, repo, b.ns, b.sts, created, false, bytes.NewReader(bytes.Repeat([]byte{byte(i + 1)}, 8))))
	}
	return repo, ids
}

// Every JSON and YAML document kbak prints carries apiVersion kbak.io/v1
// and a kind, with camelCase fields; the golden files pin them.
func TestStructuredOutput(t *testing.T) {
	_, ids := pinnedRepo(t)
	tests := []struct {
		golden string
		args   []string
		kind   string
	}{
		{"list.json", []string{"list", "-A", "-o", "json"}, "BackupList"},
		{"list.yaml", []string{"list", "-n", "shop", "--statefulset", "db", "-o", "yaml"}, "BackupList"},
		{"list-empty.json", []string{"list", "-n", "nobody", "-o", "json"}, "BackupList"},
		{"describe.json", []string{"describe", ids[0], "-o", "json"}, "Backup"},
		{"describe.yaml", []string{"describe", ids[0], "-o", "yaml"}, "Backup"},
		{"verify.json", []string{"verify", ids[0], "-o", "json"}, "Verification"},
		{"prune.json", []string{"prune", "--keep-last", "1", "--dry-run", "-o", "json"}, "PruneResult"},
		{"prune-all.yaml", []string{"prune", "-A", "--keep-last", "1", "--dry-run", "-o", "yaml"}, "PruneResult"},
		{"gc.json", []string{"gc", "--no-cluster", "--dry-run", "-o", "json"}, "GCResult"},
	}
	for _, tt := range tests {
		t.Run(tt.golden, func(t *testing.T) {
			code, out, errs := kbak(t, tt.args...)
			if code != exitOK {
				t.Fatalf("kbak %v: exit %d: %s", tt.args, code, errs)
			}
			if strings.HasSuffix(tt.golden, ".json") {
				var head struct{ APIVersion, Kind string }
				if err := json.Unmarshal([]byte(out), &head); err != nil || head.APIVersion != "kbak.io/v1" || head.Kind != tt.kind {
					t.Errorf("apiVersion %q kind %q (%v), want kbak.io/v1 %s", head.APIVersion, head.Kind, err, tt.kind)
				}
			} else if !strings.Contains(out, "apiVersion: kbak.io/v1\n") || !strings.Contains(out, "\nkind: "+tt.kind+"\n") {
				t.Errorf("no apiVersion kbak.io/v1 and kind %s:\n%s", tt.kind, out)
			}
			golden(t, tt.golden, out)
		})
	}
}

// What --dry-run=client -o json|yaml prints of schedule create and deploy
// agent is one v1 List that Kubernetes' own decoder reads, as kubectl
// apply -f - does, item by item.
func TestManifestsAreAV1List(t *testing.T) {
	t.Setenv("KBAK_REPO", "")
	t.Setenv("KBAK_MOVER_IMAGE", "")
	os.Unsetenv("KBAK_MOVER_IMAGE") // the default image
	agentConfig := filepath.Join(t.TempDir(), "agent.yaml")
	if err := os.WriteFile(agentConfig, []byte("repo: "+scheduleRepo+"\nsecret: kbak-store\nschedules:\n  - name: nightly\n    namespace: shop\n    statefulset: db\n    cron: \"0 2 * * *\"\n    keepDaily: 7\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	schedule := []string{"schedule", "create", "nightly", "sts/db", "-n", "shop", "--repo", scheduleRepo, "--cron", "@daily", "--secret", "kbak-store", "--keep-daily", "7"}
	tests := []struct {
		golden string
		args   []string
	}{
		{"schedule-create.json", append(schedule, "--dry-run=client", "-o", "json")},
		{"schedule-create.yaml", append(schedule, "--dry-run", "-o", "yaml")},
		{"deploy-agent.json", []string{"deploy", "agent", "--config", agentConfig, "-o", "json"}},
		{"deploy-agent.yaml", []string{"deploy", "agent", "--dry-run=client"}},
	}
	decode := scheme.Codecs.UniversalDeserializer().Decode
	for _, tt := range tests {
		t.Run(tt.golden, func(t *testing.T) {
			code, out, errs := kbak(t, tt.args...)
			if code != exitOK {
				t.Fatalf("kbak %v: exit %d: %s", tt.args, code, errs)
			}
			obj, gvk, err := decode([]byte(out), nil, nil)
			if err != nil {
				t.Fatalf("decode: %v\n%s", err, out)
			}
			list, ok := obj.(*corev1.List)
			if !ok || gvk.Kind != "List" || len(list.Items) < 3 {
				t.Fatalf("decoded %s %T with %v, want a v1 List of the objects", gvk, obj, list)
			}
			for i, item := range list.Items {
				o, gvk, err := decode(item.Raw, nil, nil)
				if err != nil {
					t.Errorf("item %d: %v", i, err)
					continue
				}
				if gvk.Kind == "" || o.GetObjectKind().GroupVersionKind().Version == "" {
					t.Errorf("item %d has no kind or version: %s", i, item.Raw)
				}
			}
			golden(t, tt.golden, out)
		})
	}
	code, _, errs := kbak(t, append(schedule, "--dry-run=server")...)
	if code != exitUsage {
		t.Errorf("--dry-run=server: exit %d, want %d", code, exitUsage)
	}
	oneErrorLine(t, errs, "--dry-run=client")
}

// kbak list fits 100 columns, shows the namespace only with -A and the
// StatefulSet only when not filtered by it, ages as kubectl does, sizes
// in IEC units; -o wide adds the rest. An empty listing is a line on
// stderr and exit 0.
func TestListTable(t *testing.T) {
	pinnedRepo(t)
	saved := clock
	clock = func() time.Time { return time.Date(2026, 11, 23, 6, 30, 0, 0, time.UTC) }
	t.Cleanup(func() { clock = saved })
	tests := []struct {
		golden string
		args   []string
	}{
		{"list.txt", []string{"list"}},
		{"list-statefulset.txt", []string{"list", "--statefulset", "db"}},
		{"list-all.txt", []string{"list", "-A"}},
		{"list-wide.txt", []string{"list", "-A", "-o", "wide"}},
	}
	for _, tt := range tests {
		t.Run(tt.golden, func(t *testing.T) {
			code, out, errs := kbak(t, tt.args...)
			if code != exitOK {
				t.Fatalf("kbak %v: exit %d: %s", tt.args, code, errs)
			}
			if tt.golden != "list-wide.txt" {
				for _, line := range strings.Split(out, "\n") {
					if len(line) > 100 {
						t.Errorf("line of %d columns:\n%s", len(line), line)
					}
				}
			}
			golden(t, tt.golden, out)
		})
	}
	for _, tt := range []struct {
		args []string
		want string
	}{
		{[]string{"list", "-n", "nobody"}, "No backups found in namespace nobody\n"},
		{[]string{"list", "-A", "--statefulset", "nobody"}, "No backups found\n"},
	} {
		code, out, errs := kbak(t, tt.args...)
		if code != exitOK || out != "" || errs != tt.want {
			t.Errorf("kbak %v: exit %d, stdout %q, stderr %q; want exit 0, nothing on stdout, %q on stderr", tt.args, code, out, errs, tt.want)
		}
	}
}

// KBAK_MOVER_IMAGE, or --mover-image, names the image of everything that
// schedule create and deploy agent render, as it does for backup.
func TestMoverImageEverywhere(t *testing.T) {
	t.Setenv("KBAK_REPO", "")
	const image = "registry.example.com/kbak:1.2.3"
	schedule := []string{"schedule", "create", "nightly", "sts/db", "-n", "shop", "--repo", scheduleRepo, "--cron", "@daily", "--secret", "kbak-store", "--keep-daily", "7", "--dry-run"}
	for _, tt := range []struct {
		name string
		env  string
		args []string
	}{
		{"schedule create, environment", image, schedule},
		{"schedule create, flag", "", append(schedule, "--mover-image", image)},
		{"deploy agent, environment", image, []string{"deploy", "agent"}},
		{"deploy agent, flag", "", []string{"deploy", "agent", "--mover-image", image}},
	} {
		t.Run(tt.name, func(t *testing.T) {
			t.Setenv("KBAK_MOVER_IMAGE", tt.env)
			if tt.env == "" {
				os.Unsetenv("KBAK_MOVER_IMAGE")
			}
			code, out, errs := kbak(t, tt.args...)
			if code != exitOK {
				t.Fatalf("exit %d: %s", code, errs)
			}
			if strings.Contains(out, "kbak.local/kbak:dev") || !strings.Contains(out, "image: "+image+"\n") || !strings.Contains(out, "value: "+image+"\n") {
				t.Errorf("the manifests do not run %s, or also run the default image:\n%s", image, out)
			}
		})
	}
}

// Without --mover-image, a build runs the image of its own version; a dev
// build the :dev one.
func TestDefaultMoverImageIsTheVersions(t *testing.T) {
	t.Setenv("KBAK_REPO", "")
	t.Setenv("KBAK_MOVER_IMAGE", "")
	os.Unsetenv("KBAK_MOVER_IMAGE")
	schedule := []string{"schedule", "create", "nightly", "sts/db", "-n", "shop", "--repo", scheduleRepo, "--cron", "@daily", "--secret", "kbak-store", "--keep-daily", "7", "--dry-run"}
	defer func(v string) { version = v }(version)
	for _, tt := range []struct{ version, image string }{
		{"v1.4.0", "kbak.local/kbak:v1.4.0"},
		{"dev", "kbak.local/kbak:dev"},
	} {
		version = tt.version
		for _, args := range [][]string{schedule, {"deploy", "agent"}} {
			code, out, errs := kbak(t, args...)
			if code != exitOK {
				t.Fatalf("kbak %v: exit %d: %s", args, code, errs)
			}
			if !strings.Contains(out, "image: "+tt.image+"\n") || !strings.Contains(out, "value: "+tt.image+"\n") {
				t.Errorf("version %s, kbak %v: want image %s everywhere:\n%s", tt.version, args, tt.image, out)
			}
		}
		_, out, _ := kbak(t, "backup", "--help")
		if !strings.Contains(out, `(default: "`+tt.image+`")`) {
			t.Errorf("version %s: backup --help does not give %s as the default:\n%s", tt.version, tt.image, out)
		}
	}
}
