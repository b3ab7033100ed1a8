package orchestrator_test

import (
	"context"
	"fmt"
	"maps"
	"slices"
	"strings"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/dbtorch/dbtorch/executor"
	"github.com/dbtorch/dbtorch/manifest"
	"github.com/dbtorch/dbtorch/orchestrator"
)

// retryGraph: seed s -> model a -> model b -> model c, a test on a, and
// an independent model x.
func retryGraph(t *testing.T) *manifest.Graph {
	t.Helper()
	m := &manifest.Manifest{Nodes: map[string]*manifest.Node{}}
	add := func(id string, rt manifest.ResourceType, deps ...string) {
		name := id[strings.LastIndex(id, ".")+1:]
		m.Nodes[id] = &manifest.Node{UniqueID: id, Name: name, ResourceType: rt, PackageName: "p", Enabled: true,
			Materialized: "table", RawCode: "select 1", Path: name + ".sql", OriginalFilePath: "models/" + name + ".sql",
			FQN: []string{"p", name}, DependsOn: manifest.DependsOn{Nodes: deps}}
	}
	add("seed.p.s", manifest.Seed)
	add("model.p.a", manifest.Model, "seed.p.s")
	add("model.p.b", manifest.Model, "model.p.a")
	add("model.p.c", manifest.Model, "model.p.b")
	add("model.p.x", manifest.Model)
	add("test.p.t", manifest.Test, "model.p.a")
	g, err := manifest.NewGraph(m)
	require.NoError(t, err)
	return g
}

func TestReadPriorRunAndRetryNodes(t *testing.T) {
	g := retryGraph(t)
	// dbtorch's results: the test failed, b and c were skipped because of
	// it; a gone node is ignored.
	prior, err := orchestrator.ReadPriorRun(strings.NewReader(`{"run_id":"r1","args":{"attempt":2},"results":[
		{"unique_id":"seed.p.s","status":"success"},{"unique_id":"model.p.a","status":"success"},
		{"unique_id":"test.p.t","status":"error","dbt_status":"fail"},
		{"unique_id":"model.p.b","status":"skipped"},{"unique_id":"model.p.c","status":"skipped"},
		{"unique_id":"model.p.x","status":"cached"},{"unique_id":"model.p.gone","status":"error"}]}`))
	require.NoError(t, err)
	assert.Equal(t, "r1", prior.ID)
	assert.Equal(t, 2, prior.Attempt)
	assert.Equal(t, []string{"model.p.a", "model.p.b", "model.p.c", "test.p.t"}, orchestrator.RetryNodes(g, prior),
		"the failed test, its model, the skipped nodes")

	// dbt's run_results.json: a model error, its descendant skipped.
	prior, err = orchestrator.ReadPriorRun(strings.NewReader(`{"metadata":{"invocation_id":"inv"},"args":{},"results":[
		{"unique_id":"model.p.a","status":"success"},{"unique_id":"model.p.b","status":"error"},
		{"unique_id":"model.p.c","status":"skipped"},{"unique_id":"test.p.t","status":"pass"}]}`))
	require.NoError(t, err)
	assert.Equal(t, "inv", prior.ID)
	assert.Equal(t, 1, prior.Attempt)
	assert.Equal(t, []string{"model.p.b", "model.p.c"}, orchestrator.RetryNodes(g, prior))

	// A test that errored (did not run) does not rebuild its model.
	prior, err = orchestrator.ReadPriorRun(strings.NewReader(`{"run_id":"r","results":[{"unique_id":"test.p.t","status":"error"}]}`))
	require.NoError(t, err)
	assert.Equal(t, []string{"test.p.t"}, orchestrator.RetryNodes(g, prior))

	for _, bad := range []string{`[]`, `{"results":[]}`, `{"run_id":"r","results":[{"status":"error"}]}`, `nope`} {
		_, err := orchestrator.ReadPriorRun(strings.NewReader(bad))
		assert.Error(t, err, bad)
	}
}

