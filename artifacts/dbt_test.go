package artifacts_test

import (
	"encoding/json"
	"os"
	"path/filepath"
	"slices"
	"sort"
	"strings"
	"testing"
	"time"

	"github.com/spf13/afero"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/dbtorch/dbtorch/artifacts"
	"github.com/dbtorch/dbtorch/internal/dbttest"
	"github.com/dbtorch/dbtorch/manifest"
	"github.com/dbtorch/dbtorch/orchestrator"
)

// dbtResults is the part of dbt's own run_results.json that the fixture
// conversion reads.
type dbtResults struct {
	Results []struct {
		Status          string         `json:"status"`
		UniqueID        string         `json:"unique_id"`
		Message         *string        `json:"message"`
		Failures        *int64         `json:"failures"`
		ThreadID        string         `json:"thread_id"`
		ExecutionTime   float64        `json:"execution_time"`
		AdapterResponse map[string]any `json:"adapter_response"`
		CompiledCode    *string        `json:"compiled_code"`
		RelationName    *string        `json:"relation_name"`
		Timing          []struct {
			Name        string    `json:"name"`
			StartedAt   time.Time `json:"started_at"`
			CompletedAt time.Time `json:"completed_at"`
		} `json:"timing"`
	} `json:"results"`
}

// runFromDBT builds an orchestrator.Run out of a real `dbt build`'s
// manifest.json and run_results.json, as the orchestrator reports one
// node's dbt result.
func runFromDBT(t *testing.T, manifestPath, resultsPath string, args map[string]any) *orchestrator.Run {
	t.Helper()
	m, err := manifest.Load(afero.NewOsFs(), manifestPath)
	require.NoError(t, err)
	g, err := manifest.NewGraph(m)
	require.NoError(t, err)
	data, err := os.ReadFile(resultsPath)
	require.NoError(t, err)
	var dr dbtResults
	require.NoError(t, json.Unmarshal(data, &dr))
	run := &orchestrator.Run{ID: "9b2f63f6-6c7e-4f55-9d2a-3f4f1c1d2e3a", Manifest: m, Plan: g.Plan(nil, manifest.Immediate), Args: args}
	byID := map[string]int{}
	for i, r := range dr.Results {
		byID[r.UniqueID] = i
	}
	for _, id := range run.Plan.Nodes {
		i, ok := byID[id]
		if !ok {
			continue
		}
		r := dr.Results[i]
		n := m.Lookup(id)
		nr := orchestrator.NodeResult{UniqueID: id, Name: n.Name, ResourceType: n.ResourceType, Wave: run.Plan.Wave[id],
			DBTStatus: r.Status, ThreadID: r.ThreadID, ExecutionTime: time.Duration(r.ExecutionTime * float64(time.Second)),
			AdapterResponse: r.AdapterResponse, Failures: r.Failures}
		switch r.Status {
		case "success", "pass", "warn":
			nr.Status = orchestrator.Success
		case "error", "fail":
			nr.Status = orchestrator.Error
			nr.Err = &orchestrator.NodeError{Kind: "database"}
		default:
			nr.Status = orchestrator.Skipped
			nr.SkipReason = "upstream failed"
		}
		if r.Message != nil {
			nr.Message = *r.Message
			if nr.Err != nil {
				nr.Err.Message = nr.Message
			}
		}
		if r.CompiledCode != nil {
			nr.CompiledCode = *r.CompiledCode
		}
		if r.RelationName != nil {
			nr.RelationName = *r.RelationName
		}
		for _, tm := range r.Timing {
			nr.Timing = append(nr.Timing, executorTiming(tm.Name, tm.StartedAt, tm.CompletedAt))
			if nr.StartedAt.IsZero() || tm.StartedAt.Before(nr.StartedAt) {
				nr.StartedAt = tm.StartedAt
			}
			nr.CompletedAt = tm.CompletedAt
		}
		if run.StartedAt.IsZero() || (!nr.StartedAt.IsZero() && nr.StartedAt.Before(run.StartedAt)) {
			run.StartedAt = nr.StartedAt
		}
		if nr.CompletedAt.After(run.CompletedAt) {
			run.CompletedAt = nr.CompletedAt
		}
		run.Results = append(run.Results, nr)
	}
	require.NotEmpty(t, run.Results)
	return run
}

