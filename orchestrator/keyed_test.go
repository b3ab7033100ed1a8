package orchestrator_test

import (
	"context"
	"sync"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/dbtorch/dbtorch/manifest"
	"github.com/dbtorch/dbtorch/orchestrator"
)

// TestRelationLocksAcrossBuilds runs two builds of the same models at
// once on two orchestrators sharing a Registry's relation locks: no
// relation is built by both at the same time, and the waiting shows as
// WaitTime. Without the locks every model's two calls overlap.
func TestRelationLocksAcrossBuilds(t *testing.T) {
	for _, mode := range []orchestrator.Mode{orchestrator.PerNode, orchestrator.PerWave} {
		t.Run(mode.String(), func(t *testing.T) {
			const models = 4
			scripts := map[string]script{}
			for i := range models {
				scripts[modelID(i)] = script{dur: 30 * time.Millisecond}
			}
			fake := newFake(scripts)
			reg := &orchestrator.Registry{}
			runs := twoBuilds(t, orchestrator.Config{Executor: fake, Manifest: manifestOf(dagSpec{models: models}), Mode: mode,
				Concurrency: models, Limits: []orchestrator.NodeLimit{reg.RelationLocks()}})
			for id, calls := range fake.byNode() {
				require.Len(t, calls, 2, id)
				a, b := calls[0], calls[1]
				assert.True(t, !a.end.After(b.start) || !b.end.After(a.start),
					"%s built by both builds at once: %v-%v and %v-%v", id, a.start, a.end, b.start, b.end)
			}
			waited := time.Duration(0)
			for _, run := range runs {
				for _, r := range run.Results {
					waited += r.WaitTime
				}
			}
			assert.GreaterOrEqual(t, waited, models*20*time.Millisecond, "the later build's nodes waited for the relations")
		})
	}
}

// twoBuilds runs two builds at once on two orchestrators made from cfg
// (sharing its executor, cache and limits) and returns their runs.
func twoBuilds(t *testing.T, cfg orchestrator.Config) []*orchestrator.Run {
	t.Helper()
	runs := make([]*orchestrator.Run, 2)
	var wg sync.WaitGroup
	for b := range runs {
		o := newOrch(t, cfg)
		wg.Go(func() {
			run, err := o.RunBuild(context.Background(), orchestrator.BuildOptions{})
			assert.NoError(t, err)
			runs[b] = run
		})
	}
	wg.Wait()
	for _, run := range runs {
		require.NotNil(t, run)
	}
	return runs
}

// TestRelationKey covers which nodes write a relation and its key.
func TestRelationKey(t *testing.T) {
	for _, c := range []struct {
		n    manifest.Node
		want string
	}{
		{manifest.Node{ResourceType: manifest.Model, RelationName: `"DB"."main"."Orders"`}, `"db"."main"."orders"`},
		{manifest.Node{ResourceType: manifest.Seed, Database: "db", Schema: "s", Name: "raw"}, "db.s.raw"},
		{manifest.Node{ResourceType: manifest.Snapshot, Schema: "s", Name: "snap", Alias: "snap_v2"}, "s.snap_v2"},
		{manifest.Node{ResourceType: manifest.Model, Materialized: "ephemeral", Name: "e"}, ""},
		{manifest.Node{ResourceType: manifest.Test, RelationName: "x.y.z"}, ""},
		{manifest.Node{ResourceType: manifest.Model}, ""},
	} {
		assert.Equal(t, c.want, orchestrator.RelationKey(&c.n), "%+v", c.n)
	}
}

