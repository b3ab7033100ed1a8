package executor_test

import (
	"context"
	"io"
	"log/slog"
	"os"
	"path/filepath"
	"regexp"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/dbtorch/dbtorch/dbt"
	"github.com/dbtorch/dbtorch/executor"
	"github.com/dbtorch/dbtorch/internal/dbttest"
	"github.com/dbtorch/dbtorch/internal/syncbuf"
	"github.com/dbtorch/dbtorch/manifest"
)

// TestWarmPatchedUnpatchedCoreAgree runs the shop project (checkShop)
// through Core, through Warm with the worker's patches of dbt internals
// and through Warm without them, and requires the three to report the
// same thing for every node: status, dbt's status, kind, message,
// failures, rows, relation and compiled code (not timings). It is what
// makes "Warm reports exactly what Core reports" a test, and what proves
// each patch on a dbt version (internal/pyworker/worker.py, PATCHES).
func TestWarmPatchedUnpatchedCoreAgree(t *testing.T) {
	vars := map[string]any{"broken_model": true, "failing_test": true}
	type outcome struct {
		ID, Status, DBTStatus, Kind, Message, Relation, Code string
		Failures, Rows                                       *int64
	}
	var runs [][]outcome
	outcomes := func(dir string, rs []executor.Result) []outcome {
		out := make([]outcome, len(rs))
		for i, r := range rs {
			out[i] = outcome{ID: r.UniqueID, Status: string(r.Status), DBTStatus: r.DBTStatus, Kind: string(r.Kind),
				Message: strings.ReplaceAll(r.Message, dir, "<project>"), Relation: r.RelationName, Code: r.CompiledCode,
				Failures: r.Failures, Rows: r.RowsAffected}
		}
		return out
	}
	record := func(dir string, rs []executor.Result) { runs = append(runs, outcomes(dir, rs)) }
	t.Run("core", func(t *testing.T) {
		c, m, dir := newShopCore(t)
		record(dir, checkShop(t, c, m))
	})
	for _, unpatched := range []bool{false, true} {
		name := "warm"
		if unpatched {
			name = "warm unpatched"
		}
		t.Run(name, func(t *testing.T) {
			dir := dbttest.CopyProject(t, "shop")
			var logs syncbuf.Buffer
			w, m := newShopWarm(t, executor.Options{Project: dbt.Project{Dir: dir, Vars: vars},
				Logger: slog.New(slog.NewTextHandler(io.MultiWriter(&logs, tWriter{t}), &slog.HandlerOptions{Level: slog.LevelDebug}))}, unpatched)
			record(dir, checkShop(t, w, m))
			ready := regexp.MustCompile(`worker ready.* patches=("\[[^"]*\]"|\[\]) enabled=("\[[^"]*\]"|\[\])`).FindStringSubmatch(logs.String())
			require.NotNil(t, ready, "the worker's ready line names its patches")
			if unpatched {
				assert.Equal(t, []string{"[]", "[]"}, ready[1:], "no patch applied")
			} else {
				// Every patch enabled on this dbt-core (worker.py, PATCHES)
				// applied, and some are: the test proves them here.
				assert.Equal(t, ready[2], ready[1], "each patch enabled on this dbt-core applies (-enabled +applied)")
				assert.NotEqual(t, "[]", ready[2], "no patch enabled on this dbt-core: outside the supported versions")
			}
		})
	}
	require.Len(t, runs, 3)
	assert.Empty(t, cmp.Diff(runs[0], runs[1]), "Core and patched Warm differ (-core +warm)")
	assert.Empty(t, cmp.Diff(runs[1], runs[2]), "patched and unpatched Warm differ (-patched +unpatched)")

	// Per node, as an orchestrated per-node build runs them: patched, the
	// worker runs the build's nodes in its build session, three at once
	// (worker.py, build_session); unpatched and Core run each node as an
	// invocation of its own.
	perNode := make([][]outcome, 3)
	t.Run("per node", func(t *testing.T) {
		for i, name := range []string{"core", "warm session", "warm unpatched"} {
			t.Run(name, func(t *testing.T) {
				t.Parallel()
				dir := dbttest.CopyProject(t, "shop")
				var ex executor.Executor
				var m *manifest.Manifest
				parallel := 1
				switch i {
				case 0:
					c, err := executor.NewCore(executor.CoreConfig{Options: executor.Options{Project: dbt.Project{DBT: dbttest.DBT(t), Dir: dir,
						Env: dbttest.Env(t, dir), Vars: vars}, WorkDir: t.TempDir(), Logger: testLogger(t)}})
					require.NoError(t, err)
					t.Cleanup(func() { require.NoError(t, c.Close()) })
					m, err = c.Manifest(t.Context())
					require.NoError(t, err)
					ex = c
				default:
					w, wm := newWarm(t, executor.WarmConfig{Options: executor.Options{Project: dbt.Project{Dir: dir, Vars: vars}, Logger: testLogger(t)},
						Unpatched: i == 2, SessionThreads: 3})
					ex, m, parallel = w, wm, 3
				}
				var resps []*executor.Response
				for _, phase := range shopPerNode(t, m) {
					resps = append(resps, runPerNode(t, ex, m, phase, parallel)...)
				}
				sessions := 0
				rs := make([]executor.Result, len(resps))
				for j, resp := range resps {
					rs[j] = resp.Results[0]
					if inSession(resp) {
						sessions++
					}
				}
				if i == 1 && dbttest.Sessions(t) {
					assert.Equal(t, len(resps), sessions, "every node ran in a build session")
				} else {
					assert.Zero(t, sessions)
				}
				perNode[i] = outcomes(dir, rs)
			})
		}
	})
	assert.Empty(t, cmp.Diff(perNode[0], perNode[1]), "per node: Core and the patched Warm's session differ (-core +session)")
	assert.Empty(t, cmp.Diff(perNode[1], perNode[2]), "per node: the session and unpatched Warm differ (-session +unpatched)")
}

