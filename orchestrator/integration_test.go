package orchestrator_test

import (
	"context"
	"encoding/json"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/dbtorch/dbtorch/executor"
	"github.com/dbtorch/dbtorch/internal/dbttest"
	"github.com/dbtorch/dbtorch/manifest"
	"github.com/dbtorch/dbtorch/orchestrator"
	"github.com/dbtorch/dbtorch/selector"
)

// Integration tests with real dbt on the testdata shop project. dbt
// invocations are costly (seconds of CPU each), so every test runs few of
// them: warm workers, one parse per test, and the checks that need no dbt
// done on plans.

// shop is a copy of the shop project with a warm executor on it.
type shop struct {
	dir string
	env []string
	ex  *executor.Warm
	m   *manifest.Manifest
}

// newShop copies the shop project and starts a warm executor with
// workers workers on it (DuckDB unless env selects the pg target).
func newShop(t *testing.T, workers int, target string, extraEnv ...string) *shop {
	t.Helper()
	p := dbttest.Project(t, "shop", extraEnv...)
	p.ProfilesDir, p.Target = p.Dir, target
	dir, env := p.Dir, p.Env
	ex, err := executor.NewWarm(executor.WarmConfig{
		Options: executor.Options{Project: p,
			WorkDir: t.TempDir(),
		},
		Workers: workers,
	})
	require.NoError(t, err)
	t.Cleanup(func() { _ = ex.Close() })
	m, err := ex.Manifest(t.Context())
	require.NoError(t, err)
	return &shop{dir: dir, env: env, ex: ex, m: m}
}

func (s *shop) orch(t *testing.T, cfg orchestrator.Config) *orchestrator.Orchestrator {
	t.Helper()
	cfg.Executor, cfg.Manifest = s.ex, s.m
	return newOrch(t, cfg)
}

// duckdbCounts returns count(*) of each relation in the shop's DuckDB
// file (-1 when the relation does not exist). Close the executor first:
// warm workers keep the file open.
func (s *shop) duckdbCounts(t *testing.T, relations []string) map[string]int64 {
	t.Helper()
	require.NoError(t, s.ex.Close())
	var db string
	for _, kv := range s.env {
		if v, ok := strings.CutPrefix(kv, "DBTORCH_DUCKDB_PATH="); ok {
			db = v
		}
	}
	py := filepath.Join(filepath.Dir(dbttest.DBT(t)), "python")
	script := `
import duckdb, json, sys
con = duckdb.connect(sys.argv[1], read_only=True)
out = {}
for rel in json.loads(sys.argv[2]):
    try:
        out[rel] = con.execute("select count(*) from " + rel).fetchone()[0]
    except Exception:
        out[rel] = -1
print(json.dumps(out))
`
	rels, _ := json.Marshal(relations)
	out, err := exec.CommandContext(t.Context(), py, "-c", script, db, string(rels)).Output()
	require.NoError(t, err)
	var counts map[string]int64
	require.NoError(t, json.Unmarshal(out, &counts))
	return counts
}

// eventLog records events, safe for concurrent use.
type eventLog struct {
	mu     sync.Mutex
	events []orchestrator.Event
}

func (l *eventLog) Event(_ context.Context, e orchestrator.Event) {
	l.mu.Lock()
	defer l.mu.Unlock()
	l.events = append(l.events, e)
}

func (l *eventLog) all() []orchestrator.Event {
	l.mu.Lock()
	defer l.mu.Unlock()
	return slices.Clone(l.events)
}

// csvRows counts the data rows of a seed file.
func csvRows(t *testing.T, path string) int64 {
	t.Helper()
	data, err := os.ReadFile(path)
	require.NoError(t, err)
	lines := strings.Split(strings.TrimSpace(string(data)), "\n")
	return int64(len(lines) - 1)
}

