package artifacts

import (
	"cmp"
	"fmt"
	"slices"
	"strings"
	"time"

	"github.com/dbtorch/dbtorch/executor"
	"github.com/dbtorch/dbtorch/orchestrator"
)

// Timeline is where a build's time went, computed from the times its
// results recorded and the plan's dependency edges.
type Timeline struct {
	// Wall is the build's wall time (Run.CompletedAt - Run.StartedAt).
	Wall time.Duration
	// Slots is how many nodes could run at once (the build's concurrency);
	// zero when unknown.
	Slots int
	// Busy is the slot time the nodes used: the sum of their attempts'
	// durations (in per-wave mode, where a wave's nodes share one
	// invocation, dbt's execution time of each node instead). Waits and
	// cache hits use no slot.
	Busy time.Duration
	// Utilisation is Busy / (Slots × Wall), between 0 and 1; zero when
	// Slots or Wall is unknown.
	Utilisation float64
	// Peak is the largest number of attempts that were running at once.
	Peak int
	// CriticalPath is the chain of nodes that decided the build's length,
	// first to last: the node that finished last, preceded by its planned
	// upstream that finished last, and so on back to a node with no
	// upstream that ran. The steps' Waited and Ran, and After, add up to
	// Wall.
	CriticalPath []PathStep
	// After is the time from the last step's end to the build's end.
	After time.Duration
}

// PathStep is one node on the critical path.
type PathStep struct {
	UniqueID string
	// Waited is the time from the previous step's end (for the first step,
	// the build's start) to this node's first attempt: waiting for a
	// worker or a limit slot, and the orchestrator's own work.
	Waited time.Duration
	// Ran is the time from the node's first attempt to its end, retries
	// and their backoff included; zero for a node served from the cache.
	Ran time.Duration
	// Attempts is how many attempts the node took (zero when cached).
	Attempts int
	// Share is (Waited + Ran) / Wall: the node's share of the build's
	// length.
	Share float64
}

// TimelineOf returns the timeline of run. slots is the build's
// concurrency; zero reads it from run.Args["threads"] (as RunBuild records
// it). Nodes that never ran nor were served (skipped) have no times and
// are left out.
func TimelineOf(run *orchestrator.Run, slots int) *Timeline {
	tl := &Timeline{Slots: slots}
	if tl.Slots <= 0 {
		tl.Slots = intArg(run.Args["threads"])
	}
	if !run.StartedAt.IsZero() && run.CompletedAt.After(run.StartedAt) {
		tl.Wall = run.CompletedAt.Sub(run.StartedAt)
	}
	perWave := run.Args["mode"] == orchestrator.PerWave.String()
	type edge struct {
		at    time.Time
		delta int
	}
	var edges []edge
	for i := range run.Results {
		nr := &run.Results[i]
		if perWave {
			tl.Busy += nr.ExecutionTime
		}
		for _, a := range nr.Attempts {
			if a.StartedAt.IsZero() || a.CompletedAt.Before(a.StartedAt) {
				continue
			}
			if !perWave {
				tl.Busy += a.CompletedAt.Sub(a.StartedAt)
			}
			edges = append(edges, edge{a.StartedAt, 1}, edge{a.CompletedAt, -1})
		}
	}
	// Ends before starts at the same instant: back-to-back attempts do not
	// overlap.
	slices.SortFunc(edges, func(x, y edge) int {
		if c := x.at.Compare(y.at); c != 0 {
			return c
		}
		return cmp.Compare(x.delta, y.delta)
	})
	running := 0
	for _, e := range edges {
		running += e.delta
		tl.Peak = max(tl.Peak, running)
	}
	if tl.Slots > 0 && tl.Wall > 0 {
		tl.Utilisation = min(1, float64(tl.Busy)/(float64(tl.Slots)*float64(tl.Wall)))
	}
	tl.CriticalPath, tl.After = criticalPath(run, tl.Wall)
	return tl
}

