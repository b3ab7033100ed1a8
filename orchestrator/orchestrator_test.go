package orchestrator_test

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"slices"
	"sync"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/dbtorch/dbtorch/artifacts"
	"github.com/dbtorch/dbtorch/executor"
	"github.com/dbtorch/dbtorch/internal/syncbuf"
	"github.com/dbtorch/dbtorch/manifest"
	"github.com/dbtorch/dbtorch/orchestrator"
	"github.com/dbtorch/dbtorch/selector"
)

// diamond is m0 -> m1, m2 -> m3, plus m4 independent; test t0 on m1, t1 on
// (m1, m2) and unit test u0 on m3.
func diamond() dagSpec {
	return dagSpec{
		models:    5,
		parents:   map[int][]int{1: {0}, 2: {0}, 3: {1, 2}},
		tests:     [][]int{{1}, {1, 2}},
		unitTests: []int{3},
	}
}

func statuses(run *orchestrator.Run) map[string]orchestrator.Status {
	out := map[string]orchestrator.Status{}
	for _, r := range run.Results {
		out[r.UniqueID] = r.Status
	}
	return out
}

func newOrch(t *testing.T, cfg orchestrator.Config) *orchestrator.Orchestrator {
	t.Helper()
	o, err := orchestrator.New(cfg)
	require.NoError(t, err)
	return o
}

func TestSkipping(t *testing.T) {
	S, E, K := orchestrator.Success, orchestrator.Error, orchestrator.Skipped
	m0, m1, m2, m3, m4 := modelID(0), modelID(1), modelID(2), modelID(3), modelID(4)
	t0, t1, u0 := testID(0), testID(1), unitTestID(0)
	tests := []struct {
		name     string
		scripts  map[string]script
		strategy manifest.TestStrategy
		want     map[string]orchestrator.Status
		failedUp map[string][]string
	}{
		{
			name: "all pass",
			want: map[string]orchestrator.Status{m0: S, m1: S, m2: S, m3: S, m4: S, t0: S, t1: S, u0: S},
		},
		{
			name:     "root fails, independent branch goes on",
			scripts:  map[string]script{m0: {failures: -1}},
			want:     map[string]orchestrator.Status{m0: E, m1: K, m2: K, m3: K, m4: S, t0: K, t1: K, u0: K},
			failedUp: map[string][]string{m1: {m0}, m3: {m0}, t1: {m0}, u0: {m0}},
		},
		{
			name:    "error test skips the downstream of its model",
			scripts: map[string]script{t0: {failures: -1, kind: executor.KindTestFailure}},
			// dbt build runs u0 in m3's turn, and skips it with m3.
			want:     map[string]orchestrator.Status{m0: S, m1: S, m2: S, m3: K, m4: S, t0: E, t1: S, u0: K},
			failedUp: map[string][]string{m3: {t0}, u0: {t0}},
		},
		{
			name:    "warning test skips nothing",
			scripts: map[string]script{t0: {dbt: "warn"}},
			want:    map[string]orchestrator.Status{m0: S, m1: S, m2: S, m3: S, m4: S, t0: S, t1: S, u0: S},
		},
		{
			name:     "failing unit test skips its model",
			scripts:  map[string]script{u0: {failures: -1, kind: executor.KindTestFailure}},
			want:     map[string]orchestrator.Status{m0: S, m1: S, m2: S, m3: K, m4: S, t0: S, t1: S, u0: E},
			failedUp: map[string][]string{m3: {u0}},
		},
		{
			name:     "deferred: a failing test skips nothing",
			strategy: manifest.Deferred,
			scripts:  map[string]script{t0: {failures: -1, kind: executor.KindTestFailure}},
			want:     map[string]orchestrator.Status{m0: S, m1: S, m2: S, m3: S, m4: S, t0: E, t1: S, u0: S},
		},
		{
			name:     "skip strategy runs no tests",
			strategy: manifest.SkipTests,
			scripts:  map[string]script{t0: {failures: -1}},
			want:     map[string]orchestrator.Status{m0: S, m1: S, m2: S, m3: S, m4: S},
		},
		{
			name:     "two failures name both",
			scripts:  map[string]script{m1: {failures: -1}, m2: {failures: -1}},
			want:     map[string]orchestrator.Status{m0: S, m1: E, m2: E, m3: K, m4: S, t0: K, t1: K, u0: K},
			failedUp: map[string][]string{m3: {m1, m2}, t1: {m1, m2}},
		},
	}
	for _, mode := range []orchestrator.Mode{orchestrator.PerNode, orchestrator.PerWave} {
		for _, tc := range tests {
			t.Run(mode.String()+"/"+tc.name, func(t *testing.T) {
				fake := newFake(tc.scripts)
				o := newOrch(t, orchestrator.Config{Executor: fake, Manifest: manifestOf(diamond()), Mode: mode})
				run, err := o.RunBuild(context.Background(), orchestrator.BuildOptions{Tests: tc.strategy})
				assert.Empty(t, cmp.Diff(tc.want, statuses(run)))
				var failed []string
				for id, st := range tc.want {
					if st == orchestrator.Error {
						failed = append(failed, id)
					}
				}
				if len(failed) == 0 {
					require.NoError(t, err)
				} else {
					var be *orchestrator.BuildError
					require.ErrorAs(t, err, &be)
					slices.Sort(failed)
					assert.Equal(t, failed, be.Failed)
				}
				for id, want := range tc.failedUp {
					assert.Equal(t, want, run.Result(id).FailedUpstream, id)
				}
			})
		}
	}
}

