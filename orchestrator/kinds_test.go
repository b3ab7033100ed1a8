package orchestrator_test

import (
	"context"
	"fmt"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/dbtorch/dbtorch/executor"
	"github.com/dbtorch/dbtorch/manifest"
	"github.com/dbtorch/dbtorch/orchestrator"
)

// kindsManifest: a UDF used by model b, b's exposure, and a saved query
// reading a metric of a semantic model of model a; b depends on a.
func kindsManifest() *manifest.Manifest {
	node := func(id string, rt manifest.ResourceType, deps ...string) *manifest.Node {
		return &manifest.Node{UniqueID: id, Name: id, ResourceType: rt, Enabled: true, PackageName: "p", Path: id + ".sql",
			OriginalFilePath: "models/" + id + ".sql", Materialized: "table", RawCode: "select 1", FQN: []string{"p", id},
			DependsOn: manifest.DependsOn{Nodes: deps}}
	}
	m := &manifest.Manifest{Nodes: map[string]*manifest.Node{
		"model.p.a": node("model.p.a", manifest.Model),
		"model.p.b": node("model.p.b", manifest.Model, "model.p.a", "function.p.f"),
	},
		Functions:      map[string]*manifest.Node{"function.p.f": node("function.p.f", manifest.Function)},
		Exposures:      map[string]*manifest.Node{"exposure.p.e": node("exposure.p.e", manifest.Exposure, "model.p.b")},
		SemanticModels: map[string]*manifest.Node{"semantic_model.p.sm": node("semantic_model.p.sm", manifest.SemanticModel, "model.p.a")},
		Metrics:        map[string]*manifest.Node{"metric.p.m": node("metric.p.m", manifest.Metric, "semantic_model.p.sm")},
		SavedQueries:   map[string]*manifest.Node{"saved_query.p.q": node("saved_query.p.q", manifest.SavedQuery, "metric.p.m")},
	}
	return m
}

// TestEveryNodeKindBuilt: per node and per wave, a UDF is built (with dbt
// build, the one dbt command that builds functions) before the model
// using it; exposures and saved queries end as dbt build reports them,
// Success with DBTStatus "no-op" after their upstreams, without running
// anything, and Skipped when an upstream failed.
func TestEveryNodeKindBuilt(t *testing.T) {
	for _, mode := range []orchestrator.Mode{orchestrator.PerNode, orchestrator.PerWave} {
		for _, failB := range []bool{false, true} {
			t.Run(fmt.Sprintf("%s/failB=%t", mode, failB), func(t *testing.T) {
				checkNoLeak(t)
				scripts := map[string]script{}
				if failB {
					scripts["model.p.b"] = script{failures: -1}
				}
				fake := newFake(scripts)
				o, err := orchestrator.New(orchestrator.Config{Executor: fake, Manifest: kindsManifest(), Mode: mode})
				require.NoError(t, err)
				run, err := o.RunBuild(context.Background(), orchestrator.BuildOptions{})
				if failB {
					require.Error(t, err)
				} else {
					require.NoError(t, err)
				}
				calls := fake.byNode()
				for _, id := range []string{"exposure.p.e", "saved_query.p.q"} {
					assert.Empty(t, calls[id], "%s executed", id)
				}
				require.NotNil(t, run.Result("function.p.f"))
				assert.Equal(t, orchestrator.Success, run.Result("function.p.f").Status)
				assert.Less(t, waveOf(run.Plan, "function.p.f"), waveOf(run.Plan, "model.p.b"))
				fake.mu.Lock()
				for _, req := range fake.reqs {
					for _, n := range req.Nodes {
						if n.ResourceType == manifest.Function && mode == orchestrator.PerNode {
							assert.Equal(t, executor.Build, req.Command, "a function is built with dbt build")
						}
					}
				}
				fake.mu.Unlock()
				q := run.Result("saved_query.p.q")
				require.NotNil(t, q, "the saved query is a result")
				assert.Equal(t, orchestrator.Success, q.Status)
				assert.Equal(t, orchestrator.NoOpStatus, q.DBTStatus)
				assert.False(t, q.CompletedAt.Before(run.Result("model.p.a").CompletedAt), "after its upstream")
				e := run.Result("exposure.p.e")
				require.NotNil(t, e, "the exposure is a result")
				if failB {
					assert.Equal(t, orchestrator.Skipped, e.Status)
					assert.Equal(t, []string{"model.p.b"}, e.FailedUpstream)
				} else {
					assert.Equal(t, orchestrator.Success, e.Status)
					assert.Equal(t, orchestrator.NoOpStatus, e.DBTStatus)
					assert.Equal(t, "NO-OP", e.Message)
					assert.False(t, e.CompletedAt.Before(run.Result("model.p.b").CompletedAt), "after its upstream")
				}
			})
		}
	}
}
