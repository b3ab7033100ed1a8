package manifest_test

import (
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/dbtorch/dbtorch/manifest"
)

// kindsManifest is a project with every node kind dbt build reports: a
// UDF used by a model, a data test upstream of that model, a unit test of
// it, an exposure on it, and a saved query reading a metric of a semantic
// model of another model.
func kindsManifest() *manifest.Manifest {
	node := func(id string, rt manifest.ResourceType, deps ...string) *manifest.Node {
		return &manifest.Node{UniqueID: id, ResourceType: rt, Enabled: true, PackageName: "p", Path: id + ".sql",
			OriginalFilePath: "models/" + id + ".sql", Materialized: "table", RawCode: "select 1",
			DependsOn: manifest.DependsOn{Nodes: deps}}
	}
	m := &manifest.Manifest{Nodes: map[string]*manifest.Node{}, UnitTests: map[string]*manifest.Node{},
		Exposures: map[string]*manifest.Node{}, SavedQueries: map[string]*manifest.Node{}, Functions: map[string]*manifest.Node{},
		Metrics: map[string]*manifest.Node{}, SemanticModels: map[string]*manifest.Node{}}
	for _, n := range []*manifest.Node{
		node("seed.p.s", manifest.Seed),
		node("model.p.a", manifest.Model, "seed.p.s"),
		node("test.p.not_null_a", manifest.Test, "model.p.a"),
		node("model.p.b", manifest.Model, "model.p.a", "function.p.f"),
	} {
		m.Nodes[n.UniqueID] = n
	}
	m.Nodes["test.p.not_null_a"].AttachedNode = "model.p.a"
	f := node("function.p.f", manifest.Function)
	f.Materialized = "function"
	m.Functions[f.UniqueID] = f
	u := node("unit_test.p.b.u", manifest.UnitTest, "model.p.b")
	u.TestedNode = "model.p.b"
	m.UnitTests[u.UniqueID] = u
	m.Exposures["exposure.p.e"] = node("exposure.p.e", manifest.Exposure, "model.p.b")
	m.SemanticModels["semantic_model.p.sm"] = node("semantic_model.p.sm", manifest.SemanticModel, "model.p.a")
	m.Metrics["metric.p.m"] = node("metric.p.m", manifest.Metric, "semantic_model.p.sm")
	m.SavedQueries["saved_query.p.q"] = node("saved_query.p.q", manifest.SavedQuery, "metric.p.m")
	return m
}

// TestEveryNodeKindPlanned: a build plans what dbt build runs and
// reports (issue 13 point 3): the UDF before the model using it; the
// exposure and the saved query after their upstreams (traced through the
// metric and semantic model) though nothing executes them; the unit test
// after the model's upstream data test, as dbt build runs a unit test in
// its model's turn; and a unit test selected without its model plans
// nothing, as dbt build runs nothing ("Nothing to do").
func TestEveryNodeKindPlanned(t *testing.T) {
	g, err := manifest.NewGraph(kindsManifest())
	require.NoError(t, err)
	p := g.Plan(nil, manifest.Immediate)
	assert.ElementsMatch(t, []string{"function.p.f", "seed.p.s", "model.p.a", "test.p.not_null_a", "model.p.b",
		"unit_test.p.b.u", "exposure.p.e", "saved_query.p.q"}, p.Nodes())
	assert.Equal(t, []string{"function.p.f", "model.p.a", "test.p.not_null_a", "unit_test.p.b.u"}, p.UpstreamIDs("model.p.b"))
	assert.Equal(t, []string{"function.p.f", "model.p.a", "test.p.not_null_a"}, p.UpstreamIDs("unit_test.p.b.u"),
		"the unit test waits for its model's upstream data test")
	assert.Equal(t, []string{"model.p.b"}, p.UpstreamIDs("exposure.p.e"))
	assert.Equal(t, []string{"model.p.a"}, p.UpstreamIDs("saved_query.p.q"), "through the metric and the semantic model")
	for _, id := range []string{"exposure.p.e", "saved_query.p.q"} {
		assert.True(t, g.Node(id).NoOp(), id)
		assert.False(t, g.Node(id).Executable(), id)
	}
	assert.True(t, g.Node("function.p.f").Executable())

	assert.Zero(t, g.Plan([]string{"unit_test.p.b.u"}, manifest.Immediate).Len(), "a unit test alone")
	assert.Zero(t, g.Plan([]string{"unit_test.p.b.u"}, manifest.Deferred).Len(), "a unit test alone, deferred")
	assert.Equal(t, []string{"unit_test.p.b.u", "model.p.b"},
		g.Plan([]string{"unit_test.p.b.u", "model.p.b"}, manifest.Immediate).Nodes())
	// Of what the unit test waits for, only the planned nodes remain.
	assert.Equal(t, []string{"function.p.f"}, g.Plan([]string{"unit_test.p.b.u", "model.p.b", "function.p.f"}, manifest.Immediate).UpstreamIDs("unit_test.p.b.u"))
	// Under SkipTests the exposure still follows its model.
	assert.Equal(t, []string{"model.p.b"}, g.Plan(nil, manifest.SkipTests).UpstreamIDs("exposure.p.e"))
}