// hasTimes reports whether the node ran or was served from the cache, so
// that its times mean something.
func hasTimes(nr *orchestrator.NodeResult) bool {
	return nr.Status != orchestrator.Skipped && !nr.CompletedAt.IsZero()
}

// criticalPath walks back from the node that finished last through the
// planned upstream that finished last.
func criticalPath(run *orchestrator.Run, wall time.Duration) ([]PathStep, time.Duration) {
	byID := make(map[string]*orchestrator.NodeResult, len(run.Results))
	var last *orchestrator.NodeResult
	for i := range run.Results {
		nr := &run.Results[i]
		if !hasTimes(nr) {
			continue
		}
		byID[nr.UniqueID] = nr
		if last == nil || nr.CompletedAt.After(last.CompletedAt) {
			last = nr
		}
	}
	if last == nil {
		return nil, 0
	}
	var chain []*orchestrator.NodeResult
	seen := map[string]bool{}
	for n := last; n != nil && !seen[n.UniqueID]; {
		seen[n.UniqueID] = true
		chain = append(chain, n)
		var prev *orchestrator.NodeResult
		for _, up := range upstreamOf(run, n.UniqueID) {
			u := byID[up]
			if u == nil || u.CompletedAt.After(startOf(n)) {
				continue
			}
			if prev == nil || u.CompletedAt.After(prev.CompletedAt) {
				prev = u
			}
		}
		n = prev
	}
	slices.Reverse(chain)
	steps := make([]PathStep, len(chain))
	from := run.StartedAt
	for k, nr := range chain {
		start := startOf(nr)
		st := PathStep{UniqueID: nr.UniqueID, Attempts: len(nr.Attempts), Ran: nr.CompletedAt.Sub(start)}
		if !from.IsZero() && start.After(from) {
			st.Waited = start.Sub(from)
		}
		if wall > 0 {
			st.Share = float64(st.Waited+st.Ran) / float64(wall)
		}
		steps[k] = st
		from = nr.CompletedAt
	}
	var after time.Duration
	if run.CompletedAt.After(last.CompletedAt) {
		after = run.CompletedAt.Sub(last.CompletedAt)
	}
	return steps, after
}

// startOf is when the node's first attempt started, or, for a node served
// from the cache, when it was served.
func startOf(nr *orchestrator.NodeResult) time.Time {
	if len(nr.Attempts) > 0 && !nr.Attempts[0].StartedAt.IsZero() {
		return nr.Attempts[0].StartedAt
	}
	if !nr.StartedAt.IsZero() {
		return nr.StartedAt
	}
	return nr.CompletedAt
}

// intArg reads an integer run argument as RunBuild records it (int) or as
// it comes back from JSON (float64).
func intArg(v any) int {
	switch x := v.(type) {
	case int:
		return x
	case int64:
		return int(x)
	case float64:
		return int(x)
	}
	return 0
}

// DefaultMaxTimelineNodes is Summary's default cap on the Gantt chart.
const DefaultMaxTimelineNodes = 100

// Gantt returns the run as a Mermaid gantt chart (without the Markdown
// fence): a section per node that ran or was served from the cache, in
// the order they became ready, with a bar per attempt, a grey bar for the
// time it waited in the queue for a worker or a limit slot and for each
// wait before a retry, and a milestone for a cache hit. Attempts of nodes
// on the critical path are marked crit (red); failed attempts active. It
// returns "" when no node has times.
func Gantt(run *orchestrator.Run) string {
	return ganttOf(run, nil)
}

// ganttRow is one node of the chart.
type ganttRow struct {
	nr     *orchestrator.NodeResult
	queued time.Time // when it became ready
}

// timedRows returns the nodes with times, ordered by when they became
// ready (then by plan order).
func timedRows(run *orchestrator.Run) []ganttRow {
	var rows []ganttRow
	for i := range run.Results {
		nr := &run.Results[i]
		if !hasTimes(nr) {
			continue
		}
		rows = append(rows, ganttRow{nr: nr, queued: startOf(nr).Add(-queueWait(nr))})
	}
	slices.SortStableFunc(rows, func(x, y ganttRow) int { return x.queued.Compare(y.queued) })
	return rows
}

