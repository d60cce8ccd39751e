package main

import (
	"bytes"
	"fmt"
	"io"
	"log/slog"
	"os"
	"slices"
	"strings"
	"sync"
	"time"

	"golang.org/x/term"

	"github.com/kbak/kbak/internal/mover"
)

// progressPrinter owns stderr. It turns the movers' events into a display:
// on a terminal a block of one line per volume and an overall line, redrawn
// in place, with every other line written to stderr (logs, warnings) put
// above it; elsewhere (CI logs, a CronJob) one line per volume every
// logEvery; with --log-format json, log records.
type progressPrinter struct {
	mu    sync.Mutex
	w     io.Writer
	tty   bool         // w is a terminal that can redraw
	log   *slog.Logger // progress as log records (--log-format json), instead of lines
	width func() int   // columns of the terminal, 0 when unknown
	now   func() time.Time

	vols     map[string]*volumeProgress
	order    []string
	first    time.Time // when the first mover of the display started
	last     time.Time // when the last mover to end did
	drawn    int       // lines of the block on the screen
	lastDraw time.Time
}

type volumeProgress struct {
	queued  bool  // announced, no mover event yet
	expect  int64 // raw bytes the run expects (the manifest, the last backup), 0 unknown
	started time.Time
	p       mover.Progress
	logged  time.Time
	state   string // "", "done" or the error
	elapsed time.Duration
}

const (
	redrawEvery = 250 * time.Millisecond
	logEvery    = 10 * time.Second
	// maxBlockVolumes caps the volume lines of the block on a terminal of
	// unknown height: a block taller than the screen cannot be redrawn.
	maxBlockVolumes = 20
)

func newProgressPrinter(w io.Writer, tty bool) *progressPrinter {
	pp := &progressPrinter{w: w, tty: tty, now: time.Now, width: func() int { return 0 }, vols: map[string]*volumeProgress{}}
	if f, ok := w.(*os.File); ok && tty {
		pp.width = func() int {
			cols, _, err := term.GetSize(int(f.Fd()))
			if err != nil {
				return 0
			}
			return cols
		}
	}
	return pp
}

// isTerminal says whether w is a terminal that can redraw a block in place.
func isTerminal(w io.Writer) bool {
	f, ok := w.(*os.File)
	return ok && term.IsTerminal(int(f.Fd())) && os.Getenv("TERM") != "dumb"
}

// live says whether the block is drawn in place.
func (pp *progressPrinter) live() bool { return pp.tty && pp.log == nil }

// Write writes a line of stderr (a log record, a warning) above the block.
func (pp *progressPrinter) Write(p []byte) (int, error) {
	pp.mu.Lock()
	defer pp.mu.Unlock()
	if pp.drawn == 0 {
		return pp.w.Write(p)
	}
	var b bytes.Buffer
	pp.clear(&b)
	b.Write(p)
	if !bytes.HasSuffix(p, []byte("\n")) {
		b.WriteByte('\n') // the block starts on a line of its own
	}
	pp.render(&b, pp.now())
	if _, err := pp.w.Write(b.Bytes()); err != nil {
		return 0, err
	}
	return len(p), nil
}

// queue announces a volume the run will move, before its mover starts,
// with the raw bytes the run expects of it (0 when unknown).
func (pp *progressPrinter) queue(pvc string, bytes int64) {
	pp.mu.Lock()
	defer pp.mu.Unlock()
	v := pp.volume(pvc)
	v.queued, v.expect = true, max(bytes, 0)
	if pp.live() { // a few calls, before any mover starts
		pp.redraw(pp.now())
	}
}

func (pp *progressPrinter) volume(pvc string) *volumeProgress {
	v, ok := pp.vols[pvc]
	if !ok {
		v = &volumeProgress{}
		pp.vols[pvc] = v
		pp.order = append(pp.order, pvc)
		slices.Sort(pp.order)
	}
	return v
}

// event records one mover event of volume pvc.
func (pp *progressPrinter) event(pvc string, ev mover.Event) {
	pp.mu.Lock()
	defer pp.mu.Unlock()
	now := pp.now()
	v := pp.volume(pvc)
	if v.state != "" {
		return // a run's own word after the mover's last
	}
	if v.started.IsZero() {
		v.queued, v.started, v.logged = false, now, now
		if pp.first.IsZero() {
			pp.first = now
		}
	}
	final := false
	switch ev.Type {
	case mover.EventProgress:
		if ev.Progress != nil {
			v.p = *ev.Progress
		}
	case mover.EventResult:
		v.state, final = "done", true
		if r := ev.Result; r != nil {
			v.p.RawBytes, v.p.StoredBytes, v.p.Files = r.RawBytes, r.StoredBytes, r.Files
		}
	case mover.EventError:
		v.state, final = "failed: "+ev.Error, true
	}
	if final {
		pp.last = now
		v.elapsed = now.Sub(v.started)
		// The mover's own clock covers the whole transfer, also the part
		// before its first progress line reached us.
		if r := ev.Result; r != nil && r.Finished.After(r.Started) {
			v.elapsed = r.Finished.Sub(r.Started)
		}
	}
	switch {
	case pp.live():
		if final || now.Sub(pp.lastDraw) >= redrawEvery {
			pp.redraw(now)
		}
	case final || now.Sub(v.logged) >= logEvery:
		v.logged = now
		pp.print(pvc, v, now)
	}
}

