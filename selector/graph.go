package selector

import (
	"math/bits"
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

// containsAll reports whether every index in ids is in b; an index < 0 (a
// dependency that is not a graph member) is never in b.
func (b bitset) containsAll(ids []int32) bool {
	for _, i := range ids {
		if i < 0 || !b.has(i) {
			return false
		}
	}
	return true
}

// view is what the selector's methods read of a manifest.Graph, by the
// graph's node indexes: the graph's own nodes and selection edges (dbt's
// Linker: a unit test is a child of the model it tests, seeds have no
// parents), and per-node facts precomputed for the fqn, path and file
// methods.
type view struct {
	g     *manifest.Graph
	m     *manifest.Manifest
	ids   []string         // g.IDs()
	nodes []*manifest.Node // g.Nodes()
	// sources marks every source.
	sources bitset
	// inNodes marks members of manifest.nodes (not unit tests etc.).
	inNodes bitset
	flatFQN [][]string // fqn segments split on "."
	ofp     []string   // cleaned original_file_path
	patch   []string   // cleaned patch path without "pkg://", or ""
	fname   []string   // base name of original_file_path
	// dialect: the rules of the dbt version that wrote the manifest
	dialect dialect
}

func newView(g *manifest.Graph) *view {
	m := g.Manifest()
	d := &view{g: g, m: m, ids: g.IDs(), nodes: g.Nodes(), dialect: dialectFor(m.Metadata.DBTVersion)}
	n := len(d.ids)
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
		if node.ResourceType == manifest.Source {
			d.sources.add(int32(i))
		} else if _, ok := m.Nodes[node.UniqueID]; ok {
			d.inNodes.add(int32(i))
		}
	}
	return d
}

// layers is dbt's select_parents/select_children: the nodes reachable from
// sel through adj in 1..depth steps (depth < 0: any number).
func (d *view) layers(sel bitset, adj func(int32) []int32, depth int) bitset {
	out := newBitset(len(d.ids))
	frontier := sel
	for i := 0; !frontier.empty() && (depth < 0 || i < depth); i++ {
		next := newBitset(len(d.ids))
		frontier.each(func(n int32) {
			for _, p := range adj(n) {
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

func (d *view) selectParents(sel bitset, depth int) bitset {
	return d.layers(sel, d.g.SelectionParents, depth)
}

func (d *view) selectChildren(sel bitset, depth int) bitset {
	return d.layers(sel, d.g.SelectionChildren, depth)
}

// selectChildrensParents is dbt's "@": sel, its descendants, and all their
// ancestors.
func (d *view) selectChildrensParents(sel bitset) bitset {
	forAnc := d.selectChildren(sel, -1).or(sel)
	return d.selectParents(forAnc, -1).or(forAnc)
}

// successors returns the direct children of sel.
func (d *view) successors(sel bitset) bitset {
	out := newBitset(len(d.ids))
	sel.each(func(n int32) {
		for _, c := range d.g.SelectionChildren(n) {
			out.add(c)
		}
	})
	return out
}
