package executor_test

import (
	"context"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/dbtorch/dbtorch/dbt"
	"github.com/dbtorch/dbtorch/executor"
	"github.com/dbtorch/dbtorch/internal/dbttest"
	"github.com/dbtorch/dbtorch/manifest"
)

// newShopCore returns a prepared Core executor on a fresh copy of the shop
// project (DuckDB) with both failure switches on, its manifest and the
// copy's directory.
func newShopCore(t *testing.T) (*executor.Core, *manifest.Manifest, string) {
	t.Helper()
	dir := dbttest.CopyProject(t, "shop")
	c, err := executor.NewCore(executor.CoreConfig{
		Options: executor.Options{Project: dbt.Project{DBT: dbttest.DBT(t), Dir: dir, Env: dbttest.Env(t, dir), Vars: map[string]any{"broken_model": true, "failing_test": true}},
			WorkDir: t.TempDir(),
			Logger:  testLogger(t),
		},
	})
	require.NoError(t, err)
	t.Cleanup(func() { require.NoError(t, c.Close()) })
	m, err := c.Manifest(t.Context())
	require.NoError(t, err)
	return c, m, dir
}

// checkShop runs the whole shop project through ex in four invocations
// (seeds, models, snapshot, tests: every resource type) with
// broken_model and failing_test on, then one model again with other vars,
// checks what it reports, and returns every result in the order reported.
func checkShop(t *testing.T, ex executor.Executor, m *manifest.Manifest) []executor.Result {
	t.Helper()
	ctx := t.Context()
	var all []executor.Result
	run := func(cmd executor.Command, ns []*manifest.Node) map[string]executor.Result {
		t.Helper()
		resp, err := ex.Execute(ctx, executor.Request{Command: cmd, Nodes: ns, Attempt: 1, BuildID: "b1"})
		require.NoError(t, err)
		require.Len(t, resp.Results, len(ns))
		for i, r := range resp.Results {
			require.Equal(t, ns[i].UniqueID, r.UniqueID, "results in request order")
		}
		assert.Equal(t, cmd, resp.Invocation.Command)
		assert.NotEmpty(t, resp.Invocation.InvocationID)
		assert.False(t, resp.Invocation.Ended.Before(resp.Invocation.Started))
		all = append(all, resp.Results...)
		return byID(resp.Results)
	}

	seeds := ofType(t, m, manifest.Seed)
	require.Len(t, seeds, 5)
	for id, r := range run(executor.Seed, seeds) {
		assert.Equal(t, executor.Success, r.Status, id)
		assert.Equal(t, "success", r.DBTStatus, id)
		assert.Equal(t, executor.KindNone, r.Kind, id)
		if assert.NotNil(t, r.RowsAffected, id) {
			assert.Positive(t, *r.RowsAffected, id)
		}
		assert.NotEmpty(t, r.Timing, id)
	}

	models := ofType(t, m, manifest.Model)
	res := run(executor.Run, models)
	for id, r := range res {
		switch id {
		case "model.shop.customer_revenue":
			assert.Equal(t, executor.Error, r.Status)
			assert.Equal(t, "error", r.DBTStatus)
			assert.Equal(t, executor.KindDatabase, r.Kind)
			assert.Contains(t, r.Message, "column_that_does_not_exist")
		case "model.shop.revenue_by_segment":
			assert.Equal(t, executor.Skipped, r.Status, "downstream of the failure, same invocation")
		default:
			assert.Equal(t, executor.Success, r.Status, "%s: %s", id, r.Message)
			assert.Equal(t, "success", r.DBTStatus, id)
			assert.NotEmpty(t, r.RelationName, id)
			assert.NotEmpty(t, r.CompiledCode, id)
		}
	}
	assert.Contains(t, res, "model.shop_pkg.pkg_order_status_counts")
	assert.Contains(t, res, "model.shop.dim_customers.v1")

	snaps := ofType(t, m, manifest.Snapshot)
	require.Len(t, snaps, 1)
	for id, r := range run(executor.Snapshot, snaps) {
		assert.Equal(t, executor.Success, r.Status, "%s: %s", id, r.Message)
	}

	tests := ofType(t, m, manifest.Test, manifest.UnitTest)
	res = run(executor.Test, tests)
	for id, r := range res {
		switch id {
		case "test.shop.assert_order_amounts_non_negative":
			assert.Equal(t, executor.Error, r.Status)
			assert.Equal(t, "fail", r.DBTStatus)
			assert.Equal(t, executor.KindTestFailure, r.Kind)
			if assert.NotNil(t, r.Failures) {
				assert.Equal(t, int64(8), *r.Failures)
			}
			assert.Contains(t, r.Message, "Got 8 results")
		case "test.shop.unique_customer_revenue_customer_id.3b4be2f107":
			// Its model failed to build: the test's query fails.
			assert.Equal(t, executor.Error, r.Status)
			assert.Equal(t, executor.KindDatabase, r.Kind, r.Message)
		default:
			assert.Equal(t, executor.Success, r.Status, "%s: %s", id, r.Message)
			assert.Equal(t, "pass", r.DBTStatus, id)
			if assert.NotNil(t, r.Failures, id) {
				assert.Zero(t, *r.Failures, id)
			}
		}
	}
	assert.Contains(t, res, "unit_test.shop.fct_orders.fct_orders_sums_payments")

	// A request's vars override the executor's: the broken model builds.
	cr := nodes(t, m, "model.shop.customer_revenue")
	resp, err := ex.Execute(ctx, executor.Request{Command: executor.Run, Nodes: cr, Vars: map[string]any{"broken_model": false}, Attempt: 2})
	require.NoError(t, err)
	assert.Equal(t, executor.Success, resp.Results[0].Status, resp.Results[0].Message)
	assert.Contains(t, strings.Join(resp.Invocation.Args, " "), `"broken_model":false`)
	return append(all, resp.Results...)
}

