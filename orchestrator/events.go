package orchestrator

import (
	"context"
	"log/slog"
	"time"

	"github.com/dbtorch/dbtorch/manifest"
)

// EventType names what happened.
type EventType string

// The events of a build, in the order a node sees them: RunStarted once;
// per node NodeQueued (ready, waiting for a worker), NodeStarted (before
// each attempt), NodeRetrying (an attempt failed and another follows after
// Delay) and exactly one NodeFinished (also for skipped and cached nodes,
// which are never queued); RunFinished once, after every NodeFinished.
const (
	RunStarted   EventType = "run_started"
	NodeQueued   EventType = "node_queued"
	NodeStarted  EventType = "node_started"
	NodeRetrying EventType = "node_retrying"
	NodeFinished EventType = "node_finished"
	RunFinished  EventType = "run_finished"
)

// Event is one thing that happened in a build.
type Event struct {
	Type  EventType
	Time  time.Time
	RunID string
	// Node is the node's unique_id; empty for run events.
	Node string
	// Attempt is the attempt number for NodeStarted and NodeRetrying (the
	// attempt that failed), and the number of attempts for NodeFinished.
	Attempt int
	// Delay is the wait before the next attempt (NodeRetrying).
	Delay time.Duration
	// Result is the node's final result (NodeFinished).
	Result *NodeResult
	// Error is the failed attempt's error (NodeRetrying).
	Error *NodeError
	// Plan is the build's plan (RunStarted).
	Plan *manifest.Plan
	// Run is the finished run (RunFinished).
	Run *Run
}

// Observer receives a build's events. The orchestrator never calls one
// Observer concurrently from the same build, and calls it synchronously:
// it must return quickly and must not call back into the orchestrator.
// Results and runs passed in events must not be modified.
type Observer interface {
	Event(ctx context.Context, e Event)
}

// ObserverFunc adapts a function to the Observer interface.
type ObserverFunc func(ctx context.Context, e Event)

// Event calls f(ctx, e).
func (f ObserverFunc) Event(ctx context.Context, e Event) { f(ctx, e) }

// Observers fans events out to several observers, in order.
type Observers []Observer

// Event passes e to every observer.
func (os Observers) Event(ctx context.Context, e Event) {
	for _, o := range os {
		o.Event(ctx, e)
	}
}

// SlogObserver logs events to a slog.Logger: run start and end, node
// starts and retries at Info (retries at Warn), finished nodes at Info, or
// Error when they failed. Queued events are logged at Debug.
type SlogObserver struct {
	Logger *slog.Logger
}

// NewSlogObserver returns an Observer that logs to l; a nil l discards
// (as a nil Logger does everywhere in dbtorch: pass slog.Default() to log
// to the process's default logger).
func NewSlogObserver(l *slog.Logger) *SlogObserver {
	if l == nil {
		l = slog.New(slog.DiscardHandler)
	}
	return &SlogObserver{Logger: l}
}

// Event logs e.
func (s *SlogObserver) Event(ctx context.Context, e Event) {
	l := s.Logger
	switch e.Type {
	case RunStarted:
		nodes, waves := 0, 0
		if e.Plan != nil {
			nodes, waves = e.Plan.Len(), len(e.Plan.Waves())
		}
		l.InfoContext(ctx, "build started", "run_id", e.RunID, "nodes", nodes, "waves", waves)
	case NodeQueued:
		l.DebugContext(ctx, "node queued", "run_id", e.RunID, "node", e.Node)
	case NodeStarted:
		l.InfoContext(ctx, "node started", "run_id", e.RunID, "node", e.Node, "attempt", e.Attempt)
	case NodeRetrying:
		args := []any{"run_id", e.RunID, "node", e.Node, "attempt", e.Attempt, "delay", e.Delay}
		if e.Error != nil {
			args = append(args, "kind", string(e.Error.Kind), "error", e.Error.Message)
		}
		l.WarnContext(ctx, "node retrying", args...)
	case NodeFinished:
		r := e.Result
		if r == nil {
			return
		}
		args := []any{"run_id", e.RunID, "node", e.Node, "status", string(r.Status),
			"duration", r.CompletedAt.Sub(r.StartedAt).Round(time.Millisecond), "wait", r.WaitTime.Round(time.Millisecond)}
		if len(r.Attempts) > 1 {
			args = append(args, "attempts", len(r.Attempts))
		}
		switch r.Status {
		case Error:
			if r.Err != nil {
				args = append(args, "kind", string(r.Err.Kind), "error", r.Err.Message)
			}
			l.ErrorContext(ctx, "node failed", args...)
		case Skipped:
			args = append(args, "reason", r.SkipReason)
			if len(r.FailedUpstream) > 0 {
				args = append(args, "failed_upstream", r.FailedUpstream)
			}
			l.InfoContext(ctx, "node skipped", args...)
		default:
			l.InfoContext(ctx, "node finished", args...)
		}
	case RunFinished:
		args := []any{"run_id", e.RunID}
		if r := e.Run; r != nil {
			args = append(args, "duration", r.CompletedAt.Sub(r.StartedAt).Round(time.Millisecond),
				"success", r.Count(Success), "error", r.Count(Error), "skipped", r.Count(Skipped), "cached", r.Count(Cached))
		}
		l.InfoContext(ctx, "build finished", args...)
	}
}