func TestDeclaredLimits(t *testing.T) {
	node := func(meta any, tags ...string) *manifest.Node {
		cfg := map[string]any{"materialized": "table"}
		if meta != nil {
			cfg["meta"] = meta
		}
		return &manifest.Node{UniqueID: "model.p.m", ResourceType: manifest.Model, Tags: tags, Config: manifest.NewConfig(cfg)}
	}
	for name, c := range map[string]struct {
		n       *manifest.Node
		want    []string
		wantErr string
	}{
		"none":          {n: node(nil)},
		"other meta":    {n: node(map[string]any{"owner": "x"})},
		"list":          {n: node(map[string]any{"dbtorch": map[string]any{"limits": []any{"snowflake_wh", "api"}}}), want: []string{"snowflake_wh", "api"}},
		"one name":      {n: node(map[string]any{"dbtorch": map[string]any{"limits": "snowflake_wh"}}), want: []string{"snowflake_wh"}},
		"no limits key": {n: node(map[string]any{"dbtorch": map[string]any{}})},
		"not a mapping": {n: node(map[string]any{"dbtorch": "x"}), wantErr: "model.p.m: config.meta.dbtorch must be a mapping"},
		"number":        {n: node(map[string]any{"dbtorch": map[string]any{"limits": 3}}), wantErr: "model.p.m: config.meta.dbtorch.limits must be a list"},
		"list of junk":  {n: node(map[string]any{"dbtorch": map[string]any{"limits": []any{"a", 1}}}), wantErr: "model.p.m: config.meta.dbtorch.limits must list limit names"},
	} {
		got, err := orchestrator.DeclaredLimits(c.n)
		if c.wantErr != "" {
			assert.ErrorContains(t, err, c.wantErr, name)
			continue
		}
		assert.NoError(t, err, name)
		assert.Equal(t, c.want, got, name)
	}

	wh := orchestrator.DeclaredBy("snowflake_wh")
	assert.True(t, wh(node(map[string]any{"dbtorch": map[string]any{"limits": []any{"snowflake_wh"}}})), "declared in meta")
	assert.True(t, wh(node(nil, "nightly", "snowflake_wh")), "tagged")
	assert.False(t, wh(node(map[string]any{"dbtorch": map[string]any{"limits": []any{"api"}}}, "nightly")), "another limit")

	m := &manifest.Manifest{Nodes: map[string]*manifest.Node{
		"model.p.a": {UniqueID: "model.p.a", Config: manifest.NewConfig(map[string]any{"meta": map[string]any{"dbtorch": map[string]any{"limits": []any{"wh", "api"}}}})},
		"model.p.b": {UniqueID: "model.p.b", Config: manifest.NewConfig(map[string]any{"meta": map[string]any{"dbtorch": map[string]any{"limits": "api"}}})},
	}}
	unknown, err := orchestrator.CheckDeclaredLimits(m, []string{"wh"})
	require.NoError(t, err)
	assert.Equal(t, map[string]string{"api": "model.p.a"}, unknown)
	m.Nodes["model.p.c"] = &manifest.Node{UniqueID: "model.p.c", Config: manifest.NewConfig(map[string]any{"meta": map[string]any{"dbtorch": []any{}}})}
	_, err = orchestrator.CheckDeclaredLimits(m, []string{"wh"})
	assert.ErrorContains(t, err, "model.p.c")
}

// TestDeclaredLimitApplies shows a limit declared by a node's meta bounds
// only the nodes that declare it.
func TestDeclaredLimitApplies(t *testing.T) {
	const models = 6
	scripts := map[string]script{}
	for i := range models {
		scripts[modelID(i)] = script{dur: 15 * time.Millisecond}
	}
	fake := newFake(scripts)
	m := manifestOf(dagSpec{models: models})
	for i := range models {
		if i%2 == 0 {
			m.Nodes[modelID(i)].Config = manifest.NewConfig(map[string]any{"meta": map[string]any{"dbtorch": map[string]any{"limits": []any{"wh"}}}})
		}
	}
	wh := &countingLimiter{inner: orchestrator.NewLimiter(1)}
	o := newOrch(t, orchestrator.Config{Executor: fake, Manifest: m, Concurrency: models,
		Limits: []orchestrator.NodeLimit{{Name: "wh", Limiter: wh, Applies: orchestrator.DeclaredBy("wh")}}})
	_, err := o.RunBuild(context.Background(), orchestrator.BuildOptions{})
	require.NoError(t, err)
	assert.Equal(t, int64(1), wh.peak.Load())
	assert.Equal(t, int64(models/2+1), fake.peak.Load(), "the undeclared nodes ran beside the one declared node at a time")
}

// TestRelationLockServesFromCache runs two builds of the same models at
// once with one cache and shared relation locks: a node that waited for
// the other build to write its relation is served from the cache entry
// that build recorded, so each model runs once. Without the lookup after
// the lock every model runs twice. (The models are independent: a node
// whose upstream was built, not cached, in its own build is never looked
// up, so it runs again after the wait.)
func TestRelationLockServesFromCache(t *testing.T) {
	const models = 3
	scripts := map[string]script{}
	for i := range models {
		scripts[modelID(i)] = script{dur: 20 * time.Millisecond}
	}
	fake := newFake(scripts)
	reg := &orchestrator.Registry{}
	runs := twoBuilds(t, orchestrator.Config{Executor: fake, Manifest: manifestOf(dagSpec{models: models}), Cache: newMapCache(),
		Limits: []orchestrator.NodeLimit{reg.RelationLocks()}})
	for id, calls := range fake.byNode() {
		assert.Len(t, calls, 1, "%s built once", id)
	}
	cached := 0
	for _, run := range runs {
		for _, r := range run.Results {
			if r.Status == orchestrator.Cached {
				cached++
				assert.Positive(t, r.WaitTime, "%s waited for the other build", r.UniqueID)
			}
		}
	}
	assert.Equal(t, models, cached)
}
