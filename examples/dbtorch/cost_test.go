package main

import (
	"bytes"
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/dbtorch/dbtorch/artifacts"
	"github.com/dbtorch/dbtorch/internal/dbttest"
	"github.com/dbtorch/dbtorch/orchestrator"
)

// TestBuildShopSavedByCache: a real shop build's results carry what
// DuckDB reported (rows affected by the seed) per node and in the totals;
// its cache entries record each node's execution time and adapter
// response, so that the unchanged rerun, served from the cache, reports
// exactly that as saved by the cache, in the results and the summary.
func TestBuildShopSavedByCache(t *testing.T) {
	dir := shopProject(t)
	cacheDir := filepath.Join(t.TempDir(), "cache")
	build := func() (*artifacts.RunJSON, string) {
		t.Helper()
		out := t.TempDir()
		var stdout, stderr bytes.Buffer
		code := runBuild(t.Context(), []string{"--project-dir", dir, "--select", "+stg_customers", "--cache-dir", cacheDir,
			"--results", filepath.Join(out, "results.json"), "--summary", filepath.Join(out, "summary.md"), "--quiet"}, &stdout, &stderr)
		require.Equal(t, 0, code, "stdout:\n%s\nstderr:\n%s", stdout.String(), stderr.String())
		data, err := os.ReadFile(filepath.Join(out, "results.json"))
		require.NoError(t, err)
		var res artifacts.RunJSON
		require.NoError(t, json.Unmarshal(data, &res))
		md, err := os.ReadFile(filepath.Join(out, "summary.md"))
		require.NoError(t, err)
		return &res, string(md)
	}

	cold, md := build()
	require.Zero(t, cold.Counts[orchestrator.Cached])
	ran := cold.Totals.Ran
	assert.Equal(t, len(cold.Results), ran.Nodes)
	require.NotNil(t, ran.RowsAffected, "DuckDB reports the seed's rows")
	assert.Equal(t, int64(5), *ran.RowsAffected, "customers.csv has 5 rows")
	assert.Equal(t, 1, ran.Reporting, "only the seed reports a figure on DuckDB")
	assert.Zero(t, cold.Totals.SavedByCache.Nodes)
	exec := map[string]float64{}
	var coldExec float64
	for _, r := range cold.Results {
		exec[r.UniqueID] = r.ExecutionSeconds
		coldExec += r.ExecutionSeconds
		if r.ResourceType == "seed" {
			require.NotNil(t, r.Cost, r.UniqueID)
			assert.Equal(t, int64(5), *r.Cost.RowsAffected)
		} else {
			assert.Nil(t, r.Cost, "%s: DuckDB reports nothing for models and tests", r.UniqueID)
		}
	}
	assert.InDelta(t, coldExec, ran.ExecutionSeconds, 1e-5)
	assert.Contains(t, md, "💰 The warehouse reported, for 1 of the "+fmt.Sprint(ran.Nodes)+" nodes that ran: **5** rows affected.")

	warm, md := build()
	require.Equal(t, len(warm.Results), warm.Counts[orchestrator.Cached], "unchanged: everything served")
	saved := warm.Totals.SavedByCache
	assert.Equal(t, len(warm.Results), saved.Nodes)
	assert.Zero(t, warm.Totals.Ran.Nodes)
	require.NotNil(t, saved.RowsAffected)
	assert.Equal(t, int64(5), *saved.RowsAffected, "the seed's entry recorded its rows")
	assert.InDelta(t, coldExec, saved.ExecutionSeconds, 1e-5, "what the entries recorded is what the cold build spent")
	for _, r := range warm.Results {
		require.NotNil(t, r.Saved, r.UniqueID)
		assert.InDelta(t, exec[r.UniqueID], r.Saved.ExecutionSeconds, 1e-6, r.UniqueID)
		assert.Nil(t, r.Cost, "a cached node cost nothing now")
	}
	assert.Contains(t, md, fmt.Sprintf("♻️ Saved by the cache: %d nodes not run, ", saved.Nodes))
	assert.Contains(t, md, "| `seed.shop.customers` ♻️ saved |  |  |  | 5 |  |")
}

// shopProject copies testdata/shop and sets the environment a build of it
// reads (its DuckDB file, dbt), for the test; it returns the project dir.
// It skips the test in -short mode (dbttest.Project).
func shopProject(t *testing.T) string {
	t.Helper()
	p := dbttest.Project(t, "shop")
	dbttest.Setenv(t, p)
	return p.Dir
}
