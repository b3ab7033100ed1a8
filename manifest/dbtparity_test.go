package manifest_test

import (
	"encoding/json"
	"os"
	"path/filepath"
	"slices"
	"sort"
	"strings"
	"testing"

	"github.com/google/go-cmp/cmp"
	"github.com/spf13/afero"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/dbtorch/dbtorch/internal/dbttest"
	"github.com/dbtorch/dbtorch/manifest"
)

// dbtGraph is dbt's own graph_summary.json: "linked" is the dependency
// graph, "with_test_edges" the graph `dbt build` schedules on.
type dbtGraph struct {
	Linked        map[string]graphEntry `json:"linked"`
	WithTestEdges map[string]graphEntry `json:"with_test_edges"`
}

type graphEntry struct {
	Name string `json:"name"`
	Type string `json:"type"`
	Succ []int  `json:"succ"`
}

// parents inverts a graph_summary section into unique_id -> parent ids.
func parents(section map[string]graphEntry) map[string][]string {
	out := map[string][]string{}
	for _, e := range section {
		out[e.Name] = out[e.Name][:0:0]
	}
	for _, e := range section {
		for _, s := range e.Succ {
			child := section[itoa(s)].Name
			out[child] = append(out[child], e.Name)
		}
	}
	return out
}

func itoa(i int) string { b, _ := json.Marshal(i); return string(b) }

// traced returns, for node id, its nearest ancestors in keep, following
// parent edges through every node not in keep (sources, ephemerals).
func traced(par map[string][]string, keep func(string) bool, id string) []string {
	seen := map[string]bool{}
	out := []string{}
	var walk func(string)
	walk = func(n string) {
		for _, p := range par[n] {
			if seen[p] {
				continue
			}
			seen[p] = true
			if keep(p) {
				out = append(out, p)
			} else {
				walk(p)
			}
		}
	}
	walk(id)
	sort.Strings(out)
	return out
}

// closure returns every ancestor of id under par.
func closure(par map[string][]string, id string) map[string]bool {
	out := map[string]bool{}
	stack := []string{id}
	for len(stack) > 0 {
		n := stack[len(stack)-1]
		stack = stack[:len(stack)-1]
		for _, p := range par[n] {
			if !out[p] {
				out[p] = true
				stack = append(stack, p)
			}
		}
	}
	return out
}

