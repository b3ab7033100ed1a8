package artifacts_test

import (
	"context"
	"encoding/json"
	"errors"
	"path/filepath"
	"testing"

	"github.com/spf13/afero"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/dbtorch/dbtorch/artifacts"
	"github.com/dbtorch/dbtorch/executor"
	"github.com/dbtorch/dbtorch/manifest"
	"github.com/dbtorch/dbtorch/orchestrator"
)

func TestRunResultsValidatesAgainstDBTSchema(t *testing.T) {
	schema := runResultsSchema(t)
	for _, cached := range []string{"", "success", "no-op"} {
		t.Run("cached="+cached, func(t *testing.T) {
			fs := afero.NewMemMapFs()
			r := &artifacts.RunResults{Path: "/out/run_results.json", Fs: fs, CachedStatus: cached}
			require.NoError(t, r.Report(t.Context(), fixtureRun(t)))
			data, err := afero.ReadFile(fs, "/out/run_results.json")
			require.NoError(t, err)
			validate(t, schema, data)
		})
	}
}

func TestRunResultsSchemaRejectsBrokenDocument(t *testing.T) {
	// The validator must be able to fail: a result without a required
	// field, or with a status dbt does not know, is rejected.
	schema := runResultsSchema(t)
	doc, err := (&artifacts.RunResults{Path: "x"}).Build(fixtureRun(t))
	require.NoError(t, err)
	doc.Results[0].Status = "cached"
	data, err := doc.Marshal()
	require.NoError(t, err)
	v := mustJSON(t, data)
	require.Error(t, schemaErr(t, schema, v))
}

func TestRunResultsStatuses(t *testing.T) {
	doc, err := (&artifacts.RunResults{Path: "x"}).Build(fixtureRun(t))
	require.NoError(t, err)
	got := map[string]string{}
	for _, r := range doc.Results {
		got[r.UniqueID] = r.Status
	}
	want := map[string]string{
		"seed.shop.customers":                                        "success",
		"seed.shop.orders":                                           "success",
		"model.shop.stg_customers":                                   "success",
		"snapshot.shop.orders_snapshot":                              "success",
		"model.shop.fct_orders":                                      "success",
		"model.shop.customer_revenue":                                "error",
		"model.shop.revenue_by_segment":                              "skipped",
		"test.shop.assert_orders_positive":                           "fail",
		"test.shop.not_null_stg_customers_customer_id.e2cfb1f9aa":    "pass",
		"test.shop.accepted_values_stg_customers_segment.1a2b3c4d5e": "warn",
		"test.shop.unique_customer_revenue_customer_id.3b4be2f107":   "skipped",
	}
	assert.Equal(t, want, got)
}

func TestDBTStatus(t *testing.T) {
	tests := []struct {
		name   string
		rt     manifest.ResourceType
		nr     orchestrator.NodeResult
		cached string
		want   string
	}{
		{"model success", manifest.Model, orchestrator.NodeResult{Status: orchestrator.Success}, "success", "success"},
		{"seed error", manifest.Seed, orchestrator.NodeResult{Result: executor.Result{DBTStatus: "error"}, Status: orchestrator.Error}, "success", "error"},
		{"model partial", manifest.Model, orchestrator.NodeResult{Result: executor.Result{DBTStatus: "partial success"}, Status: orchestrator.Error}, "success", "partial success"},
		{"model crash without dbt status", manifest.Model, orchestrator.NodeResult{Status: orchestrator.Error}, "success", "error"},
		{"model cached", manifest.Model, orchestrator.NodeResult{Status: orchestrator.Cached}, "success", "success"},
		{"model cached no-op", manifest.Model, orchestrator.NodeResult{Status: orchestrator.Cached}, "no-op", "no-op"},
		{"snapshot skipped", manifest.Snapshot, orchestrator.NodeResult{Status: orchestrator.Skipped}, "success", "skipped"},
		{"test pass", manifest.Test, orchestrator.NodeResult{Result: executor.Result{DBTStatus: "pass"}, Status: orchestrator.Success}, "success", "pass"},
		{"test warn", manifest.Test, orchestrator.NodeResult{Result: executor.Result{DBTStatus: "warn"}, Status: orchestrator.Success}, "success", "warn"},
		{"test fail", manifest.Test, orchestrator.NodeResult{Result: executor.Result{DBTStatus: "fail"}, Status: orchestrator.Error}, "success", "fail"},
		{"test fail by kind", manifest.Test, orchestrator.NodeResult{Status: orchestrator.Error, Err: &orchestrator.NodeError{Kind: "test_failure"}}, "success", "fail"},
		{"test runtime error", manifest.Test, orchestrator.NodeResult{Result: executor.Result{DBTStatus: "error"}, Status: orchestrator.Error}, "success", "error"},
		{"unit test fail", manifest.UnitTest, orchestrator.NodeResult{Result: executor.Result{DBTStatus: "fail"}, Status: orchestrator.Error}, "success", "fail"},
		{"test skipped", manifest.Test, orchestrator.NodeResult{Status: orchestrator.Skipped}, "success", "skipped"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			assert.Equal(t, tt.want, artifacts.DBTStatus(tt.rt, &tt.nr, tt.cached))
		})
	}
}

