package selector

import (
	"math/bits"
	"sort"
	"strings"

	"github.com/dbtorch/dbtorch/manifest"
)

// bitset is a set of node indexes.
type bitset []uint64

func newBitset(n int) bitset      { return make(bitset, (n+63)/64) }
func (b bitset) has(i int32) bool { return b[i>>6]&(1<<(uint(i)&63)) != 0 }
func (b bitset) add(i int32)      { b[i>>6] |= 1 << (uint(i) & 63) }
func (b bitset) clone() bitset    { return append(bitset(nil), b...) }
func (b bitset) or(o bitset) bitset {
	for i := range b {
		b[i] |= o[i]
	}
	return b
}
func (b bitset) and(o bitset) bitset {
	for i := range b {
		b[i] &= o[i]
	}
	return b
}
func (b bitset) andNot(o bitset) bitset {
	for i := range b {
		b[i] &^= o[i]
	}
	return b
}

func (b bitset) equal(o bitset) bool {
	for i := range b {
		if b[i] != o[i] {
			return false
		}
	}
	return true
}

func (b bitset) empty() bool {
	for _, w := range b {
		if w != 0 {
			return false
		}
	}
	return true
}

// each calls fn for every member in increasing order.
func (b bitset) each(fn func(i int32)) {
	for wi, w := range b {
		for w != 0 {
			t := bits.TrailingZeros64(w)
			fn(int32(wi*64 + t))
			w &= w - 1
		}
	}
}

// subsetOf reports whether every index in ids is in b; an index < 0 (a
// dependency that is not a graph member) is never in b.
func (b bitset) containsAll(ids []int32) bool {
	for _, i := range ids {
		if i < 0 || !b.has(i) {
			return false
		}
	}
	return true
}

// dag is dbt's selection graph: every enabled node of the manifest (nodes,
// sources, exposures, metrics, semantic models, saved queries, unit tests,
// functions) linked by depends_on.nodes, as dbt's Linker links them (a unit
// test is a child of the model it tests; seeds have no parents).
type dag struct {
	m        *manifest.Manifest
	ids      []string
	nodes    []*manifest.Node
	index    map[string]int32
	parents  [][]int32
	children [][]int32
	// deps is each node's depends_on.nodes as indexes (-1 for ids that are
	// not graph members), for indirect selection's subset checks.
	deps    [][]int32
	sources bitset // every source
	// inManifestNodes marks members of manifest.nodes (not unit tests etc.).
	inNodes bitset
	// Precomputed per node for the fqn, path and file methods.
	flatFQN [][]string // fqn segments split on "."
	ofp     []string   // cleaned original_file_path
	patch   []string   // cleaned patch path without "pkg://", or ""
	fname   []string   // base name of original_file_path
}

func newDAG(m *manifest.Manifest) *dag {
	d := &dag{m: m, index: map[string]int32{}}
	add := func(mp map[string]*manifest.Node, always bool) {
		for id, n := range mp {
			if n.Enabled || always {
				d.ids = append(d.ids, id)
			}
		}
	}
	add(m.Nodes, false)
	add(m.Sources, false)
	add(m.Exposures, true)
	add(m.Metrics, false)
	add(m.SemanticModels, false)
	add(m.SavedQueries, false)
	add(m.UnitTests, false)
	add(m.Functions, false)
	sort.Strings(d.ids)
	d.ids = compactStrings(d.ids)
	d.nodes = make([]*manifest.Node, len(d.ids))
	for i, id := range d.ids {
		d.index[id] = int32(i)
		d.nodes[i] = m.Lookup(id)
	}
	n := len(d.ids)
	d.parents = make([][]int32, n)
	d.children = make([][]int32, n)
	d.deps = make([][]int32, n)
	d.sources = newBitset(n)
	d.inNodes = newBitset(n)
	d.flatFQN = make([][]string, n)
	d.ofp = make([]string, n)
	d.patch = make([]string, n)
	d.fname = make([]string, n)
	for i, node := range d.nodes {
		for _, seg := range node.FQN {
			d.flatFQN[i] = append(d.flatFQN[i], strings.Split(seg, ".")...)
		}
		d.ofp[i] = cleanPath(node.OriginalFilePath)
		if _, p, ok := strings.Cut(node.PatchPath, "://"); ok {
			d.patch[i] = cleanPath(p)
		}
		d.fname[i] = pathName(node.OriginalFilePath)
	}
	for i, node := range d.nodes {
		if node.ResourceType == manifest.Source {
			d.sources.add(int32(i))
			continue
		}
		if _, ok := m.Nodes[node.UniqueID]; ok {
			d.inNodes.add(int32(i))
		}
		if node.ResourceType == manifest.Seed {
			continue // dbt: SeedNode.depends_on_nodes is always empty
		}
		seen := map[int32]bool{}
		for _, dep := range node.DependsOn.Nodes {
			j, ok := d.index[dep]
			if !ok {
				d.deps[i] = append(d.deps[i], -1)
				continue
			}
			d.deps[i] = append(d.deps[i], j)
			if j != int32(i) && !seen[j] {
				seen[j] = true
				d.parents[i] = append(d.parents[i], j)
				d.children[j] = append(d.children[j], int32(i))
			}
		}
	}
	return d
}

func compactStrings(s []string) []string {
	out := s[:0]
	for i, v := range s {
		if i == 0 || v != s[i-1] {
			out = append(out, v)
		}
	}
	return out
}

// layers is dbt's select_parents/select_children: the nodes reachable from
// sel through adj in 1..depth steps (depth < 0: any number).
func (d *dag) layers(sel bitset, adj [][]int32, depth int) bitset {
	out := newBitset(len(d.ids))
	frontier := sel
	for i := 0; !frontier.empty() && (depth < 0 || i < depth); i++ {
		next := newBitset(len(d.ids))
		frontier.each(func(n int32) {
			for _, p := range adj[n] {
				if !out.has(p) {
					next.add(p)
				}
			}
		})
		out.or(next)
		frontier = next
	}
	return out
}

func (d *dag) selectParents(sel bitset, depth int) bitset  { return d.layers(sel, d.parents, depth) }
func (d *dag) selectChildren(sel bitset, depth int) bitset { return d.layers(sel, d.children, depth) }

// selectChildrensParents is dbt's "@": sel, its descendants, and all their
// ancestors.
func (d *dag) selectChildrensParents(sel bitset) bitset {
	forAnc := d.selectChildren(sel, -1).or(sel)
	return d.selectParents(forAnc, -1).or(forAnc)
}

// successors returns the direct children of sel.
func (d *dag) successors(sel bitset) bitset {
	out := newBitset(len(d.ids))
	sel.each(func(n int32) {
		for _, c := range d.children[n] {
			out.add(c)
		}
	})
	return out
}

// Len returns the number of graph members.
func (d *dag) Len() int { return len(d.ids) }