// queueWait is the part of the node's WaitTime spent before its first
// attempt (or its cache hit): WaitTime less the gaps between attempts,
// which are the waits before retries.
func queueWait(nr *orchestrator.NodeResult) time.Duration {
	w := nr.WaitTime
	for k := 1; k < len(nr.Attempts); k++ {
		if gap := nr.Attempts[k].StartedAt.Sub(nr.Attempts[k-1].CompletedAt); gap > 0 {
			w -= gap
		}
	}
	return max(0, w)
}

// ganttOf renders the rows of the nodes in keep (all when nil).
func ganttOf(run *orchestrator.Run, keep map[string]bool) string {
	rows := timedRows(run)
	if len(rows) == 0 {
		return ""
	}
	crit := map[string]bool{}
	for _, st := range TimelineOf(run, 0).CriticalPath {
		crit[st.UniqueID] = true
	}
	var b strings.Builder
	// Compact mode puts a node's bars on one row.
	b.WriteString("---\ndisplayMode: compact\n---\ngantt\n  dateFormat x\n")
	axis := "%H:%M:%S"
	if run.CompletedAt.Sub(run.StartedAt) < 10*time.Second {
		axis = "%H:%M:%S.%L"
	}
	fmt.Fprintf(&b, "  axisFormat %s\n", axis)
	ms := func(t time.Time) int64 { return t.UnixMilli() }
	id := 0
	task := func(name, tags string, from, to time.Time) {
		if tags != "" {
			tags += ", "
		}
		fmt.Fprintf(&b, "  %s :%st%d, %d, %d\n", name, tags, id, ms(from), max(ms(to), ms(from)))
		id++
	}
	for _, row := range rows {
		nr := row.nr
		if keep != nil && !keep[nr.UniqueID] {
			continue
		}
		fmt.Fprintf(&b, "  section %s\n", ganttText(label(run, nr)))
		start := startOf(nr)
		if start.Sub(row.queued) >= time.Millisecond {
			task("queued", "done", row.queued, start)
		}
		if nr.Status == orchestrator.Cached {
			task("cached", "milestone", nr.CompletedAt, nr.CompletedAt)
			continue
		}
		for k, a := range nr.Attempts {
			if k > 0 && a.StartedAt.Sub(nr.Attempts[k-1].CompletedAt) >= time.Millisecond {
				task("retry wait", "done", nr.Attempts[k-1].CompletedAt, a.StartedAt)
			}
			var tags []string
			if crit[nr.UniqueID] {
				tags = append(tags, "crit")
			}
			name := fmt.Sprintf("attempt %d", a.Number)
			if a.Status != executor.Success {
				tags = append(tags, "active")
				name += " " + ganttText(string(a.Status))
			}
			task(name, strings.Join(tags, ", "), a.StartedAt, a.CompletedAt)
		}
	}
	return b.String()
}

// ganttText makes s safe as a gantt section or task name: no colon (the
// task separator), semicolon, hash (comments and entities) or newline.
func ganttText(s string) string {
	return strings.NewReplacer(":", "∶", ";", ",", "#", "", "\n", " ", "\r", "").Replace(s)
}

// timelineRows picks the nodes the summary's chart shows when the run has
// more than limit timed nodes: the critical path, then the nodes that took
// longest (wait and run), up to limit.
func timelineRows(run *orchestrator.Run, tl *Timeline, limit int) map[string]bool {
	rows := timedRows(run)
	if len(rows) <= limit {
		return nil
	}
	keep := map[string]bool{}
	for _, st := range tl.CriticalPath {
		if len(keep) < limit {
			keep[st.UniqueID] = true
		}
	}
	slices.SortStableFunc(rows, func(x, y ganttRow) int {
		return cmp.Compare(y.nr.CompletedAt.Sub(y.queued), x.nr.CompletedAt.Sub(x.queued))
	})
	for _, r := range rows {
		if len(keep) >= limit {
			break
		}
		keep[r.nr.UniqueID] = true
	}
	return keep
}

