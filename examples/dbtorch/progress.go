package main

import (
	"context"
	"fmt"
	"io"
	"sort"
	"strings"
	"sync"
	"time"

	"github.com/dbtorch/dbtorch/orchestrator"
)

// printSummary prints the counts, the failures and the skips.
func printSummary(w io.Writer, run *orchestrator.Run) {
	var b strings.Builder
	fmt.Fprintf(&b, "\nDone in %s: %d nodes, %d success, %d error, %d skipped, %d cached\n",
		run.CompletedAt.Sub(run.StartedAt).Round(10*time.Millisecond), len(run.Results),
		run.Count(orchestrator.Success), run.Count(orchestrator.Error), run.Count(orchestrator.Skipped), run.Count(orchestrator.Cached))
	for _, w := range run.Warnings {
		fmt.Fprintf(&b, "  WARNING %s\n", w)
	}
	for _, r := range run.Results {
		if r.Status == orchestrator.Error && r.Err != nil {
			fmt.Fprintf(&b, "  ERROR %s [%s]: %s\n", r.UniqueID, r.Err.Kind, firstLine(r.Err.Message))
		}
	}
	skipped := map[string]int{}
	for _, r := range run.Results {
		if r.Status == orchestrator.Skipped {
			skipped[r.SkipReason]++
		}
	}
	reasons := make([]string, 0, len(skipped))
	for r := range skipped {
		reasons = append(reasons, r)
	}
	sort.Strings(reasons)
	for _, r := range reasons {
		fmt.Fprintf(&b, "  skipped %d: %s\n", skipped[r], r)
	}
	io.WriteString(w, b.String())
}

func firstLine(s string) string {
	s = strings.TrimSpace(s)
	if l, _, ok := strings.Cut(s, "\n"); ok {
		return l + " ..."
	}
	return s
}

// progress shows a build's progress: on a terminal one status line,
// redrawn in place, with a line per finished node above it; otherwise one
// plain line per finished node.
type progress struct {
	w    io.Writer
	tty  bool
	mu   sync.Mutex
	tick *time.Ticker
	done chan struct{}

	start                          time.Time
	total, finished, running, retr int
	counts                         map[orchestrator.Status]int
}

func newProgress(w io.Writer, tty bool) *progress {
	p := &progress{w: w, tty: tty, counts: map[orchestrator.Status]int{}, done: make(chan struct{})}
	if tty {
		p.tick = time.NewTicker(500 * time.Millisecond)
		go func() {
			for {
				select {
				case <-p.tick.C:
					p.mu.Lock()
					p.redraw()
					p.mu.Unlock()
				case <-p.done:
					return
				}
			}
		}()
	}
	return p
}

func (p *progress) stop() {
	if p.tick != nil {
		p.tick.Stop()
	}
	close(p.done)
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.tty {
		fmt.Fprint(p.w, "\r\033[K")
	}
}

// Event implements orchestrator.Observer.
func (p *progress) Event(_ context.Context, e orchestrator.Event) {
	p.mu.Lock()
	defer p.mu.Unlock()
	switch e.Type {
	case orchestrator.RunStarted:
		p.start = e.Time
		p.total = e.Plan.Len()
		fmt.Fprintf(p.w, "Building %d nodes in %d waves (run %s)\n", p.total, len(e.Plan.Waves()), e.RunID)
	case orchestrator.NodeStarted:
		if e.Attempt == 1 {
			p.running++
		}
	case orchestrator.NodeRetrying:
		p.retr++
		p.line(fmt.Sprintf("RETRY  %s (attempt %d failed: %s; next in %s)", e.Node, e.Attempt, errText(e.Error), e.Delay.Round(time.Millisecond)))
	case orchestrator.NodeFinished:
		r := e.Result
		if len(r.Attempts) > 0 {
			p.running--
		}
		p.finished++
		p.counts[r.Status]++
		p.line(nodeLine(p.finished, p.total, r))
	}
	p.redraw()
}

func errText(e *orchestrator.NodeError) string {
	if e == nil {
		return "error"
	}
	return string(e.Kind) + ": " + firstLine(e.Message)
}

func nodeLine(k, total int, r *orchestrator.NodeResult) string {
	word := map[orchestrator.Status]string{orchestrator.Success: "OK", orchestrator.Error: "ERROR",
		orchestrator.Skipped: "SKIP", orchestrator.Cached: "CACHED"}[r.Status]
	if r.Status == orchestrator.Success && r.DBTStatus != "" && r.DBTStatus != "success" {
		word = strings.ToUpper(r.DBTStatus)
	}
	s := fmt.Sprintf("%*d/%d %-6s %s", len(fmt.Sprint(total)), k, total, word, r.UniqueID)
	switch r.Status {
	case orchestrator.Success, orchestrator.Error:
		s += fmt.Sprintf(" (%s", r.CompletedAt.Sub(r.StartedAt).Round(10*time.Millisecond))
		if len(r.Attempts) > 1 {
			s += fmt.Sprintf(", %d attempts", len(r.Attempts))
		}
		if r.RowsAffected != nil {
			s += fmt.Sprintf(", %d rows", *r.RowsAffected)
		}
		s += ")"
		if r.Err != nil {
			s += " " + errText(r.Err)
		}
	case orchestrator.Skipped:
		s += " (" + r.SkipReason
		if len(r.FailedUpstream) > 0 {
			s += ": " + strings.Join(r.FailedUpstream, ", ")
		}
		s += ")"
	}
	return s
}

// line prints a permanent line (above the status line on a terminal).
func (p *progress) line(s string) {
	if p.tty {
		fmt.Fprint(p.w, "\r\033[K")
	}
	fmt.Fprintln(p.w, s)
}

// redraw draws the status line on a terminal.
func (p *progress) redraw() {
	if !p.tty || p.total == 0 {
		return
	}
	const width = 24
	done := p.finished * width / p.total
	bar := strings.Repeat("#", done) + strings.Repeat(".", width-done)
	fmt.Fprintf(p.w, "\r\033[K[%s] %d/%d  running %d  ok %d  error %d  skipped %d  cached %d  %s",
		bar, p.finished, p.total, p.running, p.counts[orchestrator.Success], p.counts[orchestrator.Error],
		p.counts[orchestrator.Skipped], p.counts[orchestrator.Cached], time.Since(p.start).Round(time.Second))
}
