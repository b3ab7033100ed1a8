package main

import (
	"bytes"
	"context"
	"encoding/json"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/dbtorch/dbtorch/artifacts"
	"github.com/dbtorch/dbtorch/internal/otlptest"
)

// TestBuildShopOTLPAndJSONLogs: a real shop build with the standard
// OTEL_EXPORTER_OTLP_ENDPOINT pointing at a loopback OTLP/HTTP receiver
// exports one trace (build span, a span per node, a span per attempt, with
// the invocation ids of the results), and --log-format json writes every
// event as a JSON line on stderr with the spans' attribute names.
func TestBuildShopOTLPAndJSONLogs(t *testing.T) {
	dir := shopProject(t)
	rcv := otlptest.NewReceiver(t)
	t.Setenv("OTEL_EXPORTER_OTLP_ENDPOINT", rcv.URL)
	t.Setenv("OTEL_SERVICE_NAME", "nightly-dbt")
	results := filepath.Join(t.TempDir(), "results.json")
	var out, errb bytes.Buffer
	code := runBuild(t.Context(), []string{"--project-dir", dir, "--select", "+stg_customers", "--test-strategy", "skip",
		"--results", results, "--log-format", "json", "--quiet"}, &out, &errb)
	require.Equal(t, 0, code, "stdout:\n%s\nstderr:\n%s", out.String(), errb.String())

	data, err := os.ReadFile(results)
	require.NoError(t, err)
	var res artifacts.RunJSON
	require.NoError(t, json.Unmarshal(data, &res))
	require.Len(t, res.Results, 2)

	// The trace, as the collector received it.
	spans := rcv.Spans()
	byName := map[string]otlptest.Span{}
	for _, s := range spans {
		byName[s.Name] = s
	}
	build, ok := byName["dbtorch build"]
	require.True(t, ok, "a build span among %d spans", len(spans))
	assert.Equal(t, "nightly-dbt", build.Resource["service.name"], "OTEL_SERVICE_NAME")
	assert.Equal(t, res.RunID, build.Attributes["dbtorch.run_id"])
	assert.Equal(t, int64(2), build.Attributes["dbtorch.count.success"])
	for _, r := range res.Results {
		n, ok := byName[r.UniqueID]
		require.True(t, ok, "a span for %s", r.UniqueID)
		assert.Equal(t, build.SpanID, n.ParentSpanID)
		assert.Equal(t, build.TraceID, n.TraceID)
		assert.Equal(t, "success", n.Attributes["dbtorch.status"])
		assert.Equal(t, r.ResourceType, n.Attributes["dbtorch.resource_type"])
		require.NotNil(t, r.Invocation)
		assert.Equal(t, r.Invocation.InvocationID, n.Attributes["dbtorch.invocation_id"])
		assert.Equal(t, "none", n.Attributes["dbtorch.cache"], "no --cache-dir")
		var attempts []otlptest.Span
		for _, s := range spans {
			if s.ParentSpanID == n.SpanID && s.Name == "attempt 1" {
				attempts = append(attempts, s)
			}
		}
		require.Len(t, attempts, 1, r.UniqueID)
		assert.False(t, attempts[0].Start.Before(n.Start), "attempt within node")
		assert.False(t, attempts[0].End.After(n.End), "attempt within node")
		assert.Equal(t, r.Invocation.InvocationID, attempts[0].Attributes["dbtorch.invocation_id"])
	}
	seed, stg := byName["seed.shop.customers"], byName["model.shop.stg_customers"]
	assert.False(t, stg.Start.Before(seed.End), "stg_customers was queued after its seed finished")

	// The JSON log lines: every event, same field names as the spans.
	var events []map[string]any
	for line := range strings.Lines(errb.String()) {
		var m map[string]any
		require.NoError(t, json.Unmarshal([]byte(line), &m), "stderr line is JSON: %q", line)
		if _, ok := m["dbtorch.run_id"]; ok {
			events = append(events, m)
		}
	}
	var msgs []string
	for _, m := range events {
		msgs = append(msgs, m["msg"].(string))
		if m["msg"] == "node_finished" && m["dbtorch.unique_id"] == "seed.shop.customers" {
			for k, v := range seed.Attributes {
				assert.EqualValues(t, v, m[k], "log field %s equals the span attribute", k)
			}
		}
	}
	assert.Equal(t, []string{"run_started", "node_queued", "node_started", "node_finished",
		"node_queued", "node_started", "node_finished", "run_finished"}, msgs)
}

func TestLogFormatFlag(t *testing.T) {
	var out, errb bytes.Buffer
	assert.Equal(t, 2, runBuild(context.Background(), []string{"--project-dir", ".", "--log-format", "xml"}, &out, &errb))
	assert.Contains(t, errb.String(), `--log-format: unknown format "xml"`)
}
