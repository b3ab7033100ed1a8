package orchcache_test

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
	"github.com/spf13/afero"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/dbtorch/dbtorch/artifacts"
	"github.com/dbtorch/dbtorch/cache"
	"github.com/dbtorch/dbtorch/cache/orchcache"
	"github.com/dbtorch/dbtorch/dbt"
	"github.com/dbtorch/dbtorch/executor"
	"github.com/dbtorch/dbtorch/manifest"
	"github.com/dbtorch/dbtorch/orchestrator"
)

// fakeExec succeeds for every node except those in fail, and records what
// it ran.
type fakeExec struct {
	mu   sync.Mutex
	ran  []string
	fail map[string]bool
	// dropped are relations missing from the warehouse (ListRelations).
	dropped map[string]bool
	built   map[string]bool
	lists   int
}

// ListRelations lists the relations of the nodes it built, but those
// dropped.
func (f *fakeExec) ListRelations(context.Context, []executor.Schema) ([]executor.Relation, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.lists++
	var out []executor.Relation
	for name := range f.built {
		if !f.dropped[name] {
			out = append(out, executor.Relation{Name: name})
		}
	}
	return out, nil
}

func (f *fakeExec) Execute(_ context.Context, req executor.Request) (*executor.Response, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	resp := &executor.Response{}
	for _, n := range req.Nodes {
		f.ran = append(f.ran, n.UniqueID)
		if f.built == nil {
			f.built = map[string]bool{}
		}
		f.built[n.Name] = true
		r := executor.Result{UniqueID: n.UniqueID, Status: executor.Success, DBTStatus: "success", Message: "OK"}
		if n.IsTest() {
			r.DBTStatus = "pass"
		}
		if f.fail[n.UniqueID] {
			r.Status, r.DBTStatus, r.Kind, r.Message = executor.Error, "error", executor.KindDatabase, "boom"
		}
		resp.Results = append(resp.Results, r)
	}
	return resp, nil
}

func (f *fakeExec) take() []string {
	f.mu.Lock()
	defer f.mu.Unlock()
	out := slices.Sorted(slices.Values(f.ran))
	f.ran = nil
	return out
}

// project: seed s -> source src (freshness) -> a -> b ; seed s -> c -> d ;
// test on a; source crm (no freshness) -> e.
func project(t *testing.T) (*manifest.Manifest, *manifest.Graph) {
	t.Helper()
	node := func(id, rt, mat string, deps ...string) string {
		d := `"` + strings.Join(deps, `","`) + `"`
		if len(deps) == 0 {
			d = ""
		}
		return fmt.Sprintf(`%q: {"unique_id": %q, "resource_type": %q, "name": %q, "package_name": "p",
			"path": "x", "original_file_path": "x", "raw_code": "select 1 -- %s",
			"checksum": {"name": "sha256", "checksum": "%064d"}, "config": {"materialized": %q},
			"relation_name": "r_%s", "depends_on": {"nodes": [%s], "macros": []}}`,
			id, id, rt, id[strings.LastIndex(id, ".")+1:], id, 0, mat, id, d)
	}
	doc := `{"metadata": {"dbt_schema_version": "https://schemas.getdbt.com/dbt/manifest/v12.json", "adapter_type": "duckdb", "project_name": "p"},
	"nodes": {` + strings.Join([]string{
		node("seed.p.s", "seed", "seed"),
		node("model.p.a", "model", "table", "source.p.raw.src", "seed.p.s"),
		node("model.p.b", "model", "view", "model.p.a"),
		node("model.p.c", "model", "table", "seed.p.s"),
		node("model.p.d", "model", "table", "model.p.c"),
		node("model.p.e", "model", "table", "source.p.crm.notes"),
		node("test.p.t", "test", "test", "model.p.a"),
	}, ",") + `},
	"sources": {
		"source.p.raw.src": {"unique_id": "source.p.raw.src", "resource_type": "source", "name": "src", "source_name": "raw",
			"package_name": "p", "path": "s.yml", "original_file_path": "s.yml", "relation_name": "raw_src",
			"loaded_at_field": "at", "freshness": {"warn_after": {"count": 6, "period": "hour"}, "error_after": {"count": 12, "period": "hour"}}},
		"source.p.crm.notes": {"unique_id": "source.p.crm.notes", "resource_type": "source", "name": "notes", "source_name": "crm",
			"package_name": "p", "path": "s.yml", "original_file_path": "s.yml", "relation_name": "crm_notes"}
	}}`
	m, err := manifest.Parse([]byte(doc))
	require.NoError(t, err)
	g, err := manifest.NewGraph(m)
	require.NoError(t, err)
	return m, g
}

