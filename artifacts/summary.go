package artifacts

import (
	"cmp"
	"context"
	"errors"
	"fmt"
	"html"
	"io"
	"slices"
	"strings"
	"time"

	"github.com/spf13/afero"

	"github.com/dbtorch/dbtorch/manifest"
	"github.com/dbtorch/dbtorch/orchestrator"
)

// Outcome is what a node's result means to a reader: one word per node,
// finer than orchestrator.Status. Every node has exactly one outcome, so the
// counts of a run add up to its number of nodes.
type Outcome string

// Outcomes, in the order the summary lists them.
const (
	// OutcomeSuccess: built, or a test that passed.
	OutcomeSuccess Outcome = "success"
	// OutcomeError: a node that failed to build, or a test that could not
	// run (dbt's "error").
	OutcomeError Outcome = "error"
	// OutcomeFail: a test that ran and found failing rows at severity error
	// (dbt's "fail").
	OutcomeFail Outcome = "fail"
	// OutcomeWarn: a test that found failing rows at severity warn.
	OutcomeWarn Outcome = "warn"
	// OutcomeSkipped: not run.
	OutcomeSkipped Outcome = "skipped"
	// OutcomeCached: not run because its cache key was unchanged.
	OutcomeCached Outcome = "cached"
)

// outcomes lists every outcome in display order.
var outcomes = []Outcome{OutcomeSuccess, OutcomeError, OutcomeFail, OutcomeWarn, OutcomeSkipped, OutcomeCached}

// OutcomeOf returns the outcome of a node result.
func OutcomeOf(rt manifest.ResourceType, nr *orchestrator.NodeResult) Outcome {
	switch nr.Status {
	case orchestrator.Cached:
		return OutcomeCached
	case orchestrator.Skipped:
		return OutcomeSkipped
	}
	switch DBTStatus(rt, nr, "success") {
	case "fail":
		return OutcomeFail
	case "warn":
		return OutcomeWarn
	case "error", "partial success":
		return OutcomeError
	}
	return OutcomeSuccess
}

// Counts is how many nodes of a run ended in each outcome.
type Counts map[Outcome]int

// CountOutcomes counts the run's nodes by outcome.
func CountOutcomes(run *orchestrator.Run) Counts {
	c := Counts{}
	for i := range run.Results {
		c[OutcomeOf(resourceType(run, &run.Results[i]), &run.Results[i])]++
	}
	return c
}

// DefaultMaxGraphNodes is Summary's default cap on the Mermaid chart.
const DefaultMaxGraphNodes = 200

// Summary writes a Markdown report of a run: the counts of successes,
// errors, test failures, warnings, skipped and cached nodes; the
// unsuccessful nodes with their type, message and file; the skipped nodes
// with the reason; the successful nodes; the cost (what the warehouse
// reported for the nodes that ran, in total and for the costliest nodes,
// and what the cache saved; see orchestrator.Run.Totals); the timeline
// (wall time, slot utilisation, the critical path with each node's share
// of the build, and a Mermaid gantt chart; see TimelineOf and Gantt); and
// a Mermaid flowchart of the run with each node coloured by its outcome.
// It implements orchestrator.Reporter.
//
// The Markdown renders on GitHub, GitLab and in most CI job summaries
// (for example $GITHUB_STEP_SUMMARY).
type Summary struct {
	// Path is the file to write (atomically). Required by Report.
	Path string
	// Fs is the file system to write on; nil means the operating system's.
	Fs afero.Fs
	// Title is the report's heading; empty means "dbtorch build".
	Title string
	// CompiledSQL adds each executed node's compiled SQL, collapsed.
	CompiledSQL bool
	// MaxGraphNodes caps the flowchart (Mermaid renderers refuse very large
	// charts). When the run has more nodes, the chart shows only the nodes
	// that did not succeed and their direct upstream nodes; when even those
	// are too many, it is left out. Zero means DefaultMaxGraphNodes; a
	// negative value leaves the chart out.
	MaxGraphNodes int
	// MaxSuccessRows caps the table of successful nodes, so that the
	// summary of a very large build stays within what CI job summaries
	// accept (GitHub takes 1 MiB); the rest are counted in a last line.
	// Zero means DefaultMaxSuccessRows; negative means no cap.
	MaxSuccessRows int
	// Slots is the build's concurrency, for the timeline's slot
	// utilisation; zero reads it from the run's "threads" argument.
	Slots int
	// MaxTimelineNodes caps the timeline's Gantt chart: a larger run shows
	// the critical path and the nodes that took longest. Zero means
	// DefaultMaxTimelineNodes; negative leaves the chart out (the
	// critical path table stays).
	MaxTimelineNodes int
}

