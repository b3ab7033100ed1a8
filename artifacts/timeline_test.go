package artifacts_test

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/dbtorch/dbtorch/artifacts"
	"github.com/dbtorch/dbtorch/internal/dbttest"
	"github.com/dbtorch/dbtorch/orchestrator"
)

// TestTimelineOf: the fixture build's critical path is customers →
// stg_customers → its accepted_values test → customer_revenue (the last
// to finish; dbt build orders a model after the tests of its upstreams,
// and that test finished last before it started), the shares add up to
// the wall time, and the slot utilisation is the attempts' time over 4
// slots × 1.2s.
func TestTimelineOf(t *testing.T) {
	run := fixtureRun(t)
	tl := artifacts.TimelineOf(run, 0)
	assert.Equal(t, 1200*time.Millisecond, tl.Wall)
	assert.Equal(t, 4, tl.Slots, "from the run's threads argument")
	// 390+408+300+300+50+60+40 and customer_revenue's 10+100.
	assert.Equal(t, 1658*time.Millisecond, tl.Busy)
	assert.InDelta(t, 1658.0/4800, tl.Utilisation, 1e-9)
	assert.Equal(t, 2, tl.Peak, "two seeds, then two wave-2 nodes, at once; never more")

	require.Len(t, tl.CriticalPath, 4)
	want := []artifacts.PathStep{
		{UniqueID: "seed.shop.customers", Waited: 10 * time.Millisecond, Ran: 390 * time.Millisecond, Attempts: 1},
		{UniqueID: "model.shop.stg_customers", Waited: 100 * time.Millisecond, Ran: 300 * time.Millisecond, Attempts: 1},
		{UniqueID: "test.shop.accepted_values_stg_customers_segment.1a2b3c4d5e", Waited: 100 * time.Millisecond, Ran: 60 * time.Millisecond, Attempts: 1},
		{UniqueID: "model.shop.customer_revenue", Waited: 20 * time.Millisecond, Ran: 120 * time.Millisecond, Attempts: 2},
	}
	total := tl.After
	for k, st := range tl.CriticalPath {
		assert.Equal(t, want[k].UniqueID, st.UniqueID)
		assert.Equal(t, want[k].Waited, st.Waited, st.UniqueID)
		assert.Equal(t, want[k].Ran, st.Ran, st.UniqueID)
		assert.Equal(t, want[k].Attempts, st.Attempts, st.UniqueID)
		assert.InDelta(t, float64(st.Waited+st.Ran)/float64(tl.Wall), st.Share, 1e-9)
		total += st.Waited + st.Ran
	}
	assert.Equal(t, 100*time.Millisecond, tl.After)
	assert.Equal(t, tl.Wall, total, "the path and the tail add up to the build")

	assert.Equal(t, 8, artifacts.TimelineOf(run, 8).Slots, "an explicit slot count wins")
	run.Args = nil
	assert.Zero(t, artifacts.TimelineOf(run, 0).Utilisation, "unknown concurrency: no utilisation")
}

// TestCriticalPathFollowsTimings: the path follows the upstream that
// actually finished last, not the plan's shape: when fct_orders (cached)
// and its test had been the late ones, the path goes through them.
func TestCriticalPathFollowsTimings(t *testing.T) {
	run := fixtureRun(t)
	fct := run.Result("model.shop.fct_orders")
	fct.StartedAt, fct.CompletedAt = at(965), at(965)
	fct.WaitTime = 545 * time.Millisecond
	test := run.Result("test.shop.assert_orders_positive")
	test.Attempts[0].StartedAt, test.Attempts[0].CompletedAt = at(966), at(975)
	test.StartedAt, test.CompletedAt = at(966), at(975)
	tl := artifacts.TimelineOf(run, 0)
	var ids []string
	for _, st := range tl.CriticalPath {
		ids = append(ids, st.UniqueID)
	}
	assert.Equal(t, []string{"seed.shop.orders", "model.shop.fct_orders", "test.shop.assert_orders_positive", "model.shop.customer_revenue"}, ids)
	assert.Equal(t, time.Duration(0), tl.CriticalPath[1].Ran, "served from the cache")
	assert.Equal(t, 545*time.Millisecond, tl.CriticalPath[1].Waited)

	empty := &orchestrator.Run{StartedAt: t0, CompletedAt: at(10)}
	assert.Empty(t, artifacts.TimelineOf(empty, 0).CriticalPath)
	assert.Empty(t, artifacts.Gantt(empty))
}

func TestGanttGolden(t *testing.T) {
	run := fixtureRun(t)
	chart := artifacts.Gantt(run)
	golden(t, "timeline.mmd", []byte(chart))
	lines := strings.Split(strings.TrimSpace(chart), "\n")
	assert.Equal(t, []string{"---", "displayMode: compact", "---", "gantt", "  dateFormat x"}, lines[:5])
	for _, want := range []string{
		"  section customers\n  queued :done, t0, 1772366400000, 1772366400010\n  attempt 1 :crit, t1, 1772366400010, 1772366400400\n",
		"  section fct_orders\n  queued :done,",
		"  cached :milestone,",
		"  section customer_revenue\n  queued :done, t13, 1772366400960, 1772366400980\n" +
			"  attempt 1 error :crit, active, t14, 1772366400980, 1772366400990\n" +
			"  retry wait :done, t15, 1772366400990, 1772366401000\n" +
			"  attempt 2 error :crit, active, t16, 1772366401000, 1772366401100\n",
	} {
		assert.Contains(t, chart, want)
	}
	assert.NotContains(t, chart, "revenue_by_segment", "a skipped node has no bar")
	assert.Equal(t, 9, strings.Count(chart, "section "), "a row per node that ran or was served")
}

