package manifest

import (
	"fmt"
	"slices"
	"strings"
)

// InferredEdge is an execution edge dbtorch adds to dbt's graph: Reader
// reads Source, and Source names the relation that Writer — a seed, model
// or snapshot the manifest builds — writes. dbt links a source to nothing,
// so without the edge nothing orders Reader after Writer (dbt build gets
// the order right only by accident of its queue, dbtorch's critical-path
// order gets it wrong), and Reader reads the relation before Writer has
// rewritten it.
type InferredEdge struct {
	// Writer is the unique_id of the seed, model or snapshot writing the
	// relation.
	Writer string
	// Source is the unique_id of the source naming that relation.
	Source string
	// Reader is the unique_id of the node reading Source (a model, test,
	// unit test, snapshot, ... whose depends_on names Source).
	Reader string
	// Relation is the relation, as Writer's relation_name (or
	// database.schema.identifier when dbt wrote no relation_name).
	Relation string
	// Cycle is set on rejected edges only (Graph.RejectedEdges): the path
	// Reader -> ... -> Writer along which Writer already depends on
	// Reader (a single element when Reader is Writer, as for an
	// incremental model reading its own relation through a source).
	Cycle []string
}

// String describes the edge in one line.
func (e InferredEdge) String() string {
	if len(e.Cycle) == 1 {
		return fmt.Sprintf("%s reads its own relation %s through %s: no edge inferred", e.Reader, e.Relation, e.Source)
	}
	if len(e.Cycle) > 0 {
		return fmt.Sprintf("%s reads %s, which %s writes (%s), but %s depends on %s (%s): no edge inferred",
			e.Reader, e.Source, e.Writer, e.Relation, e.Writer, e.Reader, strings.Join(e.Cycle, " -> "))
	}
	return fmt.Sprintf("%s -> %s: %s reads %s, which %s writes (%s)",
		e.Writer, e.Reader, e.Reader, e.Source, e.Writer, e.Relation)
}

// inference holds a graph's inferred and rejected edges.
type inference struct {
	edges    []InferredEdge
	rejected []InferredEdge
	// pairs indexes the added edges as writer -> readers.
	pairs map[int32][]int32
}

// InferredEdges returns the execution edges the graph adds to dbt's (see
// InferredEdge), sorted by reader then writer. They are part of Parents,
// Children and every Plan (hence of cache keys, which follow Parents),
// never of the selection edges: selecting a reader with a graph operator
// does not select the writer, as in dbt; a writer that is not selected is
// not built, and its readers do not wait for it. The slice is shared: do
// not modify it.
func (g *Graph) InferredEdges() []InferredEdge { return g.inf.edges }

// RejectedEdges returns the edges that inference found but did not add
// because Writer already depends on Reader, so the edge would close a
// cycle; each has Cycle set. The slice is shared: do not modify it.
func (g *Graph) RejectedEdges() []InferredEdge { return g.inf.rejected }

// normIdent folds an identifier as the comparison of relations does:
// surrounding quotes dropped, lower case. Adapters that fold unquoted
// identifiers (PostgreSQL to lower, Snowflake to upper case) or ignore case
// (DuckDB, BigQuery datasets) then compare equal; a quoted mixed-case name
// on a case-sensitive adapter may match a relation it does not name, which
// costs an unneeded wait, never a missed one.
func normIdent(s string) string {
	s = strings.TrimSpace(s)
	if len(s) >= 2 {
		switch {
		case s[0] == '"' && s[len(s)-1] == '"', s[0] == '`' && s[len(s)-1] == '`', s[0] == '[' && s[len(s)-1] == ']':
			s = s[1 : len(s)-1]
		}
	}
	return strings.ToLower(s)
}

// writtenRelation returns the relation node n writes, or the source reads:
// database, schema and identifier as dbt resolved them.
func writtenRelation(n *Node) (db, schema, ident string) {
	ident = n.Alias
	if n.ResourceType == Source {
		ident = n.Identifier
	}
	return normIdent(n.Database), normIdent(n.Schema), normIdent(firstNonEmpty(ident, n.Name))
}

func relationText(n *Node) string {
	if n.RelationName != "" {
		return n.RelationName
	}
	var parts []string
	for _, p := range []string{n.Database, n.Schema, firstNonEmpty(n.Alias, n.Name)} {
		if p != "" {
			parts = append(parts, p)
		}
	}
	return strings.Join(parts, ".")
}

