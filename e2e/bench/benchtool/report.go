package main

import (
	"bufio"
	"encoding/json"
	"flag"
	"fmt"
	"io"
	"math"
	"os"
	"slices"
	"strconv"
	"strings"
)

// contenders in column order: kbak is an encrypted repository (the
// default), kbak-plain the same format without encryption, kbak-f1 kbak's
// single-object format 1.
var contenders = []string{"kbak", "kbak-plain", "kbak-f1", "restic", "kopia"}

// compared are the contenders kbak's ratios are taken against.
var compared = []string{"restic", "kopia", "kbak-plain"}

// rowSpec is one line of the table: a metric e2e/bench.sh records.
type rowSpec struct {
	metric, label string
	unit          string // of the samples; "bytes" are shown in MB
	higher        bool   // a higher value is better
	// check says whether kbak meets the target, and which it is.
	check func(median map[string]float64, vs map[string]float64) (target string, met bool)
}

var rows = []rowSpec{
	{"full.mbps", "full backup", "MB/s", true, func(_, vs map[string]float64) (string, bool) {
		return "≥2.0x restic, ≥1.4x kopia, encryption ≥0.9x kbak-plain", vs["restic"] >= 2.0 && vs["kopia"] >= 1.4 && vs["kbak-plain"] >= 0.9
	}},
	{"full.rss", "  peak RSS", "MiB", false, nil},
	{"full.stored", "  repository size", "bytes", false, nil},
	{"change.secs", "second backup, 1 % changed", "s", false, nil},
	{"change.added", "  bytes added (as reported)", "bytes", false, nil},
	{"change.bucket", "  bucket growth", "bytes", false, nil},
	{"change.rss", "  peak RSS", "MiB", false, nil},
	{"unchanged.secs", "second backup, unchanged", "s", false, nil},
	{"unchanged.added", "  bytes added (as reported)", "bytes", false, nil},
	{"unchanged.bucket", "  bucket growth", "bytes", false, nil},
	{"unchanged.pct", "  bucket growth, % of full", "%", false, func(m, _ map[string]float64) (string, bool) {
		v, ok := m["kbak"]
		return "kbak < 1 %", ok && v < 1
	}},
	{"restore.mbps", "restore (latest)", "MB/s", true, nil},
	{"restore.rss", "  peak RSS", "MiB", false, nil},
	{"small.backup.secs", "{small} small files: backup", "s", false, nil},
	{"small.backup.rss", "  peak RSS", "MiB", false, nil},
	{"small.restore.secs", "{small} small files: restore", "s", false, nil},
	{"small.restore.rss", "  peak RSS", "MiB", false, nil},
}

// samples[server][metric][contender] holds every run's value, in run order.
type samples map[string]map[string]map[string][]float64

type resultRow struct {
	Metric         string               `json:"metric"`
	Label          string               `json:"label"`
	Unit           string               `json:"unit"`
	HigherIsBetter bool                 `json:"higherIsBetter"`
	Median         map[string]float64   `json:"median"`
	Samples        map[string][]float64 `json:"samples"`
	// KbakVs is how many times better kbak is than each other tool (>1:
	// kbak faster or smaller): kbak/other for rates, other/kbak otherwise.
	KbakVs map[string]float64 `json:"kbakVs,omitempty"`
	Target string             `json:"target,omitempty"`
	Met    *bool              `json:"met,omitempty"`
}

type serverResult struct {
	Server string      `json:"server"`
	Rows   []resultRow `json:"rows"`
}

type results struct {
	Meta    map[string]any `json:"meta"`
	Servers []serverResult `json:"servers"`
}

func reportCmd(args []string) error {
	fs := flag.NewFlagSet("report", flag.ContinueOnError)
	samplesPath := fs.String("samples", "", "tab-separated samples: server, contender, metric, value")
	metaPath := fs.String("meta", "", "key=value lines describing the run")
	jsonPath := fs.String("json", "", "write the results as JSON here")
	if err := fs.Parse(args); err != nil {
		return usageError{err.Error()}
	}
	if *samplesPath == "" || *metaPath == "" {
		return usageError{"report: --samples and --meta are required"}
	}
	s, order, err := readSamples(*samplesPath)
	if err != nil {
		return err
	}
	meta, metaOrder, err := readMeta(*metaPath)
	if err != nil {
		return err
	}
	res := summarize(s, order, meta)
	printTable(os.Stdout, res, metaOrder)
	if *jsonPath != "" {
		b, err := json.MarshalIndent(res, "", "  ")
		if err != nil {
			return err
		}
		if err := os.WriteFile(*jsonPath, append(b, '\n'), 0o644); err != nil {
			return fmt.Errorf("write %s: %w", *jsonPath, err)
		}
	}
	return nil
}

func readSamples(path string) (samples, []string, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, nil, fmt.Errorf("read samples: %w", err)
	}
	defer f.Close()
	s := samples{}
	var servers []string
	sc := bufio.NewScanner(f)
	for n := 1; sc.Scan(); n++ {
		fields := strings.Split(sc.Text(), "\t")
		if len(fields) != 4 {
			return nil, nil, fmt.Errorf("%s:%d: want server, contender, metric, value separated by tabs", path, n)
		}
		v, err := strconv.ParseFloat(fields[3], 64)
		if err != nil {
			return nil, nil, fmt.Errorf("%s:%d: value: %w", path, n, err)
		}
		server, contender, metric := fields[0], fields[1], fields[2]
		if s[server] == nil {
			s[server] = map[string]map[string][]float64{}
			servers = append(servers, server)
		}
		if s[server][metric] == nil {
			s[server][metric] = map[string][]float64{}
		}
		s[server][metric][contender] = append(s[server][metric][contender], v)
	}
	return s, servers, sc.Err()
}