// TestGanttRenders: mermaid parses the chart, computes every bar's dates
// as it does to draw them, and renders one bar per task; a chart with a
// bad date is rejected, so the check can fail.
func TestGanttRenders(t *testing.T) {
	run := fixtureRun(t)
	big := bigRun(t, 60)
	for i := range big.Results {
		nr := &big.Results[i]
		if nr.Status == orchestrator.Success || nr.Status == orchestrator.Error {
			nr.StartedAt, nr.CompletedAt = at(10*i+2), at(10*i+10)
			nr.WaitTime = 2 * time.Millisecond
			nr.Attempts = []orchestrator.Attempt{{Number: 1, StartedAt: nr.StartedAt, CompletedAt: nr.CompletedAt, Status: "success"}}
		}
	}
	big.StartedAt, big.CompletedAt = t0, at(700)
	charts := []string{
		artifacts.Gantt(run),
		artifacts.Gantt(big),
		"gantt\n  dateFormat x\n  section a\n  x :t0, banana, 1772366400000\n",
		"gantt\n  dateFormat x\n  section a\n  x :t0, 1772366400100, 1772366400000\n",
	}
	errs := parseMermaid(t, charts...)
	assert.Empty(t, errs[0], "fixture timeline")
	assert.Empty(t, errs[1], "big timeline")
	assert.Contains(t, errs[2], "Invalid date", "a bad date is rejected")
	assert.Contains(t, errs[3], "ends before it starts")
}

func TestSummaryTimeline(t *testing.T) {
	run := fixtureRun(t)
	md := render(t, &artifacts.Summary{}, run)
	for _, want := range []string{
		"## Timeline\n\n⏱️ Wall time 1.20s · slot utilisation **35%** (1.66s busy of 4 slots × 1.20s) · at most 2 running at once.\n",
		"| 1 | `seed.shop.customers` | 10ms | 390ms | 1 | 33% |\n",
		"| 2 | `model.shop.stg_customers` | 100ms | 300ms | 1 | 33% |\n",
		"| 3 | `test.shop.accepted_values_stg_customers_segment.1a2b3c4d5e` | 100ms | 60ms | 1 | 13% |\n",
		"| 4 | `model.shop.customer_revenue` | 20ms | 120ms | 2 | 12% |\n",
		"| | _after the last node_ | 100ms | | | 8% |\n",
		"On the critical path, nodes waited 230ms (21%) and ran 870ms (79%).\n",
		"```mermaid\n---\ndisplayMode: compact\n---\ngantt\n",
	} {
		assert.Contains(t, md, want)
	}
	assert.NotContains(t, md, "Most of it is waiting")
	slow := fixtureRun(t)
	for i := range slow.Results {
		slow.Results[i].WaitTime *= 10 // queued 10 times longer, same run times
	}
	stg := slow.Result("model.shop.stg_customers")
	stg.Attempts[0].StartedAt = at(1300)
	stg.Attempts[0].CompletedAt, stg.CompletedAt = at(1600), at(1600)
	slow.CompletedAt = at(1700)
	assert.Contains(t, render(t, &artifacts.Summary{}, slow), "Most of it is waiting: its nodes were ready but had no free slot or limit")
	g := ganttBlock.FindStringSubmatch(md)
	require.NotNil(t, g)
	assert.Equal(t, artifacts.Gantt(run), g[1])
	assert.Less(t, strings.Index(md, "## Timeline"), strings.Index(md, "## Run graph"))

	capped := render(t, &artifacts.Summary{MaxTimelineNodes: 4}, run)
	assert.Contains(t, capped, "_The chart shows 4 of the 9 nodes that ran: the critical path and the longest._")
	g = ganttBlock.FindStringSubmatch(capped)
	require.NotNil(t, g)
	assert.Equal(t, 4, strings.Count(g[1], "section "))
	assert.Contains(t, g[1], "section customer_revenue")
	assert.NotContains(t, render(t, &artifacts.Summary{MaxTimelineNodes: -1}, run), "gantt")
	assert.Contains(t, render(t, &artifacts.Summary{MaxTimelineNodes: -1}, run), "**Critical path**")
}

// TestReadmeCharts: the summary pasted into README.md renders: its gantt
// chart and its flowchart parse, and every gantt task has valid dates.
func TestReadmeCharts(t *testing.T) {
	data, err := os.ReadFile(filepath.Join(dbttest.RepoRoot(t), "README.md"))
	require.NoError(t, err)
	gantt := ganttBlock.FindStringSubmatch(string(data))
	require.NotNil(t, gantt, "README shows a summary's timeline")
	flow := mermaidBlock.FindStringSubmatch(string(data))
	require.NotNil(t, flow, "README shows a summary's run graph")
	assert.Equal(t, []string{"", ""}, parseMermaid(t, gantt[1], flow[1]))
	assert.Contains(t, string(data), "**Critical path**")
	assert.Contains(t, string(data), "♻️ Saved by the cache:")
}
