package executor

import (
	"context"
	"maps"
	"os"
	"slices"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/dbtorch/dbtorch/dbt"
	"github.com/dbtorch/dbtorch/internal/dbttest"
	"github.com/dbtorch/dbtorch/manifest"
)

// ppid returns pid's parent (0 when pid is gone).
func ppid(t *testing.T, pid int) int {
	p, _ := dbttest.ProcParent(t, pid)
	return p
}

// TestWarmForksWorkers: with several workers on PostgreSQL, one zygote
// parses and every worker is forked from it (its parent is the zygote);
// each runs nodes; a worker killed while idle is reported as killed (the
// zygote tells) and replaced by a new fork. With NoFork every worker is
// dbtorch's own child and parses on its own.
func TestWarmForksWorkers(t *testing.T) {
	pg := dbttest.StartPostgres(t)
	dir := dbttest.CopyProject(t, "shop")
	env := append(dbttest.Env(t, dir), pg.Env()...)
	start := func(noFork bool) *Warm {
		x, err := NewWarm(WarmConfig{
			Options: Options{Project: dbt.Project{DBT: dbttest.DBT(t), Dir: dir, Env: env, Target: "pg"}, WorkDir: t.TempDir()},
			Workers: 3, NoFork: noFork,
		})
		require.NoError(t, err)
		t.Cleanup(func() { require.NoError(t, x.Close()) })
		require.NoError(t, x.Prepare(t.Context()))
		require.NoError(t, x.WaitWorkers(t.Context()))
		return x
	}
	pids := func(x *Warm) []int {
		x.mu.Lock()
		defer x.mu.Unlock()
		var ps []int
		for w := range x.workers {
			ps = append(ps, w.pw.Pid())
		}
		return ps
	}

	x := start(false)
	require.NotNil(t, x.zygote)
	// The warm executor's parse arguments (partial-parse file, vars,
	// target) are ones the zygote's warming ls takes.
	assert.True(t, x.zygote.Ready().Warmed, "the zygote warmed its forks")
	z := x.zygote.Pid()
	ws := pids(x)
	require.Len(t, ws, 3)
	for _, p := range ws {
		assert.Equal(t, z, ppid(t, p), "worker %d forked by the zygote", p)
	}
	m, err := x.Manifest(t.Context())
	require.NoError(t, err)
	seed := m.Lookup("seed.shop.customers")
	require.NotNil(t, seed)
	run := func(n *manifest.Node) Result {
		resp, err := x.Execute(t.Context(), Request{Command: CommandFor(n.ResourceType), Nodes: []*manifest.Node{n}, Attempt: 1})
		require.NoError(t, err)
		require.Len(t, resp.Results, 1)
		return resp.Results[0]
	}
	for range 3 {
		r := run(seed)
		assert.Equal(t, Success, r.Status, r.Message)
	}

	// Kill an idle worker: its end is learnt from the zygote, the next
	// request that takes it replaces it with a new fork, and every node
	// still runs.
	x.mu.Lock()
	var dead *worker
	for w := range x.workers {
		dead = w
		break
	}
	x.mu.Unlock()
	victim := dead.pw.Pid()
	require.NoError(t, syscall.Kill(victim, syscall.SIGKILL))
	select {
	case <-dead.pw.Done():
	case <-time.After(10 * time.Second):
		t.Fatal("the zygote did not report its worker's end")
	}
	assert.Equal(t, "killed", dead.pw.Result().Signal)
	for range 4 {
		r := run(seed)
		assert.Equal(t, Success, r.Status, r.Message)
	}
	require.Eventually(t, func() bool {
		ps := pids(x)
		if len(ps) != 3 {
			return false
		}
		for _, p := range ps {
			if p == victim || ppid(t, p) != z {
				return false
			}
		}
		return true
	}, 30*time.Second, 10*time.Millisecond, "a forked replacement")

	// NoFork: no zygote, the workers are this process's children.
	y := start(true)
	assert.Nil(t, y.zygote)
	for _, p := range pids(y) {
		assert.Equal(t, os.Getpid(), ppid(t, p))
	}
}