func TestRunResultsFields(t *testing.T) {
	run := fixtureRun(t)
	doc, err := (&artifacts.RunResults{Path: "x"}).Build(run)
	require.NoError(t, err)
	assert.Equal(t, artifacts.RunResultsSchemaVersion, doc.Metadata.DBTSchemaVersion)
	assert.Equal(t, "1.11.16", doc.Metadata.DBTVersion)
	require.NotNil(t, doc.Metadata.InvocationID)
	assert.Equal(t, run.ID, *doc.Metadata.InvocationID)
	assert.Equal(t, "2026-03-01T12:00:00.000000Z", *doc.Metadata.InvocationStartedAt)
	assert.Equal(t, "2026-03-01T12:00:01.200000Z", doc.Metadata.GeneratedAt)
	assert.InDelta(t, 1.2, doc.ElapsedTime, 1e-9)
	assert.Equal(t, "build", doc.Args["which"])
	assert.Equal(t, run.ID, doc.Args[artifacts.BuildIDArg])
	assert.Equal(t, 4, doc.Args["threads"])
	require.Len(t, doc.Results, len(run.Results))

	byID := map[string]artifacts.RunResult{}
	for _, r := range doc.Results {
		byID[r.UniqueID] = r
	}
	seed := byID["seed.shop.customers"]
	assert.Nil(t, seed.Compiled, "dbt writes compiled: null for seeds")
	assert.Equal(t, map[string]any{"_message": "INSERT 5", "code": "INSERT", "rows_affected": int64(5)}, seed.AdapterResponse)
	require.Len(t, seed.Timing, 2)
	assert.Equal(t, "compile", seed.Timing[0].Name)
	assert.Equal(t, "2026-03-01T12:00:00.010000Z", *seed.Timing[0].StartedAt)
	assert.InDelta(t, 0.39, seed.ExecutionTime, 1e-9)

	failed := byID["model.shop.customer_revenue"]
	require.NotNil(t, failed.Message)
	assert.Contains(t, *failed.Message, "Binder Error")
	assert.True(t, *failed.Compiled)
	assert.Equal(t, `"shop"."main"."customer_revenue"`, *failed.RelationName)

	skipped := byID["model.shop.revenue_by_segment"]
	assert.Empty(t, skipped.Timing)
	assert.Zero(t, skipped.ExecutionTime)
	assert.False(t, *skipped.Compiled)
	assert.Equal(t, "upstream failed: model.shop.customer_revenue", *skipped.Message)
	assert.Equal(t, `"shop"."main"."revenue_by_segment"`, *skipped.RelationName, "dbt names the relation of a skipped model")

	cached := byID["model.shop.fct_orders"]
	assert.Equal(t, "cached", *cached.Message)
	assert.Empty(t, cached.Timing)

	fail := byID["test.shop.assert_orders_positive"]
	assert.Equal(t, int64(3), *fail.Failures)
	assert.Nil(t, fail.RelationName)

	// Every field dbt requires is present in the encoded JSON, null or not.
	data, err := doc.Marshal()
	require.NoError(t, err)
	var raw struct {
		Results []map[string]json.RawMessage `json:"results"`
	}
	require.NoError(t, json.Unmarshal(data, &raw))
	for _, r := range raw.Results {
		for _, k := range []string{"status", "timing", "thread_id", "execution_time", "adapter_response", "message", "failures", "unique_id", "compiled", "compiled_code", "relation_name"} {
			assert.Contains(t, r, k)
		}
	}
}

