package cache

import (
	"encoding/json"
	"fmt"
	"maps"
	"path/filepath"
	"regexp"
	"slices"
	"sort"
	"strings"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
	"github.com/spf13/afero"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/dbtorch/dbtorch/dbt"
	"github.com/dbtorch/dbtorch/internal/dbttest"
	"github.com/dbtorch/dbtorch/internal/walk"
	"github.com/dbtorch/dbtorch/manifest"
)

const projectYML = `name: p
version: "1"
models:
  p:
    +materialized: view
vars:
  v0: 1   # a comment
  nested:
    x: 2
seeds:
  p:
    +tags: ["raw"]
`

// keyEnv is everything a key depends on outside the manifest.
type keyEnv struct {
	vars      map[string]any
	env       map[string]string
	target    string
	adapter   string
	version   string
	loadedAt  map[string]time.Time
	projectYM string
	pkgYML    string
}

func baseEnv() keyEnv {
	t0 := time.Date(2026, 1, 2, 3, 4, 5, 0, time.UTC)
	return keyEnv{
		vars:      map[string]any{"v0": 1, "v1": "a", "v2": map[string]any{"k": []any{1, 2}}},
		env:       map[string]string{"E0": "x", "E1": "y"},
		target:    "dev",
		loadedAt:  map[string]time.Time{"source.p.raw.t0": t0, "source.p.raw.t1": t0},
		projectYM: projectYML,
		pkgYML:    "name: pkg\nvars:\n  x: 1\n",
	}
}

// envList returns env as an environment list; never nil, so that an
// empty env is empty, not the process's.
func envList(env map[string]string) []string {
	out := []string{}
	for k, v := range env {
		out = append(out, k+"="+v)
	}
	return out
}

// allKeys returns the key of every graph node.
func allKeys(t *testing.T, s *synth, e keyEnv) (map[string]string, *manifest.Graph) {
	t.Helper()
	m, g, fs := s.build(t)
	require.NoError(t, afero.WriteFile(fs, filepath.Join(synthProject, "dbt_project.yml"), []byte(e.projectYM), 0o644))
	require.NoError(t, afero.WriteFile(fs, filepath.Join(synthProject, "dbt_packages", "pkg", "dbt_project.yml"), []byte(e.pkgYML), 0o644))
	fr := &Freshness{Sources: map[string]SourceFreshness{}}
	for id, at := range e.loadedAt {
		fr.Sources[id] = SourceFreshness{UniqueID: id, Status: StatusPass, MaxLoadedAt: at, SnapshottedAt: at.Add(time.Hour)}
	}
	k, err := NewKeyer(m, g, KeyConfig{
		Fs: fs, Project: dbt.Project{Dir: synthProject, Vars: e.vars, Target: e.target, Env: envList(e.env)},
		AdapterType: e.adapter, DBTVersion: e.version, Freshness: fr,
	})
	require.NoError(t, err)
	out := map[string]string{}
	for _, id := range g.IDs() {
		key, err := k.Key(id)
		require.NoError(t, err, id)
		require.Regexp(t, `^[0-9a-f]{64}$`, key)
		out[id] = key
	}
	return out, g
}

// closureOf returns the macros a node calls, transitively (the synthetic
// project has no same-named macros), with its materialization's.
func closureOf(s *synth, id string) map[string]bool {
	n := s.node(id)
	seen := map[string]bool{}
	var stack []string
	stack = append(stack, macroDeps(n)...)
	cfg, _ := n["config"].(map[string]any)
	if mat, _ := cfg["materialized"].(string); mat != "" && n["resource_type"] != "test" {
		stack = append(stack, "macro.dbt.materialization_"+mat+"_default")
	}
	walk.Depth(stack, seen, func(c string, stack []string) []string {
		if mac := s.node(c); mac != nil {
			stack = append(stack, macroDeps(mac)...)
		}
		return stack
	})
	return seen
}

func macroDeps(n map[string]any) []string {
	dep, _ := n["depends_on"].(map[string]any)
	list, _ := dep["macros"].([]any)
	var out []string
	for _, d := range list {
		out = append(out, d.(string))
	}
	return out
}

// readsVar reports whether the node's code or macros name var.
func readsVar(s *synth, id, name string) bool {
	n := s.node(id)
	code, _ := n["raw_code"].(string)
	pat := regexp.MustCompile(`[^_]var\('` + regexp.QuoteMeta(name) + `'`)
	if pat.MatchString(code) {
		return true
	}
	for mac := range closureOf(s, id) {
		if m := s.node(mac); m != nil && pat.MatchString(m["macro_sql"].(string)) {
			return true
		}
	}
	return false
}

