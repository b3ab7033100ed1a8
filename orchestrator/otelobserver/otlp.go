package otelobserver

import (
	"context"
	"fmt"
	"strings"

	"go.opentelemetry.io/otel/attribute"
	"go.opentelemetry.io/otel/exporters/otlp/otlptrace/otlptracehttp"
	"go.opentelemetry.io/otel/sdk/resource"
	sdktrace "go.opentelemetry.io/otel/sdk/trace"
)

// DefaultServiceName is the service.name of dbtorch's traces unless
// OTEL_SERVICE_NAME or OTEL_RESOURCE_ATTRIBUTES says otherwise.
const DefaultServiceName = "dbtorch"

// OTLPConfigured reports whether the environment (read with getenv) asks
// for OTLP trace export: OTEL_EXPORTER_OTLP_ENDPOINT or
// OTEL_EXPORTER_OTLP_TRACES_ENDPOINT is set, and OTEL_TRACES_EXPORTER, the
// standard switch, is neither "none" nor another exporter than "otlp".
func OTLPConfigured(getenv func(string) string) bool {
	if getenv("OTEL_EXPORTER_OTLP_ENDPOINT") == "" && getenv("OTEL_EXPORTER_OTLP_TRACES_ENDPOINT") == "" {
		return false
	}
	switch strings.TrimSpace(getenv("OTEL_TRACES_EXPORTER")) {
	case "", "otlp":
		return true
	}
	return false
}

// NewOTLPTracerProvider returns an SDK tracer provider that batches spans
// and exports them over OTLP/HTTP, configured by the standard environment
// variables the exporter reads (OTEL_EXPORTER_OTLP_ENDPOINT,
// OTEL_EXPORTER_OTLP_TRACES_ENDPOINT, _HEADERS, _TIMEOUT, _COMPRESSION,
// _PROTOCOL, _CERTIFICATE, ...), with a resource from OTEL_SERVICE_NAME and
// OTEL_RESOURCE_ATTRIBUTES (service.name defaults to DefaultServiceName).
//
// The caller must call Shutdown when done, with a context that bounds how
// long to wait: it exports the spans still queued. Export errors do not
// fail a build; the SDK reports them to its error handler.
func NewOTLPTracerProvider(ctx context.Context) (*sdktrace.TracerProvider, error) {
	exp, err := otlptracehttp.New(ctx)
	if err != nil {
		return nil, fmt.Errorf("otelobserver: OTLP exporter: %w", err)
	}
	res, err := resource.New(ctx,
		resource.WithAttributes(attribute.String("service.name", DefaultServiceName)),
		resource.WithTelemetrySDK(),
		resource.WithFromEnv())
	if err != nil {
		// A malformed OTEL_RESOURCE_ATTRIBUTES: say so, as the exporter's
		// own configuration errors are said.
		_ = exp.Shutdown(ctx)
		return nil, fmt.Errorf("otelobserver: resource: %w", err)
	}
	return sdktrace.NewTracerProvider(sdktrace.WithBatcher(exp), sdktrace.WithResource(res)), nil
}
