package cache_test

import (
	"context"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
	"github.com/spf13/afero"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/dbtorch/dbtorch/cache"
	"github.com/dbtorch/dbtorch/cache/orchcache"
	"github.com/dbtorch/dbtorch/dbt"
	"github.com/dbtorch/dbtorch/executor"
	"github.com/dbtorch/dbtorch/internal/dbttest"
	"github.com/dbtorch/dbtorch/manifest"
	"github.com/dbtorch/dbtorch/orchestrator"
	"github.com/dbtorch/dbtorch/selector"
)

// recorder wraps an executor and records the nodes dbt reported a result
// for (from its run_results.json), that is, what dbt really ran.
type recorder struct {
	executor.Executor
	mu  sync.Mutex
	ran []string
}

func (r *recorder) Execute(ctx context.Context, req executor.Request) (*executor.Response, error) {
	resp, err := r.Executor.Execute(ctx, req)
	if resp != nil {
		r.mu.Lock()
		for _, res := range resp.Results {
			if res.DBTStatus != "" {
				r.ran = append(r.ran, res.UniqueID)
			}
		}
		r.mu.Unlock()
	}
	return resp, err
}

// ListRelations passes the executor's relation listing on, so that hits
// are confirmed as without the recorder.
func (r *recorder) ListRelations(ctx context.Context, schemas []executor.Schema) ([]executor.Relation, error) {
	return r.Executor.(executor.RelationLister).ListRelations(ctx, schemas)
}

func (r *recorder) take() []string {
	r.mu.Lock()
	defer r.mu.Unlock()
	out := slices.Sorted(slices.Values(r.ran))
	r.ran = nil
	return out
}

// shopBuild is one dbtorch build of a copy of the shop project with a
// cache in cacheDir.
type shopBuild struct {
	// reparse starts a new executor, which parses the project as it is
	// now; otherwise the previous one (and its manifest) is reused.
	reparse     bool
	vars        map[string]any
	target      string
	fullRefresh bool
	sel         []string
	freshness   *cache.Freshness
}

type shopHarness struct {
	t        *testing.T
	env      []string
	project  string
	cacheDir string
	dbt      string

	ex     *executor.Warm
	target string
	m      *manifest.Manifest
	g      *manifest.Graph
	// entries is the last build's namespace of the store.
	entries *cache.Store
}

// run builds the project with the cache and returns the run, the nodes
// dbt ran, and the wall time (including the parse when reparsing).
func (h *shopHarness) run(b shopBuild) (*orchestrator.Run, []string, time.Duration) {
	t := h.t
	t.Helper()
	ctx := t.Context()
	start := time.Now()
	if h.ex == nil || b.reparse || b.target != h.target {
		if h.ex != nil {
			h.ex.Close()
		}
		w, err := executor.NewWarm(executor.WarmConfig{
			Options: executor.Options{Project: dbt.Project{DBT: h.dbt, Dir: h.project, Env: h.env, Target: b.target},
				NoDeps: true,
			},
			Workers: 1,
		})
		require.NoError(t, err)
		t.Cleanup(func() { w.Close() })
		h.ex, h.target = w, b.target
		h.m, err = w.Manifest(ctx)
		require.NoError(t, err)
		h.g, err = manifest.NewGraph(h.m)
		require.NoError(t, err)
	}
	store := cache.NewStore(afero.NewOsFs(), h.cacheDir, cache.StoreOptions{})
	sess, err := cache.New(store, cache.Options{}).Open(h.m, h.g, cache.KeyConfig{
		Project: dbt.Project{Dir: h.project, Vars: b.vars, Target: targetName(b.target)}, CacheIncremental: true, CacheSnapshots: true, Freshness: b.freshness,
	})
	require.NoError(t, err)
	h.entries = sess.Store()
	rec := &recorder{Executor: h.ex}
	o, err := orchestrator.New(orchestrator.Config{Executor: rec, Manifest: h.m, Concurrency: 1, Vars: b.vars,
		Cache: orchcache.NewBuild(sess, orchcache.Options{Relations: rec})})
	require.NoError(t, err)
	run, err := o.RunBuild(ctx, orchestrator.BuildOptions{Tests: manifest.SkipTests, FullRefresh: b.fullRefresh,
		Selection: selector.Options{Select: b.sel}, OnlyFreshSources: b.freshness != nil})
	require.NoError(t, err)
	return run, rec.take(), time.Since(start)
}

