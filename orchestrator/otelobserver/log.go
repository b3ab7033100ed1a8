package otelobserver

import (
	"context"
	"log/slog"

	"github.com/dbtorch/dbtorch/orchestrator"
)

// LogObserver writes every event of a build as one slog record whose
// message is the event type (run_started, node_queued, node_started,
// node_retrying, node_finished, run_finished), whose time is the event's,
// and whose attributes are EventAttributes: the same names and values as
// the spans. With a slog.JSONHandler that is one JSON object per line.
// Levels: Warn for retries and Error for failed nodes; Info otherwise.
type LogObserver struct {
	h slog.Handler
}

// NewLogObserver returns a LogObserver writing to h; nil h discards.
func NewLogObserver(h slog.Handler) *LogObserver {
	if h == nil {
		h = slog.DiscardHandler
	}
	return &LogObserver{h: h}
}

// Event writes e. It implements orchestrator.Observer.
func (l *LogObserver) Event(ctx context.Context, e orchestrator.Event) {
	level := slog.LevelInfo
	switch {
	case e.Type == orchestrator.NodeRetrying:
		level = slog.LevelWarn
	case e.Type == orchestrator.NodeFinished && e.Result != nil && e.Result.Status == orchestrator.Error:
		level = slog.LevelError
	}
	if !l.h.Enabled(ctx, level) {
		return
	}
	r := slog.NewRecord(e.Time, level, string(e.Type), 0)
	for _, kv := range EventAttributes(e) {
		r.AddAttrs(slog.Any(string(kv.Key), kv.Value.AsInterface()))
	}
	// A log line that cannot be written must not stop the build.
	_ = l.h.Handle(ctx, r)
}