// TestWarmRecyclesForks: a forked worker is replaced by a fresh fork after
// RecycleAfter invocations, and exits; RecycleAfter negative keeps every
// worker, zero recycles after DefaultRecycleAfter. The first workers are
// staggered: the second of two starts half way (a head start of half the
// invocations). Two workers take four invocations one after another, two
// each: after two both are replaced (the second after one), after five or
// the default neither. A replacement is forked only after the worker it
// replaces has ended its last invocation.
func TestWarmRecyclesForks(t *testing.T) {
	pg := dbttest.StartPostgres(t)
	dir := dbttest.CopyProject(t, "shop")
	env := append(dbttest.Env(t, dir), pg.Env()...)
	for _, tc := range []struct {
		name     string
		after    int
		every    int // the recycling RecycleAfter means
		replaced bool
	}{{"never", -1, 0, false}, {"default", 0, DefaultRecycleAfter, false}, {"after two", 2, 2, true}, {"after five", 5, 5, false}} {
		t.Run(tc.name, func(t *testing.T) {
			x, err := NewWarm(WarmConfig{
				Options: Options{Project: dbt.Project{DBT: dbttest.DBT(t), Dir: dir, Env: env, Target: "pg"}, WorkDir: t.TempDir()},
				Workers: 2, RecycleAfter: tc.after,
			})
			require.NoError(t, err)
			t.Cleanup(func() { require.NoError(t, x.Close()) })
			require.NoError(t, x.Prepare(t.Context()))
			require.NoError(t, x.WaitWorkers(t.Context()))
			require.NotNil(t, x.zygote)
			workers := func() map[*worker]bool {
				x.mu.Lock()
				defer x.mu.Unlock()
				return maps.Clone(x.workers)
			}
			before := workers()
			require.Len(t, before, 2)
			var starts []int
			x.mu.Lock()
			for w := range before {
				starts = append(starts, w.served)
			}
			x.mu.Unlock()
			slices.Sort(starts)
			assert.Equal(t, []int{0, tc.every / 2}, starts, "the first workers' head starts")
			// A replacement is forked only once the worker it replaces has
			// ended its last invocation and left the pool: the pool
			// holds fewer than its two workers then.
			var overlaps atomic.Int32
			x.mu.Lock()
			x.beforeLaunch = func(context.Context, int) {
				x.mu.Lock()
				defer x.mu.Unlock()
				if len(x.workers) >= 2 {
					overlaps.Add(1)
				}
			}
			x.mu.Unlock()
			m, err := x.Manifest(t.Context())
			require.NoError(t, err)
			seed := m.Lookup("seed.shop.customers")
			require.NotNil(t, seed)
			for range 4 {
				resp, err := x.Execute(t.Context(), Request{Command: Seed, Nodes: []*manifest.Node{seed}, Attempt: 1})
				require.NoError(t, err)
				require.Len(t, resp.Results, 1)
				assert.Equal(t, Success, resp.Results[0].Status, resp.Results[0].Message)
			}
			if !tc.replaced {
				assert.Equal(t, before, workers(), "the same workers")
				for w := range before {
					assert.True(t, w.pw.Alive(), "worker %d runs on", w.id)
				}
				return
			}
			assert.Zero(t, overlaps.Load(), "replacements forked while the worker they replace was in the pool")
			for w := range before {
				select {
				case <-w.pw.Done():
				case <-time.After(30 * time.Second):
					t.Fatalf("recycled worker %d did not exit", w.id)
				}
				assert.Equal(t, 0, w.pw.Result().ExitCode, "worker %d exited as asked", w.id)
			}
			z := x.zygote.Pid()
			require.Eventually(t, func() bool {
				now := workers()
				if len(now) != 2 {
					return false
				}
				for w := range now {
					if before[w] || ppid(t, w.pw.Pid()) != z {
						return false
					}
				}
				return true
			}, 30*time.Second, 10*time.Millisecond, "two fresh forks of the zygote")
		})
	}
}
