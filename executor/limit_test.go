package executor_test

import (
	"os"
	"path/filepath"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/dbtorch/dbtorch/dbt"
	"github.com/dbtorch/dbtorch/executor"
	"github.com/dbtorch/dbtorch/internal/dbttest"
)

// TestConcurrencyLimit: from the project's profile, both local executors
// say that a DuckDB target takes one invocation at a time, and Warm
// starts one worker there by default; on PostgreSQL Core has no limit and
// Warm defaults to DefaultWorkers workers. Nothing is started.
func TestConcurrencyLimit(t *testing.T) {
	dir := dbttest.CopyProject(t, "shop")
	env := dbttest.Env(t, dir)
	limits := func(t *testing.T, target string, workers int) (core, warm int, reason, warmReason string) {
		t.Helper()
		p := dbt.Project{DBT: dbttest.DBT(t), Dir: dir, Env: env, Target: target}
		c, err := executor.NewCore(executor.CoreConfig{Options: executor.Options{Project: p, WorkDir: t.TempDir()}})
		require.NoError(t, err)
		t.Cleanup(func() { c.Close() })
		w, err := executor.NewWarm(executor.WarmConfig{Options: executor.Options{Project: p, WorkDir: t.TempDir()}, Workers: workers})
		require.NoError(t, err)
		t.Cleanup(func() { w.Close() })
		var ex executor.Executor = c
		cl, ok := ex.(executor.ConcurrencyLimiter)
		require.True(t, ok, "Core is a ConcurrencyLimiter")
		core, reason = cl.MaxConcurrency()
		warm, warmReason = executor.ConcurrencyLimiter(w).MaxConcurrency()
		return core, warm, reason, warmReason
	}

	core, warm, reason, warmReason := limits(t, "", 0)
	assert.Equal(t, 1, core, "DuckDB: one invocation at a time")
	assert.Equal(t, 1, warm, "DuckDB: one worker")
	assert.Equal(t, "one DuckDB file takes one writing process at a time", reason)
	assert.Equal(t, reason, warmReason)
	_, warm, _, _ = limits(t, "", 3)
	assert.Equal(t, 1, warm, "DuckDB: one invocation at a time, however many workers")

	core, warm, reason, _ = limits(t, "pg", 0)
	assert.Zero(t, core, "PostgreSQL: no limit for Core")
	assert.Empty(t, reason)
	assert.Equal(t, executor.DefaultWorkers, warm, "PostgreSQL: the default pool")
	_, warm, _, warmReason = limits(t, "pg", 2)
	assert.Equal(t, 2, warm)
	assert.Contains(t, warmReason, "2 workers")

	// No profile to read: no limit known, and one worker.
	require.NoError(t, os.Remove(filepath.Join(dir, "profiles.yml")))
	env = append(env, "DBT_PROFILES_DIR="+t.TempDir())
	core, warm, _, _ = limits(t, "", 0)
	assert.Zero(t, core)
	assert.Equal(t, 1, warm)
}
