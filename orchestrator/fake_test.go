package orchestrator_test

import (
	"context"
	"fmt"
	"io"
	"log/slog"
	"math/rand/v2"
	"sync"
	"sync/atomic"
	"time"

	"github.com/dbtorch/dbtorch/executor"
	"github.com/dbtorch/dbtorch/manifest"
)

// dagSpec describes a random project: models in topological order with
// their parents, data tests on one or two models, unit tests on models.
type dagSpec struct {
	models    int
	parents   map[int][]int
	tests     [][]int // each test's models
	unitTests []int   // the model each unit test tests
}

func modelID(i int) string    { return fmt.Sprintf("model.p.m%04d", i) }
func testID(i int) string     { return fmt.Sprintf("test.p.t%04d", i) }
func unitTestID(i int) string { return fmt.Sprintf("unit_test.p.m.u%04d", i) }

// randomDAG returns a random DAG of n models, each with up to 3 parents
// among the previous 30 models, plus about n/4 tests and a few unit tests.
func randomDAG(r *rand.Rand, n int) dagSpec { return randomDAGWindow(r, n, 30) }

// randomDAGWindow is randomDAG with parents among the previous window
// models: a small window makes deep DAGs, a large one wide DAGs.
func randomDAGWindow(r *rand.Rand, n, window int) dagSpec {
	s := dagSpec{models: n, parents: map[int][]int{}}
	for i := 1; i < n; i++ {
		if r.IntN(10) == 0 {
			continue // a root
		}
		k := 1 + r.IntN(3)
		seen := map[int]bool{}
		for range k {
			p := i - 1 - r.IntN(min(i, window))
			if !seen[p] {
				seen[p] = true
				s.parents[i] = append(s.parents[i], p)
			}
		}
	}
	for range n / 4 {
		a := r.IntN(n)
		t := []int{a}
		if r.IntN(5) == 0 {
			if b := r.IntN(n); b != a {
				t = append(t, b)
			}
		}
		s.tests = append(s.tests, t)
	}
	for range n / 50 {
		s.unitTests = append(s.unitTests, r.IntN(n))
	}
	return s
}

// manifestOf builds a manifest for the spec.
func manifestOf(s dagSpec) *manifest.Manifest {
	m := &manifest.Manifest{Nodes: map[string]*manifest.Node{}, UnitTests: map[string]*manifest.Node{}}
	for i := range s.models {
		n := &manifest.Node{UniqueID: modelID(i), Name: fmt.Sprintf("m%04d", i), ResourceType: manifest.Model,
			PackageName: "p", Path: fmt.Sprintf("m%04d.sql", i), OriginalFilePath: fmt.Sprintf("models/m%04d.sql", i),
			Materialized: "table", Enabled: true, RawCode: "select 1", FQN: []string{"p", fmt.Sprintf("m%04d", i)}}
		for _, p := range s.parents[i] {
			n.DependsOn.Nodes = append(n.DependsOn.Nodes, modelID(p))
		}
		m.Nodes[n.UniqueID] = n
	}
	for k, t := range s.tests {
		n := &manifest.Node{UniqueID: testID(k), Name: fmt.Sprintf("t%04d", k), ResourceType: manifest.Test,
			PackageName: "p", Path: fmt.Sprintf("t%04d.sql", k), OriginalFilePath: "models/schema.yml",
			Enabled: true, AttachedNode: modelID(t[0]), Severity: "ERROR", RawCode: "{{ test() }}"}
		for _, mi := range t {
			n.DependsOn.Nodes = append(n.DependsOn.Nodes, modelID(mi))
		}
		m.Nodes[n.UniqueID] = n
	}
	for k, mi := range s.unitTests {
		n := &manifest.Node{UniqueID: unitTestID(k), Name: fmt.Sprintf("u%04d", k), ResourceType: manifest.UnitTest,
			PackageName: "p", Path: "schema.yml", OriginalFilePath: "models/schema.yml", Enabled: true,
			TestedNode: modelID(mi), Model: fmt.Sprintf("m%04d", mi)}
		n.DependsOn.Nodes = []string{modelID(mi)}
		m.UnitTests[n.UniqueID] = n
	}
	return m
}

// script says what the fake executor does with a node.
type script struct {
	dur time.Duration
	// failures is how many attempts fail before one succeeds; -1 fails
	// every attempt.
	failures int
	kind     executor.Kind
	dbt      string // DBTStatus on success ("warn" for warning tests)
}

// call is one executed attempt, as the fake saw it.
type call struct {
	id         string
	attempt    int
	start, end time.Time
	status     executor.Status
}

