package orchestrator

import (
	"container/heap"
	"context"
	"sync"
	"time"

	"github.com/dbtorch/dbtorch/executor"
	"github.com/dbtorch/dbtorch/manifest"
)

// The per-node scheduler.
//
// One goroutine (the caller of RunBuild) owns all scheduling state. A node
// becomes ready when its last planned upstream reaches a terminal status;
// a ready node is either skipped at once (an upstream failed or was
// skipped, a source is stale, or the build is cancelled), held back by a
// barrier (strict waves, deferred tests), ended at once as a no-op (an
// exposure or saved query, which nothing runs), or queued. Queued nodes are
// started in priority order, at most Concurrency at a time, each on a
// goroutine of its own that runs the node to its terminal status (cache
// lookup, limits, attempts and retries in build.attempts, the loop the
// per-wave runner shares) and hands the node back on a channel.
//
// The workers are a sync.WaitGroup, not an errgroup: a worker has no error
// to return (a node's outcome, failure included, is its NodeResult), a
// failing node must not cancel the others (independent branches go on),
// and the scheduler itself counts running workers against Concurrency, so
// errgroup's SetLimit would add nothing. The WaitGroup only guarantees
// that RunBuild returns after every worker has. The scheduler
// returns when every node is terminal, which implies every worker has
// returned.

// readyQueue is a max-heap of node indexes by priority, ties in plan order.
type readyQueue struct {
	items []int32
	prio  []float64
}

func (q *readyQueue) Len() int { return len(q.items) }
func (q *readyQueue) Less(a, b int) bool {
	x, y := q.items[a], q.items[b]
	if q.prio[x] != q.prio[y] {
		return q.prio[x] > q.prio[y]
	}
	return x < y
}
func (q *readyQueue) Swap(a, b int) { q.items[a], q.items[b] = q.items[b], q.items[a] }
func (q *readyQueue) Push(x any)    { q.items = append(q.items, x.(int32)) }
func (q *readyQueue) Pop() any {
	n := len(q.items) - 1
	x := q.items[n]
	q.items = q.items[:n]
	return x
}

// priorities computes each node's priority under the configured rule.
func (b *build) priorities() []float64 {
	prio := make([]float64, b.n)
	switch b.cfg.Priority {
	case Depth:
		for i := range int32(b.n) {
			prio[i] = float64(b.plan.Wave(i))
		}
	default: // CriticalPath
		// Plan order is topological, so walking it backwards sees every
		// downstream node before its upstreams.
		for i := int32(b.n) - 1; i >= 0; i-- {
			w := 1.0
			if b.cfg.Estimate != nil {
				w = float64(b.cfg.Estimate(b.plan.ID(i))) / float64(time.Millisecond)
			}
			longest := 0.0
			for _, d := range b.plan.Downstream(i) {
				longest = max(longest, prio[d])
			}
			prio[i] = w + longest
		}
	}
	return prio
}

// workItem is a node handed to a worker.
type workItem struct {
	i int32
}

