package main

import (
	"fmt"
	"io"
	"os"
	"slices"
	"strings"
	"sync"
	"time"

	"golang.org/x/term"

	"github.com/kbak/kbak/internal/mover"
)

// progressPrinter turns the movers' events into a display on stderr: on a
// terminal a block of one line per volume redrawn in place, elsewhere (CI
// logs, a CronJob) one line per volume every logEvery.
type progressPrinter struct {
	mu       sync.Mutex
	w        io.Writer
	tty      bool
	now      func() time.Time
	vols     map[string]*volumeProgress
	order    []string
	drawn    int // lines of the last terminal redraw
	lastDraw time.Time
}

type volumeProgress struct {
	started time.Time
	p       mover.Progress
	logged  time.Time
	state   string // "", "done" or the error
	elapsed time.Duration
}

const (
	redrawEvery = 250 * time.Millisecond
	logEvery    = 10 * time.Second
)

func newProgressPrinter(w io.Writer, tty bool) *progressPrinter {
	return &progressPrinter{w: w, tty: tty, now: time.Now, vols: map[string]*volumeProgress{}}
}

func isTerminal(w io.Writer) bool {
	f, ok := w.(*os.File)
	return ok && term.IsTerminal(int(f.Fd()))
}

// event records one mover event of volume pvc.
func (pp *progressPrinter) event(pvc string, ev mover.Event) {
	pp.mu.Lock()
	defer pp.mu.Unlock()
	now := pp.now()
	v, ok := pp.vols[pvc]
	if !ok {
		v = &volumeProgress{started: now, logged: now}
		pp.vols[pvc] = v
		pp.order = append(pp.order, pvc)
		slices.Sort(pp.order)
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
		v.elapsed = now.Sub(v.started)
		// The mover's own clock covers the whole transfer, also the part
		// before its first progress line reached us.
		if r := ev.Result; r != nil && r.Finished.After(r.Started) {
			v.elapsed = r.Finished.Sub(r.Started)
		}
	}
	if pp.tty {
		if final || now.Sub(pp.lastDraw) >= redrawEvery {
			pp.redraw(now)
		}
		return
	}
	if final || now.Sub(v.logged) >= logEvery {
		v.logged = now
		fmt.Fprintln(pp.w, pp.line(pvc, v, now))
	}
}

// done draws the final state once more.
func (pp *progressPrinter) done() {
	pp.mu.Lock()
	defer pp.mu.Unlock()
	if pp.tty && len(pp.order) > 0 {
		pp.redraw(pp.now())
	}
}

func (pp *progressPrinter) redraw(now time.Time) {
	var b strings.Builder
	if pp.drawn > 0 {
		fmt.Fprintf(&b, "\033[%dA", pp.drawn) // back to the top of the block
	}
	for _, pvc := range pp.order {
		b.WriteString("\033[2K" + pp.line(pvc, pp.vols[pvc], now) + "\n")
	}
	pp.drawn = len(pp.order)
	pp.lastDraw = now
	_, _ = io.WriteString(pp.w, b.String())
}

func (pp *progressPrinter) line(pvc string, v *volumeProgress, now time.Time) string {
	elapsed := v.elapsed
	if v.state == "" {
		elapsed = now.Sub(v.started)
	}
	rate := 0.0
	if s := elapsed.Seconds(); s > 0 {
		rate = float64(v.p.RawBytes) / s
	}
	switch {
	case v.state == "done":
		return fmt.Sprintf("%-32s done   %s, %d files in %s (%s/s)", pvc, humanBytes(v.p.RawBytes), v.p.Files, elapsed.Round(time.Millisecond), humanBytes(int64(rate)))
	case v.state != "":
		return fmt.Sprintf("%-32s %s", pvc, v.state)
	}
	size := humanBytes(v.p.RawBytes)
	eta := ""
	if v.p.TotalBytes > v.p.RawBytes && rate > 0 {
		size += " / " + humanBytes(v.p.TotalBytes)
		eta = "  ETA " + time.Duration(float64(v.p.TotalBytes-v.p.RawBytes)/rate*float64(time.Second)).Round(time.Second).String()
	}
	return fmt.Sprintf("%-32s %s  %s/s  %d files%s", pvc, size, humanBytes(int64(rate)), v.p.Files, eta)
}
