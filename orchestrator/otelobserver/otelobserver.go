// Package otelobserver turns a dbtorch build's events into an
// OpenTelemetry trace: one span for the build, a child span per node, and
// under each node a span per attempt and per wait (for a worker or a
// limit slot, or the backoff before a retry). Span attributes are the keys
// of this package (dbtorch.unique_id, dbtorch.status, dbtorch.cache, ...);
// timestamps are the orchestrator's own, so spans line up with the
// results.
//
// It is the only package of dbtorch that imports the OpenTelemetry SDK.
// Plug it in with orchestrator.Config.Observer (alone or inside
// orchestrator.Observers); NewOTLPTracerProvider builds a provider that
// exports over OTLP/HTTP as the standard OTEL_EXPORTER_OTLP_*
// environment variables say.
//
// Trace shape:
//
//	dbtorch build                     (build: run_id, nodes, waves, counts)
//	├── seed.shop.customers           (node: unique_id, status, cache, wait, ...)
//	│   ├── wait                      (wait_reason=queue)
//	│   └── attempt 1                 (attempt, status, invocation_id, command)
//	└── model.shop.stg_customers
//	    ├── wait
//	    ├── attempt 1                 (status error, kind connection)
//	    ├── wait                      (wait_reason=retry)
//	    └── attempt 2
package otelobserver

import (
	"context"
	"fmt"
	"sync"
	"time"

	"go.opentelemetry.io/otel/attribute"
	"go.opentelemetry.io/otel/codes"
	"go.opentelemetry.io/otel/trace"
	"go.opentelemetry.io/otel/trace/noop"

	"github.com/dbtorch/dbtorch/executor"
	"github.com/dbtorch/dbtorch/orchestrator"
)

// ScopeName is the instrumentation scope of the spans.
const ScopeName = "github.com/dbtorch/dbtorch/orchestrator/otelobserver"

// Span names other than the nodes' (a node span is named by its unique_id;
// an attempt span "attempt N").
const (
	BuildSpanName = "dbtorch build"
	WaitSpanName  = "wait"
)

// Observer is an orchestrator.Observer that records each build as a
// trace. One Observer may serve any number of builds, concurrently (the
// orchestrator serializes the events of one build; builds are told apart
// by run id). The build span is a child of the span in the context of the
// RunStarted event, if any, so a build started inside a traced request
// joins that trace.
//
// Spans end as the build goes: a node's spans when it finishes, the build
// span on RunFinished. A build whose RunFinished never comes (the process
// died) leaves its spans unended, hence unexported.
type Observer struct {
	tracer trace.Tracer

	mu     sync.Mutex
	builds map[string]*buildTrace
}

type buildTrace struct {
	ctx   context.Context // carries the build span
	span  trace.Span
	nodes map[string]*nodeTrace
}

type nodeTrace struct {
	ctx      context.Context // carries the node span
	span     trace.Span
	attempts []trace.Span // by attempt number - 1
	wait     trace.Span   // the open wait span, if any
}

// New returns an Observer that creates its spans with a tracer of tp. A
// nil tp records nothing.
func New(tp trace.TracerProvider) *Observer {
	if tp == nil {
		tp = noop.NewTracerProvider()
	}
	return &Observer{tracer: tp.Tracer(ScopeName), builds: map[string]*buildTrace{}}
}