// TestWarmCancelAndCrash cancels an invocation on a warm worker (the
// worker's processes must be gone and a replacement must take the next
// request), then makes dbt kill its own worker.
func TestWarmCancelAndCrash(t *testing.T) {
	dir := copyProbe(t)
	started := filepath.Join(t.TempDir(), "started")
	work := t.TempDir()
	w, err := executor.NewWarm(executor.WarmConfig{
		Options: executor.Options{Project: dbt.Project{DBT: dbttest.DBT(t), Dir: dir, Env: probeEnv(t, dir, "DBTORCH_PROBE_SLEEP=60", "DBTORCH_PROBE_STARTED="+started, "DBTORCH_PROBE_CRASH=1")},
			WorkDir:   work,
			Logger:    testLogger(t),
			KillGrace: 2 * time.Second,
		},
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
// Its pool of one worker creates schemas serially (SerialSchemas) once
// started, not before.
func TestWarmRebuildsEphemeralReader(t *testing.T) {
	dir := dbttest.CopyProject(t, "shop")
	w, err := executor.NewWarm(executor.WarmConfig{
		Options: executor.Options{Project: dbt.Project{DBT: dbttest.DBT(t), Dir: dir, Env: dbttest.Env(t, dir)},
			WorkDir: t.TempDir(),
			Logger:  testLogger(t),
		},
		Workers: 1,
	})
	require.NoError(t, err)
	t.Cleanup(func() { require.NoError(t, w.Close()) })
	assert.False(t, w.SerialSchemas(), "before Prepare")
	m, err := w.Manifest(t.Context())
	require.NoError(t, err)
	assert.True(t, w.SerialSchemas(), "one worker, started")
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

// TestWarmChecksSchemasOncePerBuild runs one model three times on one
// worker: twice in build b1, then in build b2. dbt lists the database's
// schemas (to create missing ones) in the first invocation of each build
// only, as one dbt build does; dbt's debug log of each invocation shows it.
func TestWarmChecksSchemasOncePerBuild(t *testing.T) {
	dir := copyProbe(t)
	w, err := executor.NewWarm(executor.WarmConfig{
		Options: executor.Options{Project: dbt.Project{DBT: dbttest.DBT(t), Dir: dir, Env: probeEnv(t, dir)},
			WorkDir:       t.TempDir(),
			Logger:        testLogger(t),
			KeepArtifacts: true,
		},
	})
	require.NoError(t, err)
	t.Cleanup(func() { require.NoError(t, w.Close()) })
	m, err := w.Manifest(t.Context())
	require.NoError(t, err)
	listed := func(build string) bool {
		t.Helper()
		resp, err := w.Execute(t.Context(), executor.Request{Command: executor.Run, Nodes: nodes(t, m, "model.probe.quick"), BuildID: build})
		require.NoError(t, err)
		require.Equal(t, executor.Success, resp.Results[0].Status, resp.Results[0].Message)
		i := slices.Index(resp.Invocation.Args, "--log-path")
		require.Positive(t, i)
		log, err := os.ReadFile(filepath.Join(resp.Invocation.Args[i+1], "dbt.log"))
		require.NoError(t, err)
		require.Contains(t, string(log), "model.probe.quick", "dbt's file log is kept at debug level")
		// create_schemas lists the schemas on a connection named after the
		// database ("list_probe"); the relation cache's is "list_probe_main".
		return strings.Contains(string(log), `connection "list_probe"`)
	}
	assert.True(t, listed("b1"), "first invocation of build b1 checks the schemas")
	assert.False(t, listed("b1"), "second invocation of build b1 does not")
	assert.True(t, listed("b2"), "a new build checks again")
	assert.True(t, listed(""), "an invocation outside a build always checks")
	assert.True(t, listed(""), "an invocation outside a build always checks")
}

// TestWarmBuildAfterRunKeepsTestEdges runs a model with `dbt run` on a
// worker, then `dbt build` over the model, its failing test and a child
// on the same worker. The worker links each manifest's graph once; the
// build needs dbt build's test edges (the child waits for the test and is
// skipped when it fails), which the graph of `dbt run` lacks.
func TestWarmBuildAfterRunKeepsTestEdges(t *testing.T) {
	dir := dbttest.CopyProject(t, "shop")
	w, err := executor.NewWarm(executor.WarmConfig{
		Options: executor.Options{Project: dbt.Project{DBT: dbttest.DBT(t), Dir: dir, Env: dbttest.Env(t, dir), Vars: map[string]any{"failing_test": true}},
			WorkDir: t.TempDir(),
			Logger:  testLogger(t),
		},
		Workers: 1,
	})
	require.NoError(t, err)
	t.Cleanup(func() { require.NoError(t, w.Close()) })
	m, err := w.Manifest(t.Context())
	require.NoError(t, err)
	// No dbt build before the last request: the worker's first graph is
	// one without test edges.
	for _, req := range []executor.Request{
		{Command: executor.Seed, Nodes: nodes(t, m, "seed.shop.customers", "seed.shop.orders", "seed.shop.payments")},
		{Command: executor.Run, Nodes: nodes(t, m, "model.shop.stg_customers", "model.shop.stg_orders", "model.shop.stg_payments", "model.shop.fct_orders")},
	} {
		resp, err := w.Execute(t.Context(), req)
		require.NoError(t, err)
		for _, r := range resp.Results {
			require.Equal(t, executor.Success, r.Status, "%s: %s", r.UniqueID, r.Message)
		}
	}
	resp, err := w.Execute(t.Context(), executor.Request{Command: executor.Build, Nodes: nodes(t, m,
		"model.shop.fct_orders", "test.shop.assert_order_amounts_non_negative", "model.shop.dim_customers.v1")})
	require.NoError(t, err)
	got := byID(resp.Results)
	assert.Equal(t, executor.Success, got["model.shop.fct_orders"].Status, got["model.shop.fct_orders"].Message)
	assert.Equal(t, executor.Error, got["test.shop.assert_order_amounts_non_negative"].Status)
	assert.Equal(t, "fail", got["test.shop.assert_order_amounts_non_negative"].DBTStatus)
	assert.Equal(t, executor.Skipped, got["model.shop.dim_customers.v1"].Status,
		"dbt build skips the child of a model whose test failed")
}

// TestStoreFailuresWithoutRelationCache runs a test that stores its
// failures twice with each executor. dbtorch runs `dbt test` without
// filling dbt's relation cache; the second run must still find the audit
// table the first one created (dbt asks the database) and replace it.
func TestStoreFailuresWithoutRelationCache(t *testing.T) {
	dir := copyProbe(t)
	env := probeEnv(t, dir)
	core, err := executor.NewCore(executor.CoreConfig{Options: executor.Options{Project: dbt.Project{DBT: dbttest.DBT(t), Dir: dir, Env: env}, WorkDir: t.TempDir(), Logger: testLogger(t)}})
	require.NoError(t, err)
	t.Cleanup(func() { require.NoError(t, core.Close()) })
	m, err := core.Manifest(t.Context())
	require.NoError(t, err)
	test := ofType(t, m, manifest.Test)
	require.Len(t, test, 1)
	warm, err := executor.NewWarm(executor.WarmConfig{Options: executor.Options{Project: dbt.Project{DBT: dbttest.DBT(t), Dir: dir, Env: env}, WorkDir: t.TempDir(), Logger: testLogger(t)}})
	require.NoError(t, err)
	t.Cleanup(func() { require.NoError(t, warm.Close()) })

	resp, err := core.Execute(t.Context(), executor.Request{Command: executor.Run, Nodes: nodes(t, m, "model.probe.quick")})
	require.NoError(t, err)
	require.Equal(t, executor.Success, resp.Results[0].Status, resp.Results[0].Message)
	for i, ex := range []executor.Executor{core, core, warm, warm} {
		resp, err := ex.Execute(t.Context(), executor.Request{Command: executor.Test, Nodes: test})
		require.NoError(t, err)
		assert.Contains(t, resp.Invocation.Args, "--no-populate-cache")
		r := resp.Results[0]
		require.Equal(t, executor.Success, r.Status, "run %d: %s", i+1, r.Message)
	}
}

// TestWarmDBTThroughSymlink reaches dbt through a symlink in a directory
// with no Python in it, and with no Python on $PATH either (as a pipx
// install's ~/.local/bin/dbt): the workers must run the interpreter of
// the dbt script's shebang, not look for one next to the symlink.
func TestWarmDBTThroughSymlink(t *testing.T) {
	dir := copyProbe(t)
	bin := t.TempDir()
	link := filepath.Join(bin, "dbt")
	require.NoError(t, os.Symlink(dbttest.DBT(t), link))
	env := probeEnv(t, dir)
	t.Setenv("PATH", bin)
	w, err := executor.NewWarm(executor.WarmConfig{
		Options: executor.Options{Project: dbt.Project{DBT: link, Dir: dir, Env: env}, WorkDir: t.TempDir(), Logger: testLogger(t)},
	})
	require.NoError(t, err)
	t.Cleanup(func() { require.NoError(t, w.Close()) })
	m, err := w.Manifest(t.Context())
	require.NoError(t, err)
	resp, err := w.Execute(t.Context(), executor.Request{Command: executor.Run, Nodes: nodes(t, m, "model.probe.quick")})
	require.NoError(t, err)
	assert.Equal(t, executor.Success, resp.Results[0].Status, resp.Results[0].Message)
}

// TestWarmKeepsRelationCache runs one sequence of invocations on shop
// through a one-worker Warm executor, patched and unpatched, and reads
// from each invocation's dbt log whether dbt listed the schema's
// relations. Patched, the worker keeps dbt's relation cache within a build
// (keep_relation_cache in internal/pyworker/worker.py): after the seeds'
// listing nothing is listed again until a failed invocation, and a table
// model run a second time in the build succeeds (its relation, created in
// the invocation before, is in the kept cache, or dbt would create it over
// the existing table); a failed invocation and a new build list afresh.
// Unpatched lists in every invocation. Both report the same statuses.
func TestWarmKeepsRelationCache(t *testing.T) {
	t.Parallel()
	type step struct {
		build, cmd string
		ids        []string
		listed     bool // patched: dbt listed relations in this invocation
	}
	fct := "model.shop.fct_orders"
	steps := []step{
		{"b1", "seed", nil, true},
		{"b1", "run", []string{"model.shop.stg_customers", "model.shop.stg_orders", "model.shop.stg_payments"}, false},
		{"b1", "run", []string{fct}, false},
		{"b1", "test", []string{"test.shop.unique_fct_orders_order_id"}, false}, // a prefix
		{"b1", "run", []string{fct}, false},
		{"b1", "run", []string{"model.shop.customer_revenue"}, false}, // fails: drops the cache
		{"b1", "run", []string{fct}, true},
		{"b2", "run", []string{fct}, true},
		{"b2", "run", []string{fct}, false},
	}
	type outcome struct {
		statuses []string
		listed   []bool
	}
	run := func(t *testing.T, unpatched bool) outcome {
		dir := dbttest.CopyProject(t, "shop")
		w, m := newShopWarm(t, executor.Options{Project: dbt.Project{Dir: dir, Vars: map[string]any{"broken_model": true}},
			KeepArtifacts: true, Logger: testLogger(t)}, unpatched)
		var o outcome
		for i, s := range steps {
			var ns []*manifest.Node
			switch s.cmd {
			case "seed":
				ns = ofType(t, m, manifest.Seed)
			case "test":
				for _, n := range ofType(t, m, manifest.Test) {
					if strings.HasPrefix(n.UniqueID, s.ids[0]+".") {
						ns = append(ns, n)
					}
				}
				require.Len(t, ns, 1)
			default:
				ns = nodes(t, m, s.ids...)
			}
			resp, err := w.Execute(t.Context(), executor.Request{Command: executor.Command(s.cmd), Nodes: ns, Attempt: 1, BuildID: s.build})
			require.NoError(t, err)
			var st []string
			for _, r := range resp.Results {
				st = append(st, string(r.Status))
			}
			o.statuses = append(o.statuses, strings.Join(st, ","))
			at := slices.Index(resp.Invocation.Args, "--log-path")
			require.GreaterOrEqual(t, at, 0, "step %d", i)
			log, err := os.ReadFile(filepath.Join(resp.Invocation.Args[at+1], "dbt.log"))
			require.NoError(t, err)
			o.listed = append(o.listed, strings.Contains(string(log), "connection 'list_"))
		}
		return o
	}
	var patched, unpatched outcome
	t.Run("patched", func(t *testing.T) { t.Parallel(); patched = run(t, false) })
	t.Run("unpatched", func(t *testing.T) { t.Parallel(); unpatched = run(t, true) })
	t.Cleanup(func() {
		if t.Failed() {
			return
		}
		var want []bool
		for _, s := range steps {
			want = append(want, s.listed)
		}
		assert.Equal(t, want, patched.listed, "patched: which invocations listed relations")
		for i, s := range steps {
			assert.Equal(t, s.cmd != "test", unpatched.listed[i], "unpatched: every run and seed lists (step %d)", i)
		}
		assert.Equal(t, unpatched.statuses, patched.statuses)
		assert.Equal(t, "error", patched.statuses[5], "customer_revenue fails")
		for i, st := range patched.statuses {
			if i != 5 {
				assert.NotContains(t, st, "error", "step %d", i)
			}
		}
	})
}

// newShopWarm starts a one-worker Warm executor on the project copy in
// o.Dir with o (dbt, environment and work directory filled in) and
// returns it with its manifest; it is closed when t ends.
func newShopWarm(t *testing.T, o executor.Options, unpatched bool) (*executor.Warm, *manifest.Manifest) {
	t.Helper()
	return newWarm(t, executor.WarmConfig{Options: o, Workers: 1, Unpatched: unpatched})
}

// newWarm starts the Warm executor cfg on the project copy in cfg.Dir
// (dbt, environment and work directory filled in) and returns it with its
// manifest; it is closed when t ends.
func newWarm(t *testing.T, cfg executor.WarmConfig) (*executor.Warm, *manifest.Manifest) {
	t.Helper()
	cfg.DBT, cfg.Env, cfg.WorkDir = dbttest.DBT(t), dbttest.Env(t, cfg.Dir), t.TempDir()
	w, err := executor.NewWarm(cfg)
	require.NoError(t, err)
	t.Cleanup(func() { require.NoError(t, w.Close()) })
	m, err := w.Manifest(t.Context())
	require.NoError(t, err)
	return w, m
}
