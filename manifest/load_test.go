package manifest_test

import (
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"sort"
	"strings"
	"testing"

	"github.com/spf13/afero"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/dbtorch/dbtorch/internal/dbttest"
	"github.com/dbtorch/dbtorch/manifest"
)

func TestParseErrors(t *testing.T) {
	tests := []struct {
		name    string
		data    string
		section string
		node    string
		field   string
		offset  bool
	}{
		{name: "not json", data: `{"nodes": {`, offset: true},
		{name: "garbage", data: `dbt`, offset: true},
		{name: "array top level", data: `[1,2]`},
		{name: "null top level", data: `null`},
		{name: "nodes is a list", data: `{"nodes": []}`, section: "nodes"},
		{name: "node is a string", data: `{"nodes": {"model.p.a": "x"}}`, section: "nodes", node: "model.p.a"},
		{name: "node without unique_id", data: `{"nodes": {"model.p.a": {"name": "a"}}}`, section: "nodes", node: "model.p.a", field: "unique_id"},
		{name: "source without unique_id", data: `{"sources": {"source.p.s.t": {"unique_id": ""}}}`, section: "sources", node: "source.p.s.t", field: "unique_id"},
		{name: "macro without unique_id", data: `{"macros": {"macro.p.m": {}}}`, section: "macros", node: "macro.p.m", field: "unique_id"},
		{name: "disabled entry broken", data: `{"disabled": {"model.p.x": [{"name": "x"}]}}`, section: "disabled", node: "model.p.x", field: "unique_id"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			fsys := afero.NewMemMapFs()
			require.NoError(t, afero.WriteFile(fsys, "/m/manifest.json", []byte(tt.data), 0o644))
			_, err := manifest.Load(fsys, "/m/manifest.json")
			require.Error(t, err)
			assert.ErrorIs(t, err, manifest.ErrMalformed)
			var pe *manifest.ParseError
			require.ErrorAs(t, err, &pe)
			assert.Equal(t, "/m/manifest.json", pe.File)
			assert.Equal(t, tt.section, pe.Section)
			assert.Equal(t, tt.node, pe.NodeID)
			assert.Equal(t, tt.field, pe.Field)
			assert.Equal(t, tt.offset, pe.Offset >= 0, "offset %d", pe.Offset)
			assert.Contains(t, err.Error(), "/m/manifest.json")
			if tt.node != "" {
				assert.Contains(t, err.Error(), tt.node)
			}
		})
	}
}

func TestLoadMissingFile(t *testing.T) {
	_, err := manifest.Load(afero.NewMemMapFs(), "/nope/manifest.json")
	require.Error(t, err)
	assert.True(t, errors.Is(err, os.ErrNotExist), "want a wrapped not-exist error, got %v", err)
	assert.Contains(t, err.Error(), "/nope/manifest.json")
}

func TestLenientFields(t *testing.T) {
	// v6-style names, a numeric version, a tags field of the wrong type,
	// freshness under config, unknown fields, and a missing config.
	data := `{
	  "metadata": {"dbt_schema_version": "https://schemas.getdbt.com/dbt/manifest/v6.json", "dbt_version": "1.2.0", "unknown": 1},
	  "nodes": {
	    "model.p.a": {"unique_id": "model.p.a", "name": "a", "resource_type": "model", "path": "a.sql",
	      "raw_sql": "select 1", "compiled_sql": "select 1 as x", "version": 2, "tags": "oops",
	      "config": {"materialized": "table", "enabled": true}, "depends_on": {"nodes": ["source.p.s.t"]}, "brand_new_field": {"x": 1}},
	    "model.p.b": {"unique_id": "model.p.b", "name": "b", "resource_type": "model", "path": "b.sql",
	      "depends_on": {"nodes": ["model.p.a"]}}
	  },
	  "sources": {
	    "source.p.s.t": {"unique_id": "source.p.s.t", "name": "t", "resource_type": "source", "source_name": "s",
	      "config": {"loaded_at_field": "_loaded", "freshness": {"warn_after": {"count": 6, "period": "hour"}, "error_after": {"count": null, "period": null}}}}
	  }
	}`
	m, err := manifest.Parse([]byte(data))
	require.NoError(t, err)
	assert.Equal(t, 6, m.Metadata.Version)
	a := m.Nodes["model.p.a"]
	assert.Equal(t, "select 1", a.RawCode)
	assert.Equal(t, "select 1 as x", a.CompiledCode)
	assert.Equal(t, "2", a.Version)
	assert.Empty(t, a.Tags)
	assert.Equal(t, "table", a.Materialized)
	b := m.Nodes["model.p.b"]
	assert.True(t, b.Enabled, "enabled defaults to true")
	assert.Empty(t, b.Materialized)
	s := m.Sources["source.p.s.t"]
	assert.Equal(t, "_loaded", s.LoadedAtField)
	require.NotNil(t, s.Freshness)
	assert.Equal(t, manifest.Time{Count: 6, Period: "hour"}, s.Freshness.WarnAfter)
	assert.Equal(t, manifest.Time{}, s.Freshness.ErrorAfter)
}

