package manifest

import (
	"fmt"
	"slices"
	"sort"
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
	for i, n := range g.nodes {
		if !n.Executable() || (selected != nil && !selected[n.UniqueID]) {
			continue
		}
		if n.IsTest() && strategy == SkipTests {
			continue
		}
		keep[i] = true
	}
	parentsOf := func(i int32) []int32 {
		if strategy != Immediate {
			if g.nodes[i].ResourceType == Model {
				// Without immediate tests, unit tests do not gate models.
				ps := make([]int32, 0, len(g.parents[i]))
				for _, p := range g.parents[i] {
					if g.nodes[p].ResourceType != UnitTest {
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
		if strategy == Deferred && keep[i] && g.nodes[i].IsTest() {
			// Tests run after all models; they do not gate anything.
			acc = slices.DeleteFunc(acc, func(j int32) bool { return g.nodes[j].IsTest() })
		}
		up[i] = dedup(acc)
		done[i] = true
	}
	kept := 0
	for _, k := range keep {
		if k {
			kept++
		}
	}
	p := &Plan{Strategy: strategy, Upstream: make(map[string][]string, kept),
		Downstream: make(map[string][]string, kept), Wave: make(map[string]int, kept)}
	wave := make([]int, len(g.ids))
	maxWave := -1
	for _, i := range order {
		if !keep[i] || (strategy == Deferred && g.nodes[i].IsTest()) {
			continue
		}
		w := 0
		ups := make([]string, 0, len(up[i]))
		for _, j := range up[i] {
			if strategy == Deferred && g.nodes[j].IsTest() {
				continue
			}
			w = max(w, wave[j]+1)
			ups = append(ups, g.ids[j])
		}
		wave[i] = w
		maxWave = max(maxWave, w)
		p.add(g.ids[i], ups, w)
	}
	if strategy == Deferred {
		for _, i := range order {
			if keep[i] && g.nodes[i].IsTest() {
				ups := make([]string, 0, len(up[i]))
				for _, j := range up[i] {
					ups = append(ups, g.ids[j])
				}
				p.add(g.ids[i], ups, maxWave+1)
			}
		}
	}
	for id, ups := range p.Upstream {
		for _, u := range ups {
			p.Downstream[u] = append(p.Downstream[u], id)
		}
	}
	for _, d := range p.Downstream {
		sort.Strings(d)
	}
	for _, w := range p.Waves {
		sort.Strings(w)
		p.Nodes = append(p.Nodes, w...)
	}
	return p
}

func (p *Plan) add(id string, ups []string, w int) {
	sort.Strings(ups)
	p.Upstream[id] = ups
	p.Wave[id] = w
	for len(p.Waves) <= w {
		p.Waves = append(p.Waves, nil)
	}
	p.Waves[w] = append(p.Waves[w], id)
}

// topoWithTestEdges orders the whole graph so that every node comes after
// its parents under parentsOf. The graph without test edges is acyclic, and
// test edges only point from a test to descendants of all its parents, so
// the order exists; it is computed by depth-first search from g.topo.
func (g *Graph) topoWithTestEdges(strategy TestStrategy, parentsOf func(int32) []int32) []int32 {
	if strategy != Immediate || len(g.testEdges) == 0 {
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
