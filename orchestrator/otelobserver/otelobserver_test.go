package otelobserver_test

import (
	"bytes"
	"context"
	"encoding/json"
	"log/slog"
	"sort"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	"go.opentelemetry.io/otel/attribute"
	"go.opentelemetry.io/otel/codes"
	sdktrace "go.opentelemetry.io/otel/sdk/trace"
	"go.opentelemetry.io/otel/sdk/trace/tracetest"
	"go.opentelemetry.io/otel/trace"

	"github.com/dbtorch/dbtorch/executor"
	"github.com/dbtorch/dbtorch/manifest"
	"github.com/dbtorch/dbtorch/orchestrator"
	"github.com/dbtorch/dbtorch/orchestrator/otelobserver"
)

var t0 = time.Date(2026, 3, 1, 12, 0, 0, 0, time.UTC)

func at(ms int) time.Time { return t0.Add(time.Duration(ms) * time.Millisecond) }

func i64(v int64) *int64 { return &v }

const runID = "run-1"

// fourNodePlan is the plan of seed a, models b and c reading a, and model
// d reading b: waves {a}, {b, c}, {d}.
func fourNodePlan() *manifest.Plan {
	node := func(rt manifest.ResourceType, name string, deps ...string) *manifest.Node {
		return &manifest.Node{UniqueID: string(rt) + ".p." + name, Name: name, ResourceType: rt, PackageName: "p",
			Path: name, OriginalFilePath: name, Materialized: "table", Enabled: true, RawCode: "select 1",
			DependsOn: manifest.DependsOn{Nodes: deps}}
	}
	m := &manifest.Manifest{Nodes: map[string]*manifest.Node{}}
	for _, n := range []*manifest.Node{node(manifest.Seed, "a"), node(manifest.Model, "b", "seed.p.a"),
		node(manifest.Model, "c", "seed.p.a"), node(manifest.Model, "d", "model.p.b")} {
		m.Nodes[n.UniqueID] = n
	}
	g, err := manifest.NewGraph(m)
	if err != nil {
		panic(err)
	}
	return g.Plan(nil, manifest.Immediate)
}