// TestCycle: a cycle is an error naming its nodes in dependency order.
func TestCycle(t *testing.T) {
	node := func(id string, deps ...string) string {
		q := make([]string, len(deps))
		for i, d := range deps {
			q[i] = fmt.Sprintf("%q", d)
		}
		return fmt.Sprintf(`%q: {"unique_id": %q, "resource_type": "model", "path": "x.sql", "depends_on": {"nodes": [%s]}}`,
			id, id, strings.Join(q, ","))
	}
	data := `{"nodes": {` + strings.Join([]string{
		node("model.p.root"),
		node("model.p.a", "model.p.root", "model.p.c"),
		node("model.p.b", "model.p.a"),
		node("model.p.c", "model.p.b"),
		node("model.p.d", "model.p.c"),
	}, ",") + `}}`
	m, err := manifest.Parse([]byte(data))
	require.NoError(t, err)
	_, err = manifest.NewGraph(m)
	var ce *manifest.CycleError
	require.ErrorAs(t, err, &ce)
	require.Len(t, ce.Nodes, 3)
	// Rotate so the cycle starts at model.p.a, then check its order.
	for ce.Nodes[0] != "model.p.a" {
		ce.Nodes = append(ce.Nodes[1:], ce.Nodes[0])
	}
	assert.Equal(t, []string{"model.p.a", "model.p.b", "model.p.c"}, ce.Nodes)
	assert.Contains(t, err.Error(), "model.p.b")
}

// excerpt keeps the first n entries of each top-level map of a manifest.
func excerpt(tb testing.TB, data []byte, n int) []byte {
	tb.Helper()
	var top map[string]json.RawMessage
	require.NoError(tb, json.Unmarshal(data, &top))
	for k, v := range top {
		var entries map[string]json.RawMessage
		if json.Unmarshal(v, &entries) != nil || k == "metadata" {
			continue
		}
		keys := make([]string, 0, len(entries))
		for id := range entries {
			keys = append(keys, id)
		}
		sort.Strings(keys)
		kept := map[string]json.RawMessage{}
		for _, id := range keys[:min(n, len(keys))] {
			kept[id] = entries[id]
		}
		top[k], _ = json.Marshal(kept)
	}
	out, err := json.Marshal(top)
	require.NoError(tb, err)
	return out
}