var snap = time.Date(2026, 6, 1, 12, 0, 0, 0, time.UTC)

func freshness(t *testing.T, loadedAgo time.Duration, status string) *cache.Freshness {
	t.Helper()
	doc := fmt.Sprintf(`{"metadata": {"dbt_schema_version": "https://schemas.getdbt.com/dbt/sources/v3.json"},
	"results": [{"unique_id": "source.p.raw.src", "status": %q, "max_loaded_at": %q, "snapshotted_at": %q,
	"criteria": {"warn_after": {"count": 6, "period": "hour"}, "error_after": {"count": 12, "period": "hour"}}}]}`,
		status, snap.Add(-loadedAgo).Format(time.RFC3339), snap.Format(time.RFC3339))
	f, err := cache.ParseSources(strings.NewReader(doc))
	require.NoError(t, err)
	return f
}

type harness struct {
	t     *testing.T
	m     *manifest.Manifest
	g     *manifest.Graph
	store *cache.Store
	ex    *fakeExec
	clock time.Time
}

func newHarness(t *testing.T) *harness {
	m, g := project(t)
	h := &harness{t: t, m: m, g: g, ex: &fakeExec{}, clock: snap}
	h.store = cache.NewStore(afero.NewMemMapFs(), "cache", cache.StoreOptions{Now: func() time.Time { return h.clock }})
	return h
}

type buildOpts struct {
	fresh     *cache.Freshness
	freshErr  error
	onlyFresh bool
	full      bool
}

// entries is the store's namespace of the harness's project.
func (h *harness) entries() *cache.Store {
	h.t.Helper()
	sess, err := cache.New(h.store, cache.Options{}).Open(h.m, h.g, cache.KeyConfig{Project: dbt.Project{Target: "dev"}})
	require.NoError(h.t, err)
	return sess.Store()
}

func (h *harness) build(o buildOpts) (*orchestrator.Run, []string) {
	t := h.t
	t.Helper()
	now := func() time.Time { return h.clock }
	sess, err := cache.New(h.store, cache.Options{Now: now}).Open(h.m, h.g, cache.KeyConfig{Freshness: o.fresh, Project: dbt.Project{Target: "dev"}})
	require.NoError(t, err)
	orch, err := orchestrator.New(orchestrator.Config{Executor: h.ex, Manifest: h.m, Now: now,
		Cache: orchcache.NewBuild(sess, orchcache.Options{FreshnessErr: o.freshErr, Relations: h.ex})})
	require.NoError(t, err)
	run, err := orch.RunBuild(context.Background(), orchestrator.BuildOptions{OnlyFreshSources: o.onlyFresh, FullRefresh: o.full})
	var be *orchestrator.BuildError
	if err != nil && !errors.As(err, &be) {
		require.NoError(t, err)
	}
	return run, h.ex.take()
}

func byStatus(run *orchestrator.Run, s orchestrator.Status) []string {
	var out []string
	for _, r := range run.Results {
		if r.Status == s {
			out = append(out, r.UniqueID)
		}
	}
	slices.Sort(out)
	return out
}