func TestRunResultsRefusesForeignFile(t *testing.T) {
	fs := afero.NewMemMapFs()
	const path = "/proj/target/run_results.json"
	dbtsOwn := []byte(`{"metadata":{"dbt_schema_version":"https://schemas.getdbt.com/dbt/run-results/v6.json"},"results":[],"elapsed_time":1,"args":{"which":"build"}}`)
	require.NoError(t, afero.WriteFile(fs, path, dbtsOwn, 0o644))
	run := fixtureRun(t)

	err := (&artifacts.RunResults{Path: path, Fs: fs}).Report(context.Background(), run)
	require.ErrorIs(t, err, artifacts.ErrForeignFile)
	got, _ := afero.ReadFile(fs, path)
	assert.Equal(t, dbtsOwn, got, "dbt's file is untouched")

	require.NoError(t, (&artifacts.RunResults{Path: path, Fs: fs, Overwrite: true}).Report(context.Background(), run))
	// Now the file is ours: replacing it needs no permission.
	require.NoError(t, (&artifacts.RunResults{Path: path, Fs: fs}).Report(context.Background(), run))
	got, _ = afero.ReadFile(fs, path)
	assert.Equal(t, run.ID, mustJSON(t, got)["args"].(map[string]any)[artifacts.BuildIDArg])

	// No temporary files are left behind.
	entries, err := afero.ReadDir(fs, filepath.Dir(path))
	require.NoError(t, err)
	assert.Len(t, entries, 1)
}

func TestRunResultsErrors(t *testing.T) {
	run := fixtureRun(t)
	require.Error(t, (&artifacts.RunResults{}).Report(t.Context(), run), "empty path")
	_, err := (&artifacts.RunResults{Path: "x", CachedStatus: "cached"}).Build(run)
	require.Error(t, err)
	ctx, cancel := context.WithCancel(t.Context())
	cancel()
	err = (&artifacts.RunResults{Path: "x", Fs: afero.NewMemMapFs()}).Report(ctx, run)
	require.True(t, errors.Is(err, context.Canceled))
}

func TestRunResultsEnv(t *testing.T) {
	t.Setenv("DBT_ENV_CUSTOM_ENV_JOB_ID", "nightly-42")
	t.Setenv("DBT_ENV_SECRET_TOKEN", "s3cret")
	doc, err := (&artifacts.RunResults{Path: "x"}).Build(fixtureRun(t))
	require.NoError(t, err)
	assert.Equal(t, map[string]string{"JOB_ID": "nightly-42"}, doc.Metadata.Env, "dbt's rule: custom env vars only")

	doc, err = (&artifacts.RunResults{Path: "x", Env: map[string]string{"a": "b"}}).Build(fixtureRun(t))
	require.NoError(t, err)
	assert.Equal(t, map[string]string{"a": "b"}, doc.Metadata.Env)
}

// TestRunResultsHooks: the project hooks a build ran are written as dbt
// writes them, on-run-start first and on-run-end last, with dbt's status
// words, and the document still validates against dbt's schema.
func TestRunResultsHooks(t *testing.T) {
	run := fixtureRun(t)
	t0 := run.StartedAt
	run.Hooks = []executor.Result{
		{UniqueID: "operation.p.p-on-run-start-0", Status: executor.Success, DBTStatus: "success", Message: "p.on-run-start.0 passed", ThreadID: "main",
			Timing: []executor.Timing{{Name: "execute", StartedAt: t0, CompletedAt: t0}}},
		{UniqueID: "operation.p.p-on-run-end-0", Status: executor.Error, DBTStatus: "error", Message: "p.on-run-end.0 failed, error:\n boom", ThreadID: "main"},
		{UniqueID: "operation.p.p-on-run-end-1", Status: executor.Skipped, DBTStatus: "skipped", Message: "p.on-run-end.1 skipped", ThreadID: "main"},
	}
	doc, err := (&artifacts.RunResults{Path: "x"}).Build(run)
	require.NoError(t, err)
	require.Len(t, doc.Results, len(run.Results)+3)
	type entry struct{ ID, Status, Message, Thread string }
	got := func(r artifacts.RunResult) entry { return entry{r.UniqueID, r.Status, *r.Message, r.ThreadID} }
	last := len(doc.Results) - 1
	assert.Equal(t, []entry{
		{"operation.p.p-on-run-start-0", "success", "p.on-run-start.0 passed", "main"},
		{"operation.p.p-on-run-end-0", "error", "p.on-run-end.0 failed, error:\n boom", "main"},
		{"operation.p.p-on-run-end-1", "skipped", "p.on-run-end.1 skipped", "main"},
	}, []entry{got(doc.Results[0]), got(doc.Results[last-1]), got(doc.Results[last])})
	assert.Equal(t, run.Results[0].UniqueID, doc.Results[1].UniqueID)
	data, err := doc.Marshal()
	require.NoError(t, err)
	validate(t, runResultsSchema(t), data)
}
