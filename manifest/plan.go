package manifest

import (
	"fmt"
	"slices"
)

// TestStrategy says when data tests and unit tests run.
type TestStrategy int

const (
	// Immediate runs each test as soon as every node it references is
	// built, and makes every node wait for the tests of its upstream nodes
	// (dbt build's parent_test edges). Unit tests run before their model.
	Immediate TestStrategy = iota
	// Deferred runs every test after every other node, in a final wave.
	Deferred
	// SkipTests runs no tests.
	SkipTests
)

// String returns "immediate", "deferred" or "skip".
func (s TestStrategy) String() string {
	switch s {
	case Immediate:
		return "immediate"
	case Deferred:
		return "deferred"
	case SkipTests:
		return "skip"
	}
	return fmt.Sprintf("TestStrategy(%d)", int(s))
}

// ParseTestStrategy parses "immediate", "deferred" or "skip".
func ParseTestStrategy(s string) (TestStrategy, error) {
	switch s {
	case "immediate", "":
		return Immediate, nil
	case "deferred":
		return Deferred, nil
	case "skip":
		return SkipTests, nil
	}
	return 0, fmt.Errorf("unknown test strategy %q (want immediate, deferred or skip)", s)
}

// Plan is the executable DAG of a build: the selected executable nodes,
// their dependencies traced through everything that is not run (sources,
// ephemeral models, external and unselected nodes), and the waves.
type Plan struct {
	Strategy TestStrategy
	// Nodes lists the planned unique_ids in wave order, sorted within a
	// wave.
	Nodes []string
	// Upstream maps each planned node to the planned nodes it waits for
	// directly, sorted. Under Deferred, tests list their own parents only;
	// the barrier before the test wave is implied by the strategy.
	Upstream map[string][]string
	// Downstream is the inverse of Upstream.
	Downstream map[string][]string
	// Waves groups the nodes: wave 0 holds nodes with no planned upstream;
	// a node in wave N has its longest upstream chain of length N.
	Waves [][]string
	// Wave is each node's wave number.
	Wave map[string]int
}

// Width returns the size of the widest wave.
func (p *Plan) Width() int {
	w := 0
	for _, wave := range p.Waves {
		w = max(w, len(wave))
	}
	return w
}

// Plan returns the plan for running the executable nodes in selected (nil:
// every executable node) under the given test strategy. Non-executable ids
// in selected (sources, ephemerals, exposures, disabled or unknown ids) are
// ignored; tests are kept only when the strategy runs them. If a selected
// node reaches another selected node only through unselected ones, it still
// comes first.
func (g *Graph) Plan(selected map[string]bool, strategy TestStrategy) *Plan {
	keep := make([]bool, len(g.ids))
	for i, k := range g.kind {
		if k&kindExecutable == 0 || (selected != nil && !selected[g.ids[i]]) {
			continue
		}
		if k.isTest() && strategy == SkipTests {
			continue
		}
		keep[i] = true
	}
	parentsOf := func(i int32) []int32 {
		if strategy != Immediate {
			if g.kind[i]&kindModel != 0 {
				// Without immediate tests, unit tests do not gate models.
				ps := make([]int32, 0, len(g.parents[i]))
				for _, p := range g.parents[i] {
					if g.kind[p]&kindUnitTest == 0 {
						ps = append(ps, p)
					}
				}
				return ps
			}
			return g.parents[i]
		}
		if te := g.testEdges[i]; len(te) > 0 {
			return append(slices.Clone(g.parents[i]), te...)
		}
		return g.parents[i]
	}
	// up[i] for a kept node: its nearest kept ancestors. via[i] for a node
	// that is not kept: the nearest kept ancestors seen through it.
	up := make([][]int32, len(g.ids))
	done := make([]bool, len(g.ids))
	order := g.topoWithTestEdges(strategy, parentsOf)
	for _, i := range order {
		var acc []int32
		for _, p := range parentsOf(i) {
			if keep[p] {
				acc = append(acc, p)
			} else if done[p] {
				acc = append(acc, up[p]...)
			}
		}
		if strategy == Deferred && keep[i] && g.kind[i].isTest() {
			// Tests run after all models; they do not gate anything.
			acc = slices.DeleteFunc(acc, func(j int32) bool { return g.kind[j].isTest() })
		}
		up[i] = dedup(acc)
		done[i] = true
	}
	// Waves: longest upstream chain, in dependency order. Under Deferred
	// the tests form one wave after every other node.
	deferredTest := func(i int32) bool { return strategy == Deferred && g.kind[i].isTest() }
	wave := make([]int32, len(g.ids))
	maxWave := int32(-1)
	kept, deferred := 0, 0
	for _, i := range order {
		if !keep[i] {
			continue
		}
		kept++
		if deferredTest(i) {
			deferred++
			continue
		}
		w := int32(0)
		for _, j := range up[i] {
			w = max(w, wave[j]+1)
		}
		wave[i] = w
		maxWave = max(maxWave, w)
	}
	p := &Plan{Strategy: strategy, Upstream: make(map[string][]string, kept),
		Downstream: make(map[string][]string, kept), Wave: make(map[string]int, kept)}
	nWaves := maxWave + 1
	if deferred > 0 {
		nWaves++
	}
	p.Waves = make([][]string, nWaves)
	// Index order is id order, so every list below comes out sorted.
	down := make([][]string, len(g.ids))
	for i := range int32(len(g.ids)) {
		if !keep[i] {
			continue
		}
		if deferredTest(i) {
			wave[i] = maxWave + 1
		}
		id := g.ids[i]
		ups := make([]string, len(up[i]))
		for k, j := range up[i] {
			ups[k] = g.ids[j]
			down[j] = append(down[j], id)
		}
		p.Upstream[id] = ups
		p.Wave[id] = int(wave[i])
		p.Waves[wave[i]] = append(p.Waves[wave[i]], id)
	}
	for i, d := range down {
		if len(d) > 0 {
			p.Downstream[g.ids[i]] = d
		}
	}
	p.Nodes = make([]string, 0, kept)
	for _, w := range p.Waves {
		p.Nodes = append(p.Nodes, w...)
	}
	return p
}

// topoWithTestEdges orders the whole graph so that every node comes after
// its parents under parentsOf. The graph without test edges is acyclic, and
// test edges only point from a test to descendants of all its parents, so
// the order exists; it is computed by depth-first search from g.topo.
func (g *Graph) topoWithTestEdges(strategy TestStrategy, parentsOf func(int32) []int32) []int32 {
	if strategy != Immediate {
		return g.topo
	}
	order := make([]int32, 0, len(g.ids))
	state := make([]uint8, len(g.ids)) // 0 new, 1 on stack, 2 done
	type frame struct {
		n   int32
		ps  []int32
		pos int
	}
	for _, root := range g.topo {
		if state[root] != 0 {
			continue
		}
		stack := []frame{{n: root, ps: parentsOf(root)}}
		state[root] = 1
		for len(stack) > 0 {
			f := &stack[len(stack)-1]
			if f.pos < len(f.ps) {
				p := f.ps[f.pos]
				f.pos++
				if state[p] == 0 {
					state[p] = 1
					stack = append(stack, frame{n: p, ps: parentsOf(p)})
				}
				continue
			}
			state[f.n] = 2
			order = append(order, f.n)
			stack = stack[:len(stack)-1]
		}
	}
	return order
}