// FuzzLoad feeds arbitrary bytes (seeded with the real manifests and
// truncations of them) to the parser and planner: every outcome is a
// manifest or an error, never a panic.
func FuzzLoad(f *testing.F) {
	shared, _ := dbttest.FindSharedDir(dbttest.RepoRoot(f))
	dir := filepath.Join(shared, "reference", "manifests")
	entries, _ := os.ReadDir(dir)
	for _, e := range entries {
		if !strings.HasSuffix(e.Name(), ".json") {
			continue
		}
		data, err := os.ReadFile(filepath.Join(dir, e.Name()))
		if err != nil {
			continue
		}
		// The fuzzer is slow on megabyte inputs: seed it with a small
		// excerpt of each real manifest (a few entries per section).
		small := excerpt(f, data, 4)
		f.Add(small)
		f.Add(small[:len(small)/2])
	}
	f.Add([]byte(`{"nodes":{"model.p.a":{"unique_id":"model.p.a","resource_type":"model","path":"a","depends_on":{"nodes":["model.p.a"]}}}}`))
	f.Add([]byte(`{"unit_tests":{"unit_test.p.m.t":{"unique_id":"unit_test.p.m.t","model":"m","depends_on":{"nodes":["model.p.m"]}}}}`))
	f.Fuzz(func(t *testing.T, data []byte) {
		m, err := manifest.Parse(data)
		if err != nil {
			var pe *manifest.ParseError
			if !errors.As(err, &pe) {
				t.Fatalf("error is not a *ParseError: %v", err)
			}
			return
		}
		g, err := manifest.NewGraph(m)
		if err != nil {
			var ce *manifest.CycleError
			if !errors.As(err, &ce) {
				t.Fatalf("graph error is not a *CycleError: %v", err)
			}
			return
		}
		for _, s := range []manifest.TestStrategy{manifest.Immediate, manifest.Deferred, manifest.SkipTests} {
			g.Plan(nil, s)
		}
	})
}

// TestMisfiledNode: ids whose prefix does not name their section, and an id
// written into two sections, still give a graph (found by FuzzLoad).
func TestMisfiledNode(t *testing.T) {
	data := `{"nodes": {
	    "source.p.s.t": {"unique_id": "source.p.s.t", "resource_type": "model", "path": "t.sql"},
	    "model.p.a": {"unique_id": "model.p.a", "resource_type": "model", "path": "a.sql", "depends_on": {"nodes": ["source.p.s.t"]}}},
	  "sources": {"model.p.a": {"unique_id": "model.p.a", "resource_type": "source"}}}`
	m, err := manifest.Parse([]byte(data))
	require.NoError(t, err)
	assert.NotNil(t, m.Lookup("source.p.s.t"))
	g, err := manifest.NewGraph(m)
	require.NoError(t, err)
	assert.Equal(t, []string{"model.p.a", "source.p.s.t"}, g.IDs())
	assert.Equal(t, []string{"source.p.s.t"}, g.Parents("model.p.a"))
}

func TestConfig(t *testing.T) {
	m, err := manifest.Parse([]byte(`{"nodes": {"model.p.a": {"unique_id": "model.p.a", "resource_type": "model", "path": "a.sql",
	  "config": {"materialized": "incremental", "enabled": true, "meta": {"owner": "x", "n": [1, "two"]}, "tags": ["a"], "unique_key": null}}}}`))
	require.NoError(t, err)
	c := m.Nodes["model.p.a"].Config
	assert.False(t, c.IsZero())
	assert.Equal(t, "incremental", c.String("materialized"))
	assert.Equal(t, map[string]any{"owner": "x", "n": []any{1.0, "two"}}, c.Get("meta"))
	assert.Nil(t, c.Get("unique_key"))
	assert.Nil(t, c.Get("absent"))
	assert.Equal(t, map[string]any{"materialized": "incremental", "enabled": true,
		"meta": map[string]any{"owner": "x", "n": []any{1.0, "two"}}, "tags": []any{"a"}, "unique_key": nil}, c.Map())
	assert.Equal(t, manifest.NewConfig(map[string]any{"a": 1.0}).Map(), map[string]any{"a": 1.0})
	assert.True(t, manifest.Config{}.IsZero())
	assert.Nil(t, manifest.Config{}.Map())
}

// TestDeferredWithoutTests: the deferred strategy adds a test wave only
// when there are tests.
func TestDeferredWithoutTests(t *testing.T) {
	m, err := manifest.Parse([]byte(`{"nodes": {
	  "model.p.a": {"unique_id": "model.p.a", "resource_type": "model", "path": "a.sql"},
	  "model.p.b": {"unique_id": "model.p.b", "resource_type": "model", "path": "b.sql", "depends_on": {"nodes": ["model.p.a"]}}}}`))
	require.NoError(t, err)
	g, err := manifest.NewGraph(m)
	require.NoError(t, err)
	p := g.Plan(nil, manifest.Deferred)
	assert.Equal(t, [][]string{{"model.p.a"}, {"model.p.b"}}, p.Waves())
	assert.Equal(t, []int32{1}, p.Downstream(0))
	assert.Empty(t, p.Downstream(1))
	assert.Empty(t, g.Plan([]string{}, manifest.Deferred).Waves())
}

