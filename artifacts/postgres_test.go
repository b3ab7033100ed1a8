package artifacts_test

import (
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/dbtorch/dbtorch/artifacts"
	"github.com/dbtorch/dbtorch/executor"
	"github.com/dbtorch/dbtorch/internal/dbttest"
	"github.com/dbtorch/dbtorch/orchestrator"
	"github.com/dbtorch/dbtorch/selector"
)

// TestPostgresCostAndTimeline: a real build of shop's seeds, staging
// views and fct_orders on PostgreSQL with two nodes at once. PostgreSQL's
// adapter_response gives each seed's and table's row count (and -1, not
// reported, for a view); the totals add them up; the timeline sees the
// overlap (two at once, utilisation below one), its critical
// path ends at the node that finished last and adds up to the wall time,
// and the summary's gantt chart renders.
func TestPostgresCostAndTimeline(t *testing.T) {
	pg := dbttest.StartPostgres(t)
	p := dbttest.Project(t, "shop", pg.Env()...)
	p.ProfilesDir, p.Target = p.Dir, "pg"
	ex, err := executor.NewWarm(executor.WarmConfig{
		Options: executor.Options{Project: p, WorkDir: t.TempDir()},
		Workers: 2,
	})
	require.NoError(t, err)
	t.Cleanup(func() { _ = ex.Close() })
	summary := filepath.Join(t.TempDir(), "summary.md")
	o, err := orchestrator.New(orchestrator.Config{Executor: ex, Concurrency: 2,
		Reporters: []orchestrator.Reporter{&artifacts.Summary{Path: summary}}})
	require.NoError(t, err)
	run, err := o.RunBuild(t.Context(), orchestrator.BuildOptions{Selection: selector.Options{Select: []string{"resource_type:seed", "staging", "fct_orders"}, Indirect: selector.Cautious}})
	require.NoError(t, err)

	seedRows := map[string]int64{"seed.shop.customers": 5, "seed.shop.orders": 8, "seed.shop.payments": 10, "seed.shop.raw_customer_notes": 3, "seed.shop.raw_events": 6}
	var want int64
	for _, r := range run.Results {
		c := r.Cost()
		switch {
		case seedRows[r.UniqueID] > 0:
			require.NotNil(t, c.RowsAffected, "%s: %v", r.UniqueID, r.AdapterResponse)
			assert.Equal(t, seedRows[r.UniqueID], *c.RowsAffected, r.UniqueID)
			want += *c.RowsAffected
		case r.UniqueID == "model.shop.fct_orders":
			require.NotNil(t, c.RowsAffected, "a table: SELECT n; %v", r.AdapterResponse)
			assert.Equal(t, int64(8), *c.RowsAffected, "one row per order")
			assert.Equal(t, "SELECT", r.AdapterResponse["code"])
			want += *c.RowsAffected
		case r.ResourceType == "model":
			assert.True(t, c.IsZero(), "%s is a view: %v", r.UniqueID, r.AdapterResponse)
		}
		assert.Empty(t, c.QueryIDs, "PostgreSQL reports no query id")
	}
	tot := run.Totals()
	require.NotNil(t, tot.Ran.RowsAffected)
	assert.Equal(t, want, *tot.Ran.RowsAffected)
	assert.Nil(t, tot.Ran.BytesBilled, "PostgreSQL bills no bytes")

	tl := artifacts.TimelineOf(run, 0)
	assert.Equal(t, 2, tl.Slots)
	t.Logf("wall %s, busy %s, utilisation %.0f%%, peak %d, critical path %d nodes", tl.Wall, tl.Busy, 100*tl.Utilisation, tl.Peak, len(tl.CriticalPath))
	assert.Equal(t, 2, tl.Peak, "nodes overlapped")
	assert.LessOrEqual(t, tl.Peak, 2)
	assert.Greater(t, tl.Utilisation, 0.0)
	assert.Less(t, tl.Utilisation, 1.0)
	require.NotEmpty(t, tl.CriticalPath)
	last := tl.CriticalPath[len(tl.CriticalPath)-1]
	total := tl.After
	for _, st := range tl.CriticalPath {
		total += st.Waited + st.Ran
	}
	assert.InDelta(t, float64(tl.Wall), float64(total), float64(time.Millisecond))
	for _, r := range run.Results {
		assert.False(t, r.CompletedAt.After(run.Result(last.UniqueID).CompletedAt), "%s finished after the path's end", r.UniqueID)
	}

	md := readFile(t, summary)
	g := ganttBlock.FindStringSubmatch(md)
	require.NotNil(t, g)
	assert.Equal(t, []string{""}, parseMermaid(t, g[1]))
	assert.Contains(t, md, "💰 The warehouse reported, for ")
	assert.Contains(t, md, "slot utilisation **")
}

func readFile(t *testing.T, path string) string {
	t.Helper()
	data, err := os.ReadFile(path)
	require.NoError(t, err)
	return string(data)
}