func TestDeferredTestsRunLast(t *testing.T) {
	fake := newFake(map[string]script{modelID(4): {dur: 20 * time.Millisecond}})
	o := newOrch(t, orchestrator.Config{Executor: fake, Manifest: manifestOf(diamond()), Concurrency: 4})
	_, err := o.RunBuild(context.Background(), orchestrator.BuildOptions{Tests: manifest.Deferred})
	require.NoError(t, err)
	calls := fake.byNode()
	slow := calls[modelID(4)][0].end
	for _, id := range []string{testID(0), testID(1), unitTestID(0)} {
		assert.False(t, calls[id][0].start.Before(slow), "%s ran before the last model finished", id)
	}
}

func TestEagerNotWaveBound(t *testing.T) {
	// m4 is slow and alone in wave 0 with m0; m1 (wave 1) must start
	// before m4 ends when scheduling is eager, and after it with strict
	// waves.
	spec := dagSpec{models: 5, parents: map[int][]int{1: {0}, 2: {1}, 3: {2}}}
	for _, strict := range []bool{false, true} {
		t.Run(fmt.Sprintf("strict=%v", strict), func(t *testing.T) {
			fake := newFake(map[string]script{modelID(4): {dur: 30 * time.Millisecond}})
			o := newOrch(t, orchestrator.Config{Executor: fake, Manifest: manifestOf(spec), Concurrency: 2, StrictWaves: strict})
			_, err := o.RunBuild(context.Background(), orchestrator.BuildOptions{})
			require.NoError(t, err)
			calls := fake.byNode()
			startedBefore := calls[modelID(1)][0].start.Before(calls[modelID(4)][0].end)
			assert.Equal(t, !strict, startedBefore)
		})
	}
}

func TestRetries(t *testing.T) {
	tests := []struct {
		name     string
		s        script
		retries  int
		policy   orchestrator.RetryPolicy
		attempts int
		status   orchestrator.Status
	}{
		{"transient recovers", script{failures: 1}, 2, nil, 2, orchestrator.Success},
		{"transient twice", script{failures: 2, kind: executor.KindConnection}, 2, nil, 3, orchestrator.Success},
		{"out of retries", script{failures: -1}, 2, nil, 3, orchestrator.Error},
		{"no retries configured", script{failures: 1}, 0, nil, 1, orchestrator.Error},
		{"compilation not retried", script{failures: 1, kind: executor.KindCompilation}, 3, nil, 1, orchestrator.Error},
		{"custom policy", script{failures: 1, kind: executor.KindCompilation}, 3,
			func(context.Context, *manifest.Node, *executor.Result) bool { return true }, 2, orchestrator.Success},
	}
	for _, mode := range []orchestrator.Mode{orchestrator.PerNode, orchestrator.PerWave} {
		for _, tc := range tests {
			t.Run(mode.String()+"/"+tc.name, func(t *testing.T) {
				fake := newFake(map[string]script{modelID(1): tc.s})
				var mu sync.Mutex
				var retrying []orchestrator.Event
				o := newOrch(t, orchestrator.Config{Executor: fake, Manifest: manifestOf(dagSpec{models: 3, parents: map[int][]int{1: {0}, 2: {1}}}), Mode: mode,
					Retry: orchestrator.RetryConfig{Retries: tc.retries, Delay: time.Millisecond, Policy: tc.policy},
					Observer: orchestrator.ObserverFunc(func(_ context.Context, e orchestrator.Event) {
						if e.Type == orchestrator.NodeRetrying {
							mu.Lock()
							retrying = append(retrying, e)
							mu.Unlock()
						}
					})})
				run, _ := o.RunBuild(context.Background(), orchestrator.BuildOptions{})
				res := run.Result(modelID(1))
				assert.Equal(t, tc.status, res.Status)
				require.Len(t, res.Attempts, tc.attempts)
				for k, a := range res.Attempts {
					assert.Equal(t, k+1, a.Number)
					if k < tc.attempts-1 {
						assert.Equal(t, executor.Error, a.Status)
					}
				}
				assert.Len(t, retrying, tc.attempts-1)
				for k, e := range retrying {
					assert.Equal(t, k+1, e.Attempt)
					assert.Equal(t, modelID(1), e.Node)
				}
				if tc.status == orchestrator.Error {
					assert.Equal(t, orchestrator.Skipped, run.Result(modelID(2)).Status)
				} else {
					assert.Equal(t, orchestrator.Success, run.Result(modelID(2)).Status)
				}
				// The executor saw the attempt numbers.
				var nums []int
				for _, r := range fake.reqs {
					for _, n := range r.Nodes {
						if n.UniqueID == modelID(1) {
							nums = append(nums, r.Attempt)
						}
					}
				}
				assert.Len(t, nums, tc.attempts)
				assert.True(t, slices.IsSorted(nums))
			})
		}
	}
}

