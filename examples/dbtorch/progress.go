package main

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"regexp"
	"sort"
	"strconv"
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
	for i := range run.Results {
		if r := &run.Results[i]; r.Status == orchestrator.Error && r.Err != nil {
			fmt.Fprintf(&b, "  %s %s [%s]: %s\n", statusWord(r), r.UniqueID, r.Err.Kind, causeLine(r.Err.Message))
		}
	}
	skipped := map[string]int{}
	for i := range run.Results {
		if r := &run.Results[i]; r.Status == orchestrator.Skipped {
			skipped[skipText(r)]++
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

// causeLine returns the line of a dbt error message that says what went
// wrong. dbt's messages (and the tail of its log when it wrote no result)
// put a header naming the kind of error ("Runtime Error in model x
// (models/x.sql)", "Database Error", "... FailedToConnectError: Database
// Error") before the cause (the warehouse's "Binder Error: ...",
// "connection to server ... failed: Connection refused"): the cause is the
// line after the last header; without a header, the first line.
//
// Lines of dbt's JSON log count for their message when they are errors,
// and are left out otherwise.
func causeLine(msg string) string {
	var lines []string
	for l := range strings.Lines(msg) {
		l = strings.TrimSpace(l)
		var rec struct {
			Info struct{ Level, Msg string } `json:"info"`
		}
		if strings.HasPrefix(l, "{") && json.Unmarshal([]byte(l), &rec) == nil {
			if rec.Info.Level != "error" {
				continue
			}
			l = rec.Info.Msg
		}
		for l := range strings.Lines(l) {
			if t := strings.TrimSpace(logTime.ReplaceAllString(strings.TrimSpace(l), "")); t != "" {
				lines = append(lines, t)
			}
		}
	}
	at := 0
	for i := len(lines) - 2; i >= 0; i-- {
		if errorHeader.MatchString(lines[i]) {
			at = i + 1
			break
		}
	}
	switch {
	case len(lines) == 0:
		return ""
	case at < len(lines)-1:
		return lines[at] + " ..."
	}
	return lines[at]
}

var (
	// errorHeader matches the lines of dbt's error messages that name the
	// kind of error (and the node) but not the cause.
	errorHeader = regexp.MustCompile(`((^|[\s:])(\w+ )?Error( in \w+ \S+( \(.*\))?)?:?|^Encountered an error:)$`)
	// logTime matches the time dbt puts before each line of its log.
	logTime = regexp.MustCompile(`^\d\d:\d\d:\d\d(\.\d+)?\s+`)
)

// skipText says why a node was skipped: the first failed ancestor and how
// many more, or the root of a chain of skips ("build cancelled", not
// "upstream skipped: a: upstream skipped: b: build cancelled").
func skipText(r *orchestrator.NodeResult) string {
	if n := len(r.FailedUpstream); n > 0 {
		s := orchestrator.ReasonUpstreamFailed + ": " + r.FailedUpstream[0]
		if n > 1 {
			s += fmt.Sprintf(" and %d more", n-1)
		}
		return s
	}
	reason, root := r.SkipReason, ""
	for {
		rest, ok := strings.CutPrefix(reason, "upstream skipped: ")
		if !ok {
			break
		}
		id, tail, ok := strings.Cut(rest, ": ")
		if !ok {
			break
		}
		root, reason = id, tail
	}
	if root == "" || reason == orchestrator.ReasonCancelled {
		return reason
	}
	return "upstream " + root + " skipped: " + reason
}

// progress shows a build's progress. Without a terminal it prints a line
// when each node starts and one when it finishes (status, time, rows or
// failures, the cause of an error). On a terminal it prints the finished
// lines and redraws one status line below them: done/total, the running
// nodes, the counts and an ETA from the nodes' estimates.
type progress struct {
	w        io.Writer
	tty      bool
	conc     int
	estimate func(id string) time.Duration
	mu       sync.Mutex
	tick     *time.Ticker
	done     chan struct{}
	stopped  bool

	start           time.Time
	total, finished int
	pending         map[string]bool      // not finished yet
	running         map[string]time.Time // started, not finished
	counts          map[orchestrator.Status]int
	ranSum          time.Duration // of the nodes that ran, for the mean
	ranN            int
}

// setConcurrency sets the concurrency the ETA is spread over; nil p is a
// no-op (--quiet).
func (p *progress) setConcurrency(n int) {
	if p == nil {
		return
	}
	p.mu.Lock()
	p.conc = max(n, 1)
	p.mu.Unlock()
}

func newProgress(w io.Writer, tty bool, conc int, estimate func(string) time.Duration) *progress {
	p := &progress{w: w, tty: tty, conc: max(conc, 1), estimate: estimate, counts: map[orchestrator.Status]int{},
		pending: map[string]bool{}, running: map[string]time.Time{}, done: make(chan struct{})}
	if tty {
		p.tick = time.NewTicker(500 * time.Millisecond)
		go func() {
			for {
				select {
				case <-p.tick.C:
					p.mu.Lock()
					p.redraw(time.Now())
					p.mu.Unlock()
				case <-p.done:
					return
				}
			}
		}()
	}
	return p
}

// stop ends the status line; it may be called more than once.
func (p *progress) stop() {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.stopped {
		return
	}
	p.stopped = true
	if p.tick != nil {
		p.tick.Stop()
	}
	close(p.done)
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
		for i := range int32(p.total) {
			p.pending[e.Plan.ID(i)] = true
		}
		fmt.Fprintf(p.w, "Building %d nodes in %d waves (run %s)\n", p.total, len(e.Plan.Waves()), e.RunID)
	case orchestrator.NodeStarted:
		if e.Attempt == 1 {
			p.running[e.Node] = e.Time
			if !p.tty {
				p.line(fmt.Sprintf("%*s %-6s %s", p.width()*2+1, "", "START", e.Node))
			}
		}
	case orchestrator.NodeRetrying:
		p.line(fmt.Sprintf("%*s %-6s %s (attempt %d failed: %s; next in %s)", p.width()*2+1, "", "RETRY", e.Node,
			e.Attempt, errText(e.Error), e.Delay.Round(time.Millisecond)))
	case orchestrator.NodeFinished:
		r := e.Result
		delete(p.running, r.UniqueID)
		delete(p.pending, r.UniqueID)
		p.finished++
		p.counts[r.Status]++
		if len(r.Attempts) > 0 {
			p.ranSum += r.CompletedAt.Sub(r.StartedAt)
			p.ranN++
		}
		p.line(nodeLine(p.finished, p.total, r))
	}
	p.redraw(e.Time)
}

func (p *progress) width() int { return len(fmt.Sprint(p.total)) }

func errText(e *orchestrator.NodeError) string {
	if e == nil {
		return "error"
	}
	return string(e.Kind) + ": " + causeLine(e.Message)
}

// statusWord is dbt's word for a result: OK, ERROR, SKIP, CACHED, and a
// test's PASS, WARN n or FAIL n (n failing rows, as dbt prints them).
func statusWord(r *orchestrator.NodeResult) string {
	switch {
	case r.DBTStatus == "fail" || r.DBTStatus == "warn":
		w := strings.ToUpper(r.DBTStatus)
		if r.Failures != nil {
			w += " " + strconv.FormatInt(*r.Failures, 10)
		}
		return w
	case r.Status == orchestrator.Success && r.DBTStatus != "" && r.DBTStatus != "success":
		return strings.ToUpper(r.DBTStatus)
	}
	return map[orchestrator.Status]string{orchestrator.Success: "OK", orchestrator.Error: "ERROR",
		orchestrator.Skipped: "SKIP", orchestrator.Cached: "CACHED"}[r.Status]
}

func nodeLine(k, total int, r *orchestrator.NodeResult) string {
	s := fmt.Sprintf("%*d/%d %-6s %s", len(fmt.Sprint(total)), k, total, statusWord(r), r.UniqueID)
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
		s += " (" + skipText(r) + ")"
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

// eta estimates the time left: the estimated work of the nodes not
// finished (a node's estimate, else the mean of the nodes run so far),
// less what the running ones have done, spread over the concurrency.
// ok is false while nothing is known.
func (p *progress) eta(now time.Time) (time.Duration, bool) {
	var mean time.Duration
	if p.ranN > 0 {
		mean = p.ranSum / time.Duration(p.ranN)
	}
	var work time.Duration
	for id := range p.pending {
		var d time.Duration
		if p.estimate != nil {
			d = p.estimate(id)
		}
		if d == 0 {
			if mean == 0 {
				return 0, false
			}
			d = mean
		}
		if started, ok := p.running[id]; ok {
			d = max(d-now.Sub(started), 0)
		}
		work += d
	}
	return work / time.Duration(p.conc), true
}

// redraw draws the status line on a terminal.
func (p *progress) redraw(now time.Time) {
	if !p.tty || p.total == 0 || p.stopped {
		return
	}
	fmt.Fprint(p.w, "\r\033[K"+p.status(now))
}

// status is the terminal's status line.
func (p *progress) status(now time.Time) string {
	const width = 20
	done := p.finished * width / max(p.total, 1)
	bar := strings.Repeat("#", done) + strings.Repeat(".", width-done)
	eta := "ETA ?"
	if d, ok := p.eta(now); ok {
		eta = "ETA " + d.Round(time.Second).String()
	}
	names := make([]string, 0, len(p.running))
	for id := range p.running {
		name := id
		if parts := strings.Split(id, "."); len(parts) >= 3 {
			name = parts[2]
		}
		names = append(names, name)
	}
	sort.Strings(names)
	run := ""
	if len(names) > 0 {
		run = ": " + strings.Join(names, ", ")
		if len(run) > 62 {
			run = run[:59] + "..."
		}
	}
	return fmt.Sprintf("[%s] %d/%d  %s  error %d  skipped %d  running %d%s", bar, p.finished, p.total, eta,
		p.counts[orchestrator.Error], p.counts[orchestrator.Skipped], len(p.running), run)
}