// TestShopDuckDB runs the shop project on DuckDB through one warm
// executor (one parse, one worker): a full per-node build with a flaky
// model retried, per-wave builds with a broken model, a failing test and
// deferred tests, a per-node broken-model build, selections and
// strategies on plans, and a cancelled build. Each build passes vars of
// its own: the warm worker keeps one manifest per set of vars, and a
// worker reusing a manifest that already compiled fct_orders loses its
// ephemeral CTE (an executor bug, reported to its owner).
func TestShopDuckDB(t *testing.T) {
	counter := filepath.Join(t.TempDir(), "flaky")
	s := newShop(t, 1, "", "DBTORCH_FLAKY_COUNTER="+counter)
	ctx := t.Context()
	var full, wave *orchestrator.Run

	t.Run("full build per node with retries", func(t *testing.T) {
		log := &eventLog{}
		o := s.orch(t, orchestrator.Config{Concurrency: 1, Observer: log, Retry: orchestrator.RetryConfig{Retries: 2, Delay: 10 * time.Millisecond}})
		run, err := o.RunBuild(ctx, orchestrator.BuildOptions{Vars: map[string]any{"build": "full"}})
		for _, r := range run.Results {
			if r.Status == orchestrator.Error {
				t.Errorf("%s: %s: %s", r.UniqueID, r.Err.Kind, r.Err.Message)
			}
		}
		require.NoError(t, err)
		full = run
		plan := run.Plan
		require.Len(t, run.Results, plan.Len())
		assert.Equal(t, plan.Len(), run.Count(orchestrator.Success), "every node succeeds")

		// One invocation per attempt, with the command for the node's type;
		// the flaky model failed once and was retried.
		for _, r := range run.Results {
			require.NotNil(t, r.Invocation, r.UniqueID)
			assert.Equal(t, executor.CommandFor(r.ResourceType), r.Invocation.Command, r.UniqueID)
			if r.UniqueID != "model.shop.flaky_events" {
				assert.Len(t, r.Attempts, 1, r.UniqueID)
			}
		}
		flaky := run.Result("model.shop.flaky_events")
		require.Len(t, flaky.Attempts, 2)
		assert.Equal(t, executor.Error, flaky.Attempts[0].Status)
		assert.Contains(t, flaky.Attempts[0].Message, "failing on the first attempt on purpose")
		assert.Equal(t, executor.Success, flaky.Attempts[1].Status)
		data, err := os.ReadFile(counter)
		require.NoError(t, err)
		assert.Equal(t, "2", strings.TrimSpace(string(data)), "the flaky model ran twice")

		// From the events: nothing started before its upstreams finished,
		// and the retry was announced.
		finished := map[string]time.Time{}
		retrying := 0
		for _, e := range log.all() {
			switch e.Type {
			case orchestrator.NodeStarted:
				for _, u := range plan.UpstreamIDs(e.Node) {
					f, ok := finished[u]
					require.True(t, ok, "%s started before %s finished", e.Node, u)
					assert.False(t, e.Time.Before(f))
				}
			case orchestrator.NodeRetrying:
				retrying++
				assert.Equal(t, "model.shop.flaky_events", e.Node)
			case orchestrator.NodeFinished:
				finished[e.Node] = e.Time
			}
		}
		assert.Equal(t, 1, retrying)
		// The unit test ran before its model.
		unit := run.Result("unit_test.shop.fct_orders.fct_orders_sums_payments")
		require.NotNil(t, unit)
		assert.False(t, run.Result("model.shop.fct_orders").StartedAt.Before(unit.CompletedAt))
	})

	t.Run("per-wave broken model", func(t *testing.T) {
		o := s.orch(t, orchestrator.Config{Mode: orchestrator.PerWave})
		run, err := o.RunBuild(ctx, orchestrator.BuildOptions{Vars: map[string]any{"broken_model": true}})
		assertBrokenModel(t, run, err)
		wave = run
		// One dbt build per wave, over the wave's runnable nodes, and a dbt
		// test for the unit test (dbt build runs a unit test only with its
		// model).
		type group struct {
			wave int
			cmd  executor.Command
		}
		invocations := map[string]group{}
		groups := map[group]bool{}
		for _, r := range run.Results {
			if r.Invocation == nil {
				continue
			}
			g := group{r.Wave, r.Invocation.Command}
			switch {
			case r.ResourceType == manifest.UnitTest:
				assert.Equal(t, executor.Test, g.cmd, r.UniqueID)
			case !s.m.Lookup(r.UniqueID).IsTest():
				assert.Equal(t, executor.Build, g.cmd, r.UniqueID)
			}
			// The waves of a warm build session share its dbt
			// invocation_id: an invocation is also its start.
			inv := r.Invocation.InvocationID + "@" + r.Invocation.Started.String()
			if prev, ok := invocations[inv]; ok {
				assert.Equal(t, prev, g, "one invocation spans waves or commands")
			}
			invocations[inv] = g
			groups[g] = true
		}
		assert.Len(t, invocations, len(groups), "one invocation per wave and command")
		waves := map[int]bool{}
		for g := range groups {
			waves[g.wave] = true
		}
		assert.Len(t, groups, len(waves)+1, "one dbt build or test per wave, plus the unit test's dbt test")
	})

	t.Run("per-wave failing test", func(t *testing.T) {
		o := s.orch(t, orchestrator.Config{Mode: orchestrator.PerWave})
		run, err := o.RunBuild(ctx, orchestrator.BuildOptions{Vars: map[string]any{"failing_test": true}})
		const failing = "test.shop.assert_order_amounts_non_negative"
		var be *orchestrator.BuildError
		require.ErrorAs(t, err, &be)
		assert.Equal(t, []string{failing}, be.Failed)
		assert.Equal(t, executor.KindTestFailure, run.Result(failing).Err.Kind)
		for _, id := range []string{"model.shop.dim_customers.v1", "model.shop.dim_customers.v2", "model.shop.customer_revenue", "model.shop.revenue_by_segment"} {
			r := run.Result(id)
			assert.Equal(t, orchestrator.Skipped, r.Status, id)
			assert.Equal(t, []string{failing}, r.FailedUpstream, id)
		}
		for _, id := range []string{"model.shop.fct_orders", "model.shop.event_counts", "model.shop.payments_incremental", "snapshot.shop.orders_snapshot"} {
			assert.Equal(t, orchestrator.Success, run.Result(id).Status, id)
		}
	})

	t.Run("per-wave deferred tests", func(t *testing.T) {
		// Deferred: the failing test runs after every model and skips
		// nothing.
		o := s.orch(t, orchestrator.Config{Mode: orchestrator.PerWave})
		run, err := o.RunBuild(ctx, orchestrator.BuildOptions{Tests: manifest.Deferred, Vars: map[string]any{"failing_test": true, "deferred": true}})
		var be *orchestrator.BuildError
		require.ErrorAs(t, err, &be)
		for _, r := range run.Results {
			if r.Status == orchestrator.Error && r.Err.Kind != executor.KindTestFailure {
				t.Errorf("%s: %s: %s", r.UniqueID, r.Err.Kind, r.Err.Message)
			}
		}
		assert.Equal(t, []string{"test.shop.assert_order_amounts_non_negative"}, be.Failed)
		assert.Zero(t, run.Count(orchestrator.Skipped))
		last := run.Plan.Waves()[len(run.Plan.Waves())-1]
		for _, id := range last {
			assert.True(t, s.m.Lookup(id).IsTest(), id)
		}
		var lastModel time.Time
		for _, r := range run.Results {
			if !s.m.Lookup(r.UniqueID).IsTest() && r.CompletedAt.After(lastModel) {
				lastModel = r.CompletedAt
			}
		}
		for _, id := range last {
			assert.False(t, run.Result(id).StartedAt.Before(lastModel), id)
		}
	})

	t.Run("per-node broken model", func(t *testing.T) {
		// The broken model's lineage and one independent branch, without
		// tests (the skip strategy), to keep dbt invocations few.
		o := s.orch(t, orchestrator.Config{})
		run, err := o.RunBuild(ctx, orchestrator.BuildOptions{
			Selection: selector.Options{Select: []string{"+customer_revenue+", "+event_counts"}}, Tests: manifest.SkipTests,
			Vars: map[string]any{"broken_model": true, "per_node": true}})
		require.Error(t, err)
		assertBrokenModel(t, run, err)
		assert.Equal(t, orchestrator.Success, run.Result("model.shop.event_counts").Status)
		assert.Equal(t, orchestrator.Success, run.Result("model.shop.fct_orders").Status)
		assert.Nil(t, run.Result("model.shop.payments_incremental"), "not selected")
		for _, r := range run.Results {
			assert.False(t, s.m.Lookup(r.UniqueID).IsTest(), "skip strategy ran %s", r.UniqueID)
		}
	})

	t.Run("selection and strategies", func(t *testing.T) {
		checkShopPlans(t, s.m)
	})

	t.Run("cancel", func(t *testing.T) {
		cctx, cancel := context.WithCancel(ctx)
		defer cancel()
		var finished atomic.Int32
		o := s.orch(t, orchestrator.Config{Observer: orchestrator.ObserverFunc(func(_ context.Context, e orchestrator.Event) {
			if e.Type == orchestrator.NodeFinished && finished.Add(1) == 2 {
				cancel()
			}
		})})
		run, err := o.RunBuild(cctx, orchestrator.BuildOptions{Vars: map[string]any{"build": "cancelled"}})
		require.ErrorIs(t, err, context.Canceled)
		require.Len(t, run.Results, run.Plan.Len())
		ran := 0
		for _, r := range run.Results {
			switch r.Status {
			case orchestrator.Success:
				ran++
			case orchestrator.Error:
				assert.Equal(t, executor.KindCancelled, r.Err.Kind, r.UniqueID)
			case orchestrator.Skipped:
				assert.Empty(t, r.Attempts, r.UniqueID)
			default:
				t.Errorf("%s: status %s", r.UniqueID, r.Status)
			}
		}
		assert.GreaterOrEqual(t, ran, 2)
		assert.Greater(t, run.Count(orchestrator.Skipped), len(run.Results)/2, "the build was cut short")
		// Nothing left running: the executor is idle and builds again.
		run2, err := s.orch(t, orchestrator.Config{}).RunBuild(ctx, orchestrator.BuildOptions{
			Selection: selector.Options{Select: []string{"customers"}}, Tests: manifest.SkipTests, Vars: map[string]any{"build": "cancelled"}})
		require.NoError(t, err)
		require.Len(t, run2.Results, 1)
		assert.Equal(t, "seed.shop.customers", run2.Results[0].UniqueID)
		assert.Equal(t, orchestrator.Success, run2.Results[0].Status)
	})

	// Rows: every model, seed and snapshot of the full build is in DuckDB;
	// seeds hold the rows dbt reported and their CSV files hold; marts hold
	// what they should.
	require.NotNil(t, full, "the full build failed")
	var relations []string
	for _, r := range full.Results {
		if n := s.m.Lookup(r.UniqueID); !n.IsTest() {
			relations = append(relations, n.RelationName)
		}
	}
	counts := s.duckdbCounts(t, relations)
	for _, r := range full.Results {
		n := s.m.Lookup(r.UniqueID)
		if n.IsTest() {
			continue
		}
		assert.GreaterOrEqual(t, counts[n.RelationName], int64(0), "%s not built", r.UniqueID)
		if n.ResourceType == manifest.Seed {
			require.NotNil(t, r.RowsAffected, r.UniqueID)
			assert.Equal(t, *r.RowsAffected, counts[n.RelationName], r.UniqueID)
			assert.Equal(t, csvRows(t, filepath.Join(s.dir, n.OriginalFilePath)), counts[n.RelationName], r.UniqueID)
		}
	}
	// The per-wave build reported the same seed rows.
	require.NotNil(t, wave)
	for _, r := range wave.Results {
		if r.ResourceType == manifest.Seed {
			require.NotNil(t, r.RowsAffected, r.UniqueID)
			assert.Equal(t, counts[s.m.Lookup(r.UniqueID).RelationName], *r.RowsAffected, r.UniqueID)
		}
	}
	rel := func(id string) string { return s.m.Lookup(id).RelationName }
	assert.Equal(t, counts[rel("seed.shop.orders")], counts[rel("model.shop.fct_orders")], "one row per order")
	assert.Equal(t, counts[rel("seed.shop.customers")], counts[rel("model.shop.dim_customers.v2")], "one row per customer")
}