func TestBackoff(t *testing.T) {
	rc := orchestrator.RetryConfig{Retries: 5, Delay: 100 * time.Millisecond, MaxDelay: time.Second}
	var got []time.Duration
	for k := 1; k <= 5; k++ {
		got = append(got, rc.Backoff(k))
	}
	assert.Equal(t, []time.Duration{100 * time.Millisecond, 200 * time.Millisecond, 400 * time.Millisecond, 800 * time.Millisecond, time.Second}, got)
	rc.Jitter = 0.5
	for range 100 {
		d := rc.Backoff(2)
		assert.GreaterOrEqual(t, d, 100*time.Millisecond)
		assert.LessOrEqual(t, d, 300*time.Millisecond)
	}
	rc = orchestrator.RetryConfig{Retries: 1}
	assert.Equal(t, time.Second, rc.Backoff(1), "default delay")
}

func TestDefaultRetryPolicy(t *testing.T) {
	retried := map[executor.Kind]bool{
		executor.KindDatabase: true, executor.KindConnection: true, executor.KindCrash: true,
		executor.KindTimeout: true, executor.KindUnknown: true,
		executor.KindCompilation: false, executor.KindTestFailure: false, executor.KindCancelled: false, executor.KindInternal: false,
	}
	for k, want := range retried {
		assert.Equal(t, want, orchestrator.DefaultRetryPolicy(context.Background(), nil, &executor.Result{Status: executor.Error, Kind: k}), k)
	}
}

func TestNodeTimeoutIsRetried(t *testing.T) {
	fake := newFake(map[string]script{modelID(0): {dur: time.Second}})
	o := newOrch(t, orchestrator.Config{Executor: fake, Manifest: manifestOf(dagSpec{models: 1}), NodeTimeout: 10 * time.Millisecond,
		Retry: orchestrator.RetryConfig{Retries: 1, Delay: time.Millisecond}})
	run, err := o.RunBuild(context.Background(), orchestrator.BuildOptions{})
	require.Error(t, err)
	res := run.Result(modelID(0))
	require.Len(t, res.Attempts, 2)
	assert.Equal(t, executor.KindTimeout, res.Err.Kind)
}

func TestSharedNamedLimit(t *testing.T) {
	checkNoLeak(t)
	var reg orchestrator.Registry
	l, err := reg.Limiter("warehouse", 3)
	require.NoError(t, err)
	again, err := reg.Limiter("warehouse", 3)
	require.NoError(t, err)
	assert.Same(t, l, again)
	_, err = reg.Limiter("warehouse", 5)
	require.Error(t, err)

	counting := &countingLimiter{inner: l}
	spec := dagSpec{models: 20}
	scripts := map[string]script{}
	for i := range 20 {
		scripts[modelID(i)] = script{dur: 20 * time.Millisecond}
	}
	fake := newFake(scripts)
	var wg sync.WaitGroup
	runs := make([]*orchestrator.Run, 3)
	for k := range 3 {
		o := newOrch(t, orchestrator.Config{Executor: fake, Manifest: manifestOf(spec), Concurrency: 4,
			Limits: []orchestrator.NodeLimit{{Name: "warehouse", Limiter: counting}}})
		wg.Go(func() {
			run, err := o.RunBuild(context.Background(), orchestrator.BuildOptions{})
			assert.NoError(t, err)
			runs[k] = run
		})
	}
	wg.Wait()
	assert.Equal(t, int64(3), counting.peak.Load(), "three orchestrators share three slots")
	assert.LessOrEqual(t, fake.peak.Load(), int64(3))
	var waited, maxWait, maxExec time.Duration
	for _, run := range runs {
		for _, r := range run.Results {
			waited += r.WaitTime
			maxWait = max(maxWait, r.WaitTime)
			maxExec = max(maxExec, r.CompletedAt.Sub(r.StartedAt))
		}
	}
	// 60 nodes of 20ms on 3 slots: most of them wait, the last ones about
	// the whole build. Were the wait counted as execution, the node that
	// waited longest would have run longer than it waited; the comparison
	// holds however slow a loaded machine makes every node.
	assert.Greater(t, waited, 60*20*time.Millisecond)
	assert.Less(t, maxExec, maxWait, "execution time excludes waiting")
}