func idsWhere(s *synth, g *manifest.Graph, pred func(id string, n map[string]any) bool) []string {
	var out []string
	for _, id := range g.IDs() {
		if n := s.node(id); n != nil && pred(id, n) {
			out = append(out, id)
		}
	}
	return out
}

func isModel(n map[string]any) bool { return n["resource_type"] == "model" }

// TestKeyProperties changes one ingredient at a time and checks that
// exactly the nodes it reaches, and all their descendants, change keys.
func TestKeyProperties(t *testing.T) {
	type mutation struct {
		name string
		// apply mutates the project or the environment and returns the
		// nodes whose own recipe it changes.
		apply func(s *synth, e *keyEnv, g *manifest.Graph, pick func([]string) string) []string
	}
	models := func(s *synth, g *manifest.Graph) []string {
		return idsWhere(s, g, func(_ string, n map[string]any) bool { return isModel(n) })
	}
	all := func(g *manifest.Graph) []string { return slices.Clone(g.IDs()) }
	mutations := []mutation{
		{"code checksum", func(s *synth, e *keyEnv, g *manifest.Graph, pick func([]string) string) []string {
			id := pick(models(s, g))
			s.node(id)["checksum"].(map[string]any)["checksum"] = strings.Repeat("f", 64)
			return []string{id}
		}},
		{"raw code", func(s *synth, e *keyEnv, g *manifest.Graph, pick func([]string) string) []string {
			id := pick(models(s, g))
			s.node(id)["raw_code"] = s.node(id)["raw_code"].(string) + " where 1=1"
			return []string{id}
		}},
		{"ephemeral SQL", func(s *synth, e *keyEnv, g *manifest.Graph, pick func([]string) string) []string {
			eph := idsWhere(s, g, func(_ string, n map[string]any) bool {
				return isModel(n) && n["config"].(map[string]any)["materialized"] == "ephemeral"
			})
			id := pick(eph)
			s.node(id)["raw_code"] = "select 42"
			s.node(id)["checksum"].(map[string]any)["checksum"] = strings.Repeat("e", 64)
			return []string{id}
		}},
		{"config", func(s *synth, e *keyEnv, g *manifest.Graph, pick func([]string) string) []string {
			id := pick(idsWhere(s, g, func(_ string, n map[string]any) bool { return n["resource_type"] != "source" }))
			s.node(id)["config"].(map[string]any)["post_hook"] = []any{"grant select on {{ this }} to x"}
			return []string{id}
		}},
		{"relation name", func(s *synth, e *keyEnv, g *manifest.Graph, pick func([]string) string) []string {
			id := pick(idsWhere(s, g, func(_ string, n map[string]any) bool { return n["relation_name"] != nil }))
			s.node(id)["relation_name"] = `"db"."other"."x"`
			return []string{id}
		}},
		{"seed file", func(s *synth, e *keyEnv, g *manifest.Graph, pick func([]string) string) []string {
			id := pick(slices.Sorted(maps.Keys(s.seeds)))
			s.seeds[id] += "99,z\n"
			return []string{id}
		}},
		{"macro SQL", func(s *synth, e *keyEnv, g *manifest.Graph, pick func([]string) string) []string {
			var macs []string
			for _, id := range g.IDs() {
				for m := range closureOf(s, id) {
					macs = append(macs, m)
				}
			}
			slices.Sort(macs)
			mac := pick(slices.Compact(macs))
			s.node(mac)["macro_sql"] = s.node(mac)["macro_sql"].(string) + "{# edited #}"
			return idsWhere(s, g, func(id string, n map[string]any) bool { return closureOf(s, id)[mac] })
		}},
		{"var", func(s *synth, e *keyEnv, g *manifest.Graph, pick func([]string) string) []string {
			name := pick([]string{"v0", "v1", "v2", "macro_var"})
			e.vars = maps.Clone(e.vars)
			e.vars[name] = "changed"
			return idsWhere(s, g, func(id string, n map[string]any) bool { return readsVar(s, id, name) })
		}},
		{"project vars in dbt_project.yml", func(s *synth, e *keyEnv, g *manifest.Graph, pick func([]string) string) []string {
			e.projectYM = strings.Replace(e.projectYM, "x: 2", "x: 3", 1)
			return idsWhere(s, g, func(id string, n map[string]any) bool {
				code, _ := n["raw_code"].(string)
				return strings.Contains(strings.ReplaceAll(code, "env_var", ""), "var(") || readsVar(s, id, "macro_var")
			})
		}},
		{"package's project vars", func(s *synth, e *keyEnv, g *manifest.Graph, pick func([]string) string) []string {
			e.pkgYML = "name: pkg\nvars:\n  x: 2\n"
			return idsWhere(s, g, func(id string, n map[string]any) bool {
				code, _ := n["raw_code"].(string)
				return strings.Contains(strings.ReplaceAll(code, "env_var", ""), "var(") || readsVar(s, id, "macro_var")
			})
		}},
		{"env var", func(s *synth, e *keyEnv, g *manifest.Graph, pick func([]string) string) []string {
			name := pick([]string{"E0", "E1"})
			e.env = maps.Clone(e.env)
			e.env[name] = "changed"
			return idsWhere(s, g, func(id string, n map[string]any) bool {
				code, _ := n["raw_code"].(string)
				return strings.Contains(code, "env_var('"+name+"'")
			})
		}},
		{"source max_loaded_at", func(s *synth, e *keyEnv, g *manifest.Graph, pick func([]string) string) []string {
			id := pick(slices.Sorted(maps.Keys(e.loadedAt)))
			e.loadedAt = maps.Clone(e.loadedAt)
			e.loadedAt[id] = e.loadedAt[id].Add(time.Second)
			return []string{id}
		}},
		{"contract", func(s *synth, e *keyEnv, g *manifest.Graph, pick func([]string) string) []string {
			id := pick(models(s, g))
			s.node(id)["contract"] = map[string]any{"enforced": true, "checksum": "abc"}
			return []string{id}
		}},
		{"test kwargs", func(s *synth, e *keyEnv, g *manifest.Graph, pick func([]string) string) []string {
			id := pick(idsWhere(s, g, func(_ string, n map[string]any) bool { return n["resource_type"] == "test" }))
			s.node(id)["test_metadata"].(map[string]any)["kwargs"] = map[string]any{"column_name": "b"}
			return []string{id}
		}},
		{"target", func(s *synth, e *keyEnv, g *manifest.Graph, _ func([]string) string) []string {
			e.target = "prod"
			return all(g)
		}},
		{"adapter type", func(s *synth, e *keyEnv, g *manifest.Graph, _ func([]string) string) []string {
			e.adapter = "postgres"
			return all(g)
		}},
		{"dbt version", func(s *synth, e *keyEnv, g *manifest.Graph, _ func([]string) string) []string {
			e.version = "1.12.0"
			return all(g)
		}},
		{"dbt_project.yml outside vars (no change)", func(s *synth, e *keyEnv, g *manifest.Graph, _ func([]string) string) []string {
			e.projectYM = strings.Replace(e.projectYM, "+tags: [\"raw\"]", "+tags: [\"raw2\"]", 1)
			return nil
		}},
		{"description with persist_docs", func(s *synth, e *keyEnv, g *manifest.Graph, pick func([]string) string) []string {
			id := pick(idsWhere(s, g, func(_ string, n map[string]any) bool { return n["description"] == "docs" }))
			s.node(id)["description"] = "new docs"
			return []string{id}
		}},
		{"column description with persist_docs", func(s *synth, e *keyEnv, g *manifest.Graph, pick func([]string) string) []string {
			id := pick(idsWhere(s, g, func(_ string, n map[string]any) bool { return n["description"] == "docs" }))
			s.node(id)["columns"].(map[string]any)["a"].(map[string]any)["description"] = "changed"
			return []string{id}
		}},
		{"description without persist_docs (no change)", func(s *synth, e *keyEnv, g *manifest.Graph, pick func([]string) string) []string {
			s.node(pick(idsWhere(s, g, func(_ string, n map[string]any) bool { return isModel(n) && n["description"] != "docs" })))["description"] = "new docs"
			return nil
		}},
	}
	for seed := uint64(1); seed <= 4; seed++ {
		base := newSynth(seed, 60)
		baseKeys, g := allKeys(t, base, baseEnv())
		for _, mu := range mutations {
			t.Run(fmt.Sprintf("seed%d/%s", seed, mu.name), func(t *testing.T) {
				s := base.clone(t)
				e := baseEnv()
				// Pick deterministically, differently per seed.
				pick := func(ids []string) string {
					require.NotEmpty(t, ids, "nothing to mutate")
					return ids[int(seed*7919)%len(ids)]
				}
				roots := mu.apply(s, &e, g, pick)
				want := map[string]bool{}
				for _, r := range roots {
					want[r] = true
					for _, d := range g.Descendants(r, -1) {
						want[d] = true
					}
				}
				keys, _ := allKeys(t, s, e)
				var got, wantList []string
				for id, k := range keys {
					if k != baseKeys[id] {
						got = append(got, id)
					}
				}
				for id := range want {
					wantList = append(wantList, id)
				}
				sort.Strings(got)
				sort.Strings(wantList)
				if diff := cmp.Diff(wantList, got); diff != "" {
					t.Errorf("changed keys (-want +got):\n%s", diff)
				}
			})
		}
	}
}