// assertBrokenModel checks a build with broken_model on: the model fails
// with dbt's message, its descendants are skipped naming it, everything
// else succeeds.
func assertBrokenModel(t *testing.T, run *orchestrator.Run, err error) {
	t.Helper()
	const broken = "model.shop.customer_revenue"
	var be *orchestrator.BuildError
	require.ErrorAs(t, err, &be)
	for _, r := range run.Results {
		if r.Status == orchestrator.Error && r.UniqueID != broken {
			t.Errorf("%s: %s: %s", r.UniqueID, r.Err.Kind, r.Err.Message)
		}
	}
	assert.Equal(t, []string{broken}, be.Failed)
	res := run.Result(broken)
	require.NotNil(t, res)
	assert.Equal(t, orchestrator.Error, res.Status)
	assert.Equal(t, executor.KindDatabase, res.Err.Kind)
	assert.NotEmpty(t, res.Err.Message)
	skipped := []string{"model.shop.revenue_by_segment", "test.shop.unique_customer_revenue_customer_id.3b4be2f107"}
	for _, id := range skipped {
		r := run.Result(id)
		if r == nil {
			continue // not planned (test strategy skip)
		}
		assert.Equal(t, orchestrator.Skipped, r.Status, id)
		assert.Equal(t, []string{broken}, r.FailedUpstream, id)
		assert.Equal(t, orchestrator.ReasonUpstreamFailed, r.SkipReason, id)
	}
	for _, r := range run.Results {
		if r.UniqueID != broken && !slices.Contains(skipped, r.UniqueID) {
			assert.Equal(t, orchestrator.Success, r.Status, r.UniqueID)
		}
	}
}

