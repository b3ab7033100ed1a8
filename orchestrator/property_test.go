package orchestrator_test

import (
	"context"
	"errors"
	"fmt"
	"math/rand/v2"
	"runtime"
	"slices"
	"sync/atomic"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/dbtorch/dbtorch/executor"
	"github.com/dbtorch/dbtorch/manifest"
	"github.com/dbtorch/dbtorch/orchestrator"
)

// checkNoLeak fails the test if goroutines started during the test are
// still running shortly after it.
func checkNoLeak(t *testing.T) {
	t.Helper()
	before := runtime.NumGoroutine()
	t.Cleanup(func() {
		deadline := time.Now().Add(2 * time.Second)
		for runtime.NumGoroutine() > before && time.Now().Before(deadline) {
			time.Sleep(5 * time.Millisecond)
		}
		if n := runtime.NumGoroutine(); n > before {
			buf := make([]byte, 1<<16)
			buf = buf[:runtime.Stack(buf, true)]
			t.Errorf("goroutines leaked: %d before, %d after\n%s", before, n, buf)
		}
	})
}

// randomScripts scripts every executable node of m: random durations up
// to maxDur, a few permanent failures, a few transient ones.
func randomScripts(r *rand.Rand, m *manifest.Manifest, maxDur time.Duration, failRate float64) map[string]script {
	out := map[string]script{}
	m.All(func(n *manifest.Node) bool {
		s := script{dur: time.Duration(r.Int64N(int64(maxDur) + 1))}
		switch x := r.Float64(); {
		case x < failRate:
			s.failures = -1
			if n.IsTest() {
				s.kind = executor.KindTestFailure
			}
		case x < 2*failRate:
			s.failures = 1 + r.IntN(2)
			if r.IntN(3) == 0 {
				s.kind = executor.KindCompilation // not retried: fails for good
			}
		case n.IsTest() && x < 3*failRate:
			s.dbt = "warn"
		}
		out[n.UniqueID] = s
		return true
	})
	return out
}

// waveOf returns the wave of planned node id.
func waveOf(p *manifest.Plan, id string) int {
	i, ok := p.Index(id)
	if !ok {
		panic("not planned: " + id)
	}
	return p.Wave(i)
}

// expected computes the status and failed ancestors every planned node
// must end with, from the scripts and the retry count.
func expected(p *manifest.Plan, scripts map[string]script, retries int) (map[string]orchestrator.Status, map[string][]string) {
	st := map[string]orchestrator.Status{}
	failedUp := map[string][]string{}
	for _, id := range p.Nodes() {
		var failed []string
		for _, u := range p.UpstreamIDs(id) {
			switch st[u] {
			case orchestrator.Error:
				failed = append(failed, u)
			case orchestrator.Skipped:
				failed = append(failed, failedUp[u]...)
			}
		}
		if len(failed) > 0 {
			slices.Sort(failed)
			st[id], failedUp[id] = orchestrator.Skipped, slices.Compact(failed)
			continue
		}
		s := scripts[id]
		retryable := orchestrator.DefaultRetryPolicy(context.Background(), nil, &executor.Result{Kind: cmpKind(s.kind)})
		switch {
		case s.failures < 0, s.failures > 0 && (!retryable || s.failures > retries):
			st[id] = orchestrator.Error
		default:
			st[id] = orchestrator.Success
		}
	}
	return st, failedUp
}

func cmpKind(k executor.Kind) executor.Kind {
	if k == "" {
		return executor.KindDatabase
	}
	return k
}