// TestRetryDelayFreesSlots: a node waiting out its retry delay lets go of
// its limit slots. m0 takes the only slot and fails; while it waits 300 ms
// to retry, m1 (ready once m2, which needs no slot, is done) takes the
// slot and finishes.
func TestRetryDelayFreesSlots(t *testing.T) {
	fake := newFake(map[string]script{modelID(0): {dur: 10 * time.Millisecond, failures: 1}, modelID(1): {dur: 10 * time.Millisecond},
		modelID(2): {dur: 50 * time.Millisecond}})
	limit := orchestrator.NodeLimit{Name: "w", Limiter: orchestrator.NewLimiter(1),
		Applies: func(n *manifest.Node) bool { return n.UniqueID != modelID(2) }}
	o := newOrch(t, orchestrator.Config{Executor: fake, Manifest: manifestOf(dagSpec{models: 3, parents: map[int][]int{1: {2}}}),
		Concurrency: 3, Limits: []orchestrator.NodeLimit{limit}, Retry: orchestrator.RetryConfig{Retries: 1, Delay: 300 * time.Millisecond}})
	_, err := o.RunBuild(context.Background(), orchestrator.BuildOptions{})
	require.NoError(t, err)
	ends := map[string]time.Time{}
	var retryStart time.Time
	for _, c := range fake.calls {
		ends[c.id] = c.end
		if c.id == modelID(0) && c.attempt == 2 {
			retryStart = c.start
		}
	}
	require.False(t, retryStart.IsZero(), "m0 was retried")
	assert.True(t, ends[modelID(1)].Before(retryStart), "m1 ran while m0 waited to retry")
}

func TestLimiterCancel(t *testing.T) {
	l := orchestrator.NewLimiter(1)
	require.NoError(t, l.Acquire(context.Background()))
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Millisecond)
	defer cancel()
	require.ErrorIs(t, l.Acquire(ctx), context.DeadlineExceeded)
	l.Release()
	require.NoError(t, l.Acquire(context.Background()), "a cancelled waiter must not keep the slot")
	l.Release()
	done, cancelDone := context.WithCancel(context.Background())
	cancelDone()
	require.ErrorIs(t, l.Acquire(done), context.Canceled, "a done ctx fails Acquire even with a free slot")
	require.NoError(t, l.Acquire(context.Background()), "the failed Acquire held nothing")
	l.Release()
}

// TestLimiterFIFO: waiters get a freed slot in the order they arrived.
func TestLimiterFIFO(t *testing.T) {
	l := orchestrator.NewLimiter(1)
	require.NoError(t, l.Acquire(context.Background()))
	const waiters = 5
	order := make(chan int, waiters)
	for k := range waiters {
		queued := make(chan struct{})
		go func() {
			close(queued)
			require.NoError(t, l.Acquire(context.Background()))
			order <- k
			l.Release()
		}()
		<-queued
		// Let the goroutine reach the wait list before the next one starts.
		time.Sleep(20 * time.Millisecond)
	}
	l.Release()
	for k := range waiters {
		assert.Equal(t, k, <-order)
	}
}

func TestExecutorErrorIsInternal(t *testing.T) {
	o := newOrch(t, orchestrator.Config{Executor: errExec{}, Manifest: manifestOf(dagSpec{models: 2, parents: map[int][]int{1: {0}}})})
	run, err := o.RunBuild(context.Background(), orchestrator.BuildOptions{})
	var be *orchestrator.BuildError
	require.ErrorAs(t, err, &be)
	assert.Equal(t, []string{modelID(0)}, be.Failed)
	assert.Equal(t, 1, be.Skipped)
	assert.Equal(t, executor.KindInternal, run.Result(modelID(0)).Err.Kind)
	assert.Contains(t, run.Result(modelID(0)).Err.Message, "boom")
}

type errExec struct{}

func (errExec) Execute(context.Context, executor.Request) (*executor.Response, error) {
	return nil, errors.New("boom")
}

// TestSelectionRules: the selection rules hold whichever resolver answers:
// an unknown indirect mode is an error naming it (before any resolver is
// asked), and a node whose code is empty is not built, as in dbt build.
func TestSelectionRules(t *testing.T) {
	m := manifestOf(diamond())
	m.Nodes[modelID(1)].RawCode = "  \n"
	asked := 0
	custom := resolverFunc(func(context.Context, selector.Options) ([]string, error) {
		asked++
		return []string{modelID(0), modelID(1), modelID(2)}, nil
	})
	for _, tc := range []struct {
		name     string
		resolver orchestrator.Resolver
	}{{"custom", custom}, {"native", nil}} {
		t.Run(tc.name, func(t *testing.T) {
			o := newOrch(t, orchestrator.Config{Executor: newFake(nil), Manifest: m, Resolver: tc.resolver})
			_, err := o.Plan(context.Background(), orchestrator.BuildOptions{Selection: selector.Options{Select: []string{"m0000"}, Indirect: "careful"}})
			require.Error(t, err)
			assert.Contains(t, err.Error(), `"careful"`)
			_, err = o.Plan(context.Background(), orchestrator.BuildOptions{Selection: selector.Options{Indirect: "careful"}})
			require.Error(t, err, "the mode is checked even when nothing is selected")

			plan, err := o.Plan(context.Background(), orchestrator.BuildOptions{Selection: selector.Options{Select: []string{"m0000", "m0001", "m0002"}, Indirect: selector.Empty}})
			require.NoError(t, err)
			assert.ElementsMatch(t, []string{modelID(0), modelID(2)}, plan.Nodes(), "the empty m0001 is not built")
		})
	}
	assert.Equal(t, 1, asked, "the custom resolver is asked once: a bad mode fails first")
}

// resolverFunc adapts a function to selector.Resolver.
type resolverFunc func(ctx context.Context, sel selector.Options) ([]string, error)

func (f resolverFunc) Resolve(ctx context.Context, sel selector.Options) ([]string, error) {
	return f(ctx, sel)
}