// checkShopPlans checks selections and test strategies on plans of the
// shop manifest (no build).
func checkShopPlans(t *testing.T, m *manifest.Manifest) {
	t.Helper()
	o := newOrch(t, orchestrator.Config{Executor: noopExec{}, Manifest: m})
	plan := func(opts orchestrator.BuildOptions) []string {
		t.Helper()
		p, err := o.Plan(t.Context(), opts)
		require.NoError(t, err)
		return slices.Sorted(slices.Values(p.Nodes()))
	}
	models := func(ids []string) []string {
		var out []string
		for _, id := range ids {
			if !m.Lookup(id).IsTest() {
				out = append(out, id)
			}
		}
		return out
	}
	assert.Equal(t, []string{
		"model.shop.customer_revenue", "model.shop.dim_customers.v1", "model.shop.dim_customers.v2",
		"model.shop.event_counts", "model.shop.fct_orders", "model.shop.flaky_events",
		"model.shop.payments_incremental", "model.shop.revenue_by_segment",
	}, models(plan(orchestrator.BuildOptions{Selection: selector.Options{Select: []string{"marts"}}})))
	assert.Equal(t, []string{
		"model.shop.fct_orders", "model.shop.stg_orders", "model.shop.stg_payments",
		"seed.shop.orders", "seed.shop.payments",
	}, models(plan(orchestrator.BuildOptions{Selection: selector.Options{Select: []string{"+fct_orders"}}})))
	assert.Equal(t, []string{"model.shop.stg_customer_notes", "model.shop.stg_customers", "model.shop.stg_events", "model.shop.stg_orders", "model.shop.stg_payments"},
		models(plan(orchestrator.BuildOptions{Selection: selector.Options{Select: []string{"tag:staging"}}})))
	assert.Equal(t, []string{"model.shop.stg_customer_notes", "model.shop.stg_customers", "model.shop.stg_events"},
		models(plan(orchestrator.BuildOptions{Selection: selector.Options{Select: []string{"tag:staging"}, Exclude: []string{"stg_orders", "stg_payments"}}})))
	withTests := plan(orchestrator.BuildOptions{Selection: selector.Options{Select: []string{"+fct_orders"}}})
	assert.Contains(t, withTests, "unit_test.shop.fct_orders.fct_orders_sums_payments")
	assert.Contains(t, withTests, "test.shop.unique_fct_orders_order_id.523ddb6ce5")

	// Strategies: skip plans no tests; deferred puts them all in the last
	// wave; immediate interleaves them.
	for _, id := range plan(orchestrator.BuildOptions{Tests: manifest.SkipTests}) {
		assert.False(t, m.Lookup(id).IsTest(), id)
	}
	p, err := o.Plan(t.Context(), orchestrator.BuildOptions{Tests: manifest.Deferred})
	require.NoError(t, err)
	for w, wave := range p.Waves() {
		for _, id := range wave {
			assert.Equal(t, w == len(p.Waves())-1, m.Lookup(id).IsTest(), id)
		}
	}
	p, err = o.Plan(t.Context(), orchestrator.BuildOptions{})
	require.NoError(t, err)
	assert.Less(t, waveOf(p.Plan, "test.shop.unique_stg_orders_order_id.e3b841c71a"), waveOf(p.Plan, "model.shop.fct_orders"), "immediate: a model waits for its upstream's tests")
}

