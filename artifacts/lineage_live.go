package artifacts

import (
	"context"
	"log/slog"
	"sync"

	"github.com/dbtorch/dbtorch/executor"
	"github.com/dbtorch/dbtorch/manifest"
	"github.com/dbtorch/dbtorch/orchestrator"
)

// Observer returns an orchestrator.Observer that emits the build's
// OpenLineage events while it runs, instead of after it as Report does:
// the build's START when it starts, a node's START when its first attempt
// starts, its COMPLETE or FAIL when it finishes, and the build's COMPLETE
// or FAIL at the end. The events are the ones Report would emit for the
// same run, at the times they happen, so a lineage server shows running
// jobs. m is the manifest the builds run on.
//
// Use either the Observer or Report for a build, not both. The
// orchestrator calls observers synchronously: pair the Observer with a
// transport whose Emit does not wait on the network (HTTPTransport,
// FileTransport). Emit errors are logged to l.Logger. One Observer may
// serve several builds at once; events are told apart by the build ID.
func (l *Lineage) Observer(m *manifest.Manifest) orchestrator.Observer {
	return &liveLineage{l: l, m: m, started: map[liveKey]bool{}}
}

type liveKey struct{ build, node string }

type liveLineage struct {
	l       *Lineage
	m       *manifest.Manifest
	mu      sync.Mutex
	started map[liveKey]bool
}

// Event implements orchestrator.Observer.
func (o *liveLineage) Event(ctx context.Context, ev orchestrator.Event) {
	if o.l.Transport == nil {
		return
	}
	run := ev.Run
	if run == nil {
		run = &orchestrator.Run{ID: ev.RunID, Manifest: o.m}
	}
	e := o.l.emitter(run)
	switch ev.Type {
	case orchestrator.RunStarted:
		o.emit(ctx, e.buildEvent(EventStart, ev.Time, nil))
	case orchestrator.NodeStarted:
		rt := o.lineageType(ev.Node)
		if rt == "" || ev.Attempt > 1 {
			return
		}
		k := liveKey{ev.RunID, ev.Node}
		o.mu.Lock()
		first := !o.started[k]
		o.started[k] = true
		o.mu.Unlock()
		if first {
			nr := &orchestrator.NodeResult{Result: executor.Result{UniqueID: ev.Node}, ResourceType: rt, StartedAt: ev.Time}
			o.emit(ctx, e.nodeEvent(EventStart, ev.Time, nr, rt))
		}
	case orchestrator.NodeFinished:
		rt := o.lineageType(ev.Node)
		k := liveKey{ev.RunID, ev.Node}
		o.mu.Lock()
		started := o.started[k]
		delete(o.started, k)
		o.mu.Unlock()
		if rt == "" || !started || ev.Result == nil {
			return
		}
		typ := EventComplete
		if ev.Result.Status == orchestrator.Error {
			typ = EventFail
		} else if ev.Result.Status != orchestrator.Success {
			// Started, then ended without running to completion
			// (cancelled between attempts): the run was aborted.
			typ = EventAbort
		}
		at := ev.Result.CompletedAt
		if at.IsZero() {
			at = ev.Time
		}
		o.emit(ctx, e.nodeEvent(typ, at, ev.Result, rt))
	case orchestrator.RunFinished:
		end := ev.Time
		if ev.Run != nil && !ev.Run.CompletedAt.IsZero() {
			end = ev.Run.CompletedAt
		}
		var failed []string
		if ev.Run != nil {
			failed = failedNodes(ev.Run)
		}
		typ := EventComplete
		if len(failed) > 0 {
			typ = EventFail
		}
		o.emit(ctx, e.buildEvent(typ, orNow(end), failed))
	}
}

// lineageType returns the node's resource type when it has lineage events
// (model, seed, snapshot), else "".
func (o *liveLineage) lineageType(id string) manifest.ResourceType {
	if o.m == nil {
		return ""
	}
	n := o.m.Lookup(id)
	if n == nil {
		return ""
	}
	switch n.ResourceType {
	case manifest.Model, manifest.Seed, manifest.Snapshot:
		return n.ResourceType
	}
	return ""
}

func (o *liveLineage) emit(ctx context.Context, ev *RunEvent) {
	if err := o.l.Transport.Emit(ctx, ev); err != nil {
		logger := o.l.Logger
		if logger == nil {
			logger = slog.New(slog.DiscardHandler)
		}
		logger.Warn("artifacts: lineage event not emitted", "job", ev.Job.Name, "event_type", ev.EventType, "err", err)
	}
}