func (b *build) runPerNode(ctx context.Context) {
	if b.n == 0 {
		return
	}
	conc := b.conc
	deferred := b.plan.Strategy == manifest.Deferred
	strict := b.cfg.StrictWaves

	remaining := make([]int32, b.n)
	nonTestsLeft := 0
	waveLeft := make([]int, len(b.plan.Waves()))
	var work []int32
	for i := range int32(b.n) {
		remaining[i] = int32(len(b.plan.Upstream(i)))
		if remaining[i] == 0 {
			work = append(work, int32(i))
		}
		if !b.plan.Node(i).IsTest() {
			nonTestsLeft++
		}
		waveLeft[b.plan.Wave(i)]++
	}
	curWave := 0
	heldWave := make([][]int32, len(waveLeft)) // strict waves
	var heldTests []int32                      // deferred tests
	queuedAt := make([]time.Time, b.n)

	q := &readyQueue{prio: b.priorities()}
	var workers sync.WaitGroup
	done := make(chan int32, conc)
	running, finished := 0, 0
	cancelled := false
	ctxDone := ctx.Done()

	finish := func(i int32) {
		finished++
		if !b.plan.Node(i).IsTest() {
			if nonTestsLeft--; nonTestsLeft == 0 && deferred {
				work = append(work, heldTests...)
				heldTests = nil
			}
		}
		waveLeft[b.plan.Wave(i)]--
		for strict && curWave < len(waveLeft) && waveLeft[curWave] == 0 {
			curWave++
			if curWave < len(heldWave) {
				work = append(work, heldWave[curWave]...)
				heldWave[curWave] = nil
			}
		}
		for _, d := range b.plan.Downstream(i) {
			if remaining[d]--; remaining[d] == 0 {
				work = append(work, d)
			}
		}
		b.emit(ctx, Event{Type: NodeFinished, Node: b.plan.ID(i), Attempt: len(b.results[i].Attempts), Result: &b.results[i]})
	}

	for finished < b.n {
		// Resolve ready nodes: skip, hold or queue.
		for len(work) > 0 {
			i := work[len(work)-1]
			work = work[:len(work)-1]
			if failed, reason := b.skipCause(i); reason != "" {
				b.skip(i, failed, reason)
				finish(i)
				continue
			}
			if cancelled {
				b.skip(i, nil, ReasonCancelled)
				finish(i)
				continue
			}
			if strict && b.plan.Wave(i) > curWave {
				heldWave[b.plan.Wave(i)] = append(heldWave[b.plan.Wave(i)], i)
				continue
			}
			if deferred && b.plan.Node(i).IsTest() && nonTestsLeft > 0 {
				heldTests = append(heldTests, i)
				continue
			}
			if b.plan.Node(i).NoOp() {
				b.noOp(i)
				finish(i)
				continue
			}
			queuedAt[i] = b.cfg.Now()
			heap.Push(q, i)
			b.emit(ctx, Event{Type: NodeQueued, Node: b.plan.ID(i), Time: queuedAt[i]})
		}
		// Start queued nodes on free workers.
		for running < conc && q.Len() > 0 && !cancelled {
			i := heap.Pop(q).(int32)
			item := workItem{i: i}
			running++
			qa := queuedAt[i]
			workers.Go(func() {
				b.runNode(ctx, item, qa)
				done <- item.i
			})
		}
		if finished == b.n {
			break
		}
		if running == 0 && q.Len() == 0 && len(work) == 0 {
			// Unreachable for a valid plan; never hang.
			for i := range int32(b.n) {
				if b.results[i].Status == "" {
					b.skip(int32(i), nil, "internal: node never became ready")
					finished++
				}
			}
			break
		}
		select {
		case i := <-done:
			running--
			finish(i)
		case <-ctxDone:
			cancelled = true
			ctxDone = nil
			for q.Len() > 0 {
				i := heap.Pop(q).(int32)
				b.skip(i, nil, ReasonCancelled)
				finish(i)
			}
		}
	}
	workers.Wait()
}

// runNode runs node item.i to a terminal status: cache lookup, limits,
// attempts with retries, cache store. It writes only b.results[item.i].
func (b *build) runNode(ctx context.Context, item workItem, queuedAt time.Time) {
	i := item.i
	n := b.plan.Node(i)
	res := &b.results[i]

	if ctx.Err() != nil {
		b.skip(i, nil, ReasonCancelled)
		return
	}
	hit, looked, err := b.cacheStep(ctx, i, queuedAt)
	if err != nil {
		b.o.log.WarnContext(ctx, "cache key failed; running the node", "node", n.UniqueID, "error", err)
	}
	if hit {
		return
	}

	sl, err := takeSlots(ctx, b.limitsFor(n))
	if err != nil {
		b.skip(i, nil, ReasonCancelled)
		return
	}
	defer sl.done()
	if looked && b.builtMeanwhile(ctx, n, sl, res.CacheKey) {
		b.servedFromCache(res, queuedAt)
		return
	}

	b.attempts(ctx, executor.CommandFor(n.ResourceType), []int32{i}, sl, queuedAt)
	b.record(ctx, i)
}