// buildEvents is the event stream of a four-node build, as the
// orchestrator emits it:
//
//	seed.p.a     queued 0, attempt 1 10..400 (inv-a)
//	model.p.b    queued 400, attempt 1 450..500 fails (connection), retry
//	             after 100ms, attempt 2 600..900 (inv-b2)
//	model.p.c    queued 400, cache hit at 405
//	model.p.d    skipped (upstream b... pretend), never queued, at 900
func buildEvents() []orchestrator.Event {
	plan := fourNodePlan()
	inv := func(id string, s, e int) executor.Invocation {
		return executor.Invocation{Command: executor.Run, InvocationID: id, Started: at(s), Ended: at(e)}
	}
	invA := executor.Invocation{Command: executor.Seed, InvocationID: "inv-a", Started: at(10), Ended: at(400)}
	a := &orchestrator.NodeResult{
		Result: executor.Result{UniqueID: "seed.p.a", DBTStatus: "success", RowsAffected: i64(5)}, ResourceType: manifest.Seed, Status: orchestrator.Success,
		StartedAt: at(10), CompletedAt: at(400), WaitTime: 10 * time.Millisecond, CacheKey: "ka",
		Attempts:   []orchestrator.Attempt{{Number: 1, StartedAt: at(10), CompletedAt: at(400), Status: executor.Success, Invocation: invA}},
		Invocation: &invA,
	}
	invB2 := inv("inv-b2", 600, 900)
	b := &orchestrator.NodeResult{
		Result: executor.Result{UniqueID: "model.p.b", DBTStatus: "success"}, ResourceType: manifest.Model, Wave: 1, Status: orchestrator.Success,
		StartedAt: at(450), CompletedAt: at(900), WaitTime: 150 * time.Millisecond, CacheKey: "kb",
		Attempts: []orchestrator.Attempt{
			{Number: 1, StartedAt: at(450), CompletedAt: at(500), Status: executor.Error, Kind: executor.KindConnection, Message: "connection reset", Invocation: inv("inv-b1", 450, 500)},
			{Number: 2, StartedAt: at(600), CompletedAt: at(900), Status: executor.Success, Invocation: invB2},
		},
		Invocation: &invB2,
	}
	c := &orchestrator.NodeResult{
		Result: executor.Result{UniqueID: "model.p.c", Message: "cached"}, ResourceType: manifest.Model, Wave: 1, Status: orchestrator.Cached,
		StartedAt: at(405), CompletedAt: at(405), WaitTime: 5 * time.Millisecond, CacheKey: "kc",
	}
	d := &orchestrator.NodeResult{
		Result: executor.Result{UniqueID: "model.p.d"}, ResourceType: manifest.Model, Wave: 2, Status: orchestrator.Skipped,
		SkipReason: "upstream failed", FailedUpstream: []string{"model.p.x"},
	}
	run := &orchestrator.Run{ID: runID, StartedAt: at(0), CompletedAt: at(1000), Plan: plan, Results: []orchestrator.NodeResult{*a, *b, *c, *d}}
	ev := func(typ orchestrator.EventType, ms int, node string) orchestrator.Event {
		return orchestrator.Event{Type: typ, Time: at(ms), RunID: runID, Node: node}
	}
	started := func(ms int, node string, attempt int) orchestrator.Event {
		e := ev(orchestrator.NodeStarted, ms, node)
		e.Attempt = attempt
		return e
	}
	finished := func(ms int, r *orchestrator.NodeResult) orchestrator.Event {
		e := ev(orchestrator.NodeFinished, ms, r.UniqueID)
		e.Result, e.Attempt = r, len(r.Attempts)
		return e
	}
	runStarted := ev(orchestrator.RunStarted, 0, "")
	runStarted.Plan = plan
	retry := ev(orchestrator.NodeRetrying, 500, "model.p.b")
	retry.Attempt, retry.Delay = 1, 100*time.Millisecond
	retry.Error = &orchestrator.NodeError{Kind: executor.KindConnection, Message: "connection reset"}
	runFinished := ev(orchestrator.RunFinished, 1000, "")
	runFinished.Run = run
	return []orchestrator.Event{
		runStarted,
		ev(orchestrator.NodeQueued, 0, "seed.p.a"),
		started(10, "seed.p.a", 1),
		finished(401, a),
		ev(orchestrator.NodeQueued, 400, "model.p.b"),
		ev(orchestrator.NodeQueued, 400, "model.p.c"),
		finished(406, c),
		started(450, "model.p.b", 1),
		retry,
		started(600, "model.p.b", 2),
		finished(901, b),
		finished(902, d),
		runFinished,
	}
}

func record(t *testing.T, ctx context.Context, events []orchestrator.Event) []sdktrace.ReadOnlySpan {
	t.Helper()
	sr := tracetest.NewSpanRecorder()
	tp := sdktrace.NewTracerProvider(sdktrace.WithSpanProcessor(sr))
	obs := otelobserver.New(tp)
	for _, e := range events {
		obs.Event(ctx, e)
	}
	require.Empty(t, openSpans(sr), "every started span ended")
	return sr.Ended()
}

func openSpans(sr *tracetest.SpanRecorder) []string {
	ended := map[trace.SpanID]bool{}
	for _, s := range sr.Ended() {
		ended[s.SpanContext().SpanID()] = true
	}
	var open []string
	for _, s := range sr.Started() {
		if !ended[s.SpanContext().SpanID()] {
			open = append(open, s.Name())
		}
	}
	return open
}

func attrs(s sdktrace.ReadOnlySpan) map[attribute.Key]attribute.Value {
	m := map[attribute.Key]attribute.Value{}
	for _, kv := range s.Attributes() {
		m[kv.Key] = kv.Value
	}
	return m
}

