package orchestrator_test

import (
	"cmp"
	"context"
	"math/rand/v2"
	"slices"
	"testing"
	"time"

	"github.com/dbtorch/dbtorch/executor"
	"github.com/dbtorch/dbtorch/manifest"
	"github.com/dbtorch/dbtorch/orchestrator"
)

// lowerBound returns max(critical path, total work / workers) of a plan
// whose nodes take dur.
func lowerBound(p *manifest.Plan, dur map[string]time.Duration, workers int) (bound, critical, total time.Duration) {
	finish := make([]time.Duration, p.Len())
	for i := range int32(p.Len()) { // plan order is topological
		var start time.Duration
		for _, u := range p.Upstream(i) {
			start = max(start, finish[u])
		}
		finish[i] = start + dur[p.ID(i)]
		critical = max(critical, finish[i])
		total += dur[p.ID(i)]
	}
	return max(critical, total/time.Duration(workers)), critical, total
}

// simulate returns the makespan of greedy list scheduling of the plan on
// workers with exact durations, ready nodes taken by longest remaining
// path: what an eager scheduler without any overhead would achieve.
func simulate(p *manifest.Plan, dur map[string]time.Duration, workers int) time.Duration {
	tail := make([]time.Duration, p.Len())
	for i := int32(p.Len()) - 1; i >= 0; i-- {
		var longest time.Duration
		for _, d := range p.Downstream(i) {
			longest = max(longest, tail[d])
		}
		tail[i] = dur[p.ID(i)] + longest
	}
	left := make([]int, p.Len())
	var ready []int32
	for i := range int32(p.Len()) {
		left[i] = len(p.Upstream(i))
		if left[i] == 0 {
			ready = append(ready, i)
		}
	}
	type job struct {
		i   int32
		end time.Duration
	}
	var running []job
	var now time.Duration
	for len(ready) > 0 || len(running) > 0 {
		slices.SortStableFunc(ready, func(a, b int32) int { return cmp.Compare(tail[b], tail[a]) })
		for len(running) < workers && len(ready) > 0 {
			running = append(running, job{ready[0], now + dur[p.ID(ready[0])]})
			ready = ready[1:]
		}
		slices.SortFunc(running, func(a, b job) int { return cmp.Compare(a.end, b.end) })
		j := running[0]
		running = running[1:]
		now = j.end
		for _, d := range p.Downstream(j.i) {
			if left[d]--; left[d] == 0 {
				ready = append(ready, d)
			}
		}
	}
	return now
}