// TestKeyTarget: without a target, keys name the one dbt uses (the
// profile's, or $DBT_TARGET's), so that an explicit --target dev and none
// share entries and another default target never hits them.
func TestKeyTarget(t *testing.T) {
	shop, err := filepath.Abs(filepath.Join("..", "testdata", "shop"))
	require.NoError(t, err)
	m := &manifest.Manifest{Nodes: map[string]*manifest.Node{}}
	g, err := manifest.NewGraph(m)
	require.NoError(t, err)
	for _, tc := range []struct {
		name string
		p    dbt.Project
		want string
	}{
		{"explicit", dbt.Project{Dir: shop, Target: "pg", Env: []string{"DBT_TARGET=x"}}, "pg"},
		{"the profile's target", dbt.Project{Dir: shop, Env: []string{}}, "dev"},
		{"$DBT_TARGET over the profile's", dbt.Project{Dir: shop, Env: []string{"DBT_TARGET=pg"}}, "pg"},
		{"an unknown target still names itself", dbt.Project{Dir: shop, Env: []string{"DBT_TARGET=nope"}}, "nope"},
		{"no project: $DBT_TARGET", dbt.Project{Env: []string{"DBT_TARGET=pg"}}, "pg"},
		{"nothing to read", dbt.Project{Env: []string{}}, "default"},
	} {
		k, err := NewKeyer(m, g, KeyConfig{Project: tc.p})
		require.NoError(t, err)
		assert.Equal(t, tc.want, k.Config().Target, tc.name)
	}
}

