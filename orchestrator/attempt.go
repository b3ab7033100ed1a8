package orchestrator

import (
	"context"
	"time"

	"github.com/dbtorch/dbtorch/executor"
	"github.com/dbtorch/dbtorch/manifest"
)

// attempts is the build's one attempt loop, for a node of the per-node
// scheduler (a batch of one) and for a wave's invocation alike: it runs
// cmd over the batch's nodes while holding sl, records each attempt on
// each node's result, and retries together the nodes whose failure the
// retry policy accepts (while attempts remain and ctx is not done), after
// Config.Retry's backoff, during which sl is let go. Before each attempt
// the schemas the nodes write to are made to exist (awaitSchemas); a build
// cancelled while waiting for them skips nodes that never ran. queuedAt is
// when the batch was queued: the time until the first attempt, and the
// time taking the slots again or waiting for schemas before each retry,
// are the nodes' WaitTime. It ends every
// node of the batch with the result of its last attempt; recording the
// results (cache) and finishing the nodes is the caller's.
func (b *build) attempts(ctx context.Context, cmd executor.Command, batch []int32, sl *slots, queuedAt time.Time) {
	cfg := b.cfg
	policy := cfg.Retry.policy()
	pending := batch
	nodes := make([]*manifest.Node, 0, len(batch))
	for attempt := 1; ; attempt++ {
		nodes = nodes[:0]
		for _, i := range pending {
			nodes = append(nodes, b.plan.Node(i))
		}
		sw, serr := b.awaitSchemas(ctx, nodes)
		if ctx.Err() != nil && serr != nil {
			if attempt == 1 { // never ran
				for _, i := range batch {
					b.skip(i, nil, ReasonCancelled)
				}
			}
			return
		}
		start := cfg.Now()
		for _, i := range pending {
			if attempt == 1 {
				b.results[i].StartedAt = start
				b.results[i].WaitTime = start.Sub(queuedAt)
			} else {
				b.results[i].WaitTime += sw
			}
			b.emit(ctx, Event{Type: NodeStarted, Node: b.plan.ID(i), Attempt: attempt, Time: start})
		}
		resp, err := b.attempt(ctx, b.request(cmd, attempt, nodes...), serr)
		rs, inv := resultsFor(nodes, resp, err)
		end := cfg.Now()
		var retry []int32
		for k, i := range pending {
			er := &rs[k]
			res := &b.results[i]
			res.Attempts = append(res.Attempts, attemptOf(attempt, start, end, er, inv))
			res.CompletedAt = end
			res.attempted(*er, inv)
			if er.Status != executor.Success && er.Status != executor.Reused && attempt <= cfg.Retry.Retries && ctx.Err() == nil && policy(ctx, nodes[k], er) {
				retry = append(retry, i)
			}
		}
		if len(retry) == 0 {
			return
		}
		delay := cfg.Retry.Backoff(attempt)
		for _, i := range retry {
			b.emit(ctx, Event{Type: NodeRetrying, Node: b.plan.ID(i), Attempt: attempt, Delay: delay, Error: b.results[i].Err})
		}
		waited, ok := sl.retryAfter(ctx, delay, cfg.Now)
		if !ok {
			return
		}
		for _, i := range retry {
			b.results[i].WaitTime += waited
		}
		pending = retry
	}
}
