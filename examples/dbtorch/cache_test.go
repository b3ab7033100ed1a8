package main

import (
	"bytes"
	"encoding/json"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/dbtorch/dbtorch/internal/dbttest"
	"github.com/dbtorch/dbtorch/orchestrator"
)

// TestBuildCacheWarehouse: the cache never serves what the warehouse no
// longer holds. Build shop with a cache dir, delete the DuckDB file,
// build again: every model is rebuilt (relation missing) and the tests
// pass; an unchanged rerun then serves everything, tests included, each
// with its reason.
func TestBuildCacheWarehouse(t *testing.T) {
	if testing.Short() {
		t.Skip("real dbt: not in -short mode")
	}
	dir := dbttest.CopyProject(t, "shop")
	env := dbttest.Env(t, dir)
	var dbPath string
	for _, kv := range env {
		k, v, _ := strings.Cut(kv, "=")
		t.Setenv(k, v)
		if k == "DBTORCH_DUCKDB_PATH" {
			dbPath = v
		}
	}
	require.NotEmpty(t, dbPath)
	t.Setenv("DBTORCH_DBT", dbttest.DBT(t))
	cacheDir := filepath.Join(t.TempDir(), "cache")
	build := func() *orchestrator.RunJSON {
		t.Helper()
		results := filepath.Join(t.TempDir(), "results.json")
		var out, errb bytes.Buffer
		code := runBuild(t.Context(), []string{"--project-dir", dir, "--select", "+stg_customers",
			"--cache-dir", cacheDir, "--results", results}, &out, &errb)
		require.Equal(t, 0, code, "stdout:\n%s\nstderr:\n%s", out.String(), errb.String())
		data, err := os.ReadFile(results)
		require.NoError(t, err)
		var got orchestrator.RunJSON
		require.NoError(t, json.Unmarshal(data, &got))
		return &got
	}
	cold := build()
	require.Zero(t, cold.Counts[orchestrator.Cached])
	require.NoError(t, os.Remove(dbPath))

	again := build()
	assert.Zero(t, again.Counts[orchestrator.Cached], "the database is gone: nothing may be served")
	assert.Zero(t, again.Counts[orchestrator.Error], "models rebuilt, tests pass")
	for _, r := range again.Results {
		if r.ResourceType == "seed" {
			assert.Equal(t, "relation missing", r.CacheReason, r.UniqueID)
		}
	}

	warm := build()
	assert.Equal(t, len(warm.Results), warm.Counts[orchestrator.Cached], "unchanged rerun: models and tests served")
	for _, r := range warm.Results {
		assert.NotEmpty(t, r.CacheReason, r.UniqueID)
		if r.ResourceType == "model" {
			assert.Equal(t, "unchanged and relation present", r.CacheReason, r.UniqueID)
		}
	}
}
