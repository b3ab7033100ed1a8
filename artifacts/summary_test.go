package artifacts_test

import (
	"bytes"
	"fmt"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/spf13/afero"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/dbtorch/dbtorch/artifacts"
	"github.com/dbtorch/dbtorch/executor"
	"github.com/dbtorch/dbtorch/manifest"
	"github.com/dbtorch/dbtorch/orchestrator"
)

func render(t *testing.T, s *artifacts.Summary, run *orchestrator.Run) string {
	t.Helper()
	var buf bytes.Buffer
	require.NoError(t, s.Render(&buf, run))
	return buf.String()
}

// mermaidBlock finds the summary's run graph; ganttBlock its timeline.
var (
	mermaidBlock = regexp.MustCompile("(?s)```mermaid\n(flowchart .*?)```\n")
	ganttBlock   = regexp.MustCompile("(?s)```mermaid\n(---\ndisplayMode: compact\n---\ngantt\n.*?)```\n")
)

func TestSummaryGolden(t *testing.T) {
	run := fixtureRun(t)
	md := render(t, &artifacts.Summary{CompiledSQL: true}, run)
	golden(t, "summary.md", []byte(md))
	chart := artifacts.Mermaid(run)
	golden(t, "summary.mmd", []byte(chart))

	m := mermaidBlock.FindStringSubmatch(md)
	require.NotNil(t, m, "summary has a mermaid block")
	assert.Equal(t, chart, m[1])
}

func TestSummaryContent(t *testing.T) {
	run := fixtureRun(t)
	md := render(t, &artifacts.Summary{Title: "nightly"}, run)
	for _, want := range []string{
		"# nightly\n",
		"❌ **Failed**: 11 nodes in 1.20s",
		"| ✅ successes | 5 |", "| ❌ errors | 1 |", "| ❌ test failures | 1 |",
		"| ⚠️ warnings | 1 |", "| ⏭️ skipped | 2 |", "| ♻️ cached | 1 |",
		"| `model.shop.customer_revenue` | model | error | Runtime Error in model customer\\_revenue (models/marts/customer\\_revenue.sql) | `models/marts/customer_revenue.sql` |",
		"| `test.shop.assert_orders_positive` | test | fail | Got 3 results, configured to fail if != 0 | `tests/assert_orders_positive.sql` |",
		"| `model.shop.revenue_by_segment` | model | upstream failed: model.shop.customer\\_revenue |",
		"| `seed.shop.customers` | seed | success | 390ms | 5 | 1 |",
		"| `model.shop.fct_orders` | model | cached |  |  |  |",
		"Binder Error: column \"nope\" <not> found & \"quoted\"", // full message, verbatim, in a code block
	} {
		assert.Contains(t, md, want)
	}
	assert.NotContains(t, md, "## Compiled SQL", "compiled SQL is opt-in")
	assert.Contains(t, render(t, &artifacts.Summary{CompiledSQL: true}, run), "```sql\nselect * from model.shop.stg_customers\n```")

	ok := fixtureRun(t)
	ok.Results = ok.Results[:2]
	assert.Contains(t, render(t, &artifacts.Summary{}, ok), "✅ **Succeeded**: 2 nodes")
}

func TestCountOutcomes(t *testing.T) {
	c := artifacts.CountOutcomes(fixtureRun(t))
	assert.Equal(t, artifacts.Counts{
		artifacts.OutcomeSuccess: 5, artifacts.OutcomeError: 1, artifacts.OutcomeFail: 1,
		artifacts.OutcomeWarn: 1, artifacts.OutcomeSkipped: 2, artifacts.OutcomeCached: 1,
	}, c)
}

func TestMermaidParses(t *testing.T) {
	run := fixtureRun(t)
	big := bigRun(t, 60)
	charts := []string{
		artifacts.Mermaid(run),
		artifacts.Mermaid(big),
		"flowchart LR\n  n0[\"broken]] --> \n", // must fail: proves the check can fail
	}
	errs := parseMermaid(t, charts...)
	assert.Empty(t, errs[0], "fixture chart")
	assert.Empty(t, errs[1], "big chart")
	assert.NotEmpty(t, errs[2], "a broken chart is rejected")
}

func TestMermaidStructure(t *testing.T) {
	run := fixtureRun(t)
	chart := artifacts.Mermaid(run)
	lines := strings.Split(strings.TrimSpace(chart), "\n")
	assert.Equal(t, "flowchart LR", lines[0])
	nodes, edges := 0, 0
	for _, l := range lines[1:] {
		switch {
		case strings.Contains(l, "-->"):
			edges++
		case strings.HasPrefix(strings.TrimSpace(l), "n"):
			nodes++
		}
	}
	assert.Equal(t, len(run.Results), nodes)
	want := 0
	for i := range int32(run.Plan.Len()) {
		want += len(run.Plan.Upstream(i))
	}
	assert.Equal(t, want, edges)
	assert.Regexp(t, `n\d+\["customer_revenue<br/><small>model · error</small>"\]:::error`, chart)
	assert.Regexp(t, `n\d+\["revenue_by_segment<br/><small>model · skipped</small>"\]:::skipped`, chart)
	assert.Contains(t, chart, "classDef error ")
}