// lsIDs runs `dbt ls` with args and returns the unique_ids it printed, sorted.
func lsIDs(t *testing.T, dir string, env []string, args ...string) []string {
	t.Helper()
	out, err := dbttest.Run(t, dir, env, append([]string{"ls", "--quiet", "--output", "json", "--output-keys", "unique_id"}, args...)...)
	require.NoError(t, err, out)
	var ids []string
	for _, line := range strings.Split(out, "\n") {
		line = strings.TrimSpace(line)
		if !strings.HasPrefix(line, "{") {
			continue
		}
		var v struct {
			UniqueID string `json:"unique_id"`
		}
		require.NoError(t, json.Unmarshal([]byte(line), &v), line)
		ids = append(ids, v.UniqueID)
	}
	sort.Strings(ids)
	return ids
}

// TestDBTReadsRunResults is the end-to-end check that dbt itself accepts
// our run_results.json: after a build of testdata/shop with a broken model,
// `dbt ls --select result:error+ --state DIR` lists the failed node and
// everything downstream of it, and `dbt retry --state DIR` re-runs exactly
// the nodes that failed or were skipped.
func TestDBTReadsRunResults(t *testing.T) {
	if testing.Short() {
		t.Skip("runs real dbt")
	}
	dir := dbttest.CopyProject(t, "shop")
	env := dbttest.Env(t, dir)
	if out, err := dbttest.Run(t, dir, env, "deps"); err != nil {
		t.Fatalf("%v\n%s", err, out)
	}
	vars := map[string]any{"broken_model": true}
	out, err := dbttest.Run(t, dir, env, "build", "--vars", `{broken_model: true}`)
	require.Error(t, err, "the broken model must fail the build:\n%s", out)

	manifestPath := filepath.Join(dir, "target", "manifest.json")
	run := runFromDBT(t, manifestPath, filepath.Join(dir, "target", "run_results.json"),
		map[string]any{"select": []string{}, "exclude": []string{}, "vars": vars, "full_refresh": false, "target": nil})

	state := t.TempDir()
	manifestData, err := os.ReadFile(manifestPath)
	require.NoError(t, err)
	require.NoError(t, os.WriteFile(filepath.Join(state, "manifest.json"), manifestData, 0o644))
	require.NoError(t, (&artifacts.RunResults{Path: filepath.Join(state, "run_results.json")}).Report(t.Context(), run))
	written, err := os.ReadFile(filepath.Join(state, "run_results.json"))
	require.NoError(t, err)
	validate(t, runResultsSchema(t), written)

	var failed, retryable []string
	for _, r := range run.Results {
		switch r.Status {
		case orchestrator.Error:
			failed = append(failed, r.UniqueID)
			retryable = append(retryable, r.UniqueID)
		case orchestrator.Skipped:
			retryable = append(retryable, r.UniqueID)
		}
	}
	require.Equal(t, []string{"model.shop.customer_revenue"}, failed)

	// dbt ls over our results equals dbt ls over the failed node itself.
	got := lsIDs(t, dir, env, "--select", "result:error+", "--state", state)
	want := lsIDs(t, dir, env, "--select", strings.Join(slices.Collect(func(yield func(string) bool) {
		for _, id := range failed {
			if !yield(run.Result(id).Name + "+") {
				return
			}
		}
	}), " "))
	assert.Equal(t, want, got)
	assert.Contains(t, got, "model.shop.revenue_by_segment")
	assert.NotContains(t, got, "model.shop.fct_orders")

	// dbt retry re-runs what failed or was skipped, and only that.
	require.NoError(t, os.Remove(filepath.Join(dir, "target", "run_results.json")))
	out, err = dbttest.Run(t, dir, env, "retry", "--state", state, "--vars", `{broken_model: false}`)
	require.NoError(t, err, out)
	retried, err := os.ReadFile(filepath.Join(dir, "target", "run_results.json"))
	require.NoError(t, err)
	var rr dbtResults
	require.NoError(t, json.Unmarshal(retried, &rr))
	var ids []string
	for _, r := range rr.Results {
		ids = append(ids, r.UniqueID)
		assert.Contains(t, []string{"success", "pass"}, r.Status, "%s after retry", r.UniqueID)
	}
	sort.Strings(ids)
	sort.Strings(retryable)
	assert.Equal(t, retryable, ids)
}
