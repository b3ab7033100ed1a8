package dbtargv_test

import (
	"encoding/json"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	"github.com/spf13/afero"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/dbtorch/dbtorch/dbt"
	"github.com/dbtorch/dbtorch/internal/dbtargv"
	"github.com/dbtorch/dbtorch/internal/dbttest"
	"github.com/dbtorch/dbtorch/manifest"
)

func node(rt manifest.ResourceType, pkg string, fqn ...string) *manifest.Node {
	return &manifest.Node{UniqueID: string(rt) + "." + pkg + "." + fqn[len(fqn)-1], ResourceType: rt, PackageName: pkg, FQN: fqn}
}

func TestSelector(t *testing.T) {
	tests := []struct {
		name    string
		node    *manifest.Node
		want    string
		wantErr bool
	}{
		{"model", node(manifest.Model, "shop", "shop", "staging", "stg_orders"), "fqn:shop.staging.stg_orders,resource_type:model,package:shop", false},
		{"versioned", node(manifest.Model, "shop", "shop", "core", "dim", "v2"), "fqn:shop.core.dim.v2,resource_type:model,package:shop", false},
		{"unit test", node(manifest.UnitTest, "shop", "shop", "core", "fct", "ut"), "fqn:shop.core.fct.ut,resource_type:unit_test,package:shop", false},
		{"no fqn", &manifest.Node{UniqueID: "model.p.x", ResourceType: manifest.Model, PackageName: "p"}, "", true},
		{"no package", &manifest.Node{UniqueID: "model.p.x", ResourceType: manifest.Model, FQN: []string{"p", "x"}}, "", true},
		{"glob char", node(manifest.Model, "p", "p", "x*"), "", true},
		{"nil", nil, "", true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, err := dbtargv.Selector(tt.node)
			if tt.wantErr {
				require.Error(t, err)
				return
			}
			require.NoError(t, err)
			assert.Equal(t, tt.want, got)
		})
	}
}

func TestBuild(t *testing.T) {
	m := node(manifest.Model, "p", "p", "m")
	tests := []struct {
		name string
		opts dbtargv.Options
		want []string
	}{
		{"run full refresh", dbtargv.Options{Command: "run", Nodes: []*manifest.Node{m}, FullRefresh: true, Global: dbtargv.Global{Vars: map[string]any{"b": 1, "a": "x"}, Target: "pg"}, Threads: 2},
			[]string{"run", "--select", "fqn:p.m,resource_type:model,package:p", "--indirect-selection", "empty", "--full-refresh", "--vars", `{"a":"x","b":1}`, "--target", "pg", "--threads", "2"}},
		{"test ignores full refresh", dbtargv.Options{Command: "test", Nodes: []*manifest.Node{m}, FullRefresh: true},
			[]string{"test", "--select", "fqn:p.m,resource_type:model,package:p", "--indirect-selection", "empty"}},
		{"test without relation cache", dbtargv.Options{Command: "test", Nodes: []*manifest.Node{m}, TestsWithoutRelationCache: true},
			[]string{"test", "--select", "fqn:p.m,resource_type:model,package:p", "--indirect-selection", "empty", "--no-populate-cache"}},
		{"only test goes without relation cache", dbtargv.Options{Command: "build", Nodes: []*manifest.Node{m}, TestsWithoutRelationCache: true},
			[]string{"build", "--select", "fqn:p.m,resource_type:model,package:p", "--indirect-selection", "empty"}},
		{"snapshot ignores full refresh", dbtargv.Options{Command: "snapshot", Nodes: []*manifest.Node{m}, FullRefresh: true, IndirectSelection: "cautious"},
			[]string{"snapshot", "--select", "fqn:p.m,resource_type:model,package:p", "--indirect-selection", "cautious"}},
		{"state and defer", dbtargv.Options{Command: "build", Nodes: []*manifest.Node{m}, State: "/s", Defer: true, DeferState: "/d", FavorState: true},
			[]string{"build", "--select", "fqn:p.m,resource_type:model,package:p", "--indirect-selection", "empty", "--state", "/s", "--defer", "--defer-state", "/d", "--favor-state"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, err := dbtargv.Build(tt.opts)
			require.NoError(t, err)
			assert.Equal(t, tt.want, got)
		})
	}
	_, err := dbtargv.Build(dbtargv.Options{Command: "run"})
	assert.Error(t, err, "no nodes would select the whole project")
	_, err = dbtargv.Build(dbtargv.Options{Command: "docs", Nodes: []*manifest.Node{m}})
	assert.Error(t, err)
}