// tree returns each span's children (by name, in start order) keyed by
// the parent's name path, and the spans by path.
func tree(spans []sdktrace.ReadOnlySpan) (map[string][]string, map[string]sdktrace.ReadOnlySpan) {
	byID := map[trace.SpanID]sdktrace.ReadOnlySpan{}
	for _, s := range spans {
		byID[s.SpanContext().SpanID()] = s
	}
	var path func(s sdktrace.ReadOnlySpan) string
	path = func(s sdktrace.ReadOnlySpan) string {
		p, ok := byID[s.Parent().SpanID()]
		if !s.Parent().IsValid() || !ok {
			return s.Name()
		}
		return path(p) + "/" + s.Name()
	}
	sorted := append([]sdktrace.ReadOnlySpan(nil), spans...)
	sort.SliceStable(sorted, func(i, j int) bool { return sorted[i].StartTime().Before(sorted[j].StartTime()) })
	children := map[string][]string{}
	byPath := map[string]sdktrace.ReadOnlySpan{}
	for _, s := range sorted {
		p := path(s)
		if _, dup := byPath[p]; dup {
			p += "'" // a second wait span under the same node
		}
		byPath[p] = s
		if parent, ok := byID[s.Parent().SpanID()]; ok && s.Parent().IsValid() {
			children[path(parent)] = append(children[path(parent)], s.Name())
		} else {
			children[""] = append(children[""], s.Name())
		}
	}
	return children, byPath
}