// inferEdges adds an edge from every seed, model or snapshot the manifest
// builds to every reader of a source naming its relation. Databases match
// when equal or when either is empty (adapters without databases, sources
// that name none and resolve to the connection's). An edge that would
// close a cycle is rejected. It must run on the acyclic dbt graph, before
// the test edges, and leaves g.topo valid.
func (g *Graph) inferEdges() error {
	type rel struct{ schema, ident string }
	writers := map[rel][]int32{}
	for i, n := range g.nodes {
		if g.kind[i]&kindBuild == 0 || g.kind[i]&kindExecutable == 0 {
			continue
		}
		_, s, id := writtenRelation(n)
		writers[rel{s, id}] = append(writers[rel{s, id}], int32(i))
	}
	if len(writers) == 0 {
		return nil
	}
	type cand struct{ w, src, r int32 }
	var cands []cand
	for i, n := range g.nodes {
		if n.ResourceType != Source {
			continue
		}
		db, s, id := writtenRelation(n)
		for _, w := range writers[rel{s, id}] {
			wdb, _, _ := writtenRelation(g.nodes[w])
			if db != "" && wdb != "" && db != wdb {
				continue
			}
			for _, r := range g.children[i] {
				cands = append(cands, cand{w, int32(i), r})
			}
		}
	}
	if len(cands) == 0 {
		return nil
	}
	edge := func(c cand, cycle []string) InferredEdge {
		return InferredEdge{Writer: g.ids[c.w], Source: g.ids[c.src], Reader: g.ids[c.r],
			Relation: relationText(g.nodes[c.w]), Cycle: cycle}
	}
	inf := &g.inf
	inf.pairs = map[int32][]int32{}
	add := func(c cand) bool {
		if slices.Contains(g.parents[c.r], c.w) {
			return false // dbt already has the edge (a ref or -- depends_on)
		}
		g.parents[c.r] = append(g.parents[c.r], c.w)
		g.children[c.w] = append(g.children[c.w], c.r)
		inf.pairs[c.w] = append(inf.pairs[c.w], c.r)
		inf.edges = append(inf.edges, edge(c, nil))
		return true
	}
	// Readers that are their writer are rejected outright; the rest are
	// added at once, which is acyclic unless some writer depends on a
	// reader (a cycle through several inferred edges needs that too).
	saved := struct{ parents, children [][]int32 }{cloneAdj(g.parents), cloneAdj(g.children)}
	var rest []cand
	for _, c := range cands {
		if c.r == c.w {
			inf.rejected = append(inf.rejected, edge(c, []string{g.ids[c.r]}))
			continue
		}
		rest = append(rest, c)
	}
	for _, c := range rest {
		add(c)
	}
	if g.sort() != nil {
		// Some edge closes a cycle: start again from dbt's edges and add
		// them one at a time, each only if the writer does not depend on
		// its reader through the edges added so far.
		g.parents, g.children = saved.parents, saved.children
		inf.edges, inf.pairs = nil, map[int32][]int32{}
		for _, c := range rest {
			if path := g.pathDown(c.r, c.w); path != nil {
				inf.rejected = append(inf.rejected, edge(c, path))
				continue
			}
			add(c)
		}
		if err := g.sort(); err != nil {
			// Unreachable: every edge added was checked.
			return fmt.Errorf("manifest: inferred edges: %w", err)
		}
	}
	for i := range g.parents {
		g.parents[i] = dedup(g.parents[i])
		g.children[i] = dedup(g.children[i])
	}
	slices.SortFunc(inf.edges, compareEdges)
	slices.SortFunc(inf.rejected, compareEdges)
	return nil
}

func compareEdges(a, b InferredEdge) int {
	if c := strings.Compare(a.Reader, b.Reader); c != 0 {
		return c
	}
	return strings.Compare(a.Writer, b.Writer)
}

func cloneAdj(adj [][]int32) [][]int32 {
	out := make([][]int32, len(adj))
	for i, a := range adj {
		out[i] = slices.Clip(a)
	}
	return out
}

// pathDown returns the ids along a path from a to b over children edges
// (a first, b last), or nil if b is not reachable from a.
func (g *Graph) pathDown(a, b int32) []string {
	from := map[int32]int32{a: -1}
	queue := []int32{a}
	for h := 0; h < len(queue); h++ {
		cur := queue[h]
		if cur == b {
			var path []string
			for n := cur; n >= 0; n = from[n] {
				path = append(path, g.ids[n])
			}
			slices.Reverse(path)
			return path
		}
		for _, c := range g.children[cur] {
			if _, ok := from[c]; !ok {
				from[c] = cur
				queue = append(queue, c)
			}
		}
	}
	return nil
}

