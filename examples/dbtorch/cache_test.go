package main

import (
	"bytes"
	"encoding/json"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/dbtorch/dbtorch/artifacts"
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
	build := func() *artifacts.RunJSON {
		t.Helper()
		results := filepath.Join(t.TempDir(), "results.json")
		var out, errb bytes.Buffer
		code := runBuild(t.Context(), []string{"--project-dir", dir, "--select", "+stg_customers",
			"--cache-dir", cacheDir, "--results", results}, &out, &errb)
		require.Equal(t, 0, code, "stdout:\n%s\nstderr:\n%s", out.String(), errb.String())
		data, err := os.ReadFile(results)
		require.NoError(t, err)
		var got artifacts.RunJSON
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

// TestBuildCacheS3: two dbtorch processes on two fresh copies of the
// project (as two CI runners with empty disks) build into one PostgreSQL
// database and share their cache through an S3 bucket (SeaweedFS on
// loopback, --cache-dir s3://...): the second serves everything from the
// first one's entries, tests included, and runs no dbt node.
func TestBuildCacheS3(t *testing.T) {
	if testing.Short() {
		t.Skip("real dbt, PostgreSQL and SeaweedFS: not in -short mode")
	}
	s3 := dbttest.StartSeaweed(t)
	pg := dbttest.StartPostgres(t)
	bin := filepath.Join(t.TempDir(), "dbtorch")
	out, err := exec.Command("go", "build", "-o", bin, ".").CombinedOutput()
	require.NoError(t, err, "%s", out)
	cacheURL := s3.URL("runners")
	build := func() *artifacts.RunJSON {
		t.Helper()
		dir := dbttest.CopyProject(t, "shop")
		env := append(append(append(os.Environ(), dbttest.Env(t, dir)...), pg.Env()...), s3.Env()...)
		env = append(env, "DBTORCH_DBT="+dbttest.DBT(t))
		results := filepath.Join(t.TempDir(), "results.json")
		cmd := exec.Command(bin, "build", "--project-dir", dir, "--target", "pg", "--select", "+stg_customers",
			"--cache-dir", cacheURL, "--results", results)
		cmd.Env = env
		out, err := cmd.CombinedOutput()
		require.NoError(t, err, "%s", out)
		data, err := os.ReadFile(results)
		require.NoError(t, err)
		var got artifacts.RunJSON
		require.NoError(t, json.Unmarshal(data, &got))
		return &got
	}
	first := build()
	require.Zero(t, first.Counts[orchestrator.Cached])
	require.Equal(t, len(first.Results), first.Counts[orchestrator.Success])
	second := build()
	assert.Equal(t, len(second.Results), second.Counts[orchestrator.Cached], "served from the first process's entries")
	for _, r := range second.Results {
		assert.Empty(t, r.Attempts, "%s ran", r.UniqueID)
	}
}