func TestCheckExtra(t *testing.T) {
	tests := []struct {
		args []string
		bad  string
	}{
		{[]string{"--fail-fast", "--warn-error", "--no-partial-parse"}, ""},
		{[]string{"--quiet", "--select", "x"}, "--select"},
		{[]string{"-s", "x"}, "-s"},
		{[]string{"-m", "x"}, "-m"},
		{[]string{"--exclude=x"}, "--exclude=x"},
		{[]string{"--target-path=/tmp/x"}, "--target-path=/tmp/x"},
		{[]string{"--log-path", "/x"}, "--log-path"},
		{[]string{"--state", "/x"}, "--state"},
		{[]string{"--full-refresh"}, "--full-refresh"},
		{[]string{"--vars", "{}"}, "--vars"},
	}
	for _, tt := range tests {
		flag, reason, ok := dbtargv.CheckExtra(tt.args)
		assert.Equal(t, tt.bad == "", ok, tt.args)
		assert.Equal(t, tt.bad, flag)
		if !ok {
			assert.NotEmpty(t, reason)
		}
	}
}

func TestShellJoin(t *testing.T) {
	got := dbtargv.ShellJoin([]string{"dbt", "run", "--select", "fqn:a.b,resource_type:model", "--vars", `{"a":"it's"}`, ""})
	assert.Equal(t, `dbt run --select fqn:a.b,resource_type:model --vars '{"a":"it'"'"'s"}' ''`, got)
	out, err := exec.Command("sh", "-c", "printf '%s\\n' "+dbtargv.ShellJoin([]string{"a b", `{"a":"it's"}`, "$HOME"})).Output()
	require.NoError(t, err)
	assert.Equal(t, "a b\n{\"a\":\"it's\"}\n$HOME\n", string(out))
}

// lsScript evaluates each selector given on stdin (one per line) with
// `dbt ls` in one Python process that parses the project once, and prints
// a JSON object selector -> unique_ids.
const lsScript = `
import json, sys
from dbt.cli.main import dbtRunner
project = sys.argv[1]
res = dbtRunner().invoke(["parse", "--project-dir", project, "--profiles-dir", project, "--quiet"])
assert res.success, res.exception
runner = dbtRunner(manifest=res.result)
out = {}
for sel in sys.stdin.read().splitlines():
    r = runner.invoke(["ls", "--project-dir", project, "--profiles-dir", project, "--quiet",
                       "--resource-type", "all", "--indirect-selection", "empty",
                       "--output", "json", "--output-keys", "unique_id", "--select", sel])
    assert r.success, r.exception
    out[sel] = sorted(json.loads(line)["unique_id"] for line in r.result)
print("RESULT " + json.dumps(out))
`

// TestSelectorPicksExactlyTheNode proves with dbt's own selection that the
// selector of every executable node of the shop project (models, a package
// model, versioned models, seeds, a snapshot, generic and singular tests, a
// unit test) selects exactly that node.
func TestSelectorPicksExactlyTheNode(t *testing.T) {
	dir := dbttest.CopyProject(t, "shop")
	env := dbttest.Env(t, dir)
	path := dbttest.Parse(t, dir, env)
	m, err := manifest.Load(afero.NewOsFs(), path)
	require.NoError(t, err)

	selectors := map[string]string{}
	seen := map[manifest.ResourceType]bool{}
	m.All(func(n *manifest.Node) bool {
		if !n.Executable() {
			return true
		}
		s, err := dbtargv.Selector(n)
		require.NoError(t, err)
		selectors[s] = n.UniqueID
		seen[n.ResourceType] = true
		assert.Empty(t, dbtargv.Ambiguous(m, n), n.UniqueID)
		return true
	})
	for _, rt := range []manifest.ResourceType{manifest.Model, manifest.Seed, manifest.Snapshot, manifest.Test, manifest.UnitTest} {
		require.True(t, seen[rt], "shop has no executable %s", rt)
	}
	for _, id := range []string{"model.shop_pkg.pkg_order_status_counts", "model.shop.dim_customers.v1", "model.shop.dim_customers.v2",
		"test.shop.assert_order_amounts_non_negative", "unit_test.shop.fct_orders.fct_orders_sums_payments"} {
		require.True(t, slices.Contains(mapValues(selectors), id), "missing %s", id)
	}

	script := filepath.Join(t.TempDir(), "ls.py")
	require.NoError(t, os.WriteFile(script, []byte(lsScript), 0o644))
	var keys []string
	for s := range selectors {
		keys = append(keys, s)
	}
	slices.Sort(keys)
	cmd := exec.CommandContext(t.Context(), filepath.Join(filepath.Dir(dbttest.DBT(t)), "python"), script, dir)
	cmd.Dir = dir
	cmd.Env = env
	cmd.Stdin = strings.NewReader(strings.Join(keys, "\n"))
	out, err := cmd.CombinedOutput()
	require.NoError(t, err, "%s", out)
	var got map[string][]string
	for line := range strings.SplitSeq(string(out), "\n") {
		if rest, ok := strings.CutPrefix(line, "RESULT "); ok {
			require.NoError(t, json.Unmarshal([]byte(rest), &got))
		}
	}
	require.Len(t, got, len(selectors))
	for s, id := range selectors {
		assert.Equal(t, []string{id}, got[s], "selector %s", s)
	}
}