func TestKeyDeterministic(t *testing.T) {
	s := newSynth(9, 200)
	a, _ := allKeys(t, s, baseEnv())
	b, _ := allKeys(t, s.clone(t), baseEnv())
	assert.Equal(t, a, b)
	seen := map[string]string{}
	for id, k := range a {
		if other, dup := seen[k]; dup {
			t.Errorf("%s and %s share key %s", id, other, k)
		}
		seen[k] = id
	}
}

func TestCacheable(t *testing.T) {
	doc := newSynth(3, 20)
	inc := doc.node("model.p.n1")
	inc["config"].(map[string]any)["materialized"] = "incremental"
	doc.node("model.p.n2")["config"].(map[string]any)["materialized"] = "ephemeral"
	doc.doc["nodes"].(map[string]any)["snapshot.p.snap"] = map[string]any{"unique_id": "snapshot.p.snap",
		"resource_type": "snapshot", "name": "snap", "package_name": "p", "path": "snap.yml", "original_file_path": "snapshots/snap.yml",
		"checksum": map[string]any{"name": "sha256", "checksum": "ab"}, "config": map[string]any{"materialized": "snapshot"},
		"relation_name": "snap", "depends_on": map[string]any{"nodes": []any{"model.p.n0"}}}
	m, g, fs := doc.build(t)
	var testID string
	for id, n := range m.Nodes {
		if n.ResourceType == manifest.Test {
			testID = id
		}
	}
	require.NotEmpty(t, testID)
	tests := []struct {
		id                     string
		incremental, snapshots bool
		want                   bool
	}{
		{"model.p.n0", false, false, m.Nodes["model.p.n0"].Materialized != "ephemeral"},
		{"model.p.n1", false, false, false},
		{"model.p.n1", true, false, true},
		{"model.p.n2", false, false, false},
		{"seed.p.s0", false, false, true},
		{"snapshot.p.snap", false, false, false},
		{"snapshot.p.snap", false, true, true},
		{"source.p.raw.t0", false, false, false},
		{testID, false, false, false},
		{"model.p.nope", false, false, false},
	}
	for _, tt := range tests {
		k, err := NewKeyer(m, g, KeyConfig{Fs: fs, Project: dbt.Project{Dir: synthProject}, CacheIncremental: tt.incremental, CacheSnapshots: tt.snapshots})
		require.NoError(t, err)
		assert.Equal(t, tt.want, k.Cacheable(tt.id), "%s incremental=%v snapshots=%v", tt.id, tt.incremental, tt.snapshots)
	}
}