func TestNewCoreRejects(t *testing.T) {
	dir := copyProbe(t)
	tests := []struct {
		name  string
		cfg   executor.CoreConfig
		field string
	}{
		{"no project", executor.CoreConfig{}, "Project.Dir"},
		{"not a project", executor.CoreConfig{Options: executor.Options{Project: dbt.Project{Dir: t.TempDir()}}}, "Project.Dir"},
		{"select", executor.CoreConfig{Options: executor.Options{Project: dbt.Project{Dir: dir}, ExtraArgs: []string{"--select", "x"}}}, "ExtraArgs"},
		{"models short", executor.CoreConfig{Options: executor.Options{Project: dbt.Project{Dir: dir}, ExtraArgs: []string{"-m", "x"}}}, "ExtraArgs"},
		{"target path", executor.CoreConfig{Options: executor.Options{Project: dbt.Project{Dir: dir}, ExtraArgs: []string{"--target-path=/tmp/x"}}}, "ExtraArgs"},
		{"log path", executor.CoreConfig{Options: executor.Options{Project: dbt.Project{Dir: dir}, ExtraArgs: []string{"--fail-fast", "--log-path", "x"}}}, "ExtraArgs"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			tt.cfg.DBT = dbttest.DBT(t)
			_, err := executor.NewCore(tt.cfg)
			var ce *executor.ConfigError
			require.ErrorAs(t, err, &ce)
			assert.Equal(t, tt.field, ce.Field)
		})
	}
	c, err := executor.NewCore(executor.CoreConfig{Options: executor.Options{Project: dbt.Project{DBT: dbttest.DBT(t), Dir: dir}, ExtraArgs: []string{"--fail-fast"}, WorkDir: t.TempDir()}})
	require.NoError(t, err)
	defer c.Close()
	_, err = c.Execute(t.Context(), executor.Request{Command: executor.Run})
	var ce *executor.ConfigError
	require.ErrorAs(t, err, &ce, "a request without nodes would select the whole project")
	_, err = c.Execute(t.Context(), executor.Request{Command: "docs", Nodes: []*manifest.Node{{UniqueID: "model.p.x"}}})
	require.ErrorAs(t, err, &ce)
	require.NoError(t, c.Close())
	_, err = c.Execute(t.Context(), executor.Request{Command: executor.Run, Nodes: []*manifest.Node{{UniqueID: "model.p.x"}}})
	require.ErrorIs(t, err, executor.ErrClosed)
}

// probeEnv returns the environment for the probe project.
func probeEnv(t *testing.T, dir string, extra ...string) []string {
	t.Helper()
	return append(dbttest.Env(t, dir), extra...)
}

