package cache

import (
	"encoding/json"
	"fmt"
	"math/rand/v2"
	"path/filepath"
	"testing"

	"github.com/spf13/afero"
	"github.com/stretchr/testify/require"

	"github.com/dbtorch/dbtorch/manifest"
)

// synth is a synthetic manifest as generic JSON, so that a test can change
// any one field of it before parsing.
type synth struct {
	doc   map[string]any
	seeds map[string]string // seed id -> CSV contents (files under projectDir)
}

const synthProject = "/proj"

// newSynth generates a random project: seeds, sources, macros calling
// each other, models (some ephemeral, some reading vars and env vars, some
// calling macros) with random parents among earlier nodes, and tests.
func newSynth(seed uint64, models int) *synth {
	r := rand.New(rand.NewPCG(seed, seed^0x9e3779b97f4a7c15))
	nodes := map[string]any{}
	sources := map[string]any{}
	macros := map[string]any{}
	s := &synth{seeds: map[string]string{}}
	var upstream []string // ids a model may depend on

	for i := range 6 {
		id := fmt.Sprintf("macro.p.m%d", i)
		var deps []any
		if i > 0 && r.IntN(2) == 0 {
			deps = append(deps, fmt.Sprintf("macro.p.m%d", r.IntN(i)))
		}
		sql := fmt.Sprintf("{%% macro m%d() %%}select %d{%% endmacro %%}", i, i)
		if i == 5 {
			sql = "{% macro m5() %}{{ var('macro_var', 1) }}{% endmacro %}"
		}
		macros[id] = map[string]any{"unique_id": id, "name": fmt.Sprintf("m%d", i), "package_name": "p",
			"macro_sql": sql, "depends_on": map[string]any{"macros": deps}}
	}
	for _, mat := range []string{"table", "view", "seed"} {
		id := "macro.dbt.materialization_" + mat + "_default"
		macros[id] = map[string]any{"unique_id": id, "name": "materialization_" + mat + "_default",
			"package_name": "dbt", "macro_sql": "{% materialization " + mat + ", default %}{% endmaterialization %}",
			"depends_on": map[string]any{"macros": []any{}}}
	}
	for i := range 3 {
		id := fmt.Sprintf("seed.p.s%d", i)
		path := fmt.Sprintf("seeds/s%d.csv", i)
		s.seeds[id] = fmt.Sprintf("a,b\n%d,x\n", i)
		nodes[id] = map[string]any{"unique_id": id, "resource_type": "seed", "name": fmt.Sprintf("s%d", i),
			"package_name": "p", "path": path, "original_file_path": path,
			"checksum":      map[string]any{"name": "path", "checksum": "/somewhere/else/" + path},
			"config":        map[string]any{"materialized": "seed", "enabled": true},
			"relation_name": fmt.Sprintf(`"db"."main"."s%d"`, i), "depends_on": map[string]any{"macros": []any{}}}
		upstream = append(upstream, id)
	}
	for i := range 2 {
		id := fmt.Sprintf("source.p.raw.t%d", i)
		sources[id] = map[string]any{"unique_id": id, "resource_type": "source", "name": fmt.Sprintf("t%d", i),
			"source_name": "raw", "package_name": "p", "path": "models/src.yml", "original_file_path": "models/src.yml",
			"identifier": fmt.Sprintf("t%d", i), "schema": "raw", "database": "db",
			"relation_name": fmt.Sprintf(`"db"."raw"."t%d"`, i), "config": map[string]any{"enabled": true}}
		upstream = append(upstream, id)
	}
	for i := range models {
		id := fmt.Sprintf("model.p.n%d", i)
		mat := []string{"table", "view", "ephemeral", "table"}[r.IntN(4)]
		var deps []any
		for range 1 + r.IntN(3) {
			deps = append(deps, upstream[r.IntN(len(upstream))])
		}
		var mdeps []any
		if r.IntN(3) == 0 {
			mdeps = append(mdeps, fmt.Sprintf("macro.p.m%d", r.IntN(6)))
		}
		code := fmt.Sprintf("select * from upstream -- %d", i)
		switch r.IntN(6) {
		case 0:
			code += fmt.Sprintf(" {{ var('v%d') }}", i%3)
		case 1:
			code += fmt.Sprintf(" {{ env_var('E%d', 'x') }}", i%2)
		}
		nodes[id] = map[string]any{"unique_id": id, "resource_type": "model", "name": fmt.Sprintf("n%d", i),
			"package_name": "p", "path": fmt.Sprintf("n%d.sql", i), "original_file_path": fmt.Sprintf("models/n%d.sql", i),
			"raw_code": code, "language": "sql",
			"checksum":      map[string]any{"name": "sha256", "checksum": fmt.Sprintf("%064x", i)},
			"config":        map[string]any{"materialized": mat, "enabled": true, "tags": []any{"t"}},
			"relation_name": fmt.Sprintf(`"db"."main"."n%d"`, i), "schema": "main", "database": "db", "alias": fmt.Sprintf("n%d", i),
			"depends_on": map[string]any{"nodes": deps, "macros": mdeps}}
		if i%5 == 0 && mat != "ephemeral" {
			n := nodes[id].(map[string]any)
			n["config"].(map[string]any)["persist_docs"] = map[string]any{"relation": true, "columns": true}
			n["description"] = "docs"
			n["columns"] = map[string]any{"a": map[string]any{"name": "a", "description": "col a"}}
		}
		if mat == "ephemeral" {
			nodes[id].(map[string]any)["relation_name"] = nil
		}
		if r.IntN(3) == 0 {
			tid := fmt.Sprintf("test.p.not_null_n%d", i)
			nodes[tid] = map[string]any{"unique_id": tid, "resource_type": "test", "name": "not_null_n" + fmt.Sprint(i),
				"package_name": "p", "path": "x.yml", "original_file_path": "models/x.yml",
				"config": map[string]any{"enabled": true, "severity": "ERROR"}, "attached_node": id,
				"test_metadata": map[string]any{"name": "not_null", "kwargs": map[string]any{"column_name": "a"}},
				"depends_on":    map[string]any{"nodes": []any{id}, "macros": []any{}}}
		}
		upstream = append(upstream, id)
	}
	s.doc = map[string]any{
		"metadata": map[string]any{"dbt_schema_version": "https://schemas.getdbt.com/dbt/manifest/v12.json",
			"dbt_version": "1.11.16", "adapter_type": "duckdb", "project_name": "p"},
		"nodes": nodes, "sources": sources, "macros": macros,
	}
	return s
}