// TestSelectionEdges: the graph carries dbt's selection edges beside the
// execution edges: a unit test is a child of its model (and not its
// parent), a seed has no parents whatever it lists, and depends_on keeps
// ids outside the graph as -1.
func TestSelectionEdges(t *testing.T) {
	m, err := manifest.Parse([]byte(`{"nodes": {
	  "seed.p.s": {"unique_id": "seed.p.s", "resource_type": "seed", "path": "s.csv", "depends_on": {"nodes": ["model.p.a"]}},
	  "model.p.a": {"unique_id": "model.p.a", "resource_type": "model", "path": "a.sql"},
	  "model.p.b": {"unique_id": "model.p.b", "resource_type": "model", "path": "b.sql", "depends_on": {"nodes": ["model.p.a", "model.p.gone", "model.p.a"]}}},
	  "unit_tests": {"unit_test.p.b.u": {"unique_id": "unit_test.p.b.u", "resource_type": "unit_test", "path": "u.yml", "model": "b",
	    "depends_on": {"nodes": ["model.p.b"]}}}}`))
	require.NoError(t, err)
	g, err := manifest.NewGraph(m)
	require.NoError(t, err)
	idx := func(id string) int32 {
		i, ok := g.Index(id)
		require.True(t, ok, id)
		require.Equal(t, id, g.IDs()[i])
		require.Same(t, g.Node(id), g.Nodes()[i])
		return i
	}
	a, b, s, u := idx("model.p.a"), idx("model.p.b"), idx("seed.p.s"), idx("unit_test.p.b.u")
	_, ok := g.Index("model.p.gone")
	assert.False(t, ok)
	assert.Equal(t, []int32{a}, g.SelectionParents(b))
	assert.Equal(t, []int32{b}, g.SelectionParents(u), "a unit test is a child of its model")
	assert.Equal(t, []int32{u}, g.SelectionChildren(b))
	assert.Empty(t, g.SelectionParents(s), "a seed has no selection parents")
	assert.Equal(t, []int32{b}, g.SelectionChildren(a))
	assert.Equal(t, []int32{a, -1, a}, g.DependsOn(b))
	assert.Empty(t, g.DependsOn(s))
	// The execution edges differ: the model waits for its unit test.
	assert.Equal(t, []string{"model.p.a", "unit_test.p.b.u"}, g.Parents("model.p.b"))
	assert.Equal(t, []string{"model.p.a"}, g.Parents("unit_test.p.b.u"))
}

// TestLookup: Lookup finds an id in the section its prefix names, and in
// Nodes for the prefixes that have none.
func TestLookup(t *testing.T) {
	sections := map[string]string{
		"nodes": "model.p.a", "sources": "source.p.s.t", "unit_tests": "unit_test.p.a.u",
		"exposures": "exposure.p.e", "metrics": "metric.p.m", "semantic_models": "semantic_model.p.sm",
		"saved_queries": "saved_query.p.q", "functions": "function.p.f", "groups": "group.p.g",
	}
	doc := map[string]any{}
	for key, id := range sections {
		doc[key] = map[string]any{id: map[string]any{"unique_id": id, "name": key}}
	}
	doc["nodes"].(map[string]any)["seed.p.s"] = map[string]any{"unique_id": "seed.p.s", "name": "seed"}
	data, err := json.Marshal(doc)
	require.NoError(t, err)
	m, err := manifest.Parse(data)
	require.NoError(t, err)
	for key, id := range sections {
		n := m.Lookup(id)
		if assert.NotNil(t, n, id) {
			assert.Equal(t, key, n.Name, id)
		}
	}
	if n := m.Lookup("seed.p.s"); assert.NotNil(t, n) {
		assert.Equal(t, "seed", n.Name)
	}
	assert.Nil(t, m.Lookup("model.p.missing"))
	assert.Nil(t, m.Lookup("source.p.a"))
}
