package orchestrator_test

import (
	"bytes"
	"context"
	"encoding/json"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/dbtorch/dbtorch/artifacts"
	"github.com/dbtorch/dbtorch/executor"
	"github.com/dbtorch/dbtorch/manifest"
	"github.com/dbtorch/dbtorch/orchestrator"
	"github.com/dbtorch/dbtorch/orchestrator/cost"
)

// savedCache is a mapCache that also says what each entry recorded.
type savedCache struct {
	*mapCache
	asked []string
}

func (c *savedCache) Saved(_ context.Context, n *manifest.Node, key string) *orchestrator.SavedRun {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.asked = append(c.asked, n.UniqueID+"@"+key)
	return &orchestrator.SavedRun{ExecutionTime: 2 * time.Second, AdapterResponse: map[string]any{"bytes_billed": float64(100), "job_id": "job-" + n.Name}}
}

// TestSavedByCache: a cache hit keeps what the cache's SavedReader says
// the entry recorded, and the run's totals add it up apart from what ran;
// a cache that is no SavedReader leaves Saved nil, the nodes counted.
func TestSavedByCache(t *testing.T) {
	m := manifestOf(diamond())
	ctx := context.Background()
	c := &savedCache{mapCache: newMapCache()}
	build := func(cache orchestrator.Cache) *orchestrator.Run {
		t.Helper()
		run, err := newOrch(t, orchestrator.Config{Executor: newFake(nil), Manifest: m, Cache: cache}).RunBuild(ctx, orchestrator.BuildOptions{})
		require.NoError(t, err)
		return run
	}
	cold := build(c)
	assert.Empty(t, c.asked, "no hit, nothing asked")
	tot := cold.Totals()
	assert.Equal(t, len(cold.Results), tot.Ran.Nodes)
	assert.Equal(t, 5, tot.Ran.Reporting, "the fake reports rows for every node; a test's are not rows affected")
	assert.Zero(t, tot.SavedByCache.Nodes)

	warm := build(c)
	cached := warm.Count(orchestrator.Cached)
	require.Equal(t, 5, cached, "the five models")
	assert.Len(t, c.asked, cached, "asked once per hit")
	assert.Contains(t, c.asked, modelID(3)+"@k-"+modelID(3), "with the node's key")
	for _, r := range warm.Results {
		if r.Status == orchestrator.Cached {
			require.NotNil(t, r.Saved, r.UniqueID)
			assert.Equal(t, []string{"job-" + r.Name}, r.SavedCost().QueryIDs)
			assert.True(t, r.Cost().IsZero(), "a cached node did not cost anything now")
		} else {
			assert.Nil(t, r.Saved, r.UniqueID)
		}
	}
	tot = warm.Totals()
	assert.Equal(t, cost.Totals{Nodes: 5, Reporting: 5, ExecutionSeconds: 10, BytesBilled: ptr(int64(500)), Queries: 5}, tot.SavedByCache)
	assert.Equal(t, len(warm.Results)-5, tot.Ran.Nodes, "the tests ran")

	plain := newMapCache()
	build(plain)
	warm = build(plain)
	for _, r := range warm.Results {
		assert.Nil(t, r.Saved)
	}
	assert.Equal(t, cost.Totals{Nodes: 5}, warm.Totals().SavedByCache)
}

func ptr[T any](v T) *T { return &v }

// TestResultsJSONCost: the results contract gains a "totals" object and,
// per node, "cost" (what the warehouse reported) and "saved" (what a cache
// entry recorded), absent when there is nothing to say; the existing keys
// are unchanged.
func TestResultsJSONCost(t *testing.T) {
	t0 := time.Date(2026, 3, 1, 12, 0, 0, 0, time.UTC)
	run := &orchestrator.Run{ID: "b1", StartedAt: t0, CompletedAt: t0.Add(time.Minute), Results: []orchestrator.NodeResult{
		{Result: executor.Result{UniqueID: "model.p.big", ExecutionTime: 3 * time.Second,
			AdapterResponse: map[string]any{"_message": "CREATE TABLE", "bytes_processed": float64(1 << 30), "bytes_billed": float64(1 << 30), "slot_ms": float64(4200), "job_id": "job_1"}},
			ResourceType: manifest.Model, Status: orchestrator.Success,
			Attempts: []orchestrator.Attempt{{Number: 1, StartedAt: t0, CompletedAt: t0.Add(3 * time.Second), Status: executor.Success}}},
		{Result: executor.Result{UniqueID: "model.p.view", ExecutionTime: time.Second,
			AdapterResponse: map[string]any{"_message": "CREATE VIEW", "rows_affected": float64(-1)}},
			ResourceType: manifest.Model, Status: orchestrator.Success,
			Attempts: []orchestrator.Attempt{{Number: 1, StartedAt: t0, CompletedAt: t0.Add(time.Second), Status: executor.Success}}},
		{Result: executor.Result{UniqueID: "model.p.kept"}, ResourceType: manifest.Model, Status: orchestrator.Cached,
			Saved: &orchestrator.SavedRun{ExecutionTime: 5 * time.Second, RowsAffected: ptr(int64(12))}},
		{Result: executor.Result{UniqueID: "model.p.skip"}, ResourceType: manifest.Model, Status: orchestrator.Skipped},
		{Result: executor.Result{UniqueID: "test.p.not_null",
			AdapterResponse: map[string]any{"_message": "SELECT 1", "code": "SELECT", "rows_affected": float64(1), "bytes_processed": float64(2048)}},
			ResourceType: manifest.Test, Status: orchestrator.Success,
			Attempts: []orchestrator.Attempt{{Number: 1, StartedAt: t0, CompletedAt: t0.Add(time.Second), Status: executor.Success}}},
	}}
	var buf bytes.Buffer
	require.NoError(t, artifacts.WriteResultsJSON(&buf, run))
	var doc map[string]any
	require.NoError(t, json.Unmarshal(buf.Bytes(), &doc))
	for _, k := range []string{"run_id", "started_at", "completed_at", "elapsed_seconds", "args", "counts", "waves", "results", "warnings"} {
		assert.Contains(t, doc, k)
	}
	totals, err := json.Marshal(doc["totals"])
	require.NoError(t, err)
	assert.JSONEq(t, `{
		"ran": {"nodes": 3, "reporting": 2, "execution_seconds": 4, "bytes_processed": 1073743872, "bytes_billed": 1073741824, "slot_ms": 4200, "queries": 1},
		"saved_by_cache": {"nodes": 1, "reporting": 1, "execution_seconds": 5, "rows_affected": 12, "queries": 0}
	}`, string(totals))
	results := doc["results"].([]any)
	big, view, kept, skip := results[0].(map[string]any), results[1].(map[string]any), results[2].(map[string]any), results[3].(map[string]any)
	assert.Equal(t, map[string]any{"bytes_processed": float64(1 << 30), "bytes_billed": float64(1 << 30), "slot_ms": float64(4200), "query_ids": []any{"job_1"}}, big["cost"])
	assert.NotContains(t, view, "cost", "rows_affected -1 is unknown: nothing reported")
	assert.Equal(t, map[string]any{"execution_seconds": float64(5), "cost": map[string]any{"rows_affected": float64(12)}}, kept["saved"])
	assert.NotContains(t, big, "saved")
	assert.NotContains(t, skip, "cost")
	assert.NotContains(t, skip, "saved")
	test := results[4].(map[string]any)
	assert.Equal(t, map[string]any{"bytes_processed": float64(2048)}, test["cost"], "a test's rows_affected is the rows its query returned: not rows affected")
}