// writeTimeline writes the summary's Timeline section: wall time, slot
// utilisation and peak, the critical path with each node's share, and the
// Gantt chart (capped at limit nodes; negative leaves the chart out).
func writeTimeline(b *strings.Builder, run *orchestrator.Run, slots, limit int) {
	tl := TimelineOf(run, slots)
	if len(tl.CriticalPath) == 0 {
		return
	}
	b.WriteString("## Timeline\n\n")
	fmt.Fprintf(b, "⏱️ Wall time %s", fmtDuration(tl.Wall))
	if tl.Slots > 0 && tl.Wall > 0 {
		fmt.Fprintf(b, " · slot utilisation **%.0f%%** (%s busy of %s × %s)", 100*tl.Utilisation, fmtDuration(tl.Busy), plural(tl.Slots, "slot"), fmtDuration(tl.Wall))
	} else {
		fmt.Fprintf(b, " · %s busy", fmtDuration(tl.Busy))
	}
	fmt.Fprintf(b, " · at most %d running at once.\n\n", tl.Peak)

	b.WriteString("**Critical path**: the chain of dependencies that decided the build's length (each node after the upstream that finished last before it started).\n\n")
	b.WriteString("| # | node | waited | ran | attempts | share of the build |\n|---:|---|---:|---:|---:|---:|\n")
	for k, st := range tl.CriticalPath {
		ran, attempts := fmtDuration(st.Ran), fmt.Sprint(st.Attempts)
		if nr := run.Result(st.UniqueID); nr != nil && nr.Status == orchestrator.Cached {
			ran, attempts = "cached", ""
		}
		fmt.Fprintf(b, "| %d | `%s` | %s | %s | %s | %s |\n", k+1, st.UniqueID, fmtDuration(st.Waited), ran, attempts, fmtShare(st.Share))
	}
	if tl.After > 0 && tl.Wall > 0 {
		fmt.Fprintf(b, "| | _after the last node_ | %s | | | %s |\n", fmtDuration(tl.After), fmtShare(float64(tl.After)/float64(tl.Wall)))
	}
	b.WriteString("\n")
	var waited, ran time.Duration
	for _, st := range tl.CriticalPath {
		waited += st.Waited
		ran += st.Ran
	}
	if total := waited + ran; total > 0 {
		fmt.Fprintf(b, "On the critical path, nodes waited %s (%s) and ran %s (%s).", fmtDuration(waited), fmtShare(float64(waited)/float64(total)),
			fmtDuration(ran), fmtShare(float64(ran)/float64(total)))
		if waited > ran {
			b.WriteString(" Most of it is waiting: its nodes were ready but had no free slot or limit (or awaited the cache's checks), so the build was held up by its slots more than by its dependencies.")
		}
		b.WriteString("\n\n")
	}

	if limit < 0 {
		return
	}
	if limit == 0 {
		limit = DefaultMaxTimelineNodes
	}
	keep := timelineRows(run, tl, limit)
	if keep != nil {
		fmt.Fprintf(b, "_The chart shows %d of the %d nodes that ran: the critical path and the longest._\n\n", len(keep), len(timedRows(run)))
	}
	writeFence(b, "mermaid", ganttOf(run, keep))
	b.WriteString("_A row per node, in the order they became ready: grey, waiting (for a worker or a limit slot, or before a retry); red, on the critical path; light, a failed attempt; ◆, served from the cache._\n\n")
}

func fmtShare(f float64) string {
	if f > 0 && f < 0.005 {
		return "<1%"
	}
	return fmt.Sprintf("%.0f%%", 100*f)
}

// plural returns "1 slot", "4 slots".
func plural(n int, word string) string {
	if n == 1 {
		return "1 " + word
	}
	return fmt.Sprintf("%d %ss", n, word)
}