func TestSelection(t *testing.T) {
	m := manifestOf(diamond())
	var got selector.Options
	resolver := resolverFunc(func(_ context.Context, sel selector.Options) ([]string, error) {
		got = sel
		return []string{modelID(1), modelID(3), testID(0), "source.p.s.x"}, nil
	})
	fake := newFake(nil)
	o := newOrch(t, orchestrator.Config{Executor: fake, Manifest: m, Resolver: resolver})
	run, err := o.RunBuild(context.Background(), orchestrator.BuildOptions{Selection: selector.Options{Select: []string{"+m0003"}, Exclude: []string{"m0002"}, Indirect: "cautious"}})
	require.NoError(t, err)
	assert.Equal(t, selector.Options{Select: []string{"+m0003"}, Exclude: []string{"m0002"}, Indirect: selector.Cautious}, got)
	assert.Equal(t, []string{modelID(1), modelID(3), testID(0)}, slices.Sorted(func(yield func(string) bool) {
		for _, r := range run.Results {
			if !yield(r.UniqueID) {
				return
			}
		}
	}))
	// m3 still waits for m1 and its test.
	calls := fake.byNode()
	assert.False(t, calls[modelID(3)][0].start.Before(calls[testID(0)][0].end))
	assert.Equal(t, []string{"+m0003"}, run.Args["select"])

	// Without a Resolver, the native selector.
	native := newOrch(t, orchestrator.Config{Executor: newFake(nil), Manifest: m})
	plan, err := native.Plan(context.Background(), orchestrator.BuildOptions{Selection: selector.Options{Select: []string{"m0001+"}, Exclude: []string{"m0002"}}})
	require.NoError(t, err)
	assert.ElementsMatch(t, []string{modelID(1), modelID(3), testID(0), unitTestID(0)}, plan.Nodes(), "t1 tests the excluded m2 too")
	_, err = native.Plan(context.Background(), orchestrator.BuildOptions{Selection: selector.Options{Select: []string{"@m0001+"}}})
	require.Error(t, err)
}

// mapCache is an in-memory Cache keyed by node id and a fixed key.
type mapCache struct {
	mu      sync.Mutex
	keys    map[string]string
	entries map[string]string
	lookups []string
	records map[string]orchestrator.Status
	// tests gives tests keys too (they are then looked up and recorded).
	tests bool
}

func newMapCache() *mapCache {
	return &mapCache{keys: map[string]string{}, entries: map[string]string{}, records: map[string]orchestrator.Status{}}
}

func (c *mapCache) Key(_ context.Context, n *manifest.Node) (string, error) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if k, ok := c.keys[n.UniqueID]; ok {
		return k, nil
	}
	if n.IsTest() && !c.tests {
		return "", nil
	}
	return "k-" + n.UniqueID, nil
}

func (c *mapCache) Lookup(_ context.Context, n *manifest.Node, key string) (bool, string, error) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.lookups = append(c.lookups, n.UniqueID)
	if c.entries[n.UniqueID] == key {
		return true, "unchanged", nil
	}
	return false, "key changed", nil
}

func (c *mapCache) Record(_ context.Context, n *manifest.Node, key string, res *orchestrator.NodeResult) error {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.records[n.UniqueID] = res.Status
	if res.Status == orchestrator.Success {
		c.entries[n.UniqueID] = key
	} else {
		delete(c.entries, n.UniqueID)
	}
	return nil
}

func TestCache(t *testing.T) {
	for _, mode := range []orchestrator.Mode{orchestrator.PerNode, orchestrator.PerWave} {
		t.Run(mode.String(), func(t *testing.T) {
			m := manifestOf(diamond())
			c := newMapCache()
			fake := newFake(nil)
			o := newOrch(t, orchestrator.Config{Executor: fake, Manifest: m, Cache: c, Mode: mode})
			ctx := context.Background()

			// Cold: everything runs, models are recorded.
			run, err := o.RunBuild(ctx, orchestrator.BuildOptions{})
			require.NoError(t, err)
			assert.Zero(t, run.Count(orchestrator.Cached))
			assert.Len(t, c.records, 5, "models recorded, tests never")
			assert.Equal(t, "k-"+modelID(2), run.Result(modelID(2)).CacheKey)

			// Warm: every model cached, tests run.
			plan, err := o.Plan(ctx, orchestrator.BuildOptions{})
			require.NoError(t, err)
			assert.Len(t, plan.Cached, 5)
			fake = newFake(nil)
			o = newOrch(t, orchestrator.Config{Executor: fake, Manifest: m, Cache: c, Mode: mode})
			run, err = o.RunBuild(ctx, orchestrator.BuildOptions{})
			require.NoError(t, err)
			assert.Equal(t, 5, run.Count(orchestrator.Cached))
			for id := range fake.byNode() {
				assert.True(t, m.Lookup(id).IsTest(), "%s ran although cached", id)
			}
			for _, id := range c.lookups {
				assert.False(t, m.Lookup(id).IsTest(), "tests are never looked up")
			}

			// m1's key changes: m1 and m3 run (m3 downstream of a node that
			// ran), m0, m2, m4 cached.
			c.keys[modelID(1)] = "changed"
			plan, err = o.Plan(ctx, orchestrator.BuildOptions{})
			require.NoError(t, err)
			assert.Equal(t, []string{modelID(0), modelID(2), modelID(4)}, slices.Sorted(slices.Values(plan.Cached)))
			fake = newFake(map[string]script{modelID(3): {failures: -1}})
			o = newOrch(t, orchestrator.Config{Executor: fake, Manifest: m, Cache: c, Mode: mode})
			run, _ = o.RunBuild(ctx, orchestrator.BuildOptions{})
			st := statuses(run)
			assert.Equal(t, orchestrator.Cached, st[modelID(0)])
			assert.Equal(t, orchestrator.Success, st[modelID(1)])
			assert.Equal(t, orchestrator.Cached, st[modelID(2)])
			assert.Equal(t, orchestrator.Error, st[modelID(3)])
			_, has := c.entries[modelID(3)]
			assert.False(t, has, "a failed node leaves no entry")

			// Full refresh: no lookups, everything runs and is recorded.
			c.lookups = nil
			fake = newFake(nil)
			o = newOrch(t, orchestrator.Config{Executor: fake, Manifest: m, Cache: c, Mode: mode})
			run, err = o.RunBuild(ctx, orchestrator.BuildOptions{FullRefresh: true})
			require.NoError(t, err)
			assert.Zero(t, run.Count(orchestrator.Cached))
			assert.Empty(t, c.lookups)
			assert.Len(t, c.entries, 5)
			for _, r := range fake.reqs {
				assert.True(t, r.FullRefresh)
			}
		})
	}
}

