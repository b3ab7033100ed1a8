package orchestrator_test

import (
	"context"
	"os"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/dbtorch/dbtorch/executor"
	"github.com/dbtorch/dbtorch/manifest"
	"github.com/dbtorch/dbtorch/orchestrator"
)

// replayExec answers every request with the results of a recorded
// run_results.json, renamed onto the requested nodes by position in
// names (requested id -> recorded id).
type replayExec struct {
	recorded map[string]executor.Result
	names    map[string]string
}

func (r *replayExec) Execute(_ context.Context, req executor.Request) (*executor.Response, error) {
	resp := &executor.Response{Invocation: executor.Invocation{Command: req.Command}}
	for _, n := range req.Nodes {
		res := r.recorded[r.names[n.UniqueID]]
		res.UniqueID = n.UniqueID
		resp.Results = append(resp.Results, res)
	}
	return resp, nil
}

// TestReusedIsCached replays dbt 1.12's statuses (a reused model, a test
// dbt state checked without running it, a no-op, a pass) through a
// build: reused nodes end Cached with the reason "reused by dbt", not in
// error, their descendants run, and the build succeeds.
func TestReusedIsCached(t *testing.T) {
	data, err := os.ReadFile("../internal/runresults/testdata/build_newer_statuses.json")
	require.NoError(t, err)
	rs, _, err := executor.ParseRunResults(data)
	require.NoError(t, err)
	rec := map[string]executor.Result{}
	for _, r := range rs {
		rec[r.UniqueID] = r
	}
	// m0 <- m1 <- m2; t0 tests m0, t1 tests m1.
	m := manifestOf(dagSpec{models: 3, parents: map[int][]int{1: {0}, 2: {1}}, tests: [][]int{{0}, {1}}})
	ex := &replayExec{recorded: rec, names: map[string]string{
		modelID(0): "model.shop.stg_orders",
		testID(0):  "test.shop.not_null_stg_orders_order_id.81cfe2fe64",
		modelID(1): "model.shop.fct_orders",
		testID(1):  "test.shop.unique_stg_orders_order_id.e3b841c71a",
		modelID(2): "saved_query.shop.orders_by_day",
	}}
	for _, mode := range []orchestrator.Mode{orchestrator.PerNode, orchestrator.PerWave} {
		o, err := orchestrator.New(orchestrator.Config{Executor: ex, Manifest: m, Mode: mode})
		require.NoError(t, err)
		run, err := o.RunBuild(context.Background(), orchestrator.BuildOptions{Tests: manifest.Immediate})
		require.NoError(t, err, mode)
		want := map[string]orchestrator.Status{
			modelID(0): orchestrator.Cached, testID(0): orchestrator.Cached,
			modelID(1): orchestrator.Success, testID(1): orchestrator.Success, modelID(2): orchestrator.Success,
		}
		for _, r := range run.Results {
			assert.Equal(t, want[r.UniqueID], r.Status, "%s %s", mode, r.UniqueID)
			if r.Status == orchestrator.Cached {
				assert.Contains(t, r.CacheReason, orchestrator.CacheReasonReusedByDBT, r.UniqueID)
				assert.Nil(t, r.Err)
			}
		}
		assert.Equal(t, "reused by dbt: Reused: no changes to the model or its upstreams", run.Result(modelID(0)).CacheReason)
		assert.Equal(t, "no-op", run.Result(modelID(2)).DBTStatus)
	}
}