func mapValues(m map[string]string) []string {
	var out []string
	for _, v := range m {
		out = append(out, v)
	}
	return out
}

func TestAmbiguous(t *testing.T) {
	a := node(manifest.Model, "p", "p", "x")
	b := node(manifest.Model, "p", "p", "x", "y")
	b.UniqueID = "model.p.y"
	c := node(manifest.Test, "p", "p", "x", "t")
	m := &manifest.Manifest{Nodes: map[string]*manifest.Node{a.UniqueID: a, b.UniqueID: b, c.UniqueID: c}}
	assert.Equal(t, []string{"model.p.y"}, dbtargv.Ambiguous(m, a))
	assert.Empty(t, dbtargv.Ambiguous(m, b))
}

func TestCommands(t *testing.T) {
	p := dbt.Project{Dir: "/p", ProfilesDir: "/prof", Target: "pg", Vars: dbt.Vars{"a": 1}}
	g := dbtargv.Local(p, "/t", "/l")
	deps, err := dbtargv.Deps(g)
	require.NoError(t, err)
	assert.Equal(t, []string{"deps", "--vars", `{"a":1}`, "--target", "pg", "--project-dir", "/p", "--profiles-dir", "/prof",
		"--log-path", "/l", "--no-use-colors"}, deps, "dbt deps takes no --target-path")
	g.Quiet, g.PartialParseFile = true, "/pp"
	parse, err := dbtargv.Parse(g)
	require.NoError(t, err)
	assert.Equal(t, []string{"parse", "--vars", `{"a":1}`, "--target", "pg", "--project-dir", "/p", "--profiles-dir", "/prof",
		"--target-path", "/t", "--log-path", "/l", "--partial-parse-file-path", "/pp", "--no-use-colors", "--quiet"}, parse)
	ls, err := dbtargv.Ls(dbtargv.Global{ProjectDir: "/p", TargetPath: "/t"}, []string{"--select", "x"})
	require.NoError(t, err)
	assert.Equal(t, []string{"ls", "--output", "json", "--output-keys", "unique_id", "--project-dir", "/p", "--target-path", "/t", "--select", "x"}, ls)
	fr, err := dbtargv.SourceFreshness(dbtargv.Global{TargetPath: "/t"}, []string{"source:a", "source:b"})
	require.NoError(t, err)
	assert.Equal(t, []string{"source", "freshness", "--target-path", "/t", "--select", "source:a", "source:b"}, fr)
	fr, err = dbtargv.SourceFreshness(dbtargv.Global{}, nil)
	require.NoError(t, err)
	assert.Equal(t, []string{"source", "freshness"}, fr)

	m := node(manifest.Model, "p", "p", "m")
	run, err := dbtargv.Build(dbtargv.Options{Command: "run", Nodes: []*manifest.Node{m}, Threads: 1, Global: dbtargv.Global{
		ProjectDir: "/p", NoFileDiff: true, CacheSelectedOnly: true, LogLevel: "warn", LogLevelFile: "none", NoWriteJSON: true}})
	require.NoError(t, err)
	assert.Equal(t, []string{"run", "--select", "fqn:p.m,resource_type:model,package:p", "--indirect-selection", "empty",
		"--project-dir", "/p", "--no-partial-parse-file-diff", "--cache-selected-only", "--log-level", "warn", "--log-level-file", "none",
		"--no-write-json", "--threads", "1"}, run)

	_, err = dbtargv.Parse(dbtargv.Global{Vars: dbt.Vars{"f": func() {}}})
	assert.Error(t, err, "vars that cannot be encoded")
}