// staleCache is a mapCache that also reports stale sources.
type staleCache struct {
	*mapCache
	stale map[string]string
}

func (s staleCache) StaleNodes(context.Context, *manifest.Graph, []string) (map[string]string, error) {
	return s.stale, nil
}

func TestOnlyFreshSources(t *testing.T) {
	m := manifestOf(diamond())
	c := staleCache{newMapCache(), map[string]string{modelID(2): "stale source source.p.raw.events"}}
	fake := newFake(nil)
	o := newOrch(t, orchestrator.Config{Executor: fake, Manifest: m, Cache: c})
	plan, err := o.Plan(context.Background(), orchestrator.BuildOptions{OnlyFreshSources: true})
	require.NoError(t, err)
	assert.Contains(t, plan.Skipped, modelID(3))
	run, err := o.RunBuild(context.Background(), orchestrator.BuildOptions{OnlyFreshSources: true})
	require.NoError(t, err)
	st := statuses(run)
	assert.Equal(t, orchestrator.Skipped, st[modelID(2)])
	assert.Equal(t, orchestrator.Skipped, st[modelID(3)])
	assert.Equal(t, orchestrator.Success, st[modelID(1)])
	assert.Equal(t, "stale source source.p.raw.events", run.Result(modelID(2)).SkipReason)
	assert.Contains(t, run.Result(modelID(3)).SkipReason, "upstream skipped: "+modelID(2))
	assert.Empty(t, run.Result(modelID(3)).FailedUpstream)
	for _, id := range plan.Nodes() {
		_, predicted := plan.Skipped[id]
		assert.Equal(t, predicted, st[id] == orchestrator.Skipped, id)
	}
}

// warnCache is a mapCache whose freshness snapshot could not be taken.
type warnCache struct {
	*mapCache
	warnings []string
}

func (w warnCache) Warnings() []string { return w.warnings }

func TestWarnings(t *testing.T) {
	m := manifestOf(diamond())
	const w = "source freshness unavailable: dbt source freshness: exit 2"
	ctx := context.Background()
	for _, mode := range []orchestrator.Mode{orchestrator.PerNode, orchestrator.PerWave} {
		o := newOrch(t, orchestrator.Config{Executor: newFake(nil), Manifest: m, Mode: mode,
			Cache: warnCache{newMapCache(), []string{w}}})
		plan, err := o.Plan(ctx, orchestrator.BuildOptions{})
		require.NoError(t, err)
		assert.Equal(t, []string{w}, plan.Warnings, mode)
		run, err := o.RunBuild(ctx, orchestrator.BuildOptions{})
		require.NoError(t, err)
		assert.Equal(t, []string{w}, run.Warnings, mode)
		var buf bytes.Buffer
		require.NoError(t, artifacts.WriteResultsJSON(&buf, run))
		var doc map[string]any
		require.NoError(t, json.Unmarshal(buf.Bytes(), &doc))
		assert.Equal(t, []any{w}, doc["warnings"], mode)
	}

	// No warnings: the contract's field is still there, empty.
	run, err := newOrch(t, orchestrator.Config{Executor: newFake(nil), Manifest: m, Cache: newMapCache()}).RunBuild(ctx, orchestrator.BuildOptions{})
	require.NoError(t, err)
	assert.Empty(t, run.Warnings)
	var buf bytes.Buffer
	require.NoError(t, artifacts.WriteResultsJSON(&buf, run))
	assert.Contains(t, buf.String(), `"warnings": []`)
}