// TestGraphMatchesDBT parses testdata/shop with real dbt, asks dbt for its
// own build graph (graph_summary.json, written by a `dbt build` that
// selects nothing), and checks our graph against it: the executable nodes,
// every edge after ephemeral tracing, every test's parents, and the order
// dbt build imposes with its parent_test edges.
func TestGraphMatchesDBT(t *testing.T) {
	dir := dbttest.CopyProject(t, "shop")
	// Without its `-- depends_on` workaround, stg_customer_notes reads the
	// seed raw_customer_notes through a source only: dbt's graph has no
	// edge between them, ours infers one.
	dropDependsOn(t, dir, "models/staging/stg_customer_notes.sql")
	env := dbttest.Env(t, dir)
	manifestPath := dbttest.Parse(t, dir, env)
	_, err := dbttest.Run(t, dir, env, "build", "--select", "dbtorch_selects_nothing")
	require.NoError(t, err)
	raw, err := os.ReadFile(filepath.Join(dir, "target", "graph_summary.json"))
	require.NoError(t, err)
	var dg dbtGraph
	require.NoError(t, json.Unmarshal(raw, &dg))
	require.NotEmpty(t, dg.WithTestEdges, "dbt wrote no with_test_edges")

	m, err := manifest.Load(afero.NewOsFs(), manifestPath)
	require.NoError(t, err)
	// dbt's edges only; the inferred ones are checked at the end.
	g, err := manifest.NewDBTGraph(m)
	require.NoError(t, err)

	linked := parents(dg.Linked)
	withTests := parents(dg.WithTestEdges)
	executable := func(id string) bool {
		n := m.Lookup(id)
		return n != nil && n.Executable()
	}

	// Every executable node dbt knows is planned, and nothing else.
	var dbtExec []string
	for id := range linked {
		if executable(id) {
			dbtExec = append(dbtExec, id)
		}
	}
	sort.Strings(dbtExec)
	immediate := g.Plan(nil, manifest.Immediate)
	ours := append([]string(nil), immediate.Nodes()...)
	sort.Strings(ours)
	require.Empty(t, cmp.Diff(dbtExec, ours), "executable nodes differ from dbt's graph (-dbt +ours)")
	require.Greater(t, len(ours), 30, "the shop project should have a real graph")

	// Without tests in the way, each node's upstream is exactly dbt's
	// edges traced through ephemerals and sources; each test's upstream
	// (deferred strategy lists tests' own parents) is its parents traced.
	skip := g.Plan(nil, manifest.SkipTests)
	deferred := g.Plan(nil, manifest.Deferred)
	notTest := func(id string) bool { return executable(id) && !m.Lookup(id).IsTest() }
	for _, id := range dbtExec {
		n := m.Lookup(id)
		switch n.ResourceType {
		case manifest.UnitTest:
			// dbt hangs unit tests under their model and runs them first;
			// we plan them before the model, after the model's parents.
			model := n.TestedNode
			assert.Equal(t, traced(linked, notTest, model), deferred.UpstreamIDs(id), "unit test %s", id)
			assert.Contains(t, immediate.UpstreamIDs(model), id, "model %s must wait for its unit test", model)
		case manifest.Test:
			assert.Equal(t, traced(linked, notTest, id), deferred.UpstreamIDs(id), "parents of test %s", id)
		default:
			assert.Equal(t, traced(linked, notTest, id), skip.UpstreamIDs(id), "upstream of %s", id)
		}
	}

	// With dbt build's parent_test edges, each node must come after
	// exactly the executable nodes dbt puts before it (we keep fewer,
	// redundant edges; the order is the same).
	isUnit := func(id string) bool { n := m.Lookup(id); return n != nil && n.ResourceType == manifest.UnitTest }
	ourPar := map[string][]string{}
	for _, id := range immediate.Nodes() {
		ourPar[id] = immediate.UpstreamIDs(id)
	}
	for _, id := range dbtExec {
		if isUnit(id) {
			continue
		}
		want := map[string]bool{}
		for a := range closure(withTests, id) {
			if executable(a) && !isUnit(a) {
				want[a] = true
			}
		}
		got := map[string]bool{}
		for a := range closure(ourPar, id) {
			if !isUnit(a) {
				got[a] = true
			}
		}
		assert.Empty(t, cmp.Diff(want, got), "nodes that must finish before %s (-dbt +ours)", id)
	}

	// The full graph is dbt's plus the inferred edges: without tests in
	// the way, each node's upstream is dbt's edges and the inferred ones,
	// traced.
	full, err := manifest.NewGraph(m)
	require.NoError(t, err)
	require.NotEmpty(t, full.InferredEdges(), "shop reads a seed through a source without a ref")
	withInferred := map[string][]string{}
	for id, ps := range linked {
		withInferred[id] = slices.Clone(ps)
	}
	for _, e := range full.InferredEdges() {
		withInferred[e.Reader] = append(withInferred[e.Reader], e.Writer)
	}
	fullSkip := full.Plan(nil, manifest.SkipTests)
	for _, id := range fullSkip.Nodes() {
		assert.Equal(t, traced(withInferred, notTest, id), fullSkip.UpstreamIDs(id), "upstream of %s with inferred edges", id)
	}
}

// dropDependsOn removes the `-- depends_on:` lines from the model file at
// rel in the project copy dir, failing if it has none.
func dropDependsOn(t *testing.T, dir, rel string) {
	t.Helper()
	path := filepath.Join(dir, rel)
	raw, err := os.ReadFile(path)
	require.NoError(t, err)
	var kept []string
	for _, line := range strings.Split(string(raw), "\n") {
		if !strings.HasPrefix(strings.TrimSpace(line), "-- depends_on:") {
			kept = append(kept, line)
		}
	}
	require.Less(t, len(kept), len(strings.Split(string(raw), "\n")), "%s has no -- depends_on line", rel)
	require.NoError(t, os.WriteFile(path, []byte(strings.Join(kept, "\n")), 0o644))
}