// DefaultMaxSuccessRows is Summary's default cap on listed successful
// nodes.
const DefaultMaxSuccessRows = 1000

// Report writes the summary of run to s.Path.
func (s *Summary) Report(ctx context.Context, run *orchestrator.Run) error {
	return writeReport(ctx, s.Fs, s.Path, "Summary", func(w io.Writer) error { return s.Render(w, run) })
}

// Render writes the summary of run to w.
func (s *Summary) Render(w io.Writer, run *orchestrator.Run) error {
	if run == nil {
		return errors.New("artifacts: nil run")
	}
	var b strings.Builder
	title := s.Title
	if title == "" {
		title = "dbtorch build"
	}
	counts := CountOutcomes(run)
	fmt.Fprintf(&b, "# %s\n\n", mdText(title))
	verdict := "✅ **Succeeded**"
	if counts[OutcomeError]+counts[OutcomeFail] > 0 {
		verdict = "❌ **Failed**"
	}
	fmt.Fprintf(&b, "%s: %d nodes", verdict, len(run.Results))
	if !run.StartedAt.IsZero() && !run.CompletedAt.IsZero() {
		fmt.Fprintf(&b, " in %s", fmtDuration(run.CompletedAt.Sub(run.StartedAt)))
	}
	if run.ID != "" {
		fmt.Fprintf(&b, " · build `%s`", run.ID)
	}
	if !run.StartedAt.IsZero() {
		fmt.Fprintf(&b, " · started %s", run.StartedAt.UTC().Format(time.RFC3339))
	}
	b.WriteString("\n\n")

	b.WriteString("| outcome | nodes |\n|---|---:|\n")
	labels := map[Outcome]string{
		OutcomeSuccess: "✅ successes", OutcomeError: "❌ errors", OutcomeFail: "❌ test failures",
		OutcomeWarn: "⚠️ warnings", OutcomeSkipped: "⏭️ skipped", OutcomeCached: "♻️ cached",
	}
	for _, o := range outcomes {
		fmt.Fprintf(&b, "| %s | %d |\n", labels[o], counts[o])
	}
	b.WriteString("\n")
	writeWait(&b, run)

	var bad, skipped, good []*orchestrator.NodeResult
	for i := range run.Results {
		nr := &run.Results[i]
		switch OutcomeOf(resourceType(run, nr), nr) {
		case OutcomeError, OutcomeFail, OutcomeWarn:
			bad = append(bad, nr)
		case OutcomeSkipped:
			skipped = append(skipped, nr)
		default:
			good = append(good, nr)
		}
	}

	if len(bad) > 0 {
		b.WriteString("## Unsuccessful nodes\n\n| node | type | outcome | message | file |\n|---|---|---|---|---|\n")
		for _, nr := range bad {
			rt := resourceType(run, nr)
			fmt.Fprintf(&b, "| `%s` | %s | %s | %s | %s |\n", nr.UniqueID, rt, OutcomeOf(rt, nr),
				mdCell(firstLine(nodeMessage(nr), 200)), mdCode(filePath(run, nr.UniqueID)))
		}
		b.WriteString("\n")
		for _, nr := range bad {
			msg := nodeMessage(nr)
			if !strings.Contains(msg, "\n") && len(msg) <= 200 && nr.Err == nil {
				continue
			}
			fmt.Fprintf(&b, "<details><summary><code>%s</code>", html.EscapeString(nr.UniqueID))
			if nr.Err != nil && nr.Err.Kind != "" {
				fmt.Fprintf(&b, " (%s", html.EscapeString(string(nr.Err.Kind)))
				if n := len(nr.Attempts); n > 1 {
					fmt.Fprintf(&b, ", %d attempts", n)
				}
				b.WriteString(")")
			}
			b.WriteString("</summary>\n\n")
			writeFence(&b, "text", msg)
			b.WriteString("</details>\n\n")
		}
	}

	if len(skipped) > 0 {
		b.WriteString("## Skipped nodes\n\n| node | type | reason |\n|---|---|---|\n")
		for _, nr := range skipped {
			fmt.Fprintf(&b, "| `%s` | %s | %s |\n", nr.UniqueID, resourceType(run, nr), mdCell(skipReason(nr)))
		}
		b.WriteString("\n")
	}

	if len(good) > 0 {
		b.WriteString("## Successful nodes\n\n| node | type | outcome | time | rows | attempts |\n|---|---|---|---:|---:|---:|\n")
		limit := s.MaxSuccessRows
		if limit == 0 {
			limit = DefaultMaxSuccessRows
		}
		for k, nr := range good {
			if limit > 0 && k == limit {
				fmt.Fprintf(&b, "| _… and %d more_ | | | | | |\n", len(good)-limit)
				break
			}
			rt := resourceType(run, nr)
			o := OutcomeOf(rt, nr)
			t, rows, attempts := "", "", ""
			if o != OutcomeCached {
				t = fmtDuration(execTime(nr))
				attempts = fmt.Sprint(max(1, len(nr.Attempts)))
			}
			if nr.RowsAffected != nil {
				rows = fmt.Sprint(*nr.RowsAffected)
			}
			fmt.Fprintf(&b, "| `%s` | %s | %s | %s | %s | %s |\n", nr.UniqueID, rt, o, t, rows, attempts)
		}
		b.WriteString("\n")
	}

	writeCost(&b, run)
	writeTimeline(&b, run, s.Slots, s.MaxTimelineNodes)

	if chart, note := s.mermaid(run); chart != "" || note != "" {
		b.WriteString("## Run graph\n\n")
		if note != "" {
			b.WriteString(note + "\n\n")
		}
		if chart != "" {
			writeFence(&b, "mermaid", chart)
			b.WriteString("_Green: success · red: error · orange: test failure · yellow: warning · grey, dashed: skipped · blue: cached._\n\n")
		}
	}

	if s.CompiledSQL {
		var started bool
		for i := range run.Results {
			nr := &run.Results[i]
			if nr.CompiledCode == "" {
				continue
			}
			if !started {
				b.WriteString("## Compiled SQL\n\n")
				started = true
			}
			fmt.Fprintf(&b, "<details><summary><code>%s</code></summary>\n\n", html.EscapeString(nr.UniqueID))
			writeFence(&b, "sql", nr.CompiledCode)
			b.WriteString("</details>\n\n")
		}
	}
	_, err := io.WriteString(w, strings.TrimRight(b.String(), "\n")+"\n")
	return err
}

