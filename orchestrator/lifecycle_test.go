package orchestrator_test

import (
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/dbtorch/dbtorch/artifacts"
	"github.com/dbtorch/dbtorch/internal/dbttest"
	"github.com/dbtorch/dbtorch/internal/runresults"
	"github.com/dbtorch/dbtorch/orchestrator"
)

// lifecycleTables are the relations testdata/lifecycle builds.
var lifecycleTables = []string{"main.events", "main.doubled", "main.events_mb", "main.metricflow_time_spine"}

// statusesOf returns run_results.json's status of every entry, and the
// batch_results of those that have them.
func statusesOf(f *runresults.File) (map[string]string, map[string]any) {
	st, batches := map[string]string{}, map[string]any{}
	for i := range f.Results {
		r := &f.Results[i]
		st[r.UniqueID] = r.Status
		if r.BatchResults != nil {
			batches[r.UniqueID] = r.BatchResults
		}
	}
	return st, batches
}

// TestLifecycleMatchesDBTBuild builds testdata/lifecycle (project hooks
// writing to an audit table, a UDF used by a model, its unit test, an
// exposure, a saved query, a microbatch model, a time spine) with `dbt
// build` and with dbtorch per node and per wave on Core and on Warm, all
// with one event-time window: the run_results.json dbtorch writes has the
// same entries with the same statuses as dbt's, exposures and saved
// queries (no-op) and the hooks included, and the microbatch model the
// same batch_results (the window's one batch); the audit table shows each
// hook ran once and on-run-end saw the same results; every table holds
// the same rows. The window reaches only the invocations that take it:
// the per-node seed and tests would fail with it.
func TestLifecycleMatchesDBTBuild(t *testing.T) {
	if testing.Short() {
		t.Skip("real dbt")
	}
	dir := dbttest.CopyProject(t, "lifecycle")
	start, end := time.Date(2024, 1, 1, 0, 0, 0, 0, time.UTC), time.Date(2025, 1, 1, 0, 0, 0, 0, time.UTC)

	env := dbttest.Env(t, dir)
	out, err := dbttest.Run(t, dir, env, "build", "--event-time-start", "2024-01-01", "--event-time-end", "2025-01-01")
	require.NoError(t, err, out)
	data, err := os.ReadFile(filepath.Join(dir, "target", "run_results.json"))
	require.NoError(t, err)
	dbtFile, err := runresults.Parse(data)
	require.NoError(t, err)
	want, wantBatches := statusesOf(dbtFile)
	require.Equal(t, "no-op", want["exposure.lifecycle.doubled_dashboard"], "dbt build reports the exposure")
	require.Equal(t, "no-op", want["saved_query.lifecycle.amount_by_day"], "dbt build reports the saved query")
	require.Equal(t, "success", want["function.lifecycle.double_it"])
	require.Equal(t, map[string]any{"successful": []any{[]any{"2024-01-01T00:00:00+00:00", "2025-01-01T00:00:00+00:00"}}, "failed": []any{}},
		wantBatches["model.lifecycle.events_mb"])
	wantAudit := auditLog(t, env)
	wantRows := dbttest.DuckDBRows(t, dbttest.DuckDBPath(env), lifecycleTables...)
	require.Contains(t, wantRows["main.doubled"], `"10"`, "the UDF doubled 5")

	for _, c := range []struct {
		warm bool
		mode orchestrator.Mode
	}{{false, orchestrator.PerNode}, {false, orchestrator.PerWave}, {true, orchestrator.PerNode}, {true, orchestrator.PerWave}} {
		name := map[bool]string{false: "core", true: "warm"}[c.warm] + "/" + c.mode.String()
		t.Run(name, func(t *testing.T) {
			h := newHookExec(t, dir, c.warm, false)
			o, err := orchestrator.New(orchestrator.Config{Executor: h.ex, Mode: c.mode})
			require.NoError(t, err)
			run, err := o.RunBuild(t.Context(), orchestrator.BuildOptions{EventTimeStart: start, EventTimeEnd: end})
			require.NotNil(t, run)
			if c.warm {
				require.NoError(t, h.ex.Close()) // its workers hold the DuckDB file
			}
			for _, r := range run.Results {
				assert.NotEqual(t, orchestrator.Error, r.Status, "%s: %s", r.UniqueID, r.Message)
			}
			require.NoError(t, err)
			f, err := (&artifacts.RunResults{}).Build(run)
			require.NoError(t, err)
			got, gotBatches := statusesOf(f)
			assert.Equal(t, want, got, "run_results.json statuses: dbt build (-) vs dbtorch (+)")
			assert.Equal(t, wantBatches, gotBatches, "batch_results")
			assert.Equal(t, start.Format(time.RFC3339), run.Args["event_time_start"])
			for _, r := range run.Results {
				if r.Invocation == nil {
					continue
				}
				takes := r.Invocation.Command == "run" || r.Invocation.Command == "build"
				assert.Equal(t, takes, contains(r.Invocation.Args, "--event-time-start"), "%s: %s %v", r.UniqueID, r.Invocation.Command, r.Invocation.Args)
			}
			audit := auditLog(t, h.env)
			assert.Equal(t, hookCounts(wantAudit), hookCounts(audit), "audit rows by hook")
			assert.Equal(t, seenResults(wantAudit), seenResults(audit), "the results on-run-end saw")
			assert.Equal(t, wantRows, dbttest.DuckDBRows(t, dbttest.DuckDBPath(h.env), lifecycleTables...), "tables")
		})
	}
}

func contains(args []string, s string) bool {
	for _, a := range args {
		if a == s {
			return true
		}
	}
	return false
}
