package orchestrator_test

import (
	"context"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/dbtorch/dbtorch/artifacts"
	"github.com/dbtorch/dbtorch/orchestrator"
)

// TestCacheServesTests: one rule serves models and tests. A test with a
// key is served from the cache only when every node it tests was; a node
// downstream of one that ran runs, and each node says why.
func TestCacheServesTests(t *testing.T) {
	for _, mode := range []orchestrator.Mode{orchestrator.PerNode, orchestrator.PerWave} {
		t.Run(mode.String(), func(t *testing.T) {
			m := manifestOf(diamond())
			c := newMapCache()
			c.tests = true
			ctx := context.Background()
			build := func() (*orchestrator.Run, *fakeExec) {
				t.Helper()
				fake := newFake(nil)
				run, err := newOrch(t, orchestrator.Config{Executor: fake, Manifest: m, Cache: c, Mode: mode}).RunBuild(ctx, orchestrator.BuildOptions{})
				require.NoError(t, err)
				return run, fake
			}
			run, _ := build()
			assert.Zero(t, run.Count(orchestrator.Cached))
			assert.Contains(t, c.records, testID(1), "tests with a key are recorded")

			run, fake := build()
			assert.Equal(t, len(run.Results), run.Count(orchestrator.Cached), "unchanged: tests served too")
			assert.Empty(t, fake.byNode())
			assert.Equal(t, "unchanged", run.Result(testID(0)).CacheReason)

			// m2 changes: m2 and m3 run, t1 (tests m1 and m2) runs, t0
			// (tests m1 only) stays cached.
			c.keys[modelID(2)] = "changed"
			o := newOrch(t, orchestrator.Config{Executor: newFake(nil), Manifest: m, Cache: c, Mode: mode})
			plan, err := o.Plan(ctx, orchestrator.BuildOptions{})
			require.NoError(t, err)
			run, _ = build()
			st := statuses(run)
			assert.Equal(t, orchestrator.Success, st[modelID(2)])
			assert.Equal(t, orchestrator.Success, st[modelID(3)])
			assert.Equal(t, orchestrator.Success, st[testID(1)])
			assert.Equal(t, orchestrator.Cached, st[testID(0)])
			assert.Equal(t, orchestrator.Cached, st[modelID(1)])
			assert.Equal(t, "key changed", run.Result(modelID(2)).CacheReason)
			assert.Equal(t, orchestrator.CacheReasonUpstreamRan+": "+modelID(2), run.Result(testID(1)).CacheReason)
			js := artifacts.ResultsJSON(run)
			for k, r := range run.Results {
				assert.Equal(t, r.CacheReason, plan.Reasons[r.UniqueID], "plan predicts %s", r.UniqueID)
				assert.Equal(t, r.CacheReason, js.Results[k].CacheReason, "cache_reason of %s", r.UniqueID)
			}
		})
	}
}