// varCache is a mapCache whose key of the node reading a var covers the
// build's value of that var, which it learns from ForBuild.
type varCache struct {
	*mapCache
	reader string // the node that reads var "region"
	vars   map[string]any
	infos  *[]orchestrator.BuildInfo
	err    error
}

func (c varCache) ForBuild(_ context.Context, info orchestrator.BuildInfo) (orchestrator.Cache, error) {
	c.mu.Lock()
	*c.infos = append(*c.infos, info)
	c.mu.Unlock()
	if c.err != nil {
		return nil, c.err
	}
	c.vars = info.Vars
	return c, nil
}

func (c varCache) Key(ctx context.Context, n *manifest.Node) (string, error) {
	k, err := c.mapCache.Key(ctx, n)
	if n.UniqueID == c.reader {
		k += fmt.Sprintf("/region=%v", c.vars["region"])
	}
	return k, err
}

func TestBuildCacheSeesVars(t *testing.T) {
	m := manifestOf(diamond())
	ctx := context.Background()
	for _, mode := range []orchestrator.Mode{orchestrator.PerNode, orchestrator.PerWave} {
		t.Run(mode.String(), func(t *testing.T) {
			var infos []orchestrator.BuildInfo
			c := varCache{mapCache: newMapCache(), reader: modelID(1), infos: &infos}
			fake := newFake(nil)
			o := newOrch(t, orchestrator.Config{Executor: fake, Manifest: m, Mode: mode, Cache: c,
				Vars: map[string]any{"region": "eu", "other": 1}})

			run, err := o.RunBuild(ctx, orchestrator.BuildOptions{})
			require.NoError(t, err)
			assert.Zero(t, run.Count(orchestrator.Cached))
			assert.Equal(t, "k-"+modelID(1)+"/region=eu", run.Result(modelID(1)).CacheKey)

			// Same vars: everything cached.
			run, err = o.RunBuild(ctx, orchestrator.BuildOptions{})
			require.NoError(t, err)
			assert.Equal(t, 5, run.Count(orchestrator.Cached))

			// The build's vars change the var: the reader misses and runs,
			// and so does its descendant; the rest stays cached.
			plan, err := o.Plan(ctx, orchestrator.BuildOptions{Vars: map[string]any{"region": "us"}})
			require.NoError(t, err)
			assert.ElementsMatch(t, []string{modelID(0), modelID(2), modelID(4)}, plan.Cached)
			run, err = o.RunBuild(ctx, orchestrator.BuildOptions{Vars: map[string]any{"region": "us"}})
			require.NoError(t, err)
			st := statuses(run)
			assert.Equal(t, orchestrator.Success, st[modelID(1)])
			assert.Equal(t, orchestrator.Success, st[modelID(3)])
			assert.Equal(t, orchestrator.Cached, st[modelID(0)])
			assert.Equal(t, orchestrator.Cached, st[modelID(2)])
			assert.Equal(t, "k-"+modelID(1)+"/region=us", run.Result(modelID(1)).CacheKey)

			require.Len(t, infos, 4, "ForBuild once per build (and plan)")
			last := infos[3]
			assert.Equal(t, map[string]any{"region": "us", "other": 1}, last.Vars, "BuildOptions.Vars merged over Config.Vars")
			assert.Same(t, m, last.Manifest)
			assert.NotNil(t, last.Graph)
			assert.Equal(t, run.ID, last.RunID)
		})
	}
}

func TestBuildCacheFailsOpen(t *testing.T) {
	m := manifestOf(diamond())
	var infos []orchestrator.BuildInfo
	c := varCache{mapCache: newMapCache(), infos: &infos}
	for _, id := range []string{modelID(0), modelID(1), modelID(2), modelID(3), modelID(4)} {
		c.entries[id] = "k-" + id
	}
	c.err = errors.New("dbt_project.yml unreadable")
	fake := newFake(nil)
	o := newOrch(t, orchestrator.Config{Executor: fake, Manifest: m, Cache: c})
	run, err := o.RunBuild(context.Background(), orchestrator.BuildOptions{OnlyFreshSources: true})
	require.NoError(t, err)
	assert.Zero(t, run.Count(orchestrator.Cached))
	assert.Zero(t, run.Count(orchestrator.Skipped))
	assert.Len(t, fake.byNode(), len(run.Results), "every node ran")
	require.Len(t, run.Warnings, 1)
	assert.Contains(t, run.Warnings[0], "dbt_project.yml unreadable")
	assert.Empty(t, c.records, "nothing recorded through the failed cache")
}

func TestSlogObserver(t *testing.T) {
	var buf syncbuf.Buffer
	logger := newTextLogger(&buf)
	fake := newFake(map[string]script{modelID(0): {failures: -1}})
	o := newOrch(t, orchestrator.Config{Executor: fake, Manifest: manifestOf(dagSpec{models: 2, parents: map[int][]int{1: {0}}}),
		Observer: orchestrator.NewSlogObserver(logger)})
	_, err := o.RunBuild(context.Background(), orchestrator.BuildOptions{})
	require.Error(t, err)
	out := buf.String()
	for _, want := range []string{"build started", "node started", "node failed", "node skipped", "failed_upstream=[" + modelID(0) + "]", "build finished", "error=1"} {
		assert.Contains(t, out, want)
	}
}