// Mermaid returns the run as a Mermaid flowchart (without the Markdown
// fence): one node per result, labelled with its name and resource type and
// styled by its outcome, and an edge for each planned dependency. It
// returns "" when the run has no results.
func Mermaid(run *orchestrator.Run) string {
	ids := make([]string, len(run.Results))
	for i := range run.Results {
		ids[i] = run.Results[i].UniqueID
	}
	return mermaidOf(run, ids)
}

// mermaid returns the chart for the summary, honouring MaxGraphNodes, and
// a note when nodes were left out.
func (s *Summary) mermaid(run *orchestrator.Run) (chart, note string) {
	limit := s.MaxGraphNodes
	if limit == 0 {
		limit = DefaultMaxGraphNodes
	}
	if limit < 0 || len(run.Results) == 0 {
		return "", ""
	}
	if len(run.Results) <= limit {
		return Mermaid(run), ""
	}
	keep := map[string]bool{}
	for i := range run.Results {
		nr := &run.Results[i]
		if o := OutcomeOf(resourceType(run, nr), nr); o != OutcomeSuccess && o != OutcomeCached {
			keep[nr.UniqueID] = true
			for _, up := range upstreamOf(run, nr.UniqueID) {
				keep[up] = true
			}
		}
	}
	if len(keep) == 0 || len(keep) > limit {
		return "", fmt.Sprintf("_The run has %d nodes, more than the %d a chart shows; the graph is left out._", len(run.Results), limit)
	}
	var ids []string
	for i := range run.Results {
		if keep[run.Results[i].UniqueID] {
			ids = append(ids, run.Results[i].UniqueID)
		}
	}
	return mermaidOf(run, ids), fmt.Sprintf("_The run has %d nodes; the chart shows the %d that did not succeed and their direct upstream nodes._", len(run.Results), len(ids))
}