func readMeta(path string) (map[string]any, []string, error) {
	b, err := os.ReadFile(path)
	if err != nil {
		return nil, nil, fmt.Errorf("read meta: %w", err)
	}
	meta := map[string]any{}
	var order []string
	for line := range strings.Lines(string(b)) {
		k, v, ok := strings.Cut(strings.TrimSpace(line), "=")
		if !ok {
			continue
		}
		if n, err := strconv.ParseFloat(v, 64); err == nil {
			meta[k] = n
		} else {
			meta[k] = v
		}
		order = append(order, k)
	}
	return meta, order, nil
}

func summarize(s samples, servers []string, meta map[string]any) results {
	res := results{Meta: meta}
	for _, server := range servers {
		sr := serverResult{Server: server}
		for _, spec := range rows {
			by := s[server][spec.metric]
			if len(by) == 0 {
				continue
			}
			r := resultRow{
				Metric: spec.metric, Label: strings.TrimSpace(expand(spec.label, meta)), Unit: spec.unit,
				HigherIsBetter: spec.higher, Median: map[string]float64{}, Samples: by,
			}
			for c, vs := range by {
				r.Median[c] = median(vs)
			}
			if k, ok := r.Median["kbak"]; ok {
				for _, other := range compared {
					if o, ok := r.Median[other]; ok {
						if v, ok := advantage(k, o, spec.higher); ok {
							if r.KbakVs == nil {
								r.KbakVs = map[string]float64{}
							}
							r.KbakVs[other] = math.Round(v*1000) / 1000
						}
					}
				}
			}
			if spec.check != nil {
				target, met := spec.check(r.Median, r.KbakVs)
				r.Target, r.Met = target, &met
			}
			sr.Rows = append(sr.Rows, r)
		}
		res.Servers = append(res.Servers, sr)
	}
	return res
}

func expand(label string, meta map[string]any) string {
	if n, ok := meta["smallFiles"].(float64); ok {
		label = strings.ReplaceAll(label, "{small}", strconv.FormatFloat(n, 'f', -1, 64))
	}
	return label
}

func median(vs []float64) float64 {
	s := slices.Sorted(slices.Values(vs))
	n := len(s)
	if n%2 == 1 {
		return s[n/2]
	}
	return (s[n/2-1] + s[n/2]) / 2
}

// advantage is how many times better kbak's value is than other's.
func advantage(kbak, other float64, higher bool) (float64, bool) {
	num, den := kbak, other
	if !higher {
		num, den = other, kbak
	}
	if den == 0 || math.IsNaN(num/den) {
		return 0, false
	}
	return num / den, true
}

func printTable(w io.Writer, res results, metaOrder []string) {
	var parts []string
	for _, k := range metaOrder {
		v := fmt.Sprint(res.Meta[k])
		if f, ok := res.Meta[k].(float64); ok {
			v = strconv.FormatFloat(f, 'f', -1, 64)
		}
		parts = append(parts, k+"="+v)
	}
	fmt.Fprintf(w, "\nbench: %s\n", strings.Join(parts, " "))
	fmt.Fprintln(w, "vs restic, vs kopia, vs plain: how many times faster (or smaller) kbak (encrypted) is; >1 means kbak is better. Medians of all runs.")
	fmt.Fprintln(w, "kbak: format 2, encrypted; kbak plain: format 2 without encryption; kbak f1: format 1.")
	fmt.Fprintln(w, "bytes added (as reported): kbak's storedBytes, restic's data_added_packed, kopia's bucket growth (it reports none).")
	const head = "%-32s %-5s %10s %10s %10s %10s %10s %10s %10s %10s  %s\n"
	for _, sr := range res.Servers {
		fmt.Fprintf(w, "\n"+head, "S3 server: "+sr.Server, "unit", "kbak", "kbak plain", "kbak f1", "restic", "kopia", "vs restic", "vs kopia", "vs plain", "target")
		for _, r := range sr.Rows {
			spec := specOf(r.Metric)
			unit := r.Unit
			scale := 1.0
			if unit == "bytes" {
				unit, scale = "MB", 1e6
			}
			cells := []any{expand(spec.label, res.Meta), unit}
			for _, c := range contenders {
				if v, ok := r.Median[c]; ok {
					cells = append(cells, number(v/scale))
				} else {
					cells = append(cells, "-")
				}
			}
			for _, other := range compared {
				if v, ok := r.KbakVs[other]; ok {
					cells = append(cells, number(v)+"x")
				} else {
					cells = append(cells, "-")
				}
			}
			target := r.Target
			if r.Met != nil {
				target += map[bool]string{true: ": met", false: ": NOT met"}[*r.Met]
			}
			fmt.Fprintf(w, head, append(cells, target)...)
		}
	}
}

func specOf(metric string) rowSpec {
	for _, r := range rows {
		if r.metric == metric {
			return r
		}
	}
	return rowSpec{metric: metric, label: metric}
}

// number prints about three significant digits.
func number(v float64) string {
	switch a := math.Abs(v); {
	case a >= 100:
		return strconv.FormatFloat(v, 'f', 0, 64)
	case a >= 10:
		return strconv.FormatFloat(v, 'f', 1, 64)
	case a >= 1:
		return strconv.FormatFloat(v, 'f', 2, 64)
	}
	return strconv.FormatFloat(v, 'f', 3, 64)
}