func TestTraceShape(t *testing.T) {
	spans := record(t, context.Background(), buildEvents())
	children, byPath := tree(spans)

	assert.Equal(t, []string{"dbtorch build"}, children[""], "one root: the build")
	assert.ElementsMatch(t, []string{"seed.p.a", "model.p.b", "model.p.c", "model.p.d"}, children["dbtorch build"])
	assert.Equal(t, []string{"wait", "attempt 1"}, children["dbtorch build/seed.p.a"])
	assert.Equal(t, []string{"wait", "attempt 1", "wait", "attempt 2"}, children["dbtorch build/model.p.b"], "retry wait between the attempts")
	assert.Equal(t, []string{"wait"}, children["dbtorch build/model.p.c"], "a cache hit has no attempt")
	assert.Empty(t, children["dbtorch build/model.p.d"], "a skipped node has no attempt")

	// One trace.
	traceID := byPath["dbtorch build"].SpanContext().TraceID()
	for _, s := range spans {
		assert.Equal(t, traceID, s.SpanContext().TraceID(), s.Name())
	}

	// Timing: spans carry the orchestrator's times, children inside
	// their parents, attempts in order.
	span := func(p string) sdktrace.ReadOnlySpan {
		s, ok := byPath[p]
		require.True(t, ok, "span %s", p)
		return s
	}
	times := func(p string) [2]time.Time { s := span(p); return [2]time.Time{s.StartTime(), s.EndTime()} }
	assert.Equal(t, [2]time.Time{at(0), at(1000)}, times("dbtorch build"))
	assert.Equal(t, [2]time.Time{at(0), at(400)}, times("dbtorch build/seed.p.a"))
	assert.Equal(t, [2]time.Time{at(0), at(10)}, times("dbtorch build/seed.p.a/wait"))
	assert.Equal(t, [2]time.Time{at(10), at(400)}, times("dbtorch build/seed.p.a/attempt 1"))
	assert.Equal(t, [2]time.Time{at(400), at(900)}, times("dbtorch build/model.p.b"))
	assert.Equal(t, [2]time.Time{at(400), at(450)}, times("dbtorch build/model.p.b/wait"))
	assert.Equal(t, [2]time.Time{at(450), at(500)}, times("dbtorch build/model.p.b/attempt 1"))
	assert.Equal(t, [2]time.Time{at(500), at(600)}, times("dbtorch build/model.p.b/wait'"))
	assert.Equal(t, [2]time.Time{at(600), at(900)}, times("dbtorch build/model.p.b/attempt 2"))
	assert.Equal(t, [2]time.Time{at(400), at(405)}, times("dbtorch build/model.p.c"))
	assert.Equal(t, [2]time.Time{at(902), at(902)}, times("dbtorch build/model.p.d"))
	for p, s := range byPath {
		assert.False(t, s.EndTime().Before(s.StartTime()), "%s ends after it starts", p)
		if parent, ok := byPath[parentPath(p)]; ok {
			assert.False(t, s.StartTime().Before(parent.StartTime()), "%s starts within its parent", p)
			assert.False(t, s.EndTime().After(parent.EndTime()), "%s ends within its parent", p)
		}
	}

	// Attributes.
	build := attrs(span("dbtorch build"))
	assert.Equal(t, runID, build[otelobserver.KeyRunID].AsString())
	assert.Equal(t, int64(4), build[otelobserver.KeyNodes].AsInt64())
	assert.Equal(t, int64(3), build[otelobserver.KeyWaves].AsInt64())
	assert.Equal(t, int64(1), build["dbtorch.count.cached"].AsInt64())
	assert.Equal(t, int64(2), build["dbtorch.count.success"].AsInt64())
	assert.Equal(t, codes.Unset, span("dbtorch build").Status().Code, "no node failed")

	a := attrs(span("dbtorch build/seed.p.a"))
	assert.Equal(t, "seed.p.a", a[otelobserver.KeyUniqueID].AsString())
	assert.Equal(t, "seed", a[otelobserver.KeyResourceType].AsString())
	assert.Equal(t, "success", a[otelobserver.KeyStatus].AsString())
	assert.Equal(t, "miss", a[otelobserver.KeyCache].AsString())
	assert.Equal(t, "inv-a", a[otelobserver.KeyInvocationID].AsString())
	assert.Equal(t, "seed", a[otelobserver.KeyCommand].AsString())
	assert.Equal(t, int64(5), a[otelobserver.KeyRowsAffected].AsInt64())
	assert.InDelta(t, 0.010, a[otelobserver.KeyWaitSeconds].AsFloat64(), 1e-9)
	assert.Equal(t, runID, a[otelobserver.KeyRunID].AsString())

	b := attrs(span("dbtorch build/model.p.b"))
	assert.Equal(t, int64(2), b[otelobserver.KeyAttempts].AsInt64())
	assert.InDelta(t, 0.150, b[otelobserver.KeyWaitSeconds].AsFloat64(), 1e-9)
	assert.Equal(t, "inv-b2", b[otelobserver.KeyInvocationID].AsString(), "the final attempt's invocation")
	b1 := span("dbtorch build/model.p.b/attempt 1")
	assert.Equal(t, codes.Error, b1.Status().Code)
	assert.Equal(t, "connection reset", b1.Status().Description)
	assert.Equal(t, "connection", attrs(b1)[otelobserver.KeyKind].AsString())
	assert.Equal(t, "inv-b1", attrs(b1)[otelobserver.KeyInvocationID].AsString())
	assert.Equal(t, int64(1), attrs(b1)[otelobserver.KeyAttempt].AsInt64())
	require.Len(t, b1.Events(), 1)
	assert.Equal(t, "retrying", b1.Events()[0].Name)
	assert.Equal(t, codes.Unset, span("dbtorch build/model.p.b/attempt 2").Status().Code)
	assert.Equal(t, "retry", attrs(span("dbtorch build/model.p.b/wait'"))[otelobserver.KeyWaitReason].AsString())
	assert.Equal(t, "queue", attrs(span("dbtorch build/model.p.b/wait"))[otelobserver.KeyWaitReason].AsString())

	c := attrs(span("dbtorch build/model.p.c"))
	assert.Equal(t, "cached", c[otelobserver.KeyStatus].AsString())
	assert.Equal(t, "hit", c[otelobserver.KeyCache].AsString())

	d := attrs(span("dbtorch build/model.p.d"))
	assert.Equal(t, "skipped", d[otelobserver.KeyStatus].AsString())
	assert.Equal(t, "none", d[otelobserver.KeyCache].AsString())
	assert.Equal(t, "upstream failed", d[otelobserver.KeySkipReason].AsString())
	assert.Equal(t, []string{"model.p.x"}, d[otelobserver.KeyFailedUpstream].AsStringSlice())
}

func parentPath(p string) string {
	for i := len(p) - 1; i >= 0; i-- {
		if p[i] == '/' {
			return p[:i]
		}
	}
	return ""
}