// clone deep-copies the synthetic project.
func (s *synth) clone(t testing.TB) *synth {
	t.Helper()
	data, err := json.Marshal(s.doc)
	require.NoError(t, err)
	c := &synth{seeds: map[string]string{}}
	require.NoError(t, json.Unmarshal(data, &c.doc))
	for k, v := range s.seeds {
		c.seeds[k] = v
	}
	return c
}

func (s *synth) node(id string) map[string]any {
	for _, sec := range []string{"nodes", "sources", "macros"} {
		if n, ok := s.doc[sec].(map[string]any)[id]; ok {
			return n.(map[string]any)
		}
	}
	return nil
}

// build parses the project, writes its seed files to a memory fs and
// returns the manifest, graph and fs.
func (s *synth) build(t testing.TB) (*manifest.Manifest, *manifest.Graph, afero.Fs) {
	t.Helper()
	data, err := json.Marshal(s.doc)
	require.NoError(t, err)
	m, err := manifest.Parse(data)
	require.NoError(t, err)
	g, err := manifest.NewGraph(m)
	require.NoError(t, err)
	fs := afero.NewMemMapFs()
	for id, csv := range s.seeds {
		n := m.Nodes[id]
		require.NoError(t, afero.WriteFile(fs, filepath.Join(synthProject, n.OriginalFilePath), []byte(csv), 0o644))
	}
	return m, g, fs
}
