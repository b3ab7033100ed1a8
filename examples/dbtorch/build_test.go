package main

import (
	"bytes"
	"context"
	"encoding/json"
	"log/slog"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/dbtorch/dbtorch/artifacts"
	"github.com/dbtorch/dbtorch/cache"
	"github.com/dbtorch/dbtorch/cache/orchcache"
	"github.com/dbtorch/dbtorch/manifest"
	"github.com/dbtorch/dbtorch/orchestrator"
)

func TestBuildFlags(t *testing.T) {
	for name, args := range map[string][]string{
		"no project":     {},
		"bad mode":       {"--project-dir", ".", "--mode", "sideways"},
		"bad strategy":   {"--project-dir", ".", "--test-strategy", "sometimes"},
		"bad vars":       {"--project-dir", ".", "--vars", "[1]"},
		"fresh no cache": {"--project-dir", ".", "--only-fresh-sources"},
		"extra argument": {"--project-dir", ".", "oops"},
	} {
		var out, errb bytes.Buffer
		assert.Equal(t, 2, runBuild(context.Background(), args, &out, &errb), name)
		assert.NotEmpty(t, errb.String(), name)
	}
}

func TestBuildHelp(t *testing.T) {
	var out, errb bytes.Buffer
	assert.Equal(t, 0, runBuild(context.Background(), []string{"-h"}, &out, &errb))
	assert.Contains(t, errb.String(), "-project-dir")
}

func TestPrintSummaryWarnings(t *testing.T) {
	var out bytes.Buffer
	printSummary(&out, &orchestrator.Run{Warnings: []string{"source freshness unavailable: exit 2"}})
	assert.Contains(t, out.String(), "WARNING source freshness unavailable: exit 2")
}

func TestBuildShop(t *testing.T) {
	dir := shopProject(t)
	outDir := filepath.Join(t.TempDir(), "out")
	results := filepath.Join(outDir, "results.json")
	runResults, summary, junit, lineage := filepath.Join(outDir, "run_results.json"), filepath.Join(outDir, "summary.md"),
		filepath.Join(outDir, "junit.xml"), filepath.Join(outDir, "lineage.jsonl")
	var out, errb bytes.Buffer
	code := runBuild(t.Context(), []string{"--project-dir", dir, "--select", "+stg_customers", "--test-strategy", "skip",
		"--retries", "1", "--results", results, "--run-results", runResults, "--summary", summary, "--junit", junit,
		"--lineage", lineage, "--lineage-dataset-namespace", "duckdb://warehouse"}, &out, &errb)
	require.Equal(t, 0, code, "stdout:\n%s\nstderr:\n%s", out.String(), errb.String())

	// Plain progress lines (not a terminal), then the summary.
	text := out.String()
	assert.Contains(t, text, "Building 2 nodes in 2 waves")
	assert.Contains(t, text, "1/2 OK     seed.shop.customers")
	assert.Contains(t, text, "2/2 OK     model.shop.stg_customers")
	assert.Contains(t, text, "Done in ")
	assert.NotContains(t, text, "\r", "no terminal control codes")

	// The results contract.
	data, err := os.ReadFile(results)
	require.NoError(t, err)
	var got artifacts.RunJSON
	require.NoError(t, json.Unmarshal(data, &got))
	require.Len(t, got.Results, 2)
	assert.Equal(t, map[orchestrator.Status]int{"success": 2, "error": 0, "skipped": 0, "cached": 0}, got.Counts)
	seed := got.Results[0]
	assert.Equal(t, "seed.shop.customers", seed.UniqueID)
	assert.Equal(t, orchestrator.Success, seed.Status)
	require.NotNil(t, seed.RowsAffected)
	assert.Equal(t, int64(5), *seed.RowsAffected)
	require.NotNil(t, seed.Invocation)
	assert.Equal(t, "seed", seed.Invocation.Command)
	assert.Len(t, seed.Attempts, 1)
	assert.Equal(t, []any{"+stg_customers"}, got.Args["select"])

	// The reporters' files (their formats are checked in package artifacts).
	var rr struct {
		Results []struct {
			UniqueID string `json:"unique_id"`
			Status   string `json:"status"`
		} `json:"results"`
	}
	data, err = os.ReadFile(runResults)
	require.NoError(t, err)
	require.NoError(t, json.Unmarshal(data, &rr))
	require.Len(t, rr.Results, 2)
	assert.Equal(t, "success", rr.Results[1].Status)
	data, err = os.ReadFile(summary)
	require.NoError(t, err)
	assert.Contains(t, string(data), "stg_customers")
	data, err = os.ReadFile(junit)
	require.NoError(t, err)
	assert.Contains(t, string(data), "<testsuites")
	data, err = os.ReadFile(lineage)
	require.NoError(t, err)
	var datasets []string
	for line := range strings.Lines(string(data)) {
		var ev struct {
			Outputs []struct{ Namespace, Name string } `json:"outputs"`
		}
		require.NoError(t, json.Unmarshal([]byte(line), &ev))
		for _, o := range ev.Outputs {
			datasets = append(datasets, o.Namespace+" "+o.Name)
		}
	}
	assert.Contains(t, datasets, "duckdb://warehouse shop.main.stg_customers", "--lineage-dataset-namespace names the datasets")

	// A failed node: exit status 1, the error in the summary.
	out.Reset()
	errb.Reset()
	code = runBuild(t.Context(), []string{"--project-dir", dir, "--select", "customer_revenue", "--test-strategy", "skip",
		"--mode", "per-wave", "--vars", "{broken_model: true}", "--quiet"}, &out, &errb)
	assert.Equal(t, 1, code, "stdout:\n%s\nstderr:\n%s", out.String(), errb.String())
	assert.Contains(t, out.String(), "ERROR model.shop.customer_revenue")
	assert.NotContains(t, out.String(), "Building", "--quiet")
}