// TestFailedNodeAndBuild: a node that ends in error has an error status
// with its message and kind, and so does the build span.
func TestFailedNodeAndBuild(t *testing.T) {
	events := buildEvents()
	for i := range events {
		e := &events[i]
		if e.Type == orchestrator.NodeFinished && e.Node == "model.p.b" {
			r := *e.Result
			r.Status = orchestrator.Error
			r.Err = &orchestrator.NodeError{Kind: executor.KindDatabase, Message: "Binder Error: nope"}
			r.Attempts = append([]orchestrator.Attempt(nil), r.Attempts...)
			r.Attempts[1].Status, r.Attempts[1].Kind, r.Attempts[1].Message = executor.Error, executor.KindDatabase, "Binder Error: nope"
			e.Result = &r
			run := *events[len(events)-1].Run
			run.Results = append([]orchestrator.NodeResult(nil), run.Results...)
			run.Results[1] = r
			events[len(events)-1].Run = &run
		}
	}
	_, byPath := tree(record(t, context.Background(), events))
	b := byPath["dbtorch build/model.p.b"]
	assert.Equal(t, codes.Error, b.Status().Code)
	assert.Equal(t, "Binder Error: nope", b.Status().Description)
	assert.Equal(t, "database", attrs(b)[otelobserver.KeyKind].AsString())
	assert.Equal(t, codes.Error, byPath["dbtorch build/model.p.b/attempt 2"].Status().Code)
	assert.Equal(t, codes.Error, byPath["dbtorch build"].Status().Code)
	assert.Equal(t, "1 node(s) failed", byPath["dbtorch build"].Status().Description)
}

// TestJoinsCallerTrace: a build started under a span is part of that
// trace; two builds through one observer, interleaved, stay apart.
func TestJoinsCallerTraceAndInterleavedBuilds(t *testing.T) {
	sr := tracetest.NewSpanRecorder()
	tp := sdktrace.NewTracerProvider(sdktrace.WithSpanProcessor(sr))
	ctx, parent := tp.Tracer("test").Start(context.Background(), "request")
	obs := otelobserver.New(tp)
	first, second := buildEvents(), buildEvents()
	for i := range second {
		second[i].RunID = "run-2"
	}
	for i := range first {
		obs.Event(ctx, first[i])
		obs.Event(context.Background(), second[i])
	}
	parent.End()
	require.Empty(t, openSpans(sr))
	roots := map[string]trace.SpanContext{}
	for _, s := range sr.Ended() {
		if s.Name() == otelobserver.BuildSpanName {
			roots[attrs(s)[otelobserver.KeyRunID].AsString()] = s.Parent()
		}
	}
	require.Len(t, roots, 2)
	assert.Equal(t, parent.SpanContext().SpanID(), roots[runID].SpanID(), "run-1 is a child of the caller's span")
	assert.False(t, roots["run-2"].IsValid(), "run-2 is a root of its own trace")
	assert.Len(t, sr.Ended(), 2*12+1, "two builds of 12 spans and the caller's")
}

func TestNilProviderRecordsNothing(t *testing.T) {
	obs := otelobserver.New(nil)
	for _, e := range buildEvents() {
		obs.Event(context.Background(), e) // must not panic
	}
}

func TestEventAttributes(t *testing.T) {
	events := buildEvents()
	get := func(e orchestrator.Event) map[attribute.Key]attribute.Value {
		m := map[attribute.Key]attribute.Value{}
		for _, kv := range otelobserver.EventAttributes(e) {
			m[kv.Key] = kv.Value
		}
		return m
	}
	retry := get(events[8])
	assert.Equal(t, "model.p.b", retry[otelobserver.KeyUniqueID].AsString())
	assert.Equal(t, "model", retry[otelobserver.KeyResourceType].AsString())
	assert.InDelta(t, 0.1, retry[otelobserver.KeyRetryDelaySeconds].AsFloat64(), 1e-9)
	assert.Equal(t, "connection", retry[otelobserver.KeyKind].AsString())
	bq := *events[10].Result
	bq.AdapterResponse = map[string]any{"_message": "CREATE TABLE", "bytes_processed": 2048.0, "bytes_billed": 10485760.0, "slot_ms": 312.0, "job_id": "job_b2"}
	events[10].Result = &bq
	cost := get(events[10])
	assert.Equal(t, int64(2048), cost[otelobserver.KeyBytesProcessed].AsInt64())
	assert.Equal(t, int64(10485760), cost[otelobserver.KeyBytesBilled].AsInt64())
	assert.Equal(t, int64(312), cost[otelobserver.KeySlotMS].AsInt64())
	assert.Equal(t, []string{"job_b2"}, cost[otelobserver.KeyQueryIDs].AsStringSlice())
	assert.NotContains(t, get(buildEvents()[10]), otelobserver.KeyBytesBilled, "not reported: absent")
	queued := get(events[1])
	assert.Equal(t, []attribute.Key{otelobserver.KeyRunID, otelobserver.KeyUniqueID, otelobserver.KeyResourceType}, keys(otelobserver.EventAttributes(events[1])))
	assert.Equal(t, "seed", queued[otelobserver.KeyResourceType].AsString())
}

