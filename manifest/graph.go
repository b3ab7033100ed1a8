package manifest

import (
	"fmt"
	"slices"
	"sort"
	"strings"
	"sync"
)

// Graph is the dependency graph of a manifest: every model (ephemerals
// included), seed, snapshot, test, unit test, source, analysis, operation,
// metric, semantic model, saved query and function that is enabled, and
// every exposure (as dbt's Linker adds them), linked by depends_on. Plans
// are derived from it, and the selector walks its selection edges.
//
// Nodes are numbered densely: index i (0 <= i < Len) is the i-th id of IDs
// in sorted order; Index maps back. Indexes are int32 to keep adjacency
// compact.
//
// A Graph holds two edge sets over the same nodes:
//   - Execution edges (Parents, Children, and the plans): edges whose far
//     end is not in the graph (a disabled or missing node) are dropped; a
//     unit test depends on the parents of the model it tests, and that model
//     depends on the unit test, so that unit tests run first as in `dbt
//     build`; and a node reading a source waits for the seed, model or
//     snapshot that writes the source's relation (InferredEdges), which
//     dbt leaves unordered.
//   - Selection edges (SelectionParents, SelectionChildren, DependsOn): dbt's
//     selection graph, as dbt's Linker links it: depends_on.nodes as
//     written (a unit test is a child of the model it tests), and a seed has
//     no parents.
//
// A Graph is immutable and safe for concurrent use.
type Graph struct {
	m        *Manifest
	ids      []string // sorted unique_ids
	nodes    []*Node
	kind     []kind // per node, for the hot loops (no pointer chasing)
	index    map[string]int32
	parents  [][]int32 // sorted, deduplicated
	children [][]int32
	topo     []int32 // topological order of the whole graph
	// testEdges maps a node to the data tests that precede it in dbt build
	// (dbt's parent_test edges), reduced to the nearest descendants; a unit
	// test has its model's.
	testEdges [][]int32
	// inf holds the edges inferred from sources that read relations the
	// manifest writes (infer.go).
	inf inference
	// sel holds the selection edges, built on first use.
	selOnce sync.Once
	sel     selEdges
}

// selEdges are dbt's selection edges (see Graph).
type selEdges struct {
	parents, children [][]int32
	// deps is each node's depends_on.nodes as indexes, -1 for ids that are
	// not in the graph; empty for seeds.
	deps [][]int32
}

// kind caches the facts about a node that graph algorithms branch on.
type kind uint8

const (
	kindTest       kind = 1 << iota // data test
	kindUnitTest                    // unit test
	kindModel                       // model (ephemeral too)
	kindBuild                       // model, seed or snapshot: receives parent_test edges
	kindExecutable                  // Node.Executable
	kindNoOp                        // Node.NoOp: planned, never executed
)

func kindOf(n *Node) kind {
	var k kind
	switch n.ResourceType {
	case Test:
		k |= kindTest
	case UnitTest:
		k |= kindUnitTest
	case Model:
		k |= kindModel | kindBuild
	case Seed, Snapshot:
		k |= kindBuild
	}
	if n.Executable() {
		k |= kindExecutable
	}
	if n.NoOp() {
		k |= kindNoOp
	}
	return k
}

func (k kind) isTest() bool { return k&(kindTest|kindUnitTest) != 0 }

// CycleError reports a dependency cycle. Nodes lists the unique_ids along
// the cycle, in order; the first node depends on the last.
type CycleError struct {
	Nodes []string
}

func (e *CycleError) Error() string {
	return fmt.Sprintf("manifest: dependency cycle: %s -> %s", strings.Join(e.Nodes, " -> "), e.Nodes[0])
}

// NewGraph builds the graph of m. It returns a *CycleError naming the nodes
// of a cycle if the dependencies are not acyclic.
//
// Besides dbt's edges, the execution edges include InferredEdges: a node
// reading a source whose relation a seed, model or snapshot of m writes
// waits for that node. Inferred edges never create a cycle; those that
// would are left out and listed by RejectedEdges.
func NewGraph(m *Manifest) (*Graph, error) { return newGraph(m, true) }