// TestCoreCancelAndCrash cancels an invocation while dbt runs a model and
// checks that no process of it is left, then kills dbt from inside and
// checks the crash report. It also runs a model with Build.
func TestCoreCancelAndCrash(t *testing.T) {
	dir := copyProbe(t)
	started := filepath.Join(t.TempDir(), "started")
	work := t.TempDir()
	c, err := executor.NewCore(executor.CoreConfig{
		Options: executor.Options{Project: dbt.Project{DBT: dbttest.DBT(t), Dir: dir, Env: probeEnv(t, dir, "DBTORCH_PROBE_SLEEP=60", "DBTORCH_PROBE_STARTED="+started, "DBTORCH_PROBE_CRASH=1")},
			WorkDir:   work,
			KillGrace: 2 * time.Second,
		},
	})
	require.NoError(t, err)
	defer c.Close()
	m, err := c.Manifest(t.Context())
	require.NoError(t, err)

	// Cancellation: wait until the model runs, then cancel.
	ctx, cancel := context.WithCancel(t.Context())
	var wg sync.WaitGroup
	var resp *executor.Response
	var execErr error
	wg.Go(func() {
		resp, execErr = c.Execute(ctx, executor.Request{Command: executor.Run, Nodes: nodes(t, m, "model.probe.sleepy", "model.probe.quick")})
	})
	require.Eventually(t, func() bool { _, err := os.Stat(started); return err == nil }, 60*time.Second, 50*time.Millisecond)
	require.NotEmpty(t, processesWith(t, work), "dbt runs")
	cancel()
	wg.Wait()
	require.NoError(t, execErr)
	assert.Empty(t, processesWith(t, work), "no dbt process left behind")
	rs := byID(resp.Results)
	assert.Equal(t, executor.Cancelled, rs["model.probe.sleepy"].Status)
	assert.Equal(t, executor.KindCancelled, rs["model.probe.sleepy"].Kind)
	assert.Less(t, resp.Invocation.Ended.Sub(resp.Invocation.Started), 30*time.Second)

	// Timeout: reported as such.
	ctx, cancel = context.WithTimeout(t.Context(), 3*time.Second)
	defer cancel()
	resp, err = c.Execute(ctx, executor.Request{Command: executor.Run, Nodes: nodes(t, m, "model.probe.sleepy")})
	require.NoError(t, err)
	assert.Equal(t, executor.Cancelled, resp.Results[0].Status)
	assert.Equal(t, executor.KindTimeout, resp.Results[0].Kind)
	assert.Empty(t, processesWith(t, work), "no dbt process left behind")

	// Crash: the model kills dbt.
	resp, err = c.Execute(t.Context(), executor.Request{Command: executor.Build, Nodes: nodes(t, m, "model.probe.crashy")})
	require.NoError(t, err)
	r := resp.Results[0]
	assert.Equal(t, executor.Error, r.Status)
	assert.Equal(t, executor.KindCrash, r.Kind)
	assert.Contains(t, r.Message, "killed")
	assert.Contains(t, r.Message, "crashy", "dbt's output tail names the node")
	assert.Equal(t, -1, resp.Invocation.ExitCode)
}

// TestPrepareStartsFromProjectPartialParse: after a `dbt parse` in the
// project, both executors' own parse starts from the project's
// partial-parse file (dbt logs that partial parsing is enabled) instead of
// parsing every file again.
func TestPrepareStartsFromProjectPartialParse(t *testing.T) {
	dir := copyProbe(t)
	env := probeEnv(t, dir)
	dbttest.Parse(t, dir, env)
	parseLog := func(t *testing.T, pattern string) string {
		t.Helper()
		logs, err := filepath.Glob(pattern)
		require.NoError(t, err)
		require.Len(t, logs, 1, pattern)
		data, err := os.ReadFile(logs[0])
		require.NoError(t, err)
		return string(data)
	}
	t.Run("core", func(t *testing.T) {
		work := t.TempDir()
		c, err := executor.NewCore(executor.CoreConfig{Options: executor.Options{Project: dbt.Project{DBT: dbttest.DBT(t), Dir: dir, Env: env}, WorkDir: work, Logger: testLogger(t)}})
		require.NoError(t, err)
		defer c.Close()
		require.NoError(t, c.Prepare(t.Context()))
		assert.Contains(t, parseLog(t, filepath.Join(work, "*", "parse", "logs", "dbt.log")), "Partial parsing enabled")
	})
	t.Run("warm", func(t *testing.T) {
		work := t.TempDir()
		w, err := executor.NewWarm(executor.WarmConfig{Options: executor.Options{Project: dbt.Project{DBT: dbttest.DBT(t), Dir: dir, Env: env}, WorkDir: work, Logger: testLogger(t)}})
		require.NoError(t, err)
		defer w.Close()
		require.NoError(t, w.Prepare(t.Context()))
		assert.Contains(t, parseLog(t, filepath.Join(work, "*", "worker-1", "logs", "dbt.log")), "Partial parsing enabled")
	})
}
