package main

import (
	"encoding/json"
	"strings"
	"testing"
)

func TestRepoInitInfo(t *testing.T) {
	t.Setenv("AWS_EC2_METADATA_DISABLED", "true")
	url := "file://" + t.TempDir()
	code, _, errs := kbak(t, "repo", "info", "--repo", url)
	if code != exitFailed {
		t.Fatalf("info of an empty store: exit %d, want %d", code, exitFailed)
	}
	oneErrorLine(t, errs, "kbak repo init")
	if code, _, errs = kbak(t, "repo", "init", "--repo", url, "--encryption", "aes"); code != exitUsage {
		t.Fatalf("init with an unbuilt scheme: exit %d: %s", code, errs)
	}
	if code, _, errs = kbak(t, "repo", "init", "--repo", url); code != exitUsage {
		t.Fatalf("encrypted init without key files: exit %d: %s", code, errs)
	}
	oneErrorLine(t, errs, "--write-key-out")
	code, out, errs := kbak(t, "repo", "init", "--repo", url, "--encryption", "none")
	if code != 0 || !strings.Contains(out, "format 2") {
		t.Fatalf("init: exit %d: %s %s", code, out, errs)
	}
	if code, _, errs = kbak(t, "repo", "init", "--repo", url, "--encryption", "none"); code != exitFailed {
		t.Fatalf("second init: exit %d, want %d", code, exitFailed)
	}
	oneErrorLine(t, errs, "exists")
	code, out, errs = kbak(t, "repo", "info", "--repo", url, "-o", "json")
	if code != 0 {
		t.Fatalf("info: exit %d: %s", code, errs)
	}
	var info struct {
		Format     int    `json:"format"`
		Encryption string `json:"encryption"`
		Chunker    struct {
			AverageBits int `json:"averageBits"`
		} `json:"chunker"`
	}
	if err := json.Unmarshal([]byte(out), &info); err != nil || info.Format != 2 || info.Encryption != "none" || info.Chunker.AverageBits != 20 {
		t.Fatalf("info -o json = %s (%v)", out, err)
	}
}