func TestPriorFromRun(t *testing.T) {
	run := &orchestrator.Run{ID: "r", Args: map[string]any{orchestrator.AttemptArg: 3}, Results: []orchestrator.NodeResult{
		{Result: executor.Result{UniqueID: "test.p.t", DBTStatus: "fail"}, Status: orchestrator.Error},
		{Result: executor.Result{UniqueID: "model.p.x"}, Status: orchestrator.Success}}}
	p := orchestrator.PriorFromRun(run)
	assert.Equal(t, &orchestrator.PriorRun{ID: "r", Attempt: 3, Nodes: []orchestrator.PriorNode{
		{UniqueID: "test.p.t", Status: orchestrator.Error, TestFailed: true}, {UniqueID: "model.p.x", Status: orchestrator.Success}}}, p)
	assert.Equal(t, []string{"model.p.a", "test.p.t"}, orchestrator.RetryNodes(retryGraph(t), p))
}

// ExampleRetryNodes reads an earlier build's results and lists what a
// retry runs: the failed test, the model it tests, and what was skipped.
// Orchestrator.Retry runs exactly these, as attempt 2 of run "r1".
func ExampleRetryNodes() {
	m := &manifest.Manifest{Nodes: map[string]*manifest.Node{}}
	for id, deps := range map[string][]string{"model.p.a": nil, "model.p.b": {"model.p.a"}, "test.p.t": {"model.p.a"}} {
		rt, name := manifest.Model, id[strings.LastIndex(id, ".")+1:]
		if strings.HasPrefix(id, "test.") {
			rt = manifest.Test
		}
		m.Nodes[id] = &manifest.Node{UniqueID: id, Name: name, ResourceType: rt, PackageName: "p", Enabled: true,
			Materialized: "table", Path: name + ".sql", OriginalFilePath: "models/" + name + ".sql", DependsOn: manifest.DependsOn{Nodes: deps}}
	}
	g, err := manifest.NewGraph(m)
	if err != nil {
		panic(err)
	}
	prior, err := orchestrator.ReadPriorRun(strings.NewReader(`{"run_id": "r1", "results": [
		{"unique_id": "model.p.a", "status": "success"},
		{"unique_id": "test.p.t", "status": "error", "dbt_status": "fail"},
		{"unique_id": "model.p.b", "status": "skipped"}]}`))
	if err != nil {
		panic(err)
	}
	fmt.Println(prior.ID, prior.Attempt+1, orchestrator.RetryNodes(g, prior))
	// Output: r1 2 [model.p.a model.p.b test.p.t]
}

// TestRetry: a retry runs only what failed or was skipped, under the
// same run id, as attempt 2, and its reporters see the attempt.
func TestRetry(t *testing.T) {
	m := manifestOf(diamond())
	failing := newFake(map[string]script{modelID(1): {failures: -1}})
	o := newOrch(t, orchestrator.Config{Executor: failing, Manifest: m})
	first, err := o.RunBuild(context.Background(), orchestrator.BuildOptions{})
	require.Error(t, err)
	prior := orchestrator.PriorFromRun(first)
	g, err := manifest.NewGraph(m)
	require.NoError(t, err)
	want := orchestrator.RetryNodes(g, prior)
	require.Contains(t, want, modelID(1))
	require.Less(t, len(want), len(first.Results), "not everything")

	var reported map[string]any
	passing := newFake(nil)
	o = newOrch(t, orchestrator.Config{Executor: passing, Manifest: m, Reporters: []orchestrator.Reporter{
		reporterFunc(func(_ context.Context, run *orchestrator.Run) error { reported = run.Args; return nil })}})
	run, err := o.Retry(context.Background(), prior, orchestrator.BuildOptions{})
	require.NoError(t, err)
	assert.Equal(t, first.ID, run.ID)
	assert.Equal(t, 2, run.Args[orchestrator.AttemptArg])
	assert.Equal(t, 2, reported[orchestrator.AttemptArg], "reporters see the attempt")
	var got []string
	for _, r := range run.Results {
		got = append(got, r.UniqueID)
		assert.Equal(t, orchestrator.Success, r.Status, r.UniqueID)
	}
	slices.Sort(got)
	assert.Equal(t, want, got)
	assert.ElementsMatch(t, want, slices.Collect(maps.Keys(passing.byNode())), "only the retried nodes ran")

	_, err = o.Retry(context.Background(), orchestrator.PriorFromRun(run), orchestrator.BuildOptions{})
	assert.ErrorIs(t, err, orchestrator.ErrNothingToRetry)
}

type reporterFunc func(context.Context, *orchestrator.Run) error

func (f reporterFunc) Report(ctx context.Context, run *orchestrator.Run) error { return f(ctx, run) }
