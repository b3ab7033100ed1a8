package executor_test

import (
	"context"
	"os"
	"path/filepath"
	"sync"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/dbtorch/dbtorch/executor"
	"github.com/dbtorch/dbtorch/internal/dbttest"
)

func TestWarmShop(t *testing.T) {
	dir := dbttest.CopyProject(t, "shop")
	w, err := executor.NewWarm(executor.WarmConfig{
		DBTPath: dbttest.DBT(t), ProjectDir: dir, Env: dbttest.Env(t, dir),
		Vars:    map[string]any{"broken_model": true, "failing_test": true},
		WorkDir: t.TempDir(), Logger: testLogger(t), Workers: 1,
	})
	require.NoError(t, err)
	t.Cleanup(func() { require.NoError(t, w.Close()) })
	m, err := w.Manifest(t.Context())
	require.NoError(t, err)
	checkShop(t, w, m)
}

// TestWarmCancelAndCrash cancels an invocation on a warm worker (the
// worker's processes must be gone and a replacement must take the next
// request), then makes dbt kill its own worker.
func TestWarmCancelAndCrash(t *testing.T) {
	dir := copyProbe(t)
	started := filepath.Join(t.TempDir(), "started")
	work := t.TempDir()
	w, err := executor.NewWarm(executor.WarmConfig{
		DBTPath: dbttest.DBT(t), ProjectDir: dir, WorkDir: work, Logger: testLogger(t),
		Env:       probeEnv(t, dir, "DBTORCH_PROBE_SLEEP=60", "DBTORCH_PROBE_STARTED="+started, "DBTORCH_PROBE_CRASH=1"),
		KillGrace: 2 * time.Second,
	})
	require.NoError(t, err)
	m, err := w.Manifest(t.Context())
	require.NoError(t, err)
	pids := processesWith(t, work)
	require.Len(t, pids, 1, "one worker")

	ctx, cancel := context.WithCancel(t.Context())
	var wg sync.WaitGroup
	var resp *executor.Response
	var execErr error
	wg.Go(func() {
		resp, execErr = w.Execute(ctx, executor.Request{Command: executor.Run, Nodes: nodes(t, m, "model.probe.sleepy")})
	})
	require.Eventually(t, func() bool { _, err := os.Stat(started); return err == nil }, 60*time.Second, 50*time.Millisecond)
	cancel()
	wg.Wait()
	require.NoError(t, execErr)
	assert.Equal(t, executor.Cancelled, resp.Results[0].Status)
	assert.Equal(t, executor.KindCancelled, resp.Results[0].Kind)
	_, err = os.Stat(filepath.Join("/proc", pids[0]))
	assert.ErrorIs(t, err, os.ErrNotExist, "the cancelled worker is gone")

	// The replacement runs the next request; the model runs in it.
	resp, err = w.Execute(t.Context(), executor.Request{Command: executor.Run, Nodes: nodes(t, m, "model.probe.quick")})
	require.NoError(t, err)
	assert.Equal(t, executor.Success, resp.Results[0].Status, resp.Results[0].Message)

	// Crash: the model kills the worker.
	resp, err = w.Execute(t.Context(), executor.Request{Command: executor.Run, Nodes: nodes(t, m, "model.probe.crashy")})
	require.NoError(t, err)
	r := resp.Results[0]
	assert.Equal(t, executor.Error, r.Status)
	assert.Equal(t, executor.KindCrash, r.Kind)
	assert.Contains(t, r.Message, "killed")

	require.NoError(t, w.Close())
	assert.Empty(t, processesWith(t, work), "Close stops every worker")
	_, err = w.Execute(t.Context(), executor.Request{Command: executor.Run, Nodes: nodes(t, m, "model.probe.quick")})
	assert.ErrorIs(t, err, executor.ErrClosed)
}

// TestWarmRebuildsEphemeralReader builds a model that reads an ephemeral
// model twice on one worker: dbt compiles nodes in place on the shared
// manifest, and the second compile must inject the ephemeral's CTE again.
func TestWarmRebuildsEphemeralReader(t *testing.T) {
	dir := dbttest.CopyProject(t, "shop")
	w, err := executor.NewWarm(executor.WarmConfig{
		DBTPath: dbttest.DBT(t), ProjectDir: dir, Env: dbttest.Env(t, dir),
		WorkDir: t.TempDir(), Logger: testLogger(t), Workers: 1,
	})
	require.NoError(t, err)
	t.Cleanup(func() { require.NoError(t, w.Close()) })
	m, err := w.Manifest(t.Context())
	require.NoError(t, err)
	resp, err := w.Execute(t.Context(), executor.Request{Command: executor.Build,
		Nodes: nodes(t, m, "seed.shop.orders", "seed.shop.payments", "model.shop.stg_orders", "model.shop.stg_payments")})
	require.NoError(t, err)
	for _, r := range resp.Results {
		require.Equal(t, executor.Success, r.Status, "%s: %s", r.UniqueID, r.Message)
	}
	for attempt := 1; attempt <= 2; attempt++ {
		resp, err := w.Execute(t.Context(), executor.Request{Command: executor.Run, Nodes: nodes(t, m, "model.shop.fct_orders")})
		require.NoError(t, err)
		r := resp.Results[0]
		require.Equal(t, executor.Success, r.Status, "build %d: %s", attempt, r.Message)
		assert.Contains(t, r.CompiledCode, "__dbt__cte__int_order_payments", "build %d", attempt)
	}
}