func TestNewRejects(t *testing.T) {
	m := manifestOf(dagSpec{models: 1})
	for name, cfg := range map[string]orchestrator.Config{
		"no executor":    {Manifest: m},
		"no manifest":    {Executor: newFake(nil)},
		"negative conc":  {Executor: newFake(nil), Manifest: m, Concurrency: -1},
		"bad jitter":     {Executor: newFake(nil), Manifest: m, Retry: orchestrator.RetryConfig{Jitter: 2}},
		"nil limiter":    {Executor: newFake(nil), Manifest: m, Limits: []orchestrator.NodeLimit{{Name: "x"}}},
		"negative retry": {Executor: newFake(nil), Manifest: m, Retry: orchestrator.RetryConfig{Retries: -1}},
	} {
		_, err := orchestrator.New(cfg)
		assert.Error(t, err, name)
	}
}

// preparingExec counts Prepare calls and fails them while failPrepare is
// set.
type preparingExec struct {
	*fakeExec
	prepares    int
	failPrepare bool
}

func (p *preparingExec) Prepare(context.Context) error {
	p.prepares++
	if p.failPrepare {
		return errors.New("dbt deps failed")
	}
	return nil
}

func TestPrepareLazily(t *testing.T) {
	m := manifestOf(dagSpec{models: 3, parents: map[int][]int{1: {0}}})
	ctx := context.Background()

	failing := &preparingExec{fakeExec: newFake(nil), failPrepare: true}
	run, err := newOrch(t, orchestrator.Config{Executor: failing, Manifest: m}).RunBuild(ctx, orchestrator.BuildOptions{})
	require.ErrorContains(t, err, "dbt deps failed")
	assert.Equal(t, 1, failing.prepares, "one failed Prepare per build")
	assert.Equal(t, orchestrator.Error, run.Result(modelID(0)).Status)
	assert.Equal(t, executor.KindInternal, run.Result(modelID(0)).Err.Kind)
	assert.Equal(t, orchestrator.Skipped, run.Result(modelID(1)).Status)
	assert.Empty(t, failing.byNode(), "nothing executed")

	c := newMapCache()
	ex := &preparingExec{fakeExec: newFake(nil)}
	o := newOrch(t, orchestrator.Config{Executor: ex, Manifest: m, Cache: c})
	_, err = o.RunBuild(ctx, orchestrator.BuildOptions{})
	require.NoError(t, err)
	_, err = o.RunBuild(ctx, orchestrator.BuildOptions{})
	require.NoError(t, err)
	assert.Equal(t, 1, ex.prepares, "prepared once, before the first invocation")

	cachedOnly := &preparingExec{fakeExec: newFake(nil)}
	run, err = newOrch(t, orchestrator.Config{Executor: cachedOnly, Manifest: m, Cache: c}).RunBuild(ctx, orchestrator.BuildOptions{})
	require.NoError(t, err)
	assert.Equal(t, 3, run.Count(orchestrator.Cached))
	assert.Zero(t, cachedOnly.prepares, "a build that runs nothing starts no dbt")
}

// dyingExec is a fakeExec whose invocations that include die (no results
// at all, as when dbt is killed before writing run_results.json).
type dyingExec struct {
	*fakeExec
	die string
}

func (d dyingExec) Execute(ctx context.Context, req executor.Request) (*executor.Response, error) {
	for _, n := range req.Nodes {
		if n.UniqueID == d.die {
			return &executor.Response{Invocation: executor.Invocation{Command: req.Command, ExitCode: -1}}, nil
		}
	}
	return d.fakeExec.Execute(ctx, req)
}

func TestPerWaveDeadInvocationFailsItsWave(t *testing.T) {
	// Wave 0: m0, m4; wave 1: m1, m2; wave 2: m3. The wave-1 invocation
	// dies: m1 and m2 fail, m3 is skipped, and m4 (wave 0) was built.
	spec := dagSpec{models: 5, parents: map[int][]int{1: {0}, 2: {0}, 3: {1, 2}}}
	ex := dyingExec{newFake(nil), modelID(1)}
	o := newOrch(t, orchestrator.Config{Executor: ex, Manifest: manifestOf(spec), Mode: orchestrator.PerWave})
	run, err := o.RunBuild(context.Background(), orchestrator.BuildOptions{})
	var be *orchestrator.BuildError
	require.ErrorAs(t, err, &be)
	assert.Equal(t, []string{modelID(1), modelID(2)}, be.Failed)
	for _, id := range be.Failed {
		assert.Equal(t, executor.KindCrash, run.Result(id).Err.Kind)
	}
	assert.Equal(t, orchestrator.Skipped, run.Result(modelID(3)).Status)
	assert.Equal(t, []string{modelID(1), modelID(2)}, run.Result(modelID(3)).FailedUpstream)
	assert.Equal(t, orchestrator.Success, run.Result(modelID(4)).Status)
	assert.Equal(t, orchestrator.Success, run.Result(modelID(0)).Status)
}
