package projgen_test

import (
	"bytes"
	"encoding/json"
	"io/fs"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/dbtorch/dbtorch/internal/dbttest"
	"github.com/dbtorch/dbtorch/internal/projgen"
)

// manifest is the part of manifest.json the tests look at.
type manifest struct {
	Metadata  map[string]any            `json:"metadata"`
	Nodes     map[string]map[string]any `json:"nodes"`
	Sources   map[string]map[string]any `json:"sources"`
	Macros    map[string]map[string]any `json:"macros"`
	UnitTests map[string]map[string]any `json:"unit_tests"`
	ParentMap map[string][]string       `json:"parent_map"`
	ChildMap  map[string][]string       `json:"child_map"`
}

func decode(t *testing.T, data []byte) manifest {
	t.Helper()
	var m manifest
	require.NoError(t, json.Unmarshal(data, &m))
	return m
}

func synthetic(t *testing.T, opts projgen.ManifestOptions) []byte {
	t.Helper()
	var buf bytes.Buffer
	require.NoError(t, projgen.WriteManifest(&buf, opts))
	return buf.Bytes()
}

// dependsOn returns a node's depends_on.nodes.
func dependsOn(n map[string]any) []string {
	var out []string
	deps, _ := n["depends_on"].(map[string]any)
	list, _ := deps["nodes"].([]any)
	for _, d := range list {
		out = append(out, d.(string))
	}
	return out
}

// normalize drops the hash suffix dbt gives generic tests' unique ids, which
// the generator cannot reproduce.
func normalize(id string) string {
	if strings.HasPrefix(id, "test.") && strings.Count(id, ".") == 3 {
		return id[:strings.LastIndex(id, ".")]
	}
	return id
}

func normalizeMap(m map[string][]string) map[string][]string {
	out := map[string][]string{}
	for k, v := range m {
		n := make([]string, len(v))
		for i, id := range v {
			n[i] = normalize(id)
		}
		slices.Sort(n)
		out[normalize(k)] = n
	}
	return out
}

func keysOf(m map[string]any) []string {
	var ks []string
	for k := range m {
		ks = append(ks, k)
	}
	slices.Sort(ks)
	return ks
}

// keySets collects, per resource type, the keys its entries have, and the
// keys of their config and columns.
func keySets(entries ...map[string]map[string]any) map[string][]string {
	sets := map[string]map[string]bool{}
	add := func(kind string, keys []string) {
		if sets[kind] == nil {
			sets[kind] = map[string]bool{}
		}
		for _, k := range keys {
			sets[kind][k] = true
		}
	}
	for _, group := range entries {
		for _, n := range group {
			rt := n["resource_type"].(string)
			add(rt, keysOf(n))
			if c, ok := n["config"].(map[string]any); ok {
				add(rt+".config", keysOf(c))
			}
			if cols, ok := n["columns"].(map[string]any); ok {
				for _, c := range cols {
					add(rt+".column", keysOf(c.(map[string]any)))
				}
			}
		}
	}
	out := map[string][]string{}
	for kind, set := range sets {
		for k := range set {
			out[kind] = append(out[kind], k)
		}
		slices.Sort(out[kind])
	}
	return out
}