// print writes volume v's line, or log record, where nothing is redrawn.
func (pp *progressPrinter) print(pvc string, v *volumeProgress, now time.Time) {
	if pp.log == nil {
		fmt.Fprintln(pp.w, pp.line(pvc, v, now))
		return
	}
	state := v.state
	switch {
	case strings.HasPrefix(state, "failed: "):
		state = "failed"
	case state == "":
		state = "running"
	}
	args := []any{"pvc", pvc, "state", state, "bytes", v.p.RawBytes, "files", v.p.Files}
	if exp := v.expected(); exp > 0 {
		args = append(args, "expected_bytes", exp)
	}
	rate := v.rate(now)
	args = append(args, "bytes_per_second", int64(rate))
	if eta, ok := v.eta(now); ok {
		args = append(args, "eta", eta.String())
	}
	if strings.HasPrefix(v.state, "failed: ") {
		args = append(args, "err", strings.TrimPrefix(v.state, "failed: "))
	}
	pp.log.Info("progress", args...)
}

// done ends the display: the block is drawn once more and stays on the
// screen, volumes never started are marked so, and a later display (a
// verify's test restore) starts afresh below it.
func (pp *progressPrinter) done() {
	pp.mu.Lock()
	defer pp.mu.Unlock()
	now := pp.now()
	for _, pvc := range pp.order {
		if v := pp.vols[pvc]; v.queued {
			v.queued, v.state = false, "not started"
		}
	}
	switch {
	case len(pp.order) == 0:
	case pp.live():
		pp.redraw(now)
	case pp.log != nil:
		pp.log.Info("progress total", pp.totalArgs(now)...)
	case len(pp.order) > 1:
		fmt.Fprintln(pp.w, pp.overall(now))
	}
	pp.vols, pp.order, pp.first, pp.last, pp.drawn = map[string]*volumeProgress{}, nil, time.Time{}, time.Time{}, 0
}

func (pp *progressPrinter) redraw(now time.Time) {
	var b bytes.Buffer
	pp.clear(&b)
	pp.render(&b, now)
	_, _ = pp.w.Write(b.Bytes())
}

// clear moves to the start of the block and erases it.
func (pp *progressPrinter) clear(b *bytes.Buffer) {
	if pp.drawn > 0 {
		fmt.Fprintf(b, "\033[%dA\r\033[J", pp.drawn)
	}
	pp.drawn = 0
}

// render writes the block: the volume lines and the overall line, each
// cut to the terminal's width so that none wraps and the next redraw
// knows how many lines to go back.
func (pp *progressPrinter) render(b *bytes.Buffer, now time.Time) {
	if len(pp.order) == 0 {
		return
	}
	lines := pp.blockLines(now)
	width := pp.width()
	for _, l := range lines {
		if width > 0 {
			l = cut(l, width-1)
		}
		b.WriteString(l + "\n")
	}
	pp.drawn = len(lines)
	pp.lastDraw = now
}

// blockLines are the lines of the block: one per volume, at most
// maxBlockVolumes (the running and failed ones first, the rest counted
// on one line), and the overall line.
func (pp *progressPrinter) blockLines(now time.Time) []string {
	shown := pp.order
	more := ""
	if len(pp.order) > maxBlockVolumes {
		rank := func(v *volumeProgress) int {
			switch {
			case v.state == "" && !v.queued:
				return 0 // running
			case v.state != "" && v.state != "done":
				return 1 // failed
			case v.queued:
				return 2
			}
			return 3
		}
		byRank := slices.Clone(pp.order)
		slices.SortStableFunc(byRank, func(a, b string) int { return rank(pp.vols[a]) - rank(pp.vols[b]) })
		shown = slices.Clone(byRank[:maxBlockVolumes-1])
		slices.Sort(shown)
		var done, queued int
		for _, pvc := range byRank[maxBlockVolumes-1:] {
			if pp.vols[pvc].queued {
				queued++
			} else {
				done++
			}
		}
		more = fmt.Sprintf("… and %d more: %d queued, %d done", len(byRank)-len(shown), queued, done)
	}
	lines := make([]string, 0, len(shown)+2)
	for _, pvc := range shown {
		lines = append(lines, pp.line(pvc, pp.vols[pvc], now))
	}
	if more != "" {
		lines = append(lines, more)
	}
	return append(lines, pp.overall(now))
}

// cut shortens s to n runes.
func cut(s string, n int) string {
	r := []rune(s)
	if n < 1 || len(r) <= n {
		return s
	}
	return string(r[:n-1]) + "…"
}