func TestKeySeedUnreadable(t *testing.T) {
	s := newSynth(5, 10)
	m, g, _ := s.build(t)
	// No seed files at all, and the manifest only has path checksums.
	k, err := NewKeyer(m, g, KeyConfig{Fs: afero.NewMemMapFs(), Project: dbt.Project{Dir: synthProject}})
	require.NoError(t, err)
	_, err = k.Key("seed.p.s0")
	var ke *KeyError
	require.ErrorAs(t, err, &ke)
	assert.Equal(t, "seed.p.s0", ke.NodeID)
	assert.False(t, k.Cacheable("seed.p.s0"))
	// Downstream nodes cannot be keyed either.
	for _, d := range g.Descendants("seed.p.s0", -1) {
		_, err := k.Key(d)
		assert.Error(t, err, d)
	}
	_, err = k.Key("model.p.missing")
	assert.ErrorIs(t, err, ErrUnknownNode)
}

func TestScanRefs(t *testing.T) {
	tests := []struct {
		code string
		want refs
	}{
		{`{{ var('a') }} {{ var("b", 1) }} {{ var('a') }}`, refs{vars: []string{"a", "b"}}},
		{`{{ env_var('E') }}`, refs{envs: []string{"E"}}},
		{`{{ var(name) }}`, refs{dynamicVar: true}},
		{`select variance(x), env_var_x from t`, refs{}},
		{`{% if var ( 'x' ) %}`, refs{vars: []string{"x"}}},
	}
	for _, tt := range tests {
		assert.Equal(t, tt.want, scanRefs(tt.code), tt.code)
	}
}

func TestVarsBlock(t *testing.T) {
	assert.Equal(t, "vars:\n  v0: 1   # a comment\n  nested:\n    x: 2", varsBlock(projectYML))
	assert.Equal(t, "", varsBlock("name: x\n"))
}

// TestKeyRealManifests keys every node of real manifests from the shared
// reference set: no errors for non-seeds, distinct keys, and fast.
func TestKeyRealManifests(t *testing.T) {
	dir := filepath.Join(dbttest.SharedDir(t), "reference", "manifests")
	files, _ := filepath.Glob(filepath.Join(dir, "*.json"))
	require.NotEmpty(t, files, "no shared reference manifests in %s", dir)
	for _, f := range files {
		t.Run(filepath.Base(f), func(t *testing.T) {
			m, err := manifest.Load(afero.NewOsFs(), f)
			require.NoError(t, err)
			g, err := manifest.NewGraph(m)
			if err != nil {
				t.Skipf("graph: %v", err)
			}
			k, err := NewKeyer(m, g, KeyConfig{Project: dbt.Project{Target: "dev"}})
			require.NoError(t, err)
			start := time.Now()
			seen := map[string]string{}
			for _, id := range g.IDs() {
				key, err := k.Key(id)
				if err != nil {
					continue // seeds without files, and what is below them
				}
				if other, dup := seen[key]; dup {
					t.Errorf("%s and %s share a key", id, other)
				}
				seen[key] = id
			}
			t.Logf("%d nodes keyed in %s", g.Len(), time.Since(start))
		})
	}
}

func TestCanonicalJSON(t *testing.T) {
	tests := []struct {
		in   any
		want string
	}{
		{nil, `null`},
		{map[string]any{"b": 1.5, "a": []any{true, nil, "x\"y\\z\n<>"}, "c": map[string]any{}}, `{"a":[true,null,"x\"y\\z\u000a<>"],"b":1.5,"c":{}}`},
		{map[string]any{"n": float64(1e21), "i": 3}, `{"i":3,"n":1e+21}`},
		{[]string{"typed"}, `["typed"]`},
	}
	for _, tt := range tests {
		got, err := canonicalJSON(tt.in)
		require.NoError(t, err)
		assert.Equal(t, tt.want, string(got))
		var back any
		require.NoError(t, json.Unmarshal(got, &back), "valid JSON: %s", got)
	}
	_, err := canonicalJSON(map[string]any{"f": func() {}})
	assert.Error(t, err)
}