// mermaidStyles are the class definitions, one per outcome.
var mermaidStyles = []struct {
	outcome Outcome
	style   string
}{
	{OutcomeSuccess, "fill:#d3f9d8,stroke:#2b8a3e,color:#1b4d2b"},
	{OutcomeError, "fill:#ffe3e3,stroke:#c92a2a,color:#7d1a1a,stroke-width:2px"},
	{OutcomeFail, "fill:#ffe8cc,stroke:#d9480f,color:#7a2a08,stroke-width:2px"},
	{OutcomeWarn, "fill:#fff3bf,stroke:#e67700,color:#5c3c00"},
	{OutcomeSkipped, "fill:#f1f3f5,stroke:#868e96,color:#495057,stroke-dasharray:4 3"},
	{OutcomeCached, "fill:#d0ebff,stroke:#1971c2,color:#0b3d6b"},
}

func mermaidOf(run *orchestrator.Run, ids []string) string {
	if len(ids) == 0 {
		return ""
	}
	index := make(map[string]int, len(ids))
	for i, id := range ids {
		index[id] = i
	}
	results := make(map[string]*orchestrator.NodeResult, len(run.Results))
	for i := range run.Results {
		results[run.Results[i].UniqueID] = &run.Results[i]
	}
	var b strings.Builder
	b.WriteString("flowchart LR\n")
	used := map[Outcome]bool{}
	for i, id := range ids {
		nr := results[id]
		rt := resourceType(run, nr)
		o := OutcomeOf(rt, nr)
		used[o] = true
		fmt.Fprintf(&b, "  n%d[\"%s<br/><small>%s · %s</small>\"]:::%s\n", i, mermaidText(label(run, nr)), rt, o, o)
	}
	for i, id := range ids {
		for _, up := range upstreamOf(run, id) {
			if j, ok := index[up]; ok {
				fmt.Fprintf(&b, "  n%d --> n%d\n", j, i)
			}
		}
	}
	for _, st := range mermaidStyles {
		if used[st.outcome] {
			fmt.Fprintf(&b, "  classDef %s %s\n", st.outcome, st.style)
		}
	}
	return b.String()
}

// upstreamOf returns the planned upstream nodes of id, or, without a plan,
// its manifest dependencies.
func upstreamOf(run *orchestrator.Run, id string) []string {
	if run.Plan != nil {
		return run.Plan.UpstreamIDs(id)
	}
	if n := lookup(run, id); n != nil {
		ups := slices.Clone(n.DependsOn.Nodes)
		slices.Sort(ups)
		return slices.Compact(ups)
	}
	return nil
}

// label is a node's short name: its unique_id without resource type and
// package ("customer_revenue", "dim_customers.v2",
// "unique_customer_revenue_customer_id").
func label(run *orchestrator.Run, nr *orchestrator.NodeResult) string {
	parts := strings.SplitN(nr.UniqueID, ".", 3)
	if len(parts) < 3 {
		return nr.UniqueID
	}
	rest := parts[2]
	if rt := resourceType(run, nr); rt == manifest.Test {
		// Generic tests end in a hash that says nothing to a reader.
		if i := strings.LastIndexByte(rest, '.'); i > 0 && len(rest)-i == 11 {
			rest = rest[:i]
		}
	}
	return rest
}