func TestFreshnessThroughOrchestrator(t *testing.T) {
	h := newHarness(t)
	models := []string{"model.p.a", "model.p.b", "model.p.c", "model.p.d", "model.p.e", "seed.p.s"}

	// Loaded 2h before the snapshot: everything runs, entries downstream
	// of the source expire when it crosses warn_after (4h later).
	recent := freshness(t, 2*time.Hour, "pass")
	_, ran := h.build(buildOpts{fresh: recent, onlyFresh: true})
	assert.Equal(t, append(slices.Clone(models), "test.p.t"), ran)
	for _, id := range []string{"model.p.a", "model.p.b"} {
		e, err := h.entries().Get(context.Background(), id)
		require.NoError(t, err)
		assert.Equal(t, snap.Add(4*time.Hour), e.Expires, id)
	}
	e, err := h.entries().Get(context.Background(), "model.p.c")
	require.NoError(t, err)
	assert.True(t, e.Expires.IsZero(), "c reads no source with freshness")

	// Same snapshot, 3h59m later: all cached, the test too (what it
	// tests was served from the cache).
	h.clock = snap.Add(4*time.Hour - time.Minute)
	run, ran := h.build(buildOpts{fresh: recent, onlyFresh: true})
	assert.Empty(t, ran)
	assert.Equal(t, append(slices.Clone(models), "test.p.t"), byStatus(run, orchestrator.Cached))

	// At 4h the source's entries have expired: a and b run again.
	h.clock = snap.Add(4 * time.Hour)
	_, ran = h.build(buildOpts{fresh: recent, onlyFresh: true})
	assert.Equal(t, []string{"model.p.a", "model.p.b", "test.p.t"}, ran)

	// New data (a later max_loaded_at) changes a's and b's keys only.
	h.clock = snap.Add(time.Hour)
	newer := freshness(t, time.Hour, "pass")
	_, ran = h.build(buildOpts{fresh: newer, onlyFresh: true})
	assert.Equal(t, []string{"model.p.a", "model.p.b", "test.p.t"}, ran)

	// Loaded 13h ago: stale. a, its test and b are skipped, with the
	// reason; the rest is cached.
	stale := freshness(t, 13*time.Hour, "error")
	run, ran = h.build(buildOpts{fresh: stale, onlyFresh: true})
	assert.Empty(t, ran)
	assert.Equal(t, []string{"model.p.a", "model.p.b", "test.p.t"}, byStatus(run, orchestrator.Skipped))
	assert.Contains(t, run.Result("model.p.a").SkipReason, "stale source: source.p.raw.src (error)")
	assert.Contains(t, run.Result("model.p.b").SkipReason, "source.p.raw.src")

	// Without OnlyFreshSources, stale data still runs, and its result is
	// not stored (it would be expired already).
	_, ran = h.build(buildOpts{fresh: stale})
	assert.Equal(t, []string{"model.p.a", "model.p.b", "test.p.t"}, ran)
	_, err = h.entries().Get(context.Background(), "model.p.a")
	assert.Error(t, err, "no entry for a result built on stale data")

	// Freshness unavailable: fail open, everything runs, nothing skipped.
	run, ran = h.build(buildOpts{freshErr: errors.New("dbt source freshness: exit 2"), onlyFresh: true})
	assert.Equal(t, append(slices.Clone(models), "test.p.t"), ran)
	assert.Empty(t, byStatus(run, orchestrator.Skipped))
	require.Len(t, run.Warnings, 1, "the failure is in the result, not only the log")
	assert.Contains(t, run.Warnings[0], "source freshness unavailable")
	assert.Contains(t, run.Warnings[0], "exit 2")
	assert.Equal(t, run.Warnings, artifacts.ResultsJSON(run).Warnings)

	// With freshness read, no warning.
	run, _ = h.build(buildOpts{fresh: recent, onlyFresh: true})
	assert.Empty(t, run.Warnings)
}

func TestRecordAndFullRefresh(t *testing.T) {
	h := newHarness(t)
	_, ran := h.build(buildOpts{})
	require.Len(t, ran, 7)

	// c fails: it and d (downstream) have no entry afterwards; a failed
	// node leaves no entry even if it had one.
	h.ex.fail = map[string]bool{"model.p.c": true}
	run, ran := h.build(buildOpts{full: true})
	assert.Len(t, ran, 6, "full refresh runs everything (d is skipped)")
	assert.Equal(t, []string{"model.p.c"}, byStatus(run, orchestrator.Error))
	_, err := h.entries().Get(context.Background(), "model.p.c")
	assert.Error(t, err)
	_, err = h.entries().Get(context.Background(), "model.p.d")
	assert.NoError(t, err, "d did not run; its old entry stays but c must run first")

	h.ex.fail = nil
	run, ran = h.build(buildOpts{})
	assert.Equal(t, []string{"model.p.c", "model.p.d"}, ran, "c missing; d runs because c ran")
	assert.Equal(t, []string{"model.p.a", "model.p.b", "model.p.e", "seed.p.s", "test.p.t"}, byStatus(run, orchestrator.Cached))
}

