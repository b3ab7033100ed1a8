package manifest

import (
	"slices"
	"sync"

	"github.com/dbtorch/dbtorch/internal/enum"
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

// testStrategies names the strategies, in the order of their values.
var testStrategies = enum.Names[TestStrategy]{"immediate", "deferred", "skip"}

// String returns "immediate", "deferred" or "skip".
func (s TestStrategy) String() string { return testStrategies.String(s, "TestStrategy") }

// ParseTestStrategy parses "immediate" (or ""), "deferred" or "skip".
func ParseTestStrategy(s string) (TestStrategy, error) {
	return testStrategies.Parse(s, Immediate, "unknown test strategy")
}

// Plan is the executable DAG of a build: the selected executable nodes
// (and the exposures and saved queries dbt build reports as no-op), their
// dependencies traced through everything that is not run (sources,
// ephemeral models, metrics, semantic models, external and unselected
// nodes), and the waves.
//
// Planned nodes are numbered densely in plan order: index i (0 <= i < Len)
// is the i-th node of Nodes, which lists the nodes wave by wave, sorted by
// unique_id within a wave, so that every node comes after its upstreams.
// Every method taking an index panics if it is out of range, as a slice
// would. A Plan is immutable and safe for concurrent use.
type Plan struct {
	// Strategy is the test strategy the plan was made for.
	Strategy TestStrategy

	g     *Graph
	ids   []string // plan order
	nodes []*Node
	pos   []int32 // plan index of each graph node, -1 when not planned
	up    [][]int32
	down  [][]int32
	wave  []int32
	waves [][]string // sub-slices of ids

	// inf is the plan's share of the graph's inferred edges, computed on
	// first use (infer.go).
	infOnce sync.Once
	inf     planInference
}

// Len returns the number of planned nodes.
func (p *Plan) Len() int { return len(p.ids) }

// ID returns the unique_id of planned node i.
func (p *Plan) ID(i int32) string { return p.ids[i] }

// Node returns planned node i.
func (p *Plan) Node(i int32) *Node { return p.nodes[i] }

// Index returns the plan index of id, and false if id is not planned.
func (p *Plan) Index(id string) (int32, bool) {
	j, ok := p.g.index[id]
	if !ok || p.pos[j] < 0 {
		return 0, false
	}
	return p.pos[j], true
}

// Nodes returns the planned unique_ids in plan order (wave by wave, sorted
// within a wave). The slice is shared: do not modify it.
func (p *Plan) Nodes() []string { return p.ids }

// Upstream returns the planned nodes node i waits for directly, as plan
// indexes in increasing order. Under Deferred, tests list their own
// parents only; the barrier before the test wave is implied by the
// strategy. The slice is shared: do not modify it.
func (p *Plan) Upstream(i int32) []int32 { return p.up[i] }

// Downstream returns the planned nodes that wait for node i directly (the
// inverse of Upstream), in increasing order. The slice is shared: do not
// modify it.
func (p *Plan) Downstream(i int32) []int32 { return p.down[i] }

// UpstreamIDs returns the unique_ids of the planned nodes id waits for
// directly, sorted: empty (not nil) when it waits for nothing, nil when id
// is not planned.
func (p *Plan) UpstreamIDs(id string) []string {
	i, ok := p.Index(id)
	if !ok {
		return nil
	}
	out := make([]string, len(p.up[i]))
	for k, u := range p.up[i] {
		out[k] = p.ids[u]
	}
	slices.Sort(out)
	return out
}

// Wave returns the wave of planned node i.
func (p *Plan) Wave(i int32) int { return int(p.wave[i]) }

// Waves groups the planned unique_ids: wave 0 holds nodes with no planned
// upstream; a node in wave N has its longest upstream chain of length N
// (under Deferred the tests form one last wave). Each wave is sorted. The
// slices are shared: do not modify them.
func (p *Plan) Waves() [][]string { return p.waves }

// Width returns the size of the widest wave.
func (p *Plan) Width() int {
	w := 0
	for _, wave := range p.waves {
		w = max(w, len(wave))
	}
	return w
}

// Plan returns the plan for running the executable nodes of selected under
// the given test strategy; a nil selected plans every executable node.
// Exposures and saved queries (Node.NoOp) are planned as dbt build reports
// them, after their upstreams, though nothing runs them. Other
// non-executable ids in selected (sources, ephemerals, metrics, semantic
// models, disabled or unknown ids) are ignored; tests are kept only when
// the strategy runs them, and a unit test only when the model it tests is
// planned too (dbt build runs a unit test in its model's turn). Under
// Immediate a unit test waits for what its model waits for, the model's
// upstream data tests included. If a selected node reaches another
// selected node only through unselected ones, it still comes first.
func (g *Graph) Plan(selected []string, strategy TestStrategy) *Plan {
	keep := make([]bool, len(g.ids))
	if selected == nil {
		for i := range keep {
			keep[i] = true
		}
	} else {
		for _, id := range selected {
			if i, ok := g.index[id]; ok {
				keep[i] = true
			}
		}
	}
	for i, k := range g.kind {
		if k&(kindExecutable|kindNoOp) == 0 || (k.isTest() && strategy == SkipTests) {
			keep[i] = false
		}
	}
	// dbt build runs a unit test only in its model's turn: without its
	// model, a selected unit test does not run (a selection of unit tests
	// alone builds nothing, as dbt build does).
	for i, k := range g.kind {
		if keep[i] && k&kindUnitTest != 0 {
			if j, ok := g.index[g.nodes[i].TestedNode]; !ok || !keep[j] {
				keep[i] = false
			}
		}
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
	nWaves := maxWave + 1
	if deferred > 0 {
		nWaves++
	}
	// Plan order: by wave, then by graph index (id order). A counting sort
	// over the waves numbers every kept node.
	start := make([]int32, nWaves+1)
	for i := range int32(len(g.ids)) {
		if keep[i] {
			if deferredTest(i) {
				wave[i] = maxWave + 1
			}
			start[wave[i]+1]++
		}
	}
	for w := range nWaves {
		start[w+1] += start[w]
	}
	p := &Plan{Strategy: strategy, g: g, ids: make([]string, kept), nodes: make([]*Node, kept),
		pos: make([]int32, len(g.ids)), up: make([][]int32, kept), down: make([][]int32, kept),
		wave: make([]int32, kept), waves: make([][]string, nWaves)}
	next := slices.Clone(start[:nWaves])
	gidx := make([]int32, kept) // graph index of each planned node
	for i := range int32(len(g.ids)) {
		if !keep[i] {
			p.pos[i] = -1
			continue
		}
		k := next[wave[i]]
		next[wave[i]]++
		p.pos[i], gidx[k] = k, i
		p.ids[k], p.nodes[k], p.wave[k] = g.ids[i], g.nodes[i], wave[i]
	}
	for w := range nWaves {
		p.waves[w] = p.ids[start[w]:start[w+1]:start[w+1]]
	}
	// Upstream and downstream lists in plan indexes, each in one backing
	// array.
	edges := 0
	for i, k := range p.pos {
		if k >= 0 {
			edges += len(up[i])
		}
	}
	flatUp, flatDown := make([]int32, 0, edges), make([]int32, edges)
	ndown := make([]int32, kept+1)
	for k := range int32(kept) {
		s := len(flatUp)
		for _, j := range up[gidx[k]] {
			flatUp = append(flatUp, p.pos[j])
		}
		ups := flatUp[s:len(flatUp):len(flatUp)]
		slices.Sort(ups)
		p.up[k] = ups
		for _, u := range ups {
			ndown[u+1]++
		}
	}
	for k := range kept {
		ndown[k+1] += ndown[k]
	}
	fill := slices.Clone(ndown[:kept])
	for k := range int32(kept) {
		for _, u := range p.up[k] {
			flatDown[fill[u]] = k
			fill[u]++
		}
	}
	for k := range kept {
		p.down[k] = flatDown[ndown[k]:ndown[k+1]:ndown[k+1]]
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