func TestPropertyRandomDAGs(t *testing.T) {
	seeds := 40
	if testing.Short() {
		seeds = 8
	}
	for seed := range seeds {
		r := rand.New(rand.NewPCG(uint64(seed), 7))
		strategy := []manifest.TestStrategy{manifest.Immediate, manifest.Deferred, manifest.SkipTests}[r.IntN(3)]
		mode := orchestrator.PerNode
		if r.IntN(5) == 0 {
			mode = orchestrator.PerWave
		}
		conc := 1 + r.IntN(8)
		strict := r.IntN(4) == 0
		prio := orchestrator.Priority(r.IntN(2))
		retries := r.IntN(3)
		limitSize := 1 + r.IntN(conc)
		name := fmt.Sprintf("seed%d/%s/%s/c%d/strict=%v/%s/r%d/l%d", seed, mode, strategy, conc, strict, prio, retries, limitSize)
		t.Run(name, func(t *testing.T) {
			checkNoLeak(t)
			spec := randomDAG(r, 150+r.IntN(250))
			m := manifestOf(spec)
			scripts := randomScripts(r, m, 300*time.Microsecond, 0.03)
			fake := newFake(scripts)
			lim := &countingLimiter{inner: orchestrator.NewLimiter(limitSize)}
			var events []orchestrator.Event
			o, err := orchestrator.New(orchestrator.Config{
				Executor: fake, Manifest: m, Mode: mode, Concurrency: conc, StrictWaves: strict, Priority: prio,
				Retry:    orchestrator.RetryConfig{Retries: retries, Delay: 50 * time.Microsecond, Jitter: 0.5},
				Limits:   []orchestrator.NodeLimit{{Name: "warehouse", Limiter: lim, Applies: func(n *manifest.Node) bool { return !n.IsTest() }}},
				Observer: orchestrator.ObserverFunc(func(_ context.Context, e orchestrator.Event) { events = append(events, e) }),
			})
			require.NoError(t, err)
			run, err := o.RunBuild(context.Background(), orchestrator.BuildOptions{Tests: strategy})
			require.NotNil(t, run)
			assert.Zero(t, fake.active.Load(), "executor calls still running after RunBuild returned")
			p := run.Plan
			require.Len(t, run.Results, p.Len())

			want, wantFailed := expected(p, scripts, retries)
			calls := fake.byNode()
			var failedIDs []string
			for k, res := range run.Results {
				id := res.UniqueID
				require.Equal(t, p.ID(int32(k)), id, "results in plan order")
				assert.Equal(t, want[id], res.Status, "status of %s", id)
				if res.Status == orchestrator.Skipped {
					assert.Equal(t, wantFailed[id], res.FailedUpstream, "failed_upstream of %s", id)
					assert.Equal(t, orchestrator.ReasonUpstreamFailed, res.SkipReason)
					assert.Empty(t, calls[id], "skipped node %s was executed", id)
					assert.Empty(t, res.Attempts)
				} else {
					assert.Len(t, res.Attempts, len(calls[id]), "attempts of %s", id)
					assert.NotEmpty(t, calls[id], "node %s never executed", id)
				}
				if res.Status == orchestrator.Error {
					failedIDs = append(failedIDs, id)
					require.NotNil(t, res.Err)
				}
				assert.LessOrEqual(t, len(calls[id]), retries+1)
			}
			if len(failedIDs) > 0 {
				var be *orchestrator.BuildError
				require.ErrorAs(t, err, &be)
				slices.Sort(failedIDs)
				assert.Equal(t, failedIDs, be.Failed)
			} else {
				require.NoError(t, err)
			}

			// Order: nothing starts before all its upstreams ended.
			endOf := map[string]time.Time{}
			startOf := map[string]time.Time{}
			for id, cs := range calls {
				startOf[id] = cs[0].start
				endOf[id] = cs[len(cs)-1].end
			}
			var lastNonTest time.Time
			for id, e := range endOf {
				if n := m.Lookup(id); !n.IsTest() && e.After(lastNonTest) {
					lastNonTest = e
				}
			}
			for id, s := range startOf {
				for _, u := range p.UpstreamIDs(id) {
					assert.False(t, s.Before(endOf[u]), "%s started before its upstream %s ended", id, u)
				}
				if strategy == manifest.Deferred && m.Lookup(id).IsTest() {
					assert.False(t, s.Before(lastNonTest), "deferred test %s started before the last model ended", id)
				}
			}
			if strict || mode == orchestrator.PerWave {
				for id, s := range startOf {
					for other, e := range endOf {
						if waveOf(p, other) < waveOf(p, id) {
							require.False(t, s.Before(e), "wave barrier: %s (wave %d) started before %s (wave %d) ended", id, waveOf(p, id), other, waveOf(p, other))
						}
					}
				}
			}
			// Limits.
			if mode == orchestrator.PerNode {
				assert.LessOrEqual(t, fake.peak.Load(), int64(conc), "concurrency exceeded")
			} else {
				assert.LessOrEqual(t, fake.peak.Load(), int64(1), "per-wave runs one invocation at a time")
			}
			assert.LessOrEqual(t, lim.peak.Load(), int64(limitSize), "named limit exceeded")
			assert.LessOrEqual(t, fake.peakModels.Load(), int64(limitSize), "more limited nodes ran at once than the limit allows")

			// Events: one finished per node, run events bracket them.
			require.NotEmpty(t, events)
			assert.Equal(t, orchestrator.RunStarted, events[0].Type)
			assert.Equal(t, orchestrator.RunFinished, events[len(events)-1].Type)
			finished := map[string]int{}
			for _, e := range events {
				if e.Type == orchestrator.NodeFinished {
					finished[e.Node]++
				}
			}
			assert.Len(t, finished, p.Len())
			for id, c := range finished {
				assert.Equal(t, 1, c, "finished events of %s", id)
			}
		})
	}
}