// mermaidText escapes text for a quoted Mermaid label.
func mermaidText(s string) string {
	return strings.NewReplacer(`"`, "#quot;", "<", "#lt;", ">", "#gt;", "\n", " ").Replace(s)
}

// filePath is the node's original_file_path, or "".
func filePath(run *orchestrator.Run, id string) string {
	if n := lookup(run, id); n != nil {
		return n.OriginalFilePath
	}
	return ""
}

func execTime(nr *orchestrator.NodeResult) time.Duration {
	if nr.ExecutionTime > 0 {
		return nr.ExecutionTime
	}
	if !nr.StartedAt.IsZero() && nr.CompletedAt.After(nr.StartedAt) {
		return nr.CompletedAt.Sub(nr.StartedAt)
	}
	return 0
}

func fmtDuration(d time.Duration) string {
	switch {
	case d < time.Second:
		return fmt.Sprintf("%dms", d.Milliseconds())
	case d < time.Minute:
		return fmt.Sprintf("%.2fs", d.Seconds())
	}
	return d.Round(time.Second).String()
}

// firstLine returns s's first non-empty line, cut to at most n bytes (on a
// rune boundary) with an ellipsis.
func firstLine(s string, n int) string {
	for _, line := range strings.Split(s, "\n") {
		if line = strings.TrimSpace(line); line != "" {
			s = line
			break
		}
	}
	if len(s) > n {
		cut := n
		for cut > 0 && !utf8Start(s[cut]) {
			cut--
		}
		s = s[:cut] + "…"
	}
	return s
}

func utf8Start(c byte) bool { return c&0xC0 != 0x80 }

// mdCell escapes text for a Markdown table cell.
func mdCell(s string) string {
	s = html.EscapeString(s)
	s = strings.NewReplacer("|", `\|`, "\r", "", "\n", "<br>", "`", "&#96;", "*", `\*`, "_", `\_`, "[", `\[`, "]", `\]`).Replace(s)
	return s
}

// mdText escapes text for a Markdown heading or paragraph.
func mdText(s string) string {
	return strings.NewReplacer("\n", " ", "<", "&lt;", ">", "&gt;", "*", `\*`, "_", `\_`, "#", `\#`).Replace(s)
}

// mdCode renders s as inline code, or "" when s is empty.
func mdCode(s string) string {
	if s == "" {
		return ""
	}
	return "`" + strings.ReplaceAll(s, "`", "'") + "`"
}

// writeFence writes body in a fenced code block whose fence is longer than
// any backtick run in body.
func writeFence(b *strings.Builder, lang, body string) {
	fence := "```"
	for strings.Contains(body, fence) {
		fence += "`"
	}
	fmt.Fprintf(b, "%s%s\n%s", fence, lang, body)
	if !strings.HasSuffix(body, "\n") {
		b.WriteString("\n")
	}
	b.WriteString(fence + "\n\n")
}

// waitShown is how many nodes the summary names as the longest waiters.
const waitShown = 3

// writeWait writes one paragraph on the time the run's nodes spent
// waiting for a worker or a limit slot (NodeResult.WaitTime), apart from
// their run time: the total and the longest waiters. Nothing when no node
// waited.
func writeWait(b *strings.Builder, run *orchestrator.Run) {
	var total time.Duration
	var waited []*orchestrator.NodeResult
	for i := range run.Results {
		if nr := &run.Results[i]; nr.WaitTime > 0 {
			total += nr.WaitTime
			waited = append(waited, nr)
		}
	}
	if total < time.Millisecond {
		return
	}
	slices.SortStableFunc(waited, func(x, y *orchestrator.NodeResult) int { return cmp.Compare(y.WaitTime, x.WaitTime) })
	fmt.Fprintf(b, "⏳ Waited %s in total for workers and limits (%d nodes), apart from run time; longest:", fmtDuration(total), len(waited))
	for k, nr := range waited[:min(len(waited), waitShown)] {
		if k > 0 {
			b.WriteString(",")
		}
		fmt.Fprintf(b, " `%s` %s", nr.UniqueID, fmtDuration(nr.WaitTime))
	}
	b.WriteString(".\n\n")
}