func newGraph(m *Manifest, infer bool) (*Graph, error) {
	size := len(m.Nodes) + len(m.Sources) + len(m.UnitTests)
	g := &Graph{m: m, index: make(map[string]int32, size)}
	type visit struct {
		n   *Node
		pos int
	}
	all := make([]visit, 0, size)
	m.All(func(n *Node) bool {
		if n.Enabled || n.ResourceType == Exposure {
			all = append(all, visit{n, len(all)})
		}
		return true
	})
	// All visits the sections in a fixed order; sorting by id, then by
	// visit order, keeps the first of an id written into two sections
	// (only a corrupt manifest does that).
	slices.SortFunc(all, func(a, b visit) int {
		if c := strings.Compare(a.n.UniqueID, b.n.UniqueID); c != 0 {
			return c
		}
		return a.pos - b.pos
	})
	for i, v := range all {
		if i > 0 && v.n.UniqueID == all[i-1].n.UniqueID {
			continue
		}
		g.index[v.n.UniqueID] = int32(len(g.nodes))
		g.nodes = append(g.nodes, v.n)
		g.kind = append(g.kind, kindOf(v.n))
		g.ids = append(g.ids, v.n.UniqueID)
	}
	g.parents = make([][]int32, len(g.ids))
	g.children = make([][]int32, len(g.ids))
	for i, n := range g.nodes {
		deps := n.DependsOn.Nodes
		if n.ResourceType == UnitTest {
			if model := m.Nodes[n.TestedNode]; model != nil {
				deps = model.DependsOn.Nodes
			}
		}
		for _, d := range deps {
			if j, ok := g.index[d]; ok && j != int32(i) {
				g.parents[i] = append(g.parents[i], j)
			}
		}
		if n.ResourceType == UnitTest {
			if j, ok := g.index[n.TestedNode]; ok {
				g.parents[j] = append(g.parents[j], int32(i))
			}
		}
	}
	for i := range g.parents {
		g.parents[i] = dedup(g.parents[i])
		for _, p := range g.parents[i] {
			g.children[p] = append(g.children[p], int32(i))
		}
	}
	if err := g.sort(); err != nil {
		return nil, err
	}
	if infer {
		if err := g.inferEdges(); err != nil {
			return nil, err
		}
	}
	g.addTestEdges()
	return g, nil
}

func dedup(s []int32) []int32 {
	slices.Sort(s)
	return slices.Compact(s)
}

// sort computes a topological order (Kahn's algorithm), or a CycleError.
func (g *Graph) sort() error {
	indeg := make([]int32, len(g.ids))
	for i := range g.parents {
		indeg[i] = int32(len(g.parents[i]))
	}
	queue := make([]int32, 0, len(g.ids))
	for i, d := range indeg {
		if d == 0 {
			queue = append(queue, int32(i))
		}
	}
	for h := 0; h < len(queue); h++ {
		for _, c := range g.children[queue[h]] {
			if indeg[c]--; indeg[c] == 0 {
				queue = append(queue, c)
			}
		}
	}
	if len(queue) == len(g.ids) {
		g.topo = queue
		return nil
	}
	return &CycleError{Nodes: g.findCycle(indeg)}
}

// findCycle walks parent edges among nodes Kahn could not order (indeg > 0)
// until a node repeats; every such node has such a parent, so it ends in a
// cycle.
func (g *Graph) findCycle(indeg []int32) []string {
	start := int32(-1)
	for i, d := range indeg {
		if d > 0 {
			start = int32(i)
			break
		}
	}
	seen := map[int32]int{}
	var path []int32
	for cur := start; ; {
		if at, ok := seen[cur]; ok {
			cyc := path[at:]
			slices.Reverse(cyc) // parent order -> dependency order
			out := make([]string, len(cyc))
			for i, c := range cyc {
				out[i] = g.ids[c]
			}
			return out
		}
		seen[cur] = len(path)
		path = append(path, cur)
		for _, p := range g.parents[cur] {
			if indeg[p] > 0 {
				cur = p
				break
			}
		}
	}
}

