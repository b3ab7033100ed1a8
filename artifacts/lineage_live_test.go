package artifacts_test

import (
	"bytes"
	"context"
	"encoding/json"
	"testing"
	"time"

	"github.com/spf13/afero"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/dbtorch/dbtorch/artifacts"
	"github.com/dbtorch/dbtorch/executor"
	"github.com/dbtorch/dbtorch/orchestrator"
)

// fakeExecutor succeeds on every node but the ones in fail.
type fakeExecutor struct{ fail map[string]bool }

func (f fakeExecutor) Execute(ctx context.Context, req executor.Request) (*executor.Response, error) {
	now := time.Now()
	resp := &executor.Response{Invocation: executor.Invocation{Command: req.Command, Started: now, Ended: now, InvocationID: "inv"}}
	for _, n := range req.Nodes {
		r := executor.Result{UniqueID: n.UniqueID, Status: executor.Success, DBTStatus: "success", Message: "OK", CompiledCode: "select 1",
			Timing: []executor.Timing{{Name: "execute", StartedAt: now, CompletedAt: now.Add(time.Millisecond)}}}
		if n.IsTest() {
			r.DBTStatus, r.Failures = "pass", i64(0)
		}
		if f.fail[n.UniqueID] {
			r.Status, r.DBTStatus, r.Kind, r.Message = executor.Error, "error", executor.KindDatabase, "Database Error: boom"
		}
		resp.Results = append(resp.Results, r)
	}
	return resp, nil
}

// TestLineageObserverLive runs a build through the orchestrator with the
// lineage Observer and checks that the events emitted live are the ones
// Report gives for the finished run, and valid OpenLineage.
func TestLineageObserverLive(t *testing.T) {
	m := fixtureManifest()
	fs := afero.NewMemMapFs()
	tr := &artifacts.FileTransport{Path: "/live.jsonl", Fs: fs}
	l := &artifacts.Lineage{Transport: tr, DatasetNamespace: "duckdb:///x.duckdb"}
	o, err := orchestrator.New(orchestrator.Config{
		Executor: fakeExecutor{fail: map[string]bool{"model.shop.customer_revenue": true}}, Manifest: m, Concurrency: 2,
		Observer: l.Observer(m),
	})
	require.NoError(t, err)
	run, err := o.RunBuild(t.Context(), orchestrator.BuildOptions{})
	var be *orchestrator.BuildError
	require.ErrorAs(t, err, &be)
	require.NoError(t, tr.Close(t.Context()))

	data, err := afero.ReadFile(fs, "/live.jsonl")
	require.NoError(t, err)
	schemas := openLineageSchemas(t)
	var live []artifacts.RunEvent
	for _, line := range bytes.Split(bytes.TrimSpace(data), []byte("\n")) {
		for _, err := range schemas.check(t, line) {
			t.Errorf("%v\nevent: %s", err, line)
		}
		var ev artifacts.RunEvent
		require.NoError(t, json.Unmarshal(line, &ev))
		live = append(live, ev)
	}
	after, err := l.Events(run)
	require.NoError(t, err)

	type key struct {
		typ        artifacts.EventType
		job, runID string
	}
	keys := func(evs []artifacts.RunEvent) map[key]int {
		out := map[key]int{}
		for _, ev := range evs {
			out[key{ev.EventType, ev.Job.Name, ev.Run.RunID}]++
		}
		return out
	}
	var afterVals []artifacts.RunEvent
	for _, ev := range after {
		afterVals = append(afterVals, *ev)
	}
	assert.Equal(t, keys(afterVals), keys(live), "live events are Report's events")
	assert.Equal(t, artifacts.EventStart, live[0].EventType)
	assert.Equal(t, "shop.build", live[0].Job.Name)
	assert.Equal(t, artifacts.EventFail, live[len(live)-1].EventType)
	assert.Equal(t, "shop.build", live[len(live)-1].Job.Name)
	started := map[string]bool{}
	for _, ev := range live[1 : len(live)-1] {
		if ev.EventType == artifacts.EventStart {
			started[ev.Job.Name] = true
		} else {
			assert.True(t, started[ev.Job.Name], "%s: START before %s", ev.Job.Name, ev.EventType)
		}
	}
}