// TestPlanReasons: the orchestrator's plan predicts, with the cache's
// reasons, what a build then does; a changed input is named.
func TestPlanReasons(t *testing.T) {
	h := newHarness(t)
	ctx := context.Background()
	plan := func() *orchestrator.BuildPlan {
		t.Helper()
		sess, err := cache.New(h.store, cache.Options{}).Open(h.m, h.g, cache.KeyConfig{Project: dbt.Project{Target: "dev"}})
		require.NoError(t, err)
		orch, err := orchestrator.New(orchestrator.Config{Executor: h.ex, Manifest: h.m, Cache: orchcache.NewBuild(sess, orchcache.Options{Relations: h.ex})})
		require.NoError(t, err)
		bp, err := orch.Plan(ctx, orchestrator.BuildOptions{})
		require.NoError(t, err)
		return bp
	}
	assert.Equal(t, map[string]string{
		"seed.p.s": cache.ReasonNoEntry, "model.p.a": "upstream ran: seed.p.s", "model.p.b": "upstream ran: model.p.a",
		"model.p.c": "upstream ran: seed.p.s", "model.p.d": "upstream ran: model.p.c", "model.p.e": cache.ReasonNoEntry,
		"test.p.t": "upstream ran: model.p.a",
	}, plan().Reasons)
	h.build(buildOpts{})
	// c's code changes: c misses naming its code, d is downstream of a
	// node that runs.
	h.m.Lookup("model.p.c").RawCode = "select 2"
	got := plan()
	want := map[string]string{
		"seed.p.s": orchcache.ReasonHit, "model.p.a": orchcache.ReasonHit, "model.p.b": orchcache.ReasonHit,
		"model.p.c": "key changed: code", "model.p.d": "upstream ran: model.p.c", "model.p.e": orchcache.ReasonHit,
		"test.p.t": cache.ReasonHit,
	}
	if diff := cmp.Diff(want, got.Reasons); diff != "" {
		t.Errorf("reasons (-want +got):\n%s", diff)
	}
	run, _ := h.build(buildOpts{})
	for id, why := range got.Reasons {
		assert.Equal(t, why, run.Result(id).CacheReason, id)
		assert.Equal(t, slices.Contains(got.Cached, id), run.Result(id).Status == orchestrator.Cached, id)
	}
}

func TestSessionPrune(t *testing.T) {
	h := newHarness(t)
	ctx := context.Background()
	h.build(buildOpts{})
	require.NoError(t, h.entries().Put(ctx, &cache.Entry{Key: strings.Repeat("a", 64), NodeID: "model.p.deleted"}))
	sess, err := cache.New(h.store, cache.Options{}).Open(h.m, h.g, cache.KeyConfig{Project: dbt.Project{Target: "dev"}})
	require.NoError(t, err)
	n, err := sess.Prune(ctx)
	require.NoError(t, err)
	assert.Equal(t, 1, n)
	_, err = h.entries().Get(ctx, "model.p.deleted")
	assert.Error(t, err)
	_, err = h.entries().Get(ctx, "model.p.a")
	assert.NoError(t, err)
}

// TestVarsPerBuild: one Cache and one orchestrator serve builds with
// different vars; a node that reads a var misses when the build's value
// changes (and its descendant runs), the rest stays cached.
func TestVarsPerBuild(t *testing.T) {
	h := newHarness(t)
	h.m.Lookup("model.p.c").RawCode = "select '{{ var(\"region\") }}' as region"
	g, err := manifest.NewGraph(h.m)
	require.NoError(t, err)
	h.g = g
	c := orchcache.New(h.store, orchcache.Options{Project: dbt.Project{Target: "dev", Vars: dbt.Vars{"base": 1}}})
	orch, err := orchestrator.New(orchestrator.Config{Executor: h.ex, Manifest: h.m, Cache: c})
	require.NoError(t, err)
	ctx := context.Background()
	build := func(vars map[string]any) *orchestrator.Run {
		t.Helper()
		run, err := orch.RunBuild(ctx, orchestrator.BuildOptions{Vars: vars})
		require.NoError(t, err)
		return run
	}

	eu := build(map[string]any{"region": "eu"})
	assert.Len(t, h.ex.take(), 7)
	run := build(map[string]any{"region": "eu"})
	assert.Empty(t, h.ex.take(), "same vars: all cached, the test too")
	assert.Equal(t, eu.Result("model.p.c").CacheKey, run.Result("model.p.c").CacheKey)

	us := build(map[string]any{"region": "us"})
	assert.Equal(t, []string{"model.p.c", "model.p.d"}, h.ex.take(), "c reads the changed var; d is downstream; the test of a stays cached")
	assert.NotEqual(t, eu.Result("model.p.c").CacheKey, us.Result("model.p.c").CacheKey)
	assert.Equal(t, eu.Result("model.p.a").CacheKey, us.Result("model.p.a").CacheKey, "a reads no var")

	// The build's vars are merged over the session's: the same key as a
	// session opened with both.
	both, err := cache.New(h.store, cache.Options{}).Open(h.m, h.g, cache.KeyConfig{Project: dbt.Project{Target: "dev", Vars: dbt.Vars{"base": 1, "region": "us"}}})
	require.NoError(t, err)
	want, err := both.Key("model.p.c")
	require.NoError(t, err)
	assert.Equal(t, want, us.Result("model.p.c").CacheKey)
}

