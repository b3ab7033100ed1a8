package main

import (
	"bytes"
	"encoding/json"
	"fmt"
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
	dir := shopProject(t)
	dbPath := os.Getenv("DBTORCH_DUCKDB_PATH")
	require.NotEmpty(t, dbPath)
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

// TestPlanCache: `dbtorch plan --cache-dir` predicts the cache from the
// store alone. After a build every node is a predicted hit (the relation
// not checked, or, with --check-relations, confirmed by one listing);
// after one model changes, it shows "key changed: code" and what reads it
// "upstream ran: <it>", in JSON and in text.
func TestPlanCache(t *testing.T) {
	p := dbttest.Project(t, "shop")
	dbttest.Setenv(t, p)
	dir, env := p.Dir, p.Env
	cacheDir := filepath.Join(t.TempDir(), "cache")
	sel := []string{"--select", "+fct_orders", "--indirect-selection", "cautious"}
	var out, errb bytes.Buffer
	code := runBuild(t.Context(), append([]string{"--project-dir", dir, "--cache-dir", cacheDir, "--quiet"}, sel...), &out, &errb)
	require.Equal(t, 0, code, "stdout:\n%s\nstderr:\n%s", out.String(), errb.String())

	manifestPath := filepath.Join(dir, "target", "manifest.json")
	plan := func(extra ...string) (planJSON, string) {
		t.Helper()
		outp, err := dbttest.Run(t, dir, env, "parse")
		require.NoError(t, err, outp)
		args := append([]string{"plan", "--manifest", manifestPath, "--project-dir", dir, "--cache-dir", cacheDir}, sel...)
		code, stdout, stderr := runCLI(t, append(args, "--output", "json")...)
		require.Equal(t, 0, code, stderr)
		var got planJSON
		require.NoError(t, json.Unmarshal([]byte(stdout), &got), stdout)
		require.NotNil(t, got.Cache)
		code, text, stderr := runCLI(t, append(append(args, "--output", "text"), extra...)...)
		require.Equal(t, 0, code, stderr)
		return got, text
	}
	reasons := func(p planJSON) map[string]string {
		out := map[string]string{}
		for _, n := range p.Cache.Nodes {
			out[n.ID] = fmt.Sprintf("%v %s", n.Hit, n.Reason)
			assert.Len(t, n.Key, 64, n.ID)
		}
		return out
	}

	got, text := plan("--check-relations")
	require.NotEmpty(t, got.Cache.Nodes)
	assert.Equal(t, len(got.Cache.Nodes), got.Cache.PredictedHits, "after the build, every node is a predicted hit: %v", reasons(got))
	assert.False(t, got.Cache.RelationsChecked)
	for id, r := range reasons(got) {
		want := "true unchanged (relation not checked)"
		if strings.HasPrefix(id, "test.") || strings.HasPrefix(id, "unit_test.") {
			want = "true unchanged" // nothing in the warehouse to check
		}
		assert.Equal(t, want, r, id)
	}
	assert.Contains(t, strings.Join(got.Warnings, "\n"), "relations not checked")
	assert.Contains(t, text, "  [cached: unchanged and relation present]", "--check-relations lists the relations")
	assert.NotContains(t, text, "[runs:")
	assert.Contains(t, text, fmt.Sprintf("cache: %d of %d nodes with a key predicted served", len(got.Cache.Nodes), len(got.Cache.Nodes)))

	// One model changes: it and what reads it are predicted to run.
	stg := filepath.Join(dir, "models", "staging", "stg_payments.sql")
	src, err := os.ReadFile(stg)
	require.NoError(t, err)
	require.NoError(t, os.WriteFile(stg, append(src, []byte("\n-- changed\n")...), 0o644))
	got, text = plan()
	r := reasons(got)
	assert.Equal(t, "false key changed: code", r["model.shop.stg_payments"])
	assert.Equal(t, "false upstream ran: model.shop.stg_payments", r["model.shop.fct_orders"], "through the ephemeral int_order_payments")
	for _, id := range []string{"seed.shop.payments", "seed.shop.orders", "model.shop.stg_orders"} {
		assert.Equal(t, "true unchanged (relation not checked)", r[id], id)
	}
	hits := 0
	for id, why := range r {
		if strings.HasPrefix(why, "true") {
			hits++
		}
		if strings.Contains(id, "stg_payments") || strings.Contains(id, "fct_orders") {
			assert.True(t, strings.HasPrefix(why, "false "), "%s reads the change: %s", id, why)
		}
	}
	assert.Equal(t, hits, got.Cache.PredictedHits)
	assert.Equal(t, 6, hits, "the orders side: two seeds, stg_orders and its three tests: %v", r)
	assert.Contains(t, text, "model.shop.stg_payments  <- seed.shop.payments  [runs: key changed: code]")
	assert.Contains(t, text, "  [runs: upstream ran: model.shop.stg_payments]")
	assert.Contains(t, text, "  [cached: unchanged (relation not checked)]")
	t.Logf("dbtorch plan --output text:\n%s", text)
}