// BenchmarkSchedulingEfficiency runs random 1,000-node DAGs (plus their
// tests) whose nodes sleep 1-10ms, on 8 workers, and reports makespan /
// lower bound, where the lower bound is max(critical path, total work /
// workers) computed from the durations the executor actually took (timer
// overshoot on a loaded machine is the executor's, not the scheduler's).
// Two DAG families: "wide" (parents anywhere upstream, like a dbt project:
// critical path well below work/workers) and "deep" (parents among the
// previous 30 nodes: critical path about work/workers, where no schedule
// reaches the bound). Variants: eager critical-path-first with the
// durations as estimates (as from a previous run), the same without
// estimates (every node one unit), eager depth-first, and strict waves. "sim" is an overhead-free simulation of eager
// critical-path list scheduling on the same DAG, for reference.
func BenchmarkSchedulingEfficiency(b *testing.B) {
	const (
		nodes   = 1000
		workers = 8
	)
	type variant struct {
		name      string
		prio      orchestrator.Priority
		estimates bool
		strict    bool
	}
	variants := []variant{
		{"eager-critical-path", orchestrator.CriticalPath, true, false},
		{"eager-critical-path-unit", orchestrator.CriticalPath, false, false},
		{"eager-depth", orchestrator.Depth, false, false},
		{"strict-waves", orchestrator.CriticalPath, true, true},
	}
	families := []struct {
		name   string
		window int
	}{{"wide", nodes}, {"deep", 30}}
	for b.Loop() {
		for fi, fam := range families {
			r := rand.New(rand.NewPCG(uint64(fi), 1000))
			m := manifestOf(randomDAGWindow(r, nodes, fam.window))
			scripts := map[string]script{}
			nominal := map[string]time.Duration{}
			m.All(func(n *manifest.Node) bool {
				d := time.Duration(1+r.IntN(10)) * time.Millisecond
				scripts[n.UniqueID] = script{dur: d}
				nominal[n.UniqueID] = d
				return true
			})
			var plan *manifest.Plan
			for _, v := range variants {
				fake := newFake(scripts)
				cfg := orchestrator.Config{Executor: fake, Manifest: m, Concurrency: workers, Priority: v.prio, StrictWaves: v.strict}
				if v.estimates {
					cfg.Estimate = func(id string) time.Duration { return nominal[id] }
				}
				o, err := orchestrator.New(cfg)
				if err != nil {
					b.Fatal(err)
				}
				start := time.Now()
				run, err := o.RunBuild(context.Background(), orchestrator.BuildOptions{})
				makespan := time.Since(start)
				if err != nil {
					b.Fatal(err)
				}
				plan = run.Plan
				actual := map[string]time.Duration{}
				for id, cs := range fake.byNode() {
					for _, c := range cs {
						actual[id] += c.end.Sub(c.start)
					}
				}
				bound, critical, total := lowerBound(plan, actual, workers)
				ratio := float64(makespan) / float64(bound)
				b.Logf("%s %-20s makespan %v, bound %v (critical path %v, work/workers %v): %.3f",
					fam.name, v.name, makespan.Round(time.Millisecond), bound.Round(time.Millisecond),
					critical.Round(time.Millisecond), (total / workers).Round(time.Millisecond), ratio)
				b.ReportMetric(ratio, fam.name+"-"+v.name)
			}
			bound, _, _ := lowerBound(plan, nominal, workers)
			sim := float64(simulate(plan, nominal, workers)) / float64(bound)
			b.Logf("%s %-20s %.3f", fam.name, "simulated", sim)
			b.ReportMetric(sim, fam.name+"-sim")
		}
	}
}

// noopExec succeeds at once.
type noopExec struct{}

func (noopExec) Execute(_ context.Context, req executor.Request) (*executor.Response, error) {
	resp := &executor.Response{Results: make([]executor.Result, len(req.Nodes))}
	for k, n := range req.Nodes {
		resp.Results[k] = executor.Result{UniqueID: n.UniqueID, Status: executor.Success, DBTStatus: "success"}
	}
	return resp, nil
}

// BenchmarkOverheadPerNode runs a 10,000-node DAG (plus its tests) on an
// executor that does nothing and reports the orchestrator's own time per
// node (selection, plan, scheduling, results), per-node and per-wave.
func BenchmarkOverheadPerNode(b *testing.B) {
	r := rand.New(rand.NewPCG(1, 10000))
	m := manifestOf(randomDAG(r, 10000))
	for _, mode := range []orchestrator.Mode{orchestrator.PerNode, orchestrator.PerWave} {
		b.Run(mode.String(), func(b *testing.B) {
			o, err := orchestrator.New(orchestrator.Config{Executor: noopExec{}, Manifest: m, Concurrency: 8, Mode: mode})
			if err != nil {
				b.Fatal(err)
			}
			var per time.Duration
			for b.Loop() {
				start := time.Now()
				run, err := o.RunBuild(context.Background(), orchestrator.BuildOptions{})
				if err != nil {
					b.Fatal(err)
				}
				per = time.Since(start) / time.Duration(len(run.Results))
				b.Logf("%s: %d nodes, %v per node", mode, len(run.Results), per)
			}
			b.ReportMetric(float64(per.Nanoseconds())/1e3, "µs/node")
		})
	}
}