// Event records e. It implements orchestrator.Observer.
func (o *Observer) Event(ctx context.Context, e orchestrator.Event) {
	o.mu.Lock()
	defer o.mu.Unlock()
	if e.Type == orchestrator.RunStarted {
		bctx, span := o.tracer.Start(ctx, BuildSpanName, trace.WithTimestamp(e.Time),
			trace.WithAttributes(EventAttributes(e)...))
		o.builds[e.RunID] = &buildTrace{ctx: bctx, span: span, nodes: map[string]*nodeTrace{}}
		return
	}
	b := o.builds[e.RunID]
	if b == nil {
		// An event of a build whose start this observer did not see.
		return
	}
	switch e.Type {
	case orchestrator.NodeQueued:
		n := o.node(b, e)
		n.openWait(o.tracer, e.Time, "queue")
	case orchestrator.NodeStarted:
		n := o.node(b, e)
		n.closeWait(e.Time)
		_, span := o.tracer.Start(n.ctx, fmt.Sprintf("attempt %d", e.Attempt), trace.WithTimestamp(e.Time),
			trace.WithAttributes(EventAttributes(e)...))
		for len(n.attempts) < e.Attempt {
			n.attempts = append(n.attempts, nil)
		}
		n.attempts[e.Attempt-1] = span
	case orchestrator.NodeRetrying:
		n := o.node(b, e)
		if k := e.Attempt - 1; k >= 0 && k < len(n.attempts) && n.attempts[k] != nil {
			n.attempts[k].AddEvent("retrying", trace.WithTimestamp(e.Time), trace.WithAttributes(EventAttributes(e)...))
		}
		n.openWait(o.tracer, e.Time, "retry")
	case orchestrator.NodeFinished:
		n := o.node(b, e)
		o.finishNode(n, e)
		delete(b.nodes, e.Node)
	case orchestrator.RunFinished:
		end := e.Time
		if e.Run != nil && !e.Run.CompletedAt.IsZero() {
			end = e.Run.CompletedAt
		}
		for _, n := range b.nodes { // only when a NodeFinished was missed
			n.closeWait(end)
			for _, s := range n.attempts {
				if s != nil {
					s.End(trace.WithTimestamp(end))
				}
			}
			n.span.End(trace.WithTimestamp(end))
		}
		b.span.SetAttributes(EventAttributes(e)...)
		if e.Run != nil {
			if failed := e.Run.Count(orchestrator.Error); failed > 0 {
				b.span.SetStatus(codes.Error, fmt.Sprintf("%d node(s) failed", failed))
			}
		}
		b.span.End(trace.WithTimestamp(end))
		delete(o.builds, e.RunID)
	}
}

// node returns the node's trace, starting its span at e.Time when it is
// the node's first event.
func (o *Observer) node(b *buildTrace, e orchestrator.Event) *nodeTrace {
	if n := b.nodes[e.Node]; n != nil {
		return n
	}
	start := e.Time
	if r := e.Result; r != nil && !r.StartedAt.IsZero() && r.StartedAt.Before(start) {
		start = r.StartedAt.Add(-r.WaitTime)
	}
	ctx, span := o.tracer.Start(b.ctx, e.Node, trace.WithTimestamp(start), trace.WithAttributes(
		KeyRunID.String(e.RunID), KeyUniqueID.String(e.Node), KeyResourceType.String(resourceTypeOf(e.Node))))
	n := &nodeTrace{ctx: ctx, span: span}
	b.nodes[e.Node] = n
	return n
}

func (n *nodeTrace) openWait(t trace.Tracer, at time.Time, reason string) {
	n.closeWait(at)
	_, n.wait = t.Start(n.ctx, WaitSpanName, trace.WithTimestamp(at), trace.WithAttributes(KeyWaitReason.String(reason)))
}

func (n *nodeTrace) closeWait(at time.Time) {
	if n.wait != nil {
		n.wait.End(trace.WithTimestamp(at))
		n.wait = nil
	}
}

// finishNode ends the node's spans with the times and outcomes the result
// recorded: each attempt span at its attempt's end, with its status, kind
// and invocation id, then the node span.
func (o *Observer) finishNode(n *nodeTrace, e orchestrator.Event) {
	end := e.Time
	r := e.Result
	if r != nil && !r.CompletedAt.IsZero() {
		end = r.CompletedAt
	}
	n.closeWait(end)
	for k, s := range n.attempts {
		if s == nil {
			continue
		}
		aend := end
		if r != nil && k < len(r.Attempts) {
			a := &r.Attempts[k]
			if !a.CompletedAt.IsZero() {
				aend = a.CompletedAt
			}
			s.SetAttributes(attemptAttributes(a)...)
			if a.Status != executor.Success {
				s.SetStatus(codes.Error, a.Message)
			}
		}
		s.End(trace.WithTimestamp(aend))
	}
	n.span.SetAttributes(EventAttributes(e)...)
	if r != nil && r.Status == orchestrator.Error {
		msg := r.Message
		if r.Err != nil {
			msg = r.Err.Message
		}
		n.span.SetStatus(codes.Error, msg)
	}
	n.span.End(trace.WithTimestamp(end))
}

func attemptAttributes(a *orchestrator.Attempt) []attribute.KeyValue {
	out := []attribute.KeyValue{KeyStatus.String(string(a.Status))}
	if a.Kind != "" {
		out = append(out, KeyKind.String(string(a.Kind)))
	}
	if a.Status != executor.Success && a.Message != "" {
		out = append(out, KeyError.String(a.Message))
	}
	if a.Invocation.InvocationID != "" {
		out = append(out, KeyInvocationID.String(a.Invocation.InvocationID))
	}
	if a.Invocation.Command != "" {
		out = append(out, KeyCommand.String(string(a.Invocation.Command)))
	}
	return out
}
