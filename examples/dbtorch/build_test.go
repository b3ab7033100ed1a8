package main

import (
	"bytes"
	"context"
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

func TestBuildFlags(t *testing.T) {
	for name, args := range map[string][]string{
		"no project":     {},
		"bad mode":       {"--project-dir", ".", "--mode", "sideways"},
		"bad strategy":   {"--project-dir", ".", "--test-strategy", "sometimes"},
		"bad vars":       {"--project-dir", ".", "--vars", "[1]"},
		"fresh no cache": {"--project-dir", ".", "--only-fresh-sources"},
		"extra argument": {"--project-dir", ".", "oops"},
	} {
		var out, errb bytes.Buffer
		assert.Equal(t, 2, runBuild(context.Background(), args, &out, &errb), name)
		assert.NotEmpty(t, errb.String(), name)
	}
}

func TestPrintSummaryWarnings(t *testing.T) {
	var out bytes.Buffer
	printSummary(&out, &orchestrator.Run{Warnings: []string{"source freshness unavailable: exit 2"}})
	assert.Contains(t, out.String(), "WARNING source freshness unavailable: exit 2")
}

func TestBuildShop(t *testing.T) {
	if testing.Short() {
		t.Skip("real dbt: not in -short mode")
	}
	dir := dbttest.CopyProject(t, "shop")
	for _, kv := range dbttest.Env(t, dir) {
		k, v, _ := strings.Cut(kv, "=")
		t.Setenv(k, v)
	}
	t.Setenv("DBTORCH_DBT", dbttest.DBT(t))
	results := filepath.Join(t.TempDir(), "out", "results.json")
	var out, errb bytes.Buffer
	code := runBuild(t.Context(), []string{"--project-dir", dir, "--select", "+stg_customers", "--test-strategy", "skip",
		"--retries", "1", "--results", results}, &out, &errb)
	require.Equal(t, 0, code, "stdout:\n%s\nstderr:\n%s", out.String(), errb.String())

	// Plain progress lines (not a terminal), then the summary.
	text := out.String()
	assert.Contains(t, text, "Building 2 nodes in 2 waves")
	assert.Contains(t, text, "1/2 OK     seed.shop.customers")
	assert.Contains(t, text, "2/2 OK     model.shop.stg_customers")
	assert.Contains(t, text, "Done in ")
	assert.NotContains(t, text, "\r", "no terminal control codes")

	// The results contract.
	data, err := os.ReadFile(results)
	require.NoError(t, err)
	var got orchestrator.RunJSON
	require.NoError(t, json.Unmarshal(data, &got))
	require.Len(t, got.Results, 2)
	assert.Equal(t, map[orchestrator.Status]int{"success": 2, "error": 0, "skipped": 0, "cached": 0}, got.Counts)
	seed := got.Results[0]
	assert.Equal(t, "seed.shop.customers", seed.UniqueID)
	assert.Equal(t, orchestrator.Success, seed.Status)
	require.NotNil(t, seed.RowsAffected)
	assert.Equal(t, int64(5), *seed.RowsAffected)
	require.NotNil(t, seed.Invocation)
	assert.Equal(t, "seed", seed.Invocation.Command)
	assert.Len(t, seed.Attempts, 1)
	assert.Equal(t, []any{"+stg_customers"}, got.Args["select"])

	// A failed node: exit status 1, the error in the summary.
	out.Reset()
	errb.Reset()
	code = runBuild(t.Context(), []string{"--project-dir", dir, "--select", "customer_revenue", "--test-strategy", "skip",
		"--mode", "per-wave", "--vars", `{"broken_model": true}`, "--quiet"}, &out, &errb)
	assert.Equal(t, 1, code, "stdout:\n%s\nstderr:\n%s", out.String(), errb.String())
	assert.Contains(t, out.String(), "ERROR model.shop.customer_revenue")
	assert.NotContains(t, out.String(), "Building", "--quiet")
}