// bigRun returns a run of a chain of n models where the middle one failed
// and everything after it was skipped.
func bigRun(t testing.TB, n int) *orchestrator.Run {
	t.Helper()
	m := &manifest.Manifest{Nodes: map[string]*manifest.Node{}}
	var prev string
	for i := range n {
		id := fmt.Sprintf("model.big.m%03d", i)
		node := &manifest.Node{UniqueID: id, Name: fmt.Sprintf("m%03d", i), ResourceType: manifest.Model, PackageName: "big", Materialized: "table", Enabled: true, OriginalFilePath: "models/" + id + ".sql"}
		if prev != "" {
			node.DependsOn.Nodes = []string{prev}
		}
		m.Nodes[id] = node
		prev = id
	}
	g, err := manifest.NewGraph(m)
	require.NoError(t, err)
	run := &orchestrator.Run{ID: "big", Manifest: m, Plan: g.Plan(nil, manifest.Immediate)}
	for i, id := range run.Plan.Nodes() {
		nr := orchestrator.NodeResult{Result: executor.Result{UniqueID: id}, ResourceType: manifest.Model, Status: orchestrator.Success}
		switch {
		case i == n/2:
			nr.Status, nr.Message = orchestrator.Error, "boom"
		case i > n/2:
			nr.Status, nr.FailedUpstream = orchestrator.Skipped, []string{run.Plan.ID(int32(n / 2))}
		}
		run.Results = append(run.Results, nr)
	}
	return run
}

func TestSummaryLargeRunChart(t *testing.T) {
	run := bigRun(t, 40)
	md := render(t, &artifacts.Summary{MaxGraphNodes: 30}, run)
	m := mermaidBlock.FindStringSubmatch(md)
	require.NotNil(t, m)
	// 1 failed + 19 skipped + the failed node's direct upstream.
	assert.Equal(t, 21, strings.Count(m[1], "<br/>"))
	assert.Contains(t, md, "the chart shows the 21 that did not succeed")

	md = render(t, &artifacts.Summary{MaxGraphNodes: 10}, run)
	assert.NotContains(t, md, "```mermaid")
	assert.Contains(t, md, "the graph is left out")

	assert.NotContains(t, render(t, &artifacts.Summary{MaxGraphNodes: -1}, run), "## Run graph")
}

func TestSummaryReportWritesFile(t *testing.T) {
	fs := afero.NewMemMapFs()
	run := fixtureRun(t)
	require.NoError(t, (&artifacts.Summary{Path: "/ci/summary.md", Fs: fs}).Report(t.Context(), run))
	got, err := afero.ReadFile(fs, "/ci/summary.md")
	require.NoError(t, err)
	assert.Equal(t, render(t, &artifacts.Summary{}, run), string(got))
	require.Error(t, (&artifacts.Summary{}).Report(t.Context(), run))
}

func TestSummaryCapsSuccessRows(t *testing.T) {
	run := bigRun(t, 40) // 20 successes
	md := render(t, &artifacts.Summary{MaxSuccessRows: 5}, run)
	assert.Equal(t, 5, strings.Count(md, "| model | success |"))
	assert.Contains(t, md, "| _… and 15 more_ |")
	assert.Equal(t, 20, strings.Count(render(t, &artifacts.Summary{MaxSuccessRows: -1}, run), "| model | success |"))
	assert.Equal(t, 20, strings.Count(render(t, &artifacts.Summary{}, run), "| model | success |"))
}

// TestSummaryWaitTime shows the time nodes waited for limits, apart from
// their run time, and nothing when no node waited.
func TestSummaryWaitTime(t *testing.T) {
	run := fixtureRun(t)
	for i := range run.Results {
		run.Results[i].WaitTime = 0
	}
	assert.NotContains(t, render(t, &artifacts.Summary{}, run), "Waited")
	run.Results[0].WaitTime = 1500 * time.Millisecond
	run.Results[2].WaitTime = 300 * time.Millisecond
	md := render(t, &artifacts.Summary{}, run)
	assert.Contains(t, md, "⏳ Waited 1.80s in total for workers and limits (2 nodes), apart from run time; longest: `"+
		run.Results[0].UniqueID+"` 1.50s, `"+run.Results[2].UniqueID+"` 300ms.\n")
}