// addTestEdges adds dbt build's parent_test edges: a data test precedes
// every model, seed or snapshot all of whose test parents are among its
// ancestors. Only the nearest such nodes get an edge; the rest follow
// through them.
func (g *Graph) addTestEdges() {
	g.testEdges = make([][]int32, len(g.ids))
	// Nodes that are parents of a multi-parent test get a bit each; every
	// node's ancestor set is kept over those bits only.
	bit := map[int32]int{}
	for i, n := range g.nodes {
		if n.ResourceType == Test && len(g.parents[i]) > 1 {
			for _, p := range g.parents[i] {
				if _, ok := bit[p]; !ok {
					bit[p] = len(bit)
				}
			}
		}
	}
	words := (len(bit) + 63) / 64
	var anc [][]uint64
	if words > 0 {
		anc = make([][]uint64, len(g.ids))
		for _, i := range g.topo {
			a := make([]uint64, words)
			for _, p := range g.parents[i] {
				if g.kind[p].isTest() {
					continue
				}
				if b, ok := bit[p]; ok {
					a[b/64] |= 1 << (b % 64)
				}
				for w := range a {
					a[w] |= anc[p][w]
				}
			}
			anc[i] = a
		}
	}
	receives := func(i int32) bool {
		return g.kind[i]&kindBuild != 0
	}
	// Visited marks are stamped with the test's index, so one array serves
	// every walk.
	visited := make([]int32, len(g.ids))
	for i := range visited {
		visited[i] = -1
	}
	var stack []int32
	for t, n := range g.nodes {
		ps := g.parents[t]
		if n.ResourceType != Test || len(ps) == 0 {
			continue
		}
		covers := func(c int32) bool {
			for _, p := range ps {
				b := bit[p]
				if anc[c][b/64]&(1<<(b%64)) == 0 {
					return false
				}
			}
			return true
		}
		stack = append(stack[:0], g.children[ps[0]]...)
		for len(stack) > 0 {
			c := stack[len(stack)-1]
			stack = stack[:len(stack)-1]
			if visited[c] == int32(t) || !receives(c) {
				continue
			}
			visited[c] = int32(t)
			if len(ps) == 1 || covers(c) {
				g.testEdges[c] = append(g.testEdges[c], int32(t))
				continue
			}
			stack = append(stack, g.children[c]...)
		}
	}
	// dbt build runs a unit test in its model's turn, just before the
	// model (BuildTask.call_model_and_unit_tests_runner): the unit test
	// waits for what the model waits for, its parent_test edges included.
	for u, n := range g.nodes {
		if n.ResourceType != UnitTest {
			continue
		}
		if j, ok := g.index[n.TestedNode]; ok && len(g.testEdges[j]) > 0 {
			g.testEdges[u] = append(g.testEdges[u], g.testEdges[j]...)
		}
	}
}

// Manifest returns the manifest the graph was built from.
func (g *Graph) Manifest() *Manifest { return g.m }

// Len returns the number of nodes in the graph.
func (g *Graph) Len() int { return len(g.ids) }

// IDs returns every unique_id in the graph, sorted. The slice is shared:
// do not modify it.
func (g *Graph) IDs() []string { return g.ids }

// Nodes returns every node in index order (the order of IDs). The slice is
// shared: do not modify it.
func (g *Graph) Nodes() []*Node { return g.nodes }

// Index returns the index of id in the graph, and false if id is not in it.
func (g *Graph) Index(id string) (int32, bool) {
	i, ok := g.index[id]
	return i, ok
}

// SelectionParents returns the parents of node i in dbt's selection graph
// (see Graph), in depends_on order. The slice is shared: do not modify it.
func (g *Graph) SelectionParents(i int32) []int32 { return g.selection().parents[i] }

// SelectionChildren returns the children of node i in dbt's selection
// graph, in index order. The slice is shared: do not modify it.
func (g *Graph) SelectionChildren(i int32) []int32 { return g.selection().children[i] }

// DependsOn returns node i's depends_on.nodes as indexes, in the order dbt
// wrote them, with -1 for an id that is not in the graph (disabled or
// missing); a seed's is empty, as dbt ignores it. This is what dbt's
// indirect selection checks a test's parents against. The slice is shared:
// do not modify it.
func (g *Graph) DependsOn(i int32) []int32 { return g.selection().deps[i] }

