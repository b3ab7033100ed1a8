package orchestrator

import (
	"context"
	"time"

	"github.com/dbtorch/dbtorch/executor"
	"github.com/dbtorch/dbtorch/manifest"
)

// runPerWave runs one `dbt build` invocation per wave, waves in order (and
// one `dbt test` for the wave's unit tests, if any).
// Nodes of a wave whose upstreams failed (or were skipped) are left out of
// the wave's invocation and skipped, and so are exposures and saved
// queries, ended as no-ops; failed nodes of the invocation that
// the retry policy accepts are retried together in a smaller invocation.
func (b *build) runPerWave(ctx context.Context) {
	first := int32(0) // plan index of the wave's first node: plan order is wave order
	for _, wave := range b.plan.Waves() {
		var batch []int32
		for k := range wave {
			i := first + int32(k)
			if failed, reason := b.skipCause(i); reason != "" {
				b.skip(i, failed, reason)
				b.finished(ctx, i)
				continue
			}
			if ctx.Err() != nil {
				b.skip(i, nil, ReasonCancelled)
				b.finished(ctx, i)
				continue
			}
			if b.plan.Node(i).NoOp() {
				b.noOp(i)
				b.finished(ctx, i)
				continue
			}
			if hit, _, err := b.cacheStep(ctx, i, time.Time{}); hit {
				b.finished(ctx, i)
				continue
			} else if err != nil {
				b.o.log.WarnContext(ctx, "cache key failed; running the node", "node", b.plan.ID(i), "error", err)
			}
			batch = append(batch, i)
		}
		first += int32(len(wave))
		// dbt build runs a unit test only together with its model, which
		// is in a later wave: a wave's unit tests get a dbt test of their
		// own, before the wave's dbt build.
		var units, rest []int32
		for _, i := range batch {
			if b.plan.Node(i).ResourceType == manifest.UnitTest {
				units = append(units, i)
			} else {
				rest = append(rest, i)
			}
		}
		if len(units) > 0 {
			b.runWave(ctx, executor.Test, units)
		}
		if len(rest) > 0 {
			// A wave of data tests only (the deferred test wave) runs with
			// dbt test: dbt build would add its parent_test edges between
			// them and skip tests downstream of a failing one, which
			// deferred tests must not do.
			cmd := executor.Test
			for _, i := range rest {
				if !b.plan.Node(i).IsTest() {
					cmd = executor.Build
					break
				}
			}
			b.runWave(ctx, cmd, rest)
		}
	}
}

func (b *build) finished(ctx context.Context, i int32) {
	b.emit(ctx, Event{Type: NodeFinished, Node: b.plan.ID(i), Attempt: len(b.results[i].Attempts), Result: &b.results[i]})
}

// runWave runs one invocation of cmd (and its retries) over batch, nodes
// of one wave, and ends every node of batch.
func (b *build) runWave(ctx context.Context, cmd executor.Command, batch []int32) {
	cfg := b.cfg
	queuedAt := cfg.Now()
	nodes := make([]*manifest.Node, len(batch))
	for k, i := range batch {
		nodes[k] = b.plan.Node(i)
		b.emit(ctx, Event{Type: NodeQueued, Node: b.plan.ID(i), Time: queuedAt})
	}
	defer func() {
		for _, i := range batch {
			b.record(ctx, i)
			b.finished(ctx, i)
		}
	}()
	sl, err := takeSlots(ctx, b.limitsFor(nodes...))
	if err != nil {
		for _, i := range batch {
			b.skip(i, nil, ReasonCancelled)
		}
		return
	}
	defer sl.done()
	b.attempts(ctx, cmd, batch, sl, queuedAt)
}
