// Package otlptest is an OTLP/HTTP trace receiver for tests: an httptest
// server on loopback that decodes the protobuf export requests the
// OpenTelemetry exporter sends to /v1/traces and keeps their spans.
package otlptest

import (
	"encoding/hex"
	"io"
	"net/http"
	"net/http/httptest"
	"sync"
	"testing"
	"time"

	collectortrace "go.opentelemetry.io/proto/otlp/collector/trace/v1"
	commonpb "go.opentelemetry.io/proto/otlp/common/v1"
	"google.golang.org/protobuf/proto"
)

// Span is one received span, flattened for assertions.
type Span struct {
	TraceID, SpanID, ParentSpanID string // hex; ParentSpanID empty for a root
	Name                          string
	Start, End                    time.Time
	// Attributes holds string, int64, float64, bool and []any values.
	Attributes map[string]any
	// StatusCode is the OTLP status code (0 unset, 1 ok, 2 error).
	StatusCode int32
	StatusMsg  string
	// Resource and Scope are those of the span's batch.
	Resource map[string]any
	Scope    string
}

// Receiver is a running OTLP/HTTP receiver. Its URL is the base URL to put
// in OTEL_EXPORTER_OTLP_ENDPOINT.
type Receiver struct {
	URL string

	mu     sync.Mutex
	spans  []Span
	path   string
	header http.Header
	status int
}

// NewReceiver starts a receiver, closed when the test ends. A request that
// is not a valid export request fails the test.
func NewReceiver(t testing.TB) *Receiver {
	r := &Receiver{status: http.StatusOK}
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, req *http.Request) {
		body, err := io.ReadAll(req.Body)
		if err != nil {
			t.Errorf("otlptest: read body: %v", err)
			http.Error(w, err.Error(), http.StatusBadRequest)
			return
		}
		var msg collectortrace.ExportTraceServiceRequest
		if err := proto.Unmarshal(body, &msg); err != nil {
			t.Errorf("otlptest: not an OTLP export request: %v", err)
			http.Error(w, err.Error(), http.StatusBadRequest)
			return
		}
		r.mu.Lock()
		status := r.status
		r.path, r.header = req.URL.Path, req.Header.Clone()
		if status == http.StatusOK {
			r.spans = append(r.spans, flatten(&msg)...)
		}
		r.mu.Unlock()
		if status != http.StatusOK {
			w.WriteHeader(status)
			return
		}
		out, _ := proto.Marshal(&collectortrace.ExportTraceServiceResponse{})
		w.Header().Set("Content-Type", "application/x-protobuf")
		_, _ = w.Write(out)
	}))
	t.Cleanup(srv.Close)
	r.URL = srv.URL
	return r
}

// Status makes the receiver answer every later request with code (and
// drop the spans) when code is not 200.
func (r *Receiver) Status(code int) {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.status = code
}

// Spans returns the spans received so far, in arrival order.
func (r *Receiver) Spans() []Span {
	r.mu.Lock()
	defer r.mu.Unlock()
	return append([]Span(nil), r.spans...)
}

// Path returns the URL path of the last request.
func (r *Receiver) Path() string {
	r.mu.Lock()
	defer r.mu.Unlock()
	return r.path
}

// Header returns the headers of the last request.
func (r *Receiver) Header() http.Header {
	r.mu.Lock()
	defer r.mu.Unlock()
	return r.header
}

func flatten(msg *collectortrace.ExportTraceServiceRequest) []Span {
	var out []Span
	for _, rs := range msg.GetResourceSpans() {
		res := attrMap(rs.GetResource().GetAttributes())
		for _, ss := range rs.GetScopeSpans() {
			for _, s := range ss.GetSpans() {
				sp := Span{
					TraceID: hex.EncodeToString(s.GetTraceId()), SpanID: hex.EncodeToString(s.GetSpanId()),
					ParentSpanID: hex.EncodeToString(s.GetParentSpanId()), Name: s.GetName(),
					Start:      time.Unix(0, int64(s.GetStartTimeUnixNano())).UTC(),
					End:        time.Unix(0, int64(s.GetEndTimeUnixNano())).UTC(),
					Attributes: attrMap(s.GetAttributes()),
					StatusCode: int32(s.GetStatus().GetCode()), StatusMsg: s.GetStatus().GetMessage(),
					Resource: res, Scope: ss.GetScope().GetName(),
				}
				out = append(out, sp)
			}
		}
	}
	return out
}

func attrMap(kvs []*commonpb.KeyValue) map[string]any {
	m := make(map[string]any, len(kvs))
	for _, kv := range kvs {
		m[kv.GetKey()] = value(kv.GetValue())
	}
	return m
}

func value(v *commonpb.AnyValue) any {
	switch x := v.GetValue().(type) {
	case *commonpb.AnyValue_StringValue:
		return x.StringValue
	case *commonpb.AnyValue_IntValue:
		return x.IntValue
	case *commonpb.AnyValue_DoubleValue:
		return x.DoubleValue
	case *commonpb.AnyValue_BoolValue:
		return x.BoolValue
	case *commonpb.AnyValue_ArrayValue:
		var out []any
		for _, e := range x.ArrayValue.GetValues() {
			out = append(out, value(e))
		}
		return out
	}
	return nil
}