// expected is the raw bytes volume v is expected to move: the mover's
// estimate, else the run's, 0 when unknown. The mover's total (a claim's
// capacity) is an upper bound, no estimate.
func (v *volumeProgress) expected() int64 {
	if v.p.EstimateBytes > 0 {
		return v.p.EstimateBytes
	}
	return v.expect
}

func (v *volumeProgress) running() bool { return v.state == "" && !v.started.IsZero() }

func (v *volumeProgress) rate(now time.Time) float64 {
	elapsed := v.elapsed
	if v.state == "" {
		elapsed = now.Sub(v.started)
	}
	if s := elapsed.Seconds(); s > 0 && !v.started.IsZero() {
		return float64(v.p.RawBytes) / s
	}
	return 0
}

// eta is the time left of a running volume, when it is expected to move
// more than it has.
func (v *volumeProgress) eta(now time.Time) (time.Duration, bool) {
	exp, rate := v.expected(), v.rate(now)
	if !v.running() || exp <= v.p.RawBytes || rate <= 0 {
		return 0, false
	}
	return time.Duration(float64(exp-v.p.RawBytes) / rate * float64(time.Second)).Round(time.Second), true
}

func (pp *progressPrinter) line(pvc string, v *volumeProgress, now time.Time) string {
	rate := v.rate(now)
	switch {
	case v.queued:
		if v.expect > 0 {
			return fmt.Sprintf("%-32s queued (about %s)", pvc, humanBytes(v.expect))
		}
		return fmt.Sprintf("%-32s queued", pvc)
	case v.state == "done":
		return fmt.Sprintf("%-32s done   %s, %d files in %s (%s/s)", pvc, humanBytes(v.p.RawBytes), v.p.Files, v.elapsed.Round(time.Millisecond), humanBytes(int64(rate)))
	case v.state != "":
		return fmt.Sprintf("%-32s %s", pvc, v.state)
	}
	size := humanBytes(v.p.RawBytes)
	if exp := v.expected(); exp > v.p.RawBytes {
		size += " / " + humanBytes(exp)
	}
	eta := ""
	if d, ok := v.eta(now); ok {
		eta = "  ETA " + d.String()
	}
	return fmt.Sprintf("%-32s %s  %s/s  %d files%s", pvc, size, humanBytes(int64(rate)), v.p.Files, eta)
}

// totals are the whole display's figures.
type totals struct {
	volumes, done, failed, running, queued int
	bytes                                  int64
	expected                               int64 // 0 when some volume's is unknown
	rate                                   float64
	eta                                    time.Duration
	etaKnown                               bool
}

func (pp *progressPrinter) totals(now time.Time) totals {
	t := totals{volumes: len(pp.order)}
	known := true
	for _, pvc := range pp.order {
		v := pp.vols[pvc]
		t.bytes += v.p.RawBytes
		switch {
		case v.queued:
			t.queued++
		case v.state == "done":
			t.done++
		case v.state != "":
			t.failed++
		default:
			t.running++
		}
		switch {
		case v.state != "": // what it moved is all it will
			t.expected += v.p.RawBytes
		case v.expected() > 0:
			t.expected += max(v.expected(), v.p.RawBytes)
		default:
			known = false
		}
	}
	if !known {
		t.expected = 0
	}
	end := now
	if t.running+t.queued == 0 && pp.last.After(pp.first) {
		end = pp.last // the movers' time, not what the run did after
	}
	if s := end.Sub(pp.first).Seconds(); !pp.first.IsZero() && s > 0 {
		t.rate = float64(t.bytes) / s
	}
	if t.expected > t.bytes && t.rate > 0 && t.running+t.queued > 0 {
		t.eta, t.etaKnown = time.Duration(float64(t.expected-t.bytes)/t.rate*float64(time.Second)).Round(time.Second), true
	}
	return t
}

// overall is the line of the whole display: volumes done of all, bytes,
// rate and the time left.
func (pp *progressPrinter) overall(now time.Time) string {
	t := pp.totals(now)
	var b strings.Builder
	fmt.Fprintf(&b, "overall: %d/%d volumes done", t.done, t.volumes)
	for _, c := range []struct {
		n    int
		what string
	}{{t.running, "running"}, {t.queued, "queued"}, {t.failed, "failed"}} {
		if c.n > 0 {
			fmt.Fprintf(&b, ", %d %s", c.n, c.what)
		}
	}
	b.WriteString("  " + humanBytes(t.bytes))
	if t.expected > t.bytes {
		b.WriteString(" / " + humanBytes(t.expected))
	}
	fmt.Fprintf(&b, "  %s/s", humanBytes(int64(t.rate)))
	if t.etaKnown {
		b.WriteString("  ETA " + t.eta.String())
	}
	return b.String()
}

func (pp *progressPrinter) totalArgs(now time.Time) []any {
	t := pp.totals(now)
	return []any{"volumes", t.volumes, "done", t.done, "failed", t.failed, "bytes", t.bytes, "bytes_per_second", int64(t.rate)}
}