// selection builds the selection edges on first use.
func (g *Graph) selection() *selEdges {
	g.selOnce.Do(func() {
		n := len(g.ids)
		s := &g.sel
		s.parents = make([][]int32, n)
		s.children = make([][]int32, n)
		s.deps = make([][]int32, n)
		total := 0
		for _, node := range g.nodes {
			if node.ResourceType != Seed {
				total += len(node.DependsOn.Nodes)
			}
		}
		flat := make([]int32, 0, total)
		for i, node := range g.nodes {
			if node.ResourceType == Seed {
				continue // dbt: SeedNode.depends_on_nodes is always empty
			}
			start := len(flat)
			for _, d := range node.DependsOn.Nodes {
				j, ok := g.index[d]
				if !ok {
					j = -1
				}
				flat = append(flat, j)
			}
			s.deps[i] = flat[start:len(flat):len(flat)]
			var ps []int32
			for _, j := range s.deps[i] {
				if j >= 0 && j != int32(i) && !slices.Contains(ps, j) {
					ps = append(ps, j)
				}
			}
			s.parents[i] = ps
			for _, j := range ps {
				s.children[j] = append(s.children[j], int32(i))
			}
		}
	})
	return &g.sel
}

// Node returns the node with the given unique_id, or nil if it is not in
// the graph.
func (g *Graph) Node(id string) *Node {
	if i, ok := g.index[id]; ok {
		return g.nodes[i]
	}
	return nil
}

// Has reports whether id is in the graph.
func (g *Graph) Has(id string) bool {
	_, ok := g.index[id]
	return ok
}

// Parents returns the direct dependencies of id in the graph, sorted
// (without dbt build's parent_test edges).
func (g *Graph) Parents(id string) []string { return g.names(g.parents, id) }

// Children returns the direct dependents of id in the graph, sorted
// (without dbt build's parent_test edges).
func (g *Graph) Children(id string) []string { return g.names(g.children, id) }

func (g *Graph) names(adj [][]int32, id string) []string {
	i, ok := g.index[id]
	if !ok {
		return nil
	}
	out := make([]string, len(adj[i]))
	for k, j := range adj[i] {
		out[k] = g.ids[j]
	}
	sort.Strings(out)
	return out
}

// Ancestors returns every node id reaches through parent edges, up to depth
// levels (depth < 0: unlimited), not including id itself.
func (g *Graph) Ancestors(id string, depth int) []string { return g.walk(g.parents, id, depth) }

// Descendants returns every node that reaches id through parent edges, up
// to depth levels (depth < 0: unlimited), not including id itself.
func (g *Graph) Descendants(id string, depth int) []string { return g.walk(g.children, id, depth) }

func (g *Graph) walk(adj [][]int32, id string, depth int) []string {
	start, ok := g.index[id]
	if !ok {
		return nil
	}
	dist := map[int32]int{start: 0}
	queue := []int32{start}
	var out []string
	for h := 0; h < len(queue); h++ {
		cur := queue[h]
		if depth >= 0 && dist[cur] >= depth {
			continue
		}
		for _, n := range adj[cur] {
			if _, ok := dist[n]; ok {
				continue
			}
			dist[n] = dist[cur] + 1
			queue = append(queue, n)
			out = append(out, g.ids[n])
		}
	}
	sort.Strings(out)
	return out
}

// TestsOf returns the data tests and unit tests that depend directly on id
// (for a unit test: that test the model id), sorted.
func (g *Graph) TestsOf(id string) []string {
	i, ok := g.index[id]
	if !ok {
		return nil
	}
	var out []string
	for _, c := range g.children[i] {
		if g.nodes[c].ResourceType == Test {
			out = append(out, g.ids[c])
		}
	}
	for _, p := range g.parents[i] {
		if g.nodes[p].ResourceType == UnitTest {
			out = append(out, g.ids[p])
		}
	}
	sort.Strings(out)
	return out
}