func targetName(t string) string {
	if t == "" {
		return "dev"
	}
	return t
}

// statusSets splits a run's results into the ids that ran and were cached.
func statusSets(t *testing.T, run *orchestrator.Run) (ran, cached, skipped []string) {
	t.Helper()
	for _, r := range run.Results {
		switch r.Status {
		case orchestrator.Success:
			ran = append(ran, r.UniqueID)
		case orchestrator.Cached:
			cached = append(cached, r.UniqueID)
			assert.Regexp(t, `^[0-9a-f]{64}$`, r.CacheKey, r.UniqueID)
		case orchestrator.Skipped:
			skipped = append(skipped, r.UniqueID)
		default:
			t.Errorf("%s ended %s: %s", r.UniqueID, r.Status, r.Message)
		}
	}
	slices.Sort(ran)
	slices.Sort(cached)
	slices.Sort(skipped)
	return ran, cached, skipped
}

func edit(t *testing.T, path, old, new string) {
	t.Helper()
	data, err := os.ReadFile(path)
	require.NoError(t, err)
	require.Contains(t, string(data), old, path)
	require.NoError(t, os.WriteFile(path, []byte(strings.Replace(string(data), old, new, 1)), 0o644))
}

// TestCacheShop builds the shop project with real dbt on DuckDB again and
// again through the orchestrator, changing one ingredient at a time, and
// checks that dbt runs exactly the nodes whose inputs changed and their
// descendants (observed through dbt's own results), and nothing else.
func TestCacheShop(t *testing.T) {
	project := dbttest.CopyProject(t, "shop")
	env := dbttest.Env(t, project)
	out, err := dbttest.Run(t, project, env, "deps")
	require.NoError(t, err, out)
	// A second DuckDB target on the same file, for the target change.
	edit(t, filepath.Join(project, "profiles.yml"), "    pg:\n", `    dev2:
      type: duckdb
      path: "{{ env_var('DBTORCH_DUCKDB_PATH') }}"
      threads: 1
    pg:
`)
	h := &shopHarness{t: t, env: env, project: project, cacheDir: filepath.Join(t.TempDir(), "cache"), dbt: dbttest.DBT(t)}
	noVar := map[string]any{"broken_model": false}

	// Cold: everything runs.
	cold, coldRan, coldTime := h.run(shopBuild{})
	ran, cached, _ := statusSets(t, cold)
	require.Empty(t, cached)
	require.Equal(t, ran, coldRan, "dbt ran every planned node")
	all := ran
	t.Logf("cold build: %d nodes in %s", len(all), coldTime)

	// Unchanged: everything cached, dbt runs nothing.
	warm, warmRan, warmTime := h.run(shopBuild{})
	ran, cached, _ = statusSets(t, warm)
	assert.Empty(t, warmRan, "dbt invocations on an unchanged rerun")
	assert.Empty(t, ran)
	assert.Equal(t, all, cached)
	t.Logf("unchanged rerun: %s (cold %s)", warmTime, coldTime)

	eventsBranch := []string{"model.shop.stg_events", "model.shop.event_counts", "model.shop.flaky_events"}
	steps := []struct {
		name        string
		apply       func(t *testing.T) *cache.Freshness
		build       shopBuild
		want        []string
		wantSkipped []string
	}{
		{
			// Four edits whose reaches do not overlap.
			name: "an ephemeral model, a seed CSV, a package model's SQL, a corrupted entry",
			apply: func(t *testing.T) *cache.Freshness {
				edit(t, filepath.Join(project, "models/intermediate/int_order_payments.sql"), "select", "select /* edited */")
				edit(t, filepath.Join(project, "seeds/raw_events.csv"), "1,1,page_view,", "1,1,home_view,")
				edit(t, filepath.Join(project, "packages/shop_pkg/models/pkg_order_status_counts.sql"), "select", "select /* edited */")
				corrupt(t, h.entries, "snapshot.shop.orders_snapshot")
				return nil
			},
			build: shopBuild{reparse: true},
			want: []string{"model.shop.fct_orders", "model.shop.dim_customers.v1", "model.shop.dim_customers.v2",
				"model.shop.customer_revenue", "model.shop.revenue_by_segment",
				"seed.shop.raw_events", "model.shop.stg_events", "model.shop.event_counts", "model.shop.flaky_events",
				"model.shop_pkg.pkg_order_status_counts", "snapshot.shop.orders_snapshot"},
		},
		{
			// raw.events (rows from January 2024) is past error_after: what
			// reads it is skipped; the macro's edit runs what calls it.
			name: "a macro, and a stale source with only fresh sources",
			apply: func(t *testing.T) *cache.Freshness {
				// The warm worker holds the DuckDB file: stop it first.
				h.ex.Close()
				h.ex = nil
				f, err := cache.RunFreshness(t.Context(), cache.FreshnessOptions{Project: dbt.Project{DBT: h.dbt, Dir: project, Env: env,
					Vars: map[string]any{"events_warn_after_days": 1, "events_error_after_days": 2}}})
				require.NoError(t, err)
				s := f.Sources["source.shop.raw.events"]
				require.Equal(t, cache.StatusError, s.Status)
				require.True(t, time.Date(2024, 1, 8, 17, 45, 0, 0, time.UTC).Equal(s.MaxLoadedAt), "%s", s.MaxLoadedAt)
				edit(t, filepath.Join(project, "macros/cents_to_dollars.sql"), "100.0", "100.00")
				return f
			},
			build: shopBuild{reparse: true},
			want: []string{"model.shop.stg_payments", "model.shop.fct_orders", "model.shop.dim_customers.v1",
				"model.shop.dim_customers.v2", "model.shop.customer_revenue", "model.shop.revenue_by_segment",
				"model.shop.payments_incremental"},
			wantSkipped: eventsBranch,
		},
		{
			name:  "a var",
			build: shopBuild{vars: noVar},
			want:  []string{"model.shop.customer_revenue", "model.shop.revenue_by_segment"},
		},
		{
			name:  "the target",
			build: shopBuild{vars: noVar, target: "dev2", sel: []string{"stg_events+"}},
			want:  eventsBranch,
		},
		{
			name:  "full refresh",
			build: shopBuild{vars: noVar, target: "dev2", sel: []string{"stg_events+"}, fullRefresh: true},
			want:  eventsBranch,
		},
	}
	for _, st := range steps {
		t.Run(st.name, func(t *testing.T) {
			b := st.build
			if st.apply != nil {
				b.freshness = st.apply(t)
			}
			before := time.Now()
			run, dbtRan, took := h.run(b)
			ran, _, skipped := statusSets(t, run)
			slices.Sort(st.want)
			if diff := cmp.Diff(st.want, ran); diff != "" {
				t.Errorf("nodes run (-want +got):\n%s", diff)
			}
			if diff := cmp.Diff(st.want, dbtRan); diff != "" {
				t.Errorf("nodes dbt ran (-want +got):\n%s", diff)
			}
			slices.Sort(st.wantSkipped)
			if diff := cmp.Diff(st.wantSkipped, skipped); diff != "" {
				t.Errorf("nodes skipped (-want +got):\n%s", diff)
			}
			for _, id := range skipped {
				assert.Contains(t, run.Result(id).SkipReason, "source.shop.raw.events", id)
			}
			// What ran has a fresh entry (full refresh included).
			store := h.entries
			for _, id := range ran {
				e, err := store.Get(t.Context(), id)
				require.NoError(t, err, id)
				assert.False(t, e.Created.Before(before.Truncate(time.Second)), "%s entry written %s, before the build", id, e.Created)
				assert.Equal(t, run.Result(id).CacheKey, e.Key, id)
			}
			t.Logf("%s: %s", st.name, took)
		})
	}
}

// corrupt truncates the cache entry of id.
func corrupt(t *testing.T, store *cache.Store, id string) {
	t.Helper()
	path := store.Path(id)
	data, err := os.ReadFile(path)
	require.NoError(t, err)
	require.NoError(t, os.WriteFile(path, data[:len(data)/2], 0o644))
}
