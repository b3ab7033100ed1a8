package otelobserver_test

import (
	"bytes"
	"context"
	"encoding/json"
	"log/slog"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	"go.opentelemetry.io/otel/codes"
	sdktrace "go.opentelemetry.io/otel/sdk/trace"
	"go.opentelemetry.io/otel/sdk/trace/tracetest"

	"github.com/dbtorch/dbtorch/executor"
	"github.com/dbtorch/dbtorch/internal/dbttest"
	"github.com/dbtorch/dbtorch/orchestrator"
	"github.com/dbtorch/dbtorch/orchestrator/otelobserver"
	"github.com/dbtorch/dbtorch/selector"
)

// TestRealBuildTrace: a real dbt build of shop's +flaky_events (the
// flaky model fails its first attempt, the retry succeeds) through
// RunBuild, with the Observer on an SDK provider exporting to tracetest's
// in-memory exporter and a LogObserver writing JSON lines: one trace
// whose tree is build → node → wait / attempt, the flaky node with a
// failed attempt, a retry wait and a successful attempt; every node span
// carries the result's unique_id, resource type, status, cache decision,
// wait and the final attempt's invocation id; each node_finished log line
// has exactly the node span's attributes.
func TestRealBuildTrace(t *testing.T) {
	p := dbttest.Project(t, "shop", "DBTORCH_FLAKY_COUNTER="+filepath.Join(t.TempDir(), "flaky"))
	p.ProfilesDir = p.Dir
	ex, err := executor.NewWarm(executor.WarmConfig{
		Options: executor.Options{Project: p, WorkDir: t.TempDir()},
		Workers: 1,
	})
	require.NoError(t, err)
	t.Cleanup(func() { _ = ex.Close() })

	exp := tracetest.NewInMemoryExporter()
	tp := sdktrace.NewTracerProvider(sdktrace.WithSyncer(exp))
	var logs bytes.Buffer
	o, err := orchestrator.New(orchestrator.Config{
		Executor: ex, Concurrency: 1,
		Retry:    orchestrator.RetryConfig{Retries: 1, Delay: 50 * time.Millisecond},
		Observer: orchestrator.Observers{otelobserver.New(tp), otelobserver.NewLogObserver(slog.NewJSONHandler(&logs, nil))},
	})
	require.NoError(t, err)
	run, err := o.RunBuild(t.Context(), orchestrator.BuildOptions{Selection: selector.Options{Select: []string{"+flaky_events"}}})
	require.NoError(t, err)
	// The in-memory exporter forgets its spans on Shutdown: flush only.
	require.NoError(t, tp.ForceFlush(context.Background()))
	t.Cleanup(func() { _ = tp.Shutdown(context.Background()) })

	spans := exp.GetSpans().Snapshots()
	children, byPath := tree(spans)
	assert.Equal(t, []string{"dbtorch build"}, children[""])
	require.Len(t, children["dbtorch build"], len(run.Results), "a span per node")
	build := byPath["dbtorch build"]
	assert.Equal(t, run.ID, attrs(build)[otelobserver.KeyRunID].AsString())
	assert.Equal(t, int64(len(run.Results)), attrs(build)["dbtorch.count.success"].AsInt64())
	for _, s := range spans {
		assert.Equal(t, build.SpanContext().TraceID(), s.SpanContext().TraceID(), "one trace: %s", s.Name())
	}

	for _, r := range run.Results {
		p := "dbtorch build/" + r.UniqueID
		n, ok := byPath[p]
		require.True(t, ok, p)
		a := attrs(n)
		assert.Equal(t, r.UniqueID, a[otelobserver.KeyUniqueID].AsString())
		assert.Equal(t, string(r.ResourceType), a[otelobserver.KeyResourceType].AsString())
		assert.Equal(t, string(r.Status), a[otelobserver.KeyStatus].AsString())
		assert.Equal(t, "none", a[otelobserver.KeyCache].AsString(), "no cache")
		assert.InDelta(t, r.WaitTime.Seconds(), a[otelobserver.KeyWaitSeconds].AsFloat64(), 1e-9)
		require.NotNil(t, r.Invocation, r.UniqueID)
		assert.Equal(t, r.Invocation.InvocationID, a[otelobserver.KeyInvocationID].AsString())
		assert.Equal(t, r.CompletedAt, n.EndTime(), "the span ends when the result says")
		var attempts []string
		for _, c := range children[p] {
			if strings.HasPrefix(c, "attempt ") {
				attempts = append(attempts, c)
			}
		}
		assert.Len(t, attempts, len(r.Attempts), r.UniqueID)
		for k, at := range r.Attempts {
			s := byPath[p+"/attempt "+string(rune('1'+k))]
			require.NotNil(t, s, "%s attempt %d", r.UniqueID, k+1)
			assert.Equal(t, at.StartedAt, s.StartTime())
			assert.Equal(t, at.CompletedAt, s.EndTime())
			assert.Equal(t, at.Invocation.InvocationID, attrs(s)[otelobserver.KeyInvocationID].AsString())
		}
	}
	flaky := "dbtorch build/model.shop.flaky_events"
	assert.Equal(t, []string{"wait", "attempt 1", "wait", "attempt 2"}, children[flaky], "queued, failed, backoff, retried")
	assert.Equal(t, codes.Error, byPath[flaky+"/attempt 1"].Status().Code)
	assert.Contains(t, byPath[flaky+"/attempt 1"].Status().Description, "failing on the first attempt on purpose")
	assert.Equal(t, "retry", attrs(byPath[flaky+"/wait'"])[otelobserver.KeyWaitReason].AsString())
	assert.Equal(t, codes.Unset, byPath[flaky].Status().Code, "the node succeeded")

	// The JSON log lines: one per event, node_finished with the node
	// span's attribute names and values.
	finished := 0
	for line := range strings.Lines(logs.String()) {
		var m map[string]any
		require.NoError(t, json.Unmarshal([]byte(line), &m), line)
		if m["msg"] != string(orchestrator.NodeFinished) {
			continue
		}
		finished++
		id := m[string(otelobserver.KeyUniqueID)].(string)
		span := attrs(byPath["dbtorch build/"+id])
		var fields []string
		for k := range m {
			if strings.HasPrefix(k, "dbtorch.") {
				fields = append(fields, k)
			}
		}
		assert.Len(t, fields, len(span), "%s: the log line's fields are the span's attributes", id)
		for k, v := range span {
			assert.EqualValues(t, v.AsInterface(), m[string(k)], "%s: %s", id, k)
		}
	}
	assert.Equal(t, len(run.Results), finished)
}
