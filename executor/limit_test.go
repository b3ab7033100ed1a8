package executor_test

import (
	"os"
	"path/filepath"
	"slices"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/dbtorch/dbtorch/dbt"
	"github.com/dbtorch/dbtorch/executor"
	"github.com/dbtorch/dbtorch/internal/dbttest"
)

// TestConcurrencyLimit: from the project's profile, Core says that a
// DuckDB target takes one invocation at a time, and so does Warm where it
// runs no build session (several workers, patches off); by default Warm's
// one worker runs DefaultWorkers nodes at once in its session, DuckDB
// included (one process). On PostgreSQL Core has no limit and Warm's
// session runs DefaultWorkers nodes at once, or each of its workers one.
// Nothing is started.
func TestConcurrencyLimit(t *testing.T) {
	dir := dbttest.CopyProject(t, "shop")
	env := dbttest.Env(t, dir)
	limits := func(t *testing.T, target string, workers int, extraEnv ...string) (core, warm int, reason, warmReason string) {
		t.Helper()
		p := dbt.Project{DBT: dbttest.DBT(t), Dir: dir, Env: append(slices.Clip(env), extraEnv...), Target: target}
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
	assert.Equal(t, "one DuckDB file takes one writing process at a time", reason)
	assert.Equal(t, executor.DefaultWorkers, warm, "DuckDB: one worker's session, DefaultWorkers threads")
	assert.Contains(t, warmReason, "build session runs 4 nodes at once")
	_, warm, _, warmReason = limits(t, "", 3)
	assert.Equal(t, 1, warm, "DuckDB without sessions (several workers): one invocation at a time, however many workers")
	assert.Equal(t, reason, warmReason)
	_, warm, _, warmReason = limits(t, "", 0, "DBTORCH_WORKER_PATCHES=off")
	assert.Equal(t, 1, warm, "DuckDB without sessions (patches off): one invocation at a time")
	assert.Equal(t, reason, warmReason)

	core, warm, reason, _ = limits(t, "pg", 0)
	assert.Zero(t, core, "PostgreSQL: no limit for Core")
	assert.Empty(t, reason)
	assert.Equal(t, executor.DefaultWorkers, warm, "PostgreSQL: the default session")
	_, warm, _, warmReason = limits(t, "pg", 2)
	assert.Equal(t, 2, warm)
	assert.Contains(t, warmReason, "2 workers")
	_, warm, _, _ = limits(t, "pg", 0, "DBTORCH_WORKER_PATCHES=off")
	assert.Equal(t, executor.DefaultWorkers, warm, "PostgreSQL without sessions: the default pool")

	// No profile to read: no limit known, and one worker.
	require.NoError(t, os.Remove(filepath.Join(dir, "profiles.yml")))
	env = append(env, "DBT_PROFILES_DIR="+t.TempDir())
	core, warm, _, _ = limits(t, "", 0)
	assert.Zero(t, core)
	assert.Equal(t, 1, warm)
}