func TestPropertyCancellation(t *testing.T) {
	for seed := range 12 {
		t.Run(fmt.Sprint(seed), func(t *testing.T) {
			checkNoLeak(t)
			r := rand.New(rand.NewPCG(uint64(seed), 99))
			m := manifestOf(randomDAG(r, 200+r.IntN(200)))
			fake := newFake(randomScripts(r, m, 2*time.Millisecond, 0.002))
			mode := orchestrator.Mode(seed % 2)
			o, err := orchestrator.New(orchestrator.Config{Executor: fake, Manifest: m, Mode: mode, Concurrency: 1 + r.IntN(6),
				Retry: orchestrator.RetryConfig{Retries: 1, Delay: time.Millisecond}})
			require.NoError(t, err)
			ctx, cancel := context.WithCancel(context.Background())
			defer cancel()
			cancelAt := int64(1 + r.IntN(60))
			var started atomic.Int64
			fake.onStart = func(string) {
				if started.Add(1) == cancelAt {
					cancel()
				}
			}
			run, err := o.RunBuild(ctx, orchestrator.BuildOptions{})
			returned := time.Now()
			require.ErrorIs(t, err, context.Canceled)
			require.NotNil(t, run)
			assert.Zero(t, fake.active.Load(), "executor calls still running after RunBuild returned")
			calls := fake.byNode()
			notRun := 0
			for _, res := range run.Results {
				require.Contains(t, []orchestrator.Status{orchestrator.Success, orchestrator.Error, orchestrator.Skipped}, res.Status, res.UniqueID)
				for _, c := range calls[res.UniqueID] {
					assert.False(t, c.end.After(returned))
				}
				if len(calls[res.UniqueID]) == 0 {
					notRun++
					assert.Equal(t, orchestrator.Skipped, res.Status, "%s never ran", res.UniqueID)
				}
				if res.Status == orchestrator.Skipped && res.SkipReason == orchestrator.ReasonCancelled {
					assert.Empty(t, calls[res.UniqueID], "%s skipped as cancelled but executed", res.UniqueID)
				}
				if res.Status == orchestrator.Error && res.Err.Kind == executor.KindCancelled {
					require.NotEmpty(t, calls[res.UniqueID])
				}
			}
			assert.Greater(t, notRun, len(run.Results)/3, "the build should have been cut short")
			var be *orchestrator.BuildError
			if errors.As(err, &be) {
				assert.NotEmpty(t, be.Failed)
			}
		})
	}
}