func keys(kvs []attribute.KeyValue) []attribute.Key {
	out := make([]attribute.Key, len(kvs))
	for i, kv := range kvs {
		out[i] = kv.Key
	}
	return out
}

func TestOTLPConfigured(t *testing.T) {
	for _, tc := range []struct {
		env  map[string]string
		want bool
	}{
		{nil, false},
		{map[string]string{"OTEL_EXPORTER_OTLP_ENDPOINT": "http://127.0.0.1:4318"}, true},
		{map[string]string{"OTEL_EXPORTER_OTLP_TRACES_ENDPOINT": "http://127.0.0.1:4318/v1/traces"}, true},
		{map[string]string{"OTEL_EXPORTER_OTLP_ENDPOINT": "http://x", "OTEL_TRACES_EXPORTER": "none"}, false},
		{map[string]string{"OTEL_EXPORTER_OTLP_ENDPOINT": "http://x", "OTEL_TRACES_EXPORTER": "otlp"}, true},
		{map[string]string{"OTEL_EXPORTER_OTLP_ENDPOINT": "http://x", "OTEL_TRACES_EXPORTER": "zipkin"}, false},
	} {
		assert.Equal(t, tc.want, otelobserver.OTLPConfigured(func(k string) string { return tc.env[k] }), "%v", tc.env)
	}
}

// TestLogObserverSameFieldsAsSpans: each event is one JSON line whose
// fields are the span's attributes, same names, same values.
func TestLogObserverSameFieldsAsSpans(t *testing.T) {
	var buf bytes.Buffer
	obs := otelobserver.NewLogObserver(slog.NewJSONHandler(&buf, nil))
	events := buildEvents()
	for _, e := range events {
		obs.Event(context.Background(), e)
	}
	lines := strings.Split(strings.TrimSpace(buf.String()), "\n")
	require.Len(t, lines, len(events), "one line per event")
	var finishedA map[string]any
	levels := map[string]string{}
	for i, line := range lines {
		var m map[string]any
		require.NoError(t, json.Unmarshal([]byte(line), &m), line)
		assert.Equal(t, string(events[i].Type), m["msg"])
		assert.Equal(t, events[i].Time.Format(time.RFC3339Nano), m["time"], "the event's own time")
		assert.Equal(t, runID, m["dbtorch.run_id"])
		if events[i].Type == orchestrator.NodeFinished && events[i].Node == "seed.p.a" {
			finishedA = m
		}
		levels[string(events[i].Type)+" "+events[i].Node] = m["level"].(string)
	}
	assert.Equal(t, "WARN", levels["node_retrying model.p.b"])
	assert.Equal(t, "INFO", levels["node_finished model.p.b"])

	_, byPath := tree(record(t, context.Background(), events))
	spanAttrs := attrs(byPath["dbtorch build/seed.p.a"])
	require.NotNil(t, finishedA)
	for k, v := range spanAttrs {
		want := v.AsInterface()
		got := finishedA[string(k)]
		switch w := want.(type) {
		case int64:
			assert.EqualValues(t, w, got, "%s", k)
		case []string:
			assert.Len(t, got, len(w), "%s", k)
		default:
			assert.Equal(t, want, got, "%s", k)
		}
	}
	for k := range finishedA {
		if strings.HasPrefix(k, "dbtorch.") {
			assert.Contains(t, spanAttrs, attribute.Key(k), "log field %s is a span attribute", k)
		}
	}
}