// TestDefaultTarget: without --target, cache keys name the target dbt
// uses: $DBT_TARGET, else the profile's target: (env_var resolved), in
// dbt's profiles.yml search order; "default" when nothing can be read.
func TestDefaultTarget(t *testing.T) {
	const project = "name: shop\nversion: '1.0'\nprofile: 'shop'   # the profile\n"
	profiles := func(target string) string {
		return "# profiles\nother:\n  target: nope\n  outputs:\n    nope: {type: duckdb}\nshop:\n  outputs:\n    dev:\n      type: duckdb\n      target: inner\n" +
			"  target: " + target + "\n"
	}
	m := &manifest.Manifest{Nodes: map[string]*manifest.Node{}}
	g, err := manifest.NewGraph(m)
	require.NoError(t, err)
	// keyTarget is the target the build's cache keys name.
	keyTarget := func(t *testing.T, f buildFlags) string {
		t.Helper()
		p, err := f.project()
		require.NoError(t, err)
		k, err := cache.NewKeyer(m, g, cache.KeyConfig{Project: p})
		require.NoError(t, err)
		return k.Config().Target
	}
	unset := func(t *testing.T, keys ...string) {
		for _, k := range keys {
			t.Setenv(k, "")
			require.NoError(t, os.Unsetenv(k))
		}
	}
	for _, tc := range []struct {
		name     string
		project  string
		profiles string // written to the project dir, "" for none
		env      map[string]string
		want     string
	}{
		{"plain", project, profiles("prod"), nil, "prod"},
		{"quoted with comment", project, profiles(`"ci"  # CI`), nil, "ci"},
		{"env_var set", project, profiles(`"{{ env_var('DBT_TGT', 'dev') }}"`), map[string]string{"DBT_TGT": "qa"}, "qa"},
		{"env_var fallback", project, profiles(`"{{ env_var('DBT_TGT', 'dev') }}"`), nil, "dev"},
		{"env_var unset, no fallback", project, profiles(`"{{ env_var('DBT_TGT') }}"`), nil, "default"},
		{"other template", project, profiles(`"{{ 'a' ~ 'b' }}"`), nil, "default"},
		{"DBT_TARGET wins", project, profiles("prod"), map[string]string{"DBT_TARGET": "pg"}, "pg"},
		{"no target key", project, "shop:\n  outputs:\n    dev: {type: duckdb}\n", nil, "default"},
		{"profile missing", "name: x\nprofile: missing\n", profiles("prod"), nil, "default"},
		{"no profiles.yml", project, "", nil, "default"},
		{"no dbt_project.yml", "", profiles("prod"), nil, "default"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Setenv("HOME", t.TempDir())
			unset(t, "DBT_TARGET", "DBT_TGT", "DBT_PROFILES_DIR")
			for k, v := range tc.env {
				t.Setenv(k, v)
			}
			dir := t.TempDir()
			if tc.project != "" {
				require.NoError(t, os.WriteFile(filepath.Join(dir, "dbt_project.yml"), []byte(tc.project), 0o644))
			}
			if tc.profiles != "" {
				require.NoError(t, os.WriteFile(filepath.Join(dir, "profiles.yml"), []byte(tc.profiles), 0o644))
			}
			assert.Equal(t, tc.want, keyTarget(t, buildFlags{projectDir: dir}))
		})
	}

	// --profiles-dir is read before the project dir; the shop project's
	// own profiles name "dev".
	t.Setenv("HOME", t.TempDir())
	unset(t, "DBT_TARGET", "DBT_PROFILES_DIR")
	other := t.TempDir()
	require.NoError(t, os.WriteFile(filepath.Join(other, "profiles.yml"), []byte(profiles("from-flag")), 0o644))
	shop, err := filepath.Abs(filepath.Join("..", "..", "testdata", "shop"))
	require.NoError(t, err)
	assert.Equal(t, "from-flag", keyTarget(t, buildFlags{projectDir: shop, profilesDir: other}))
	assert.Equal(t, "dev", keyTarget(t, buildFlags{projectDir: shop}))
}

// TestOpenCacheTarget: without --target, cache keys name the profile's
// default target, not "".
func TestOpenCacheTarget(t *testing.T) {
	t.Setenv("DBT_TARGET", "")
	shop, err := filepath.Abs(filepath.Join("..", "..", "testdata", "shop"))
	require.NoError(t, err)
	m := &manifest.Manifest{Nodes: map[string]*manifest.Node{}}
	for target, want := range map[string]string{"": "dev", "pg": "pg"} {
		f := &buildFlags{projectDir: shop, cacheDir: t.TempDir(), target: target}
		p, err := f.project()
		require.NoError(t, err)
		c, err := openCache(context.Background(), f, p, m, slog.New(slog.DiscardHandler))
		require.NoError(t, err)
		g, err := manifest.NewGraph(m)
		require.NoError(t, err)
		bc, err := c.(orchestrator.BuildCache).ForBuild(context.Background(), orchestrator.BuildInfo{Manifest: m, Graph: g})
		require.NoError(t, err)
		oc, ok := bc.(*orchcache.Build)
		require.True(t, ok)
		assert.Equal(t, want, oc.Session().Keyer().Config().Target, "--target %q", target)
	}
}