// planInference is what a plan's inferred edges order.
type planInference struct {
	edges    []InferredEdge
	warnings []string
	// upstream edges (plan indexes, writer then reader) that exist only
	// because of inferred edges.
	pairs map[[2]int32]bool
}

// InferredEdges returns the graph's inferred edges (Graph.InferredEdges)
// that order this plan: the writer is planned, and a planned node waits
// for it — the reader, or planned nodes reading through unplanned ones —
// that dbt's edges alone leave unordered. The slice is shared: do not
// modify it.
func (p *Plan) InferredEdges() []InferredEdge { return p.inference().edges }

// IsInferred reports whether the upstream edge up -> i (up in
// Upstream(i)) exists only because of an inferred edge, not dbt's.
func (p *Plan) IsInferred(up, i int32) bool { return p.inference().pairs[[2]int32{up, i}] }

// Warnings returns one line for each of InferredEdges, naming the nodes it
// orders (dbt itself does not guarantee that order: `dbt build` may read
// the relation before it is written), and one for each of the graph's
// RejectedEdges whose writer and a reader are planned (that order is not
// enforced). The slice is shared: do not modify it.
func (p *Plan) Warnings() []string { return p.inference().warnings }

func (p *Plan) inference() *planInference {
	p.infOnce.Do(p.computeInference)
	return &p.inf
}

func (p *Plan) computeInference() {
	g := p.g
	if len(g.inf.edges) == 0 && len(g.inf.rejected) == 0 {
		return
	}
	planned := func(j int32) bool { return p.pos[j] >= 0 }
	// reached returns the planned nodes r is, or reaches through unplanned
	// nodes.
	reached := func(r int32) []int32 {
		if planned(r) {
			return []int32{r}
		}
		var out []int32
		seen := map[int32]bool{r: true}
		stack := []int32{r}
		for len(stack) > 0 {
			c := stack[len(stack)-1]
			stack = stack[:len(stack)-1]
			for _, d := range g.children[c] {
				if seen[d] {
					continue
				}
				seen[d] = true
				if planned(d) {
					out = append(out, d)
				} else {
					stack = append(stack, d)
				}
			}
		}
		slices.Sort(out)
		return out
	}
	// dbtAfter returns the nodes dbt's own edges order after w.
	after := map[int32]map[int32]bool{}
	dbtAfter := func(w int32) map[int32]bool {
		if s, ok := after[w]; ok {
			return s
		}
		s := map[int32]bool{}
		stack := []int32{w}
		for len(stack) > 0 {
			c := stack[len(stack)-1]
			stack = stack[:len(stack)-1]
			for _, d := range g.children[c] {
				if !s[d] && !slices.Contains(g.inf.pairs[c], d) {
					s[d] = true
					stack = append(stack, d)
				}
			}
		}
		after[w] = s
		return s
	}
	inf := &p.inf
	inf.pairs = map[[2]int32]bool{}
	for _, e := range g.inf.edges {
		w, r := g.index[e.Writer], g.index[e.Reader]
		if !planned(w) {
			continue // not built: its readers read what is there
		}
		pw := p.pos[w]
		var names []string
		for _, t := range reached(r) {
			pt := p.pos[t]
			if _, ok := slices.BinarySearch(p.up[pt], pw); !ok || dbtAfter(w)[t] {
				continue
			}
			inf.pairs[[2]int32{pw, pt}] = true
			names = append(names, g.ids[t])
		}
		if len(names) == 0 {
			continue
		}
		inf.edges = append(inf.edges, e)
		msg := fmt.Sprintf("inferred edge: %s runs after %s because it reads %s, the relation %s that %s writes; dbt does not order them (dbt build may read the relation before it is written: add a ref() or a -- depends_on: comment)",
			e.Reader, e.Writer, e.Source, e.Relation, e.Writer)
		if len(names) > 1 || names[0] != e.Reader {
			msg = fmt.Sprintf("inferred edge: %s run after %s because %s reads %s, the relation %s that %s writes; dbt does not order them (dbt build may read the relation before it is written: add a ref() or a -- depends_on: comment)",
				strings.Join(names, ", "), e.Writer, e.Reader, e.Source, e.Relation, e.Writer)
		}
		inf.warnings = append(inf.warnings, msg)
	}
	for _, e := range g.inf.rejected {
		if w := g.index[e.Writer]; !planned(w) || len(reached(g.index[e.Reader])) == 0 {
			continue
		}
		inf.warnings = append(inf.warnings, "inferred edge rejected: "+e.String())
	}
}