// TestWriteParsesAndMatchesWriteManifest generates a 200-model project,
// has real dbt parse it, and checks the manifest dbt wrote against the plan
// and against WriteManifest's manifest for the same options: the same nodes,
// edges, tests and unit tests, and entries of the same shape.
func TestWriteParsesAndMatchesWriteManifest(t *testing.T) {
	t.Parallel()
	const models = 200
	dir := filepath.Join(t.TempDir(), "gen")
	require.NoError(t, projgen.Write(dir, projgen.Options{Models: models, Seed: 42}))
	env := dbttest.Env(t, dir)
	data, err := os.ReadFile(dbttest.Parse(t, dir, env))
	require.NoError(t, err)
	parsed := decode(t, data)
	syn := decode(t, synthetic(t, projgen.ManifestOptions{Models: models, Seed: 42}))

	count := map[string]int{}
	for _, n := range parsed.Nodes {
		count[n["resource_type"].(string)]++
	}
	assert.Equal(t, models, count["model"])
	assert.Equal(t, 8, count["seed"])
	assert.Positive(t, count["test"])
	assert.NotEmpty(t, parsed.UnitTests)
	assert.Len(t, parsed.Sources, 8)

	// Every edge dbt resolved points at a node or source that exists, and
	// models have 1..3 model or seed parents.
	for id, n := range parsed.Nodes {
		for _, dep := range dependsOn(n) {
			_, isNode := parsed.Nodes[dep]
			_, isSource := parsed.Sources[dep]
			assert.True(t, isNode || isSource, "%s depends on missing %s", id, dep)
		}
		if n["resource_type"] == "model" {
			refs := n["refs"].([]any)
			assert.NotEmpty(t, refs, id)
			assert.LessOrEqual(t, len(refs), 3, id)
		}
	}

	// Same DAG as WriteManifest.
	ids := func(m manifest) []string {
		var out []string
		for id := range m.Nodes {
			out = append(out, normalize(id))
		}
		for id := range m.Sources {
			out = append(out, id)
		}
		for id := range m.UnitTests {
			out = append(out, id)
		}
		slices.Sort(out)
		return out
	}
	assert.Equal(t, ids(parsed), ids(syn))
	assert.Equal(t, normalizeMap(parsed.ParentMap), normalizeMap(syn.ParentMap))
	assert.Equal(t, normalizeMap(parsed.ChildMap), normalizeMap(syn.ChildMap))
	for id, n := range parsed.Nodes {
		if n["resource_type"] != "model" {
			continue
		}
		s := syn.Nodes[id]
		require.NotNil(t, s, id)
		assert.Equal(t, n["tags"], s["tags"], id)
		assert.Equal(t, n["config"].(map[string]any)["materialized"], s["config"].(map[string]any)["materialized"], id)
		assert.Equal(t, n["refs"], s["refs"], id)
		assert.Equal(t, n["sources"], s["sources"], id)
		assert.Equal(t, n["depends_on"].(map[string]any)["macros"], s["depends_on"].(map[string]any)["macros"], id)
		assert.Equal(t, n["meta"], s["meta"], id)
	}

	// Same shape: the synthetic manifest is compiled, dbt's is only parsed.
	compiledOnly := []string{"compiled", "compiled_code", "extra_ctes", "extra_ctes_injected"}
	realKeys := keySets(parsed.Nodes, parsed.Sources, parsed.UnitTests)
	synKeys := keySets(syn.Nodes, syn.Sources, syn.UnitTests)
	assert.Equal(t, keysOf(toAny(realKeys)), keysOf(toAny(synKeys)))
	for kind, keys := range realKeys {
		want := keys
		if kind == "model" || kind == "test" {
			want = slices.Sorted(slices.Values(append(slices.Clone(keys), compiledOnly...)))
		}
		assert.Equal(t, want, synKeys[kind], kind)
	}
	macroKeys := func(m manifest) []string {
		for _, mac := range m.Macros {
			return keysOf(mac)
		}
		return nil
	}
	assert.Equal(t, macroKeys(parsed), macroKeys(syn))
	assert.Equal(t, keysOf(parsed.Metadata), keysOf(syn.Metadata))
}

func toAny(m map[string][]string) map[string]any {
	out := map[string]any{}
	for k, v := range m {
		out[k] = v
	}
	return out
}

// TestWriteBuilds builds a 30-model project with parsed dbt on DuckDB: every
// seed, model, test and unit test passes.
func TestWriteBuilds(t *testing.T) {
	t.Parallel()
	dir := filepath.Join(t.TempDir(), "gen")
	opts := projgen.Options{Models: 30, Seed: 3}
	require.NoError(t, projgen.Write(dir, opts))
	env := dbttest.Env(t, dir)
	out, err := dbttest.Run(t, dir, env, "build")
	require.NoError(t, err, out)

	var results struct {
		Results []struct {
			UniqueID string `json:"unique_id"`
			Status   string `json:"status"`
		} `json:"results"`
	}
	data, err := os.ReadFile(filepath.Join(dir, "target", "run_results.json"))
	require.NoError(t, err)
	require.NoError(t, json.Unmarshal(data, &results))

	// What should have run, from the synthetic manifest of the same layout.
	syn := decode(t, synthetic(t, projgen.ManifestOptions{Models: opts.Models, Seed: opts.Seed}))
	var want []string
	for id, n := range syn.Nodes {
		if n["config"].(map[string]any)["materialized"] != "ephemeral" {
			want = append(want, normalize(id))
		}
	}
	for id := range syn.UnitTests {
		want = append(want, id)
	}
	var got []string
	for _, r := range results.Results {
		assert.Contains(t, []string{"success", "pass"}, r.Status, r.UniqueID)
		got = append(got, normalize(r.UniqueID))
	}
	assert.ElementsMatch(t, want, got)
}