// fakeExec is a scripted executor: it sleeps each node's duration (or
// until ctx is done), fails as scripted, and records every call, the peak
// concurrency, and how many calls are running now.
type fakeExec struct {
	scripts map[string]script
	// sleep replaces time.Sleep-with-context when set (benchmarks).
	noSleep bool

	mu     sync.Mutex
	calls  []call
	tries  map[string]int
	active atomic.Int64
	peak   atomic.Int64
	// activeModels and peakModels count calls with a model, seed or
	// snapshot (what the property test's named limit applies to).
	activeModels, peakModels atomic.Int64
	reqs                     []executor.Request
	onStart                  func(id string) // called at the start of each call, if set
}

func newFake(scripts map[string]script) *fakeExec {
	return &fakeExec{scripts: scripts, tries: map[string]int{}}
}

func (f *fakeExec) Execute(ctx context.Context, req executor.Request) (*executor.Response, error) {
	if len(req.Nodes) == 0 {
		return nil, fmt.Errorf("fake: empty request")
	}
	a := f.active.Add(1)
	defer f.active.Add(-1)
	for {
		p := f.peak.Load()
		if a <= p || f.peak.CompareAndSwap(p, a) {
			break
		}
	}
	hasModel := false
	for _, n := range req.Nodes {
		hasModel = hasModel || !n.IsTest()
	}
	if hasModel {
		a := f.activeModels.Add(1)
		defer f.activeModels.Add(-1)
		for {
			p := f.peakModels.Load()
			if a <= p || f.peakModels.CompareAndSwap(p, a) {
				break
			}
		}
	}
	start := time.Now()
	f.mu.Lock()
	f.reqs = append(f.reqs, req)
	f.mu.Unlock()
	if f.onStart != nil {
		for _, n := range req.Nodes {
			f.onStart(n.UniqueID)
		}
	}
	var longest time.Duration
	for _, n := range req.Nodes {
		longest = max(longest, f.scripts[n.UniqueID].dur)
	}
	cancelled := false
	if longest > 0 && !f.noSleep {
		t := time.NewTimer(longest)
		select {
		case <-t.C:
		case <-ctx.Done():
			t.Stop()
			cancelled = true
		}
	}
	end := time.Now()
	resp := &executor.Response{Invocation: executor.Invocation{Command: req.Command, Started: start, Ended: end, ExitCode: 0}}
	f.mu.Lock()
	defer f.mu.Unlock()
	for _, n := range req.Nodes {
		id := n.UniqueID
		s := f.scripts[id]
		f.tries[id]++
		r := executor.Result{UniqueID: id, Status: executor.Success, DBTStatus: "success", Message: "OK"}
		if s.dbt != "" {
			r.DBTStatus = s.dbt
		}
		switch {
		case cancelled:
			r = executor.Result{UniqueID: id, Status: executor.Cancelled, Kind: executor.KindCancelled, Message: "cancelled"}
		case s.failures < 0 || f.tries[id] <= s.failures:
			kind := s.kind
			if kind == "" {
				kind = executor.KindDatabase
			}
			r = executor.Result{UniqueID: id, Status: executor.Error, DBTStatus: "error", Kind: kind, Message: "scripted failure"}
		}
		rows := int64(len(id))
		r.RowsAffected = &rows
		resp.Results = append(resp.Results, r)
		f.calls = append(f.calls, call{id: id, attempt: req.Attempt, start: start, end: end, status: r.Status})
	}
	if cancelled {
		resp.Invocation.ExitCode = -1
	}
	return resp, nil
}

// byNode returns the calls per node.
func (f *fakeExec) byNode() map[string][]call {
	f.mu.Lock()
	defer f.mu.Unlock()
	out := map[string][]call{}
	for _, c := range f.calls {
		out[c.id] = append(out[c.id], c)
	}
	return out
}

// countingLimiter wraps a Limiter and records the peak number of holders.
type countingLimiter struct {
	inner interface {
		Acquire(context.Context) error
		Release()
	}
	held, peak atomic.Int64
}

func (c *countingLimiter) Acquire(ctx context.Context) error {
	if err := c.inner.Acquire(ctx); err != nil {
		return err
	}
	h := c.held.Add(1)
	for {
		p := c.peak.Load()
		if h <= p || c.peak.CompareAndSwap(p, h) {
			break
		}
	}
	return nil
}

func (c *countingLimiter) Release() {
	c.held.Add(-1)
	c.inner.Release()
}

func newTextLogger(w io.Writer) *slog.Logger {
	return slog.New(slog.NewTextHandler(w, &slog.HandlerOptions{Level: slog.LevelDebug}))
}
