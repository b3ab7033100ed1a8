package otelobserver_test

import (
	"context"
	"net/http"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	sdktrace "go.opentelemetry.io/otel/sdk/trace"

	"github.com/dbtorch/dbtorch/internal/otlptest"
	"github.com/dbtorch/dbtorch/orchestrator/otelobserver"
)

// TestOTLPExportFromEnv: with the standard environment variables pointing
// at an OTLP/HTTP receiver on loopback, the provider exports the build's
// spans there as protobuf, with dbtorch's resource and attributes.
func TestOTLPExportFromEnv(t *testing.T) {
	rcv := otlptest.NewReceiver(t)
	t.Setenv("OTEL_EXPORTER_OTLP_ENDPOINT", rcv.URL)
	t.Setenv("OTEL_EXPORTER_OTLP_HEADERS", "x-team=data")
	t.Setenv("OTEL_RESOURCE_ATTRIBUTES", "deployment.environment=ci")
	t.Setenv("OTEL_SERVICE_NAME", "")
	require.True(t, otelobserver.OTLPConfigured(func(k string) string { return map[string]string{"OTEL_EXPORTER_OTLP_ENDPOINT": rcv.URL}[k] }))

	ctx := context.Background()
	tp := exportBuild(t, ctx)
	sctx, cancel := context.WithTimeout(ctx, 10*time.Second)
	defer cancel()
	require.NoError(t, tp.Shutdown(sctx))

	got := rcv.Spans()
	require.Len(t, got, 12, "every span of the build arrives")
	assert.Equal(t, "/v1/traces", rcv.Path())
	assert.Equal(t, "application/x-protobuf", rcv.Header().Get("Content-Type"))
	assert.Equal(t, "data", rcv.Header().Get("X-Team"), "OTEL_EXPORTER_OTLP_HEADERS")
	assert.Equal(t, "dbtorch", got[0].Resource["service.name"])
	assert.Equal(t, "ci", got[0].Resource["deployment.environment"])
	assert.Equal(t, otelobserver.ScopeName, got[0].Scope)

	byName := map[string]otlptest.Span{}
	for _, s := range got {
		byName[s.Name] = s
	}
	build, a := byName["dbtorch build"], byName["seed.p.a"]
	assert.Empty(t, build.ParentSpanID)
	assert.Equal(t, build.SpanID, a.ParentSpanID)
	assert.Equal(t, build.TraceID, a.TraceID)
	assert.Equal(t, "seed.p.a", a.Attributes["dbtorch.unique_id"])
	assert.Equal(t, "inv-a", a.Attributes["dbtorch.invocation_id"])
	assert.Equal(t, "miss", a.Attributes["dbtorch.cache"])
	assert.Equal(t, int64(5), a.Attributes["dbtorch.rows_affected"])
	assert.Equal(t, at(0), a.Start)
	assert.Equal(t, at(400), a.End)
	assert.Equal(t, "hit", byName["model.p.c"].Attributes["dbtorch.cache"])
}

// TestOTLPExportErrorDoesNotHang: an endpoint that refuses every export
// (the exporter retries 503s) costs no more than the shutdown's context
// allows, and Shutdown says it did not deliver.
func TestOTLPExportErrorDoesNotHang(t *testing.T) {
	rcv := otlptest.NewReceiver(t)
	rcv.Status(http.StatusServiceUnavailable)
	t.Setenv("OTEL_EXPORTER_OTLP_ENDPOINT", rcv.URL)
	ctx := context.Background()
	tp := exportBuild(t, ctx)
	sctx, cancel := context.WithTimeout(ctx, time.Second)
	defer cancel()
	start := time.Now()
	assert.Error(t, tp.Shutdown(sctx))
	assert.Less(t, time.Since(start), 3*time.Second)
	assert.Empty(t, rcv.Spans())
}

// exportBuild replays buildEvents through an Observer on the provider
// the environment configures, and returns the provider to shut down.
func exportBuild(t *testing.T, ctx context.Context) *sdktrace.TracerProvider {
	t.Helper()
	tp, err := otelobserver.NewOTLPTracerProvider(ctx)
	require.NoError(t, err)
	obs := otelobserver.New(tp)
	for _, e := range buildEvents() {
		obs.Event(ctx, e)
	}
	return tp
}
