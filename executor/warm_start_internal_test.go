package executor

import (
	"context"
	"sync"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/dbtorch/dbtorch/dbt"
	"github.com/dbtorch/dbtorch/internal/dbttest"
	"github.com/dbtorch/dbtorch/manifest"
)

// TestWarmStartsOnFirstReadyWorker holds the second worker of a two-worker
// pool before its process starts until a node has run: Prepare, Manifest
// and Execute must complete on the first worker alone (before the change
// Prepare waited for every worker, so the node could only start after the
// last worker was ready). Once released, the second worker joins the pool
// (WaitWorkers).
func TestWarmStartsOnFirstReadyWorker(t *testing.T) {
	dir := dbttest.CopyProject(t, "shop")
	x, err := NewWarm(WarmConfig{
		Options: Options{Project: dbt.Project{DBT: dbttest.DBT(t), Dir: dir, Env: dbttest.Env(t, dir)}, WorkDir: t.TempDir()},
		Workers: 2,
	})
	require.NoError(t, err)
	t.Cleanup(func() { require.NoError(t, x.Close()) })
	release := make(chan struct{})
	var mu sync.Mutex
	var held bool
	var launched time.Time
	var calls int
	x.beforeLaunch = func(ctx context.Context, id int) {
		mu.Lock()
		if id != 0 { // 0 is the zygote
			calls++
		}
		spare := calls == 2 && id != 0
		mu.Unlock()
		if spare {
			select {
			case <-release:
			case <-time.After(3 * time.Minute):
				mu.Lock()
				held = true
				mu.Unlock()
			case <-ctx.Done():
			}
		}
		mu.Lock()
		defer mu.Unlock()
		if spare {
			launched = time.Now()
		}
	}
	ctx := t.Context()
	m, err := x.Manifest(ctx)
	require.NoError(t, err)
	seed := m.Lookup("seed.shop.customers")
	require.NotNil(t, seed)
	run := func() Result {
		resp, err := x.Execute(ctx, Request{Command: CommandFor(seed.ResourceType), Nodes: []*manifest.Node{seed}, Attempt: 1})
		require.NoError(t, err)
		require.Len(t, resp.Results, 1)
		return resp.Results[0]
	}
	first := run()
	firstDone := time.Now()
	close(release)
	require.NoError(t, x.WaitWorkers(ctx))
	mu.Lock()
	assert.False(t, held, "the node waited for the second worker")
	assert.True(t, launched.After(firstDone), "the second worker started only after the first node had run")
	mu.Unlock()
	x.mu.Lock()
	n := len(x.workers)
	x.mu.Unlock()
	require.Equal(t, 2, n, "the second worker joined the pool")
	assert.Equal(t, Success, first.Status, first.Message)
	// The first worker again (the pool is first in, first out; a second
	// worker on the same DuckDB file would meet its lock): the same result.
	r := run()
	assert.Equal(t, [4]any{first.Status, first.DBTStatus, first.Kind, first.RelationName}, [4]any{r.Status, r.DBTStatus, r.Kind, r.RelationName}, r.Message)
}