func TestWriteDeterministic(t *testing.T) {
	read := func(dir string) map[string]string {
		files := map[string]string{}
		require.NoError(t, filepath.WalkDir(dir, func(path string, d fs.DirEntry, err error) error {
			if err != nil || d.IsDir() {
				return err
			}
			data, err := os.ReadFile(path)
			rel, _ := filepath.Rel(dir, path)
			files[filepath.ToSlash(rel)] = string(data)
			return err
		}))
		return files
	}
	gen := func(seed int64) map[string]string {
		dir := t.TempDir()
		require.NoError(t, projgen.Write(dir, projgen.Options{Models: 60, Seed: seed, Name: "det"}))
		return read(dir)
	}
	a, b, c := gen(5), gen(5), gen(6)
	assert.Equal(t, a, b)
	assert.NotEqual(t, a, c)
	assert.Contains(t, a, "dbt_project.yml")
	assert.Contains(t, a, "profiles.yml")
	assert.Contains(t, a["dbt_project.yml"], "name: det\n")
	assert.Contains(t, a["profiles.yml"], "env_var('DBTORCH_DUCKDB_PATH')")
	assert.Contains(t, a["profiles.yml"], "type: postgres")
	sqlFiles := 0
	for name := range a {
		if strings.HasSuffix(name, ".sql") && strings.HasPrefix(name, "models/") {
			sqlFiles++
		}
	}
	assert.Equal(t, 60, sqlFiles)

	assert.Error(t, projgen.Write(t.TempDir(), projgen.Options{Models: 0}))
}

// TestWriteManifestIntegrity checks WriteManifest's output on its own:
// valid JSON, deterministic, every reference resolves, and parent_map and
// child_map are each other's inverse.
func TestWriteManifestIntegrity(t *testing.T) {
	opts := projgen.ManifestOptions{Models: 200, Seed: 9}
	data := synthetic(t, opts)
	require.True(t, json.Valid(data))
	assert.Equal(t, data, synthetic(t, opts), "same options, same bytes")
	assert.NotEqual(t, data, synthetic(t, projgen.ManifestOptions{Models: 200, Seed: 10}))

	m := decode(t, data)
	assert.Equal(t, "https://schemas.getdbt.com/dbt/manifest/v12.json", m.Metadata["dbt_schema_version"])
	assert.Len(t, m.Macros, 300)
	exists := func(id string) bool {
		_, n := m.Nodes[id]
		_, s := m.Sources[id]
		_, u := m.UnitTests[id]
		return n || s || u
	}
	models, tests := 0, 0
	for id, n := range m.Nodes {
		assert.Equal(t, id, n["unique_id"])
		for _, dep := range dependsOn(n) {
			assert.True(t, exists(dep), "%s depends on missing %s", id, dep)
		}
		if deps, ok := n["depends_on"].(map[string]any)["macros"].([]any); ok {
			for _, mac := range deps {
				assert.Contains(t, m.Macros, mac, id)
			}
		}
		switch n["resource_type"] {
		case "model":
			models++
			assert.GreaterOrEqual(t, len(n["columns"].(map[string]any)), 5, id)
			assert.Greater(t, len(n["raw_code"].(string)), 300, id)
			assert.NotEmpty(t, n["compiled_code"], id)
			assert.NotContains(t, n["compiled_code"], "{{", id)
		case "test":
			tests++
			assert.True(t, exists(n["attached_node"].(string)), id)
			assert.NotNil(t, n["test_metadata"], id)
		}
	}
	assert.Equal(t, 200, models)
	assert.Greater(t, tests, 2*150)
	for _, mac := range m.Macros {
		for _, dep := range mac["depends_on"].(map[string]any)["macros"].([]any) {
			assert.Contains(t, m.Macros, dep)
		}
	}

	assert.Len(t, m.ParentMap, len(m.Nodes)+len(m.Sources)+len(m.UnitTests))
	assert.Len(t, m.ChildMap, len(m.ParentMap))
	edges := 0
	for child, parents := range m.ParentMap {
		assert.True(t, slices.IsSorted(parents))
		for _, p := range parents {
			assert.Contains(t, m.ChildMap[p], child)
			edges++
		}
	}
	for _, children := range m.ChildMap {
		edges -= len(children)
	}
	assert.Zero(t, edges, "child_map has edges parent_map lacks")
}

// counter counts bytes written.
type counter int64

func (c *counter) Write(p []byte) (int, error) { *c += counter(len(p)); return len(p), nil }

// TestWriteManifestSize checks the size at 1,000 models; it grows linearly,
// so 10,000 models give about 100 MB (BenchmarkWriteManifest reports it).
func TestWriteManifestSize(t *testing.T) {
	var n counter
	require.NoError(t, projgen.WriteManifest(&n, projgen.ManifestOptions{Models: 1000, Seed: 1}))
	assert.InDelta(t, 10e6, float64(n), 2.5e6, "1,000 models should give about 10 MB, got %d bytes", n)
}

// BenchmarkWriteManifest writes the 10,000-model manifest of the scale
// benchmarks and reports its size.
func BenchmarkWriteManifest(b *testing.B) {
	var n counter
	for b.Loop() {
		n = 0
		if err := projgen.WriteManifest(&n, projgen.ManifestOptions{Models: 10000, Seed: 1}); err != nil {
			b.Fatal(err)
		}
	}
	b.ReportMetric(float64(n)/1e6, "MB")
	b.SetBytes(int64(n))
}