// TestRelationConfirmed: a hit is confirmed against the warehouse, with
// one listing per build. A relation dropped outside dbt is rebuilt (and
// what reads it); an executor that cannot list relations makes every hit
// impossible and the build says so.
func TestRelationConfirmed(t *testing.T) {
	h := newHarness(t)
	h.build(buildOpts{})
	h.ex.lists = 0
	run, ran := h.build(buildOpts{})
	assert.Empty(t, ran)
	assert.Equal(t, 1, h.ex.lists, "one listing per build")
	assert.Equal(t, orchcache.ReasonHit, run.Result("model.p.a").CacheReason)

	h.ex.dropped = map[string]bool{"c": true}
	run, ran = h.build(buildOpts{})
	assert.Equal(t, []string{"model.p.c", "model.p.d"}, ran, "c was dropped: rebuilt, and d downstream")
	assert.Equal(t, orchcache.ReasonRelationMissing, run.Result("model.p.c").CacheReason)
	assert.Equal(t, "upstream ran: model.p.c", run.Result("model.p.d").CacheReason)
	h.ex.dropped = nil

	// No lister: nothing served, one warning.
	sess, err := cache.New(h.store, cache.Options{}).Open(h.m, h.g, cache.KeyConfig{Project: dbt.Project{Target: "dev"}})
	require.NoError(t, err)
	orch, err := orchestrator.New(orchestrator.Config{Executor: struct{ executor.Executor }{h.ex}, Manifest: h.m,
		Cache: orchcache.NewBuild(sess, orchcache.Options{})})
	require.NoError(t, err)
	run, err = orch.RunBuild(context.Background(), orchestrator.BuildOptions{})
	require.NoError(t, err)
	assert.Len(t, h.ex.take(), 7)
	require.Len(t, run.Warnings, 1)
	assert.Contains(t, run.Warnings[0], "cannot list the warehouse's relations")
	assert.Equal(t, orchcache.ReasonRelationUnchecked, run.Result("seed.p.s").CacheReason)

	// A plan without a lister (dbtorch plan) predicts the hits, saying
	// that their relations were not checked.
	orch, err = orchestrator.New(orchestrator.Config{Executor: struct{ executor.Executor }{h.ex}, Manifest: h.m,
		Cache: orchcache.New(h.store, orchcache.Options{Project: dbt.Project{Target: "dev"}, PredictUnchecked: true})})
	require.NoError(t, err)
	plan, err := orch.Plan(context.Background(), orchestrator.BuildOptions{})
	require.NoError(t, err)
	assert.Len(t, plan.Cached, plan.Len())
	assert.Equal(t, orchcache.ReasonHitUnchecked, plan.Reasons["seed.p.s"])
	require.Len(t, plan.Warnings, 1)
	assert.Contains(t, plan.Warnings[0], "relations not checked")
	assert.Empty(t, h.ex.take())

	// Through New, the executor's lister is found (BuildInfo.Relations).
	orch, err = orchestrator.New(orchestrator.Config{Executor: h.ex, Manifest: h.m,
		Cache: orchcache.New(h.store, orchcache.Options{Project: dbt.Project{Target: "dev"}})})
	require.NoError(t, err)
	run, err = orch.RunBuild(context.Background(), orchestrator.BuildOptions{})
	require.NoError(t, err)
	assert.Empty(t, h.ex.take())
	assert.Empty(t, run.Warnings)
}
