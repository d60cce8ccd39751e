package main

import (
	"bytes"
	"encoding/json"
	"fmt"
	"io"
	"slices"
	"strings"
	"time"

	"github.com/urfave/cli/v2"
	"sigs.k8s.io/yaml"

	"github.com/kbak/kbak/internal/catalog"
	"github.com/kbak/kbak/internal/repo"
	"github.com/kbak/kbak/internal/retention"
	"github.com/kbak/kbak/internal/upkeep"
	"github.com/kbak/kbak/restore"
)

// Output formats of -o, as kubectl names them.
const (
	formatTable = "table"
	formatWide  = "wide"
	formatJSON  = "json"
	formatYAML  = "yaml"
)

// outputAPIVersion is the apiVersion of everything kbak prints as JSON or
// YAML: the manifest's, so a Backup reads the same in the bucket and on
// stdout.
const outputAPIVersion = catalog.APIVersion

func outputFlag() cli.Flag {
	return &cli.StringFlag{Name: "output", Aliases: []string{"o"}, Value: formatTable, Usage: "output format: table, json or yaml"}
}

// wideOutputFlag is outputFlag of a verb whose table has more columns.
func wideOutputFlag() cli.Flag {
	return &cli.StringFlag{Name: "output", Aliases: []string{"o"}, Value: formatTable, Usage: "output format: table, wide (more columns), json or yaml"}
}

// outputFormat validates -o against the formats the verb prints.
func outputFormat(c *cli.Context, also ...string) (string, error) {
	allowed := append([]string{formatTable}, also...)
	allowed = append(allowed, formatJSON, formatYAML)
	o := c.String("output")
	if slices.Contains(allowed, o) {
		return o, nil
	}
	return "", usagef("unknown output format %q: use -o %s", o, strings.Join(allowed, ", -o "))
}

// structured says whether format is one of the machine-readable ones.
func structured(format string) bool { return format == formatJSON || format == formatYAML }

// objectList is how kbak prints several things of one kind, as Kubernetes
// prints a list.
type objectList struct {
	APIVersion string `json:"apiVersion"`
	Kind       string `json:"kind"`
	Items      any    `json:"items"`
}

// listOf wraps items (a slice, nil is printed as []) as a list of kind.
func listOf(kind string, items any) objectList {
	b, _ := json.Marshal(items)
	if string(b) == "null" {
		items = []struct{}{}
	}
	return objectList{APIVersion: outputAPIVersion, Kind: kind, Items: items}
}

// typedJSON encodes v, a JSON object, with apiVersion and kind first
// unless it carries its own (a manifest does).
func typedJSON(kind string, v any) ([]byte, error) {
	b, err := json.Marshal(v)
	if err != nil {
		return nil, fmt.Errorf("encode %s: %w", kind, err)
	}
	var head struct {
		APIVersion string `json:"apiVersion"`
		Kind       string `json:"kind"`
	}
	if len(b) == 0 || b[0] != '{' {
		return nil, fmt.Errorf("encode %s: %T is no JSON object", kind, v)
	}
	if err := json.Unmarshal(b, &head); err == nil && head.APIVersion != "" && head.Kind != "" {
		return b, nil
	}
	typeMeta := fmt.Sprintf(`{"apiVersion":%q,"kind":%q`, outputAPIVersion, kind)
	if string(b) == "{}" {
		return []byte(typeMeta + "}"), nil
	}
	return append([]byte(typeMeta+","), b[1:]...), nil
}

// printStructured writes v as kind in format json or yaml.
func printStructured(c *cli.Context, format, kind string, v any) error {
	return writeStructured(stdout(c), format, kind, v)
}

func writeStructured(w io.Writer, format, kind string, v any) error {
	var b []byte
	var err error
	if l, ok := v.(objectList); ok {
		b, err = json.Marshal(l)
	} else {
		b, err = typedJSON(kind, v)
	}
	if err != nil {
		return err
	}
	switch format {
	case formatYAML:
		if b, err = yaml.JSONToYAML(b); err != nil {
			return fmt.Errorf("encode %s as YAML: %w", kind, err)
		}
	default:
		var buf bytes.Buffer
		if err := json.Indent(&buf, b, "", "  "); err != nil {
			return fmt.Errorf("encode %s: %w", kind, err)
		}
		buf.WriteByte('\n')
		b = buf.Bytes()
	}
	if _, err := w.Write(b); err != nil {
		return fmt.Errorf("write %s: %w", format, err)
	}
	return nil
}

// verifyOutput is kbak verify -o json|yaml: a Verification.
type verifyOutput struct {
	Backup      string                `json:"backup"`
	Status      catalog.Status        `json:"status"`
	Volumes     []restore.VolumeCheck `json:"volumes"`
	RestoreTest *restore.VerifyResult `json:"restoreTest,omitempty"`
}

// pruneOutput is kbak prune -o json|yaml: a PruneResult.
type pruneOutput struct {
	// Namespace pruned; empty with AllNamespaces (-A).
	Namespace     string                 `json:"namespace,omitempty"`
	AllNamespaces bool                   `json:"allNamespaces,omitempty"`
	StatefulSet   string                 `json:"statefulSet,omitempty"` // --statefulset
	DryRun        bool                   `json:"dryRun"`
	Keep          []pruneDecision        `json:"keep"`
	Remove        []pruneDecision        `json:"remove"`
	Data          *repo.SweepResult      `json:"data,omitempty"`
	DataDeferred  string                 `json:"dataDeferred,omitempty"`
	Locked        []catalog.LockedBackup `json:"locked,omitempty"`
}

type pruneDecision struct {
	ID          string    `json:"id"`
	Namespace   string    `json:"namespace"`
	StatefulSet string    `json:"statefulSet"`
	Created     time.Time `json:"created"`
	Completed   bool      `json:"completed"`
	Reasons     []string  `json:"reasons"`
}

func newPruneOutput(ns, sts string, dryRun bool, res retention.PruneResult) pruneOutput {
	decisions := func(ds []retention.Decision) []pruneDecision {
		out := make([]pruneDecision, 0, len(ds))
		for _, d := range ds {
			reasons := d.Reasons
			if reasons == nil {
				reasons = []string{}
			}
			out = append(out, pruneDecision{ID: d.Item.ID, Namespace: d.Item.Namespace, StatefulSet: d.Item.StatefulSet,
				Created: d.Item.Time.UTC(), Completed: d.Item.Successful, Reasons: reasons})
		}
		return out
	}
	return pruneOutput{Namespace: ns, AllNamespaces: ns == "", StatefulSet: sts, DryRun: dryRun,
		Keep: decisions(res.Keep), Remove: decisions(res.Remove), Data: res.Data, DataDeferred: res.DataDeferred, Locked: res.Locked}
}

// gcOutput is kbak gc -o json|yaml: a GCResult.
type gcOutput struct {
	Namespace     string `json:"namespace,omitempty"`
	AllNamespaces bool   `json:"allNamespaces,omitempty"`
	DryRun        bool   `json:"dryRun"`
	upkeep.GCResult
}
