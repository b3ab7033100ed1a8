package orchestrator

import (
	"context"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/dbtorch/dbtorch/executor"
	"github.com/dbtorch/dbtorch/manifest"
	"github.com/dbtorch/dbtorch/selector"
)

type nopExec struct{}

func (nopExec) Execute(context.Context, executor.Request) (*executor.Response, error) {
	return nil, nil
}

// oneModel returns the graph of a project with the single model name.
func oneModel(t *testing.T, name string) *manifest.Graph {
	t.Helper()
	id := "model.p." + name
	m := &manifest.Manifest{Nodes: map[string]*manifest.Node{id: {
		UniqueID: id, Name: name, ResourceType: manifest.Model, PackageName: "p",
		Path: name + ".sql", OriginalFilePath: "models/" + name + ".sql", Materialized: "table",
		Enabled: true, RawCode: "select 1", FQN: []string{"p", name},
	}}}
	g, err := manifest.NewGraph(m)
	require.NoError(t, err)
	return g
}

// TestNativeResolverPerGraph: the native selector answers over the graph
// it is given, not over the first graph the orchestrator resolved on.
func TestNativeResolverPerGraph(t *testing.T) {
	ga, gb := oneModel(t, "a"), oneModel(t, "b")
	o, err := New(Config{Executor: nopExec{}, Manifest: ga.Manifest()})
	require.NoError(t, err)
	ctx := context.Background()
	for _, tc := range []struct {
		g    *manifest.Graph
		sel  string
		want []string
	}{
		{ga, "a", []string{"model.p.a"}},
		{gb, "b", []string{"model.p.b"}},
		{gb, "a", nil},
		{ga, "a", []string{"model.p.a"}},
	} {
		ids, err := o.resolve(ctx, tc.g, selector.Options{Select: []string{tc.sel}})
		require.NoError(t, err)
		assert.ElementsMatch(t, tc.want, ids, "select %s over %s", tc.sel, tc.g.Manifest().Nodes)
	}
}