func TestShopPostgresConcurrency(t *testing.T) {
	if testing.Short() {
		t.Skip("real dbt: not in -short mode")
	}
	pg := dbttest.StartPostgres(t)
	s := newShop(t, 4, "pg", pg.Env()...)
	log := &eventLog{}
	o := s.orch(t, orchestrator.Config{Concurrency: 4, Observer: log})
	// Seeds and staging: five independent seeds, then five views and their
	// tests: plenty of room for four at once.
	run, err := o.RunBuild(t.Context(), orchestrator.BuildOptions{Selection: selector.Options{Select: []string{"resource_type:seed", "staging"}}})
	for _, r := range run.Results {
		if r.Err != nil {
			t.Logf("%s: %s: %s", r.UniqueID, r.Err.Kind, r.Err.Message)
		}
	}
	require.NoError(t, err)
	assert.Equal(t, len(run.Results), run.Count(orchestrator.Success))
	running, peak, overlaps := 0, 0, 0
	for _, e := range log.all() {
		switch e.Type {
		case orchestrator.NodeStarted:
			running++
			if running > 1 {
				overlaps++
			}
			peak = max(peak, running)
		case orchestrator.NodeFinished:
			if len(e.Result.Attempts) > 0 {
				running--
			}
		}
	}
	t.Logf("%d nodes, peak %d at once, %d starts while another ran", len(run.Results), peak, overlaps)
	assert.GreaterOrEqual(t, peak, 2, "at least two nodes overlapped")
	assert.LessOrEqual(t, peak, 4, "never more than four at once")
	assert.Equal(t, "5", strings.TrimSpace(pg.Query(t, "select count(*) from shop.customers")))
}
