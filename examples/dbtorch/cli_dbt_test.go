package main

import (
	"encoding/json"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/dbtorch/dbtorch/artifacts"
	"github.com/dbtorch/dbtorch/internal/dbttest"
	"github.com/dbtorch/dbtorch/orchestrator"
)

// shopEnv is shopProject with $DBT_TARGET emptied (the profile's own
// target); it returns the project.
func shopEnv(t *testing.T) string {
	t.Helper()
	dir := shopProject(t)
	t.Setenv("DBT_TARGET", "")
	return dir
}

func readRun(t *testing.T, path string) artifacts.RunJSON {
	t.Helper()
	data, err := os.ReadFile(path)
	require.NoError(t, err)
	var r artifacts.RunJSON
	require.NoError(t, json.Unmarshal(data, &r))
	return r
}

func resultIDs(r artifacts.RunJSON) []string {
	var ids []string
	for _, x := range r.Results {
		ids = append(ids, x.UniqueID)
	}
	slices.Sort(ids)
	return ids
}

// TestCLIBuildFailRetry drives a user's loop through the CLI on real dbt:
// a build with a failing test (FAIL n, skip lines naming it, start lines,
// the DuckDB concurrency: 4 nodes at once in the warm worker's build
// session, announced as 1 where sessions do not run), a retry that rebuilds the tested
// model and hits a SQL error (dbt's Binder Error on the console), a retry
// from a run_results.json as dbt writes it, in per-wave mode with
// --threads, a retry with nothing left, a Core build (one node at a time on
// DuckDB, announced); then --fail-fast and --select state:modified+ with
// --state.
func TestCLIBuildFailRetry(t *testing.T) {
	dir := shopEnv(t)
	out := t.TempDir()
	results, runResults := filepath.Join(out, "results.json"), filepath.Join(out, "run_results.json")
	const failingTest = "test.shop.assert_order_amounts_non_negative"

	// 1. A failing test skips what is downstream of its model.
	code, stdout, stderr := runCLI(t, "build", "--project-dir", dir, "--vars", "{failing_test: true}",
		"--select", "+customer_revenue", "stg_events", "--exclude", "stg_events", "--results", results)
	require.Equal(t, exitFailed, code, "stdout:\n%s\nstderr:\n%s", stdout, stderr)
	if dbttest.Sessions(t) {
		// One warm worker's build session runs 4 nodes at once on the
		// DuckDB file (one process).
		assert.NotContains(t, stderr, "node(s) at a time, not 4")
	} else {
		assert.Contains(t, stderr, "running 1 node(s) at a time, not 4: one DuckDB file takes one writing process at a time")
	}
	assert.Regexp(t, `(?m)^ +START  model\.shop\.fct_orders$`, stdout, "a line when a node starts")
	assert.Regexp(t, `(?m)^ *\d+/\d+ FAIL 8 +`+failingTest+` \(\d+.*\) test_failure: Got 8 results, configured to fail if != 0$`, stdout)
	assert.Regexp(t, `(?m)^ *\d+/\d+ SKIP +model\.shop\.customer_revenue \(upstream failed: `+failingTest+`\)$`, stdout)
	assert.Contains(t, stdout, "FAIL 8 "+failingTest+" [test_failure]: Got 8 results", "the summary")
	first := readRun(t, results)
	assert.NotContains(t, resultIDs(first), "model.shop.stg_events", "--select a b, --exclude a")
	assert.Contains(t, resultIDs(first), "model.shop.customer_revenue")

	// 2. Retry: the tested model is rebuilt before the test; the skipped
	// nodes run; customer_revenue now fails with dbt's cause on the console.
	code, stdout, stderr = runCLI(t, "retry", "--project-dir", dir, "--vars", "{broken_model: true}", "--results", results, "--run-results", runResults)
	require.Equal(t, exitFailed, code, "stdout:\n%s\nstderr:\n%s", stdout, stderr)
	assert.Contains(t, stdout, "Retrying run "+first.RunID+" (attempt 2)")
	assert.Regexp(t, `(?m)^ *\d+/\d+ ERROR +model\.shop\.customer_revenue \(.*\) database: Binder Error: .*column_that_does_not_exist`, stdout)
	assert.Contains(t, stdout, "ERROR model.shop.customer_revenue [database]: Binder Error:")
	second := readRun(t, results)
	assert.Equal(t, first.RunID, second.RunID, "same run id")
	assert.EqualValues(t, 2, second.Args["attempt"])
	ids := resultIDs(second)
	assert.Contains(t, ids, "model.shop.fct_orders", "the failed test's model is rebuilt")
	assert.Contains(t, ids, failingTest)
	assert.Contains(t, ids, "model.shop.dim_customers.v2")
	assert.NotContains(t, ids, "model.shop.stg_orders", "what passed is not re-run")
	fct, test := slices.Index(func() []string {
		var order []string
		for _, r := range second.Results {
			order = append(order, r.UniqueID)
		}
		return order
	}(), "model.shop.fct_orders"), -1
	for i, r := range second.Results {
		if r.UniqueID == failingTest {
			test = i
			assert.Equal(t, orchestrator.Success, r.Status, "the test passes on the rebuilt model")
		}
	}
	assert.Less(t, fct, test, "the model before its test")

	// 3. Retry from a run_results.json as dbt writes it (without
	// dbtorch's build id: the retry replaces it all the same), one dbt
	// build per wave with dbt's --threads.
	var rr map[string]any
	data, err := os.ReadFile(runResults)
	require.NoError(t, err)
	require.NoError(t, json.Unmarshal(data, &rr))
	delete(rr["args"].(map[string]any), "dbtorch_build_id")
	data, err = json.Marshal(rr)
	require.NoError(t, err)
	require.NoError(t, os.WriteFile(runResults, data, 0o644))
	code, stdout, stderr = runCLI(t, "retry", "--project-dir", dir, "--run-results", runResults, "--mode", "per-wave", "--threads", "2")
	require.Equal(t, exitOK, code, "stdout:\n%s\nstderr:\n%s", stdout, stderr)
	var third struct {
		Metadata struct {
			InvocationID string `json:"invocation_id"`
		} `json:"metadata"`
		Args    map[string]any `json:"args"`
		Results []struct {
			UniqueID string `json:"unique_id"`
			Status   string `json:"status"`
		} `json:"results"`
	}
	data, err = os.ReadFile(runResults)
	require.NoError(t, err)
	require.NoError(t, json.Unmarshal(data, &third))
	assert.Equal(t, first.RunID, third.Metadata.InvocationID, "same run id")
	assert.EqualValues(t, 3, third.Args["attempt"], "attempt 3, in run_results.json too")
	var thirdIDs []string
	for _, r := range third.Results {
		thirdIDs = append(thirdIDs, r.UniqueID)
	}
	slices.Sort(thirdIDs)
	assert.Equal(t, []string{"model.shop.customer_revenue", "test.shop.unique_customer_revenue_customer_id.3b4be2f107"}, thirdIDs)

	// 4. Nothing left.
	code, stdout, _ = runCLI(t, "retry", "--project-dir", dir, "--run-results", runResults)
	assert.Equal(t, exitOK, code)
	assert.Contains(t, stdout, "Nothing to retry")

	// 4b. The Core executor starts a dbt process per invocation: on
	// DuckDB one at a time, and the CLI says so before the build.
	code, stdout, stderr = runCLI(t, "build", "--project-dir", dir, "--executor", "core", "-s", "stg_orders")
	require.Equal(t, exitOK, code, "stdout:\n%s\nstderr:\n%s", stdout, stderr)
	assert.Contains(t, stderr, "running 1 node(s) at a time, not 4: one DuckDB file takes one writing process at a time")

	// 5. --fail-fast stops at the first failure: the rest is skipped as
	// cancelled, not run.
	code, stdout, stderr = runCLI(t, "build", "--project-dir", dir, "--vars", "{broken_model: true}", "--fail-fast",
		"-s", "customer_revenue+", "stg_orders+", "--results", results)
	assert.Equal(t, exitFailed, code, "stdout:\n%s\nstderr:\n%s", stdout, stderr)
	assert.Contains(t, stderr, "stopped by --fail-fast: model.shop.customer_revenue failed")
	ff := readRun(t, results)
	assert.Positive(t, ff.Counts[orchestrator.Skipped])
	assert.Contains(t, stdout, "SKIP", "skipped lines")

	// 6. --select state:modified+ against a --state manifest: only the
	// changed model and what is downstream of it.
	// (dbt deps already ran: the build's executor ran it.)
	parseOut, err := dbttest.Run(t, dir, dbttest.Env(t, dir), "parse")
	require.NoError(t, err, parseOut)
	manifestPath := filepath.Join(dir, "target", "manifest.json")
	state := t.TempDir()
	data, err = os.ReadFile(manifestPath)
	require.NoError(t, err)
	require.NoError(t, os.WriteFile(filepath.Join(state, "manifest.json"), data, 0o644))
	model := filepath.Join(dir, "models", "marts", "finance", "customer_revenue.sql")
	sql, err := os.ReadFile(model)
	require.NoError(t, err)
	require.NoError(t, os.WriteFile(model, append(sql, []byte("\n-- changed\n")...), 0o644))
	code, stdout, stderr = runCLI(t, "build", "--project-dir", dir, "--select", "state:modified+", "--state", state,
		"--defer", "--favor-state", "--results", results)
	require.Equal(t, exitOK, code, "stdout:\n%s\nstderr:\n%s", stdout, stderr)
	sixth := readRun(t, results)
	assert.Equal(t, []string{"model.shop.customer_revenue", "model.shop.revenue_by_segment",
		"test.shop.unique_customer_revenue_customer_id.3b4be2f107"}, resultIDs(sixth))
	require.NotNil(t, sixth.Results[0].Invocation)
	argv := strings.Join(sixth.Results[0].Invocation.Args, " ")
	for _, want := range []string{"--state " + state, "--defer", "--favor-state"} {
		assert.Contains(t, argv, want, "dbt is run with %s", want)
	}

	// 7. A warehouse that cannot be reached: the console shows the cause.
	t.Setenv("DBTORCH_PG_PORT", "1")
	code, stdout, stderr = runCLI(t, "build", "--project-dir", dir, "--target", "pg", "-s", "customers", "--executor", "core")
	assert.Equal(t, exitFailed, code, "stdout:\n%s\nstderr:\n%s", stdout, stderr)
	assert.Regexp(t, `(?m)^1/1 ERROR +seed\.shop\.customers \(.*\) connection: connection to server at .* failed: Connection refused`, stdout)
}
