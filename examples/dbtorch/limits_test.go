package main

import (
	"bytes"
	"context"
	"encoding/json"
	"flag"
	"fmt"
	"log/slog"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/dbtorch/dbtorch/artifacts"
	"github.com/dbtorch/dbtorch/internal/dbttest"
	"github.com/dbtorch/dbtorch/manifest"
	"github.com/dbtorch/dbtorch/orchestrator"
	"github.com/dbtorch/dbtorch/orchestrator/pglimit"
)

// TestLimitFlagsBadInput: malformed --limit and --limit-store values are
// bad input (exit 2, one line naming the problem), before any dbt runs.
func TestLimitFlagsBadInput(t *testing.T) {
	for name, c := range map[string]struct {
		args []string
		want string
	}{
		"no size":      {[]string{"--limit", "wh"}, `want NAME=N, not "wh"`},
		"zero":         {[]string{"--limit", "wh=0"}, `limit "wh": want a positive number of slots`},
		"not number":   {[]string{"--limit", "wh=many"}, `limit "wh": want a positive number of slots`},
		"no name":      {[]string{"--limit", "=3"}, `want NAME=N`},
		"twice":        {[]string{"--limit", "wh=1", "--limit", "wh=2"}, `limit "wh" given twice`},
		"not postgres": {[]string{"--limit-store", "mysql://db/x"}, `want a postgres:// URL`},
	} {
		var out, errb bytes.Buffer
		code := runBuild(context.Background(), append([]string{"--project-dir", "."}, c.args...), &out, &errb)
		assert.Equal(t, 2, code, name)
		assert.Contains(t, errb.String(), c.want, name)
	}
}

// TestLimitFlagsApply checks what --limit adds to a build's config: the
// limits in name order, applying to the nodes that declare them in meta
// or as a tag; a malformed declaration is bad input naming the node; a
// limit declared but not given, or given but not declared, is a warning.
func TestLimitFlagsApply(t *testing.T) {
	meta := func(limits any) manifest.Config {
		return manifest.NewConfig(map[string]any{"meta": map[string]any{"dbtorch": map[string]any{"limits": limits}}})
	}
	m := &manifest.Manifest{Nodes: map[string]*manifest.Node{
		"model.p.a": {UniqueID: "model.p.a", ResourceType: manifest.Model, Config: meta([]any{"wh", "api"})},
		"seed.p.s":  {UniqueID: "seed.p.s", ResourceType: manifest.Seed, Tags: []string{"raw"}},
	}}
	f := addLimitFlags(flag.NewFlagSet("build", flag.ContinueOnError))
	require.NoError(t, f.sizes.Set("wh=2"))
	require.NoError(t, f.sizes.Set("raw=1"))
	require.NoError(t, f.sizes.Set("unused=3"))
	var logs bytes.Buffer
	var cfg orchestrator.Config
	closeLimits, err := f.apply(t.Context(), &cfg, m, slog.New(slog.NewTextHandler(&logs, nil)))
	require.NoError(t, err)
	closeLimits()
	var names []string
	for _, l := range cfg.Limits {
		names = append(names, l.Name)
	}
	assert.Equal(t, []string{"raw", "unused", "wh"}, names)
	assert.True(t, cfg.Limits[0].Applies(m.Nodes["seed.p.s"]), "raw applies to the tagged seed")
	assert.False(t, cfg.Limits[0].Applies(m.Nodes["model.p.a"]))
	assert.True(t, cfg.Limits[2].Applies(m.Nodes["model.p.a"]), "wh applies to the model declaring it")
	assert.Contains(t, logs.String(), "limit=api node=model.p.a")
	assert.Contains(t, logs.String(), "--limit applies to no node")
	assert.Contains(t, logs.String(), "limit=unused")

	m.Nodes["model.p.bad"] = &manifest.Node{UniqueID: "model.p.bad", ResourceType: manifest.Model, Config: meta(3)}
	_, err = f.apply(t.Context(), &orchestrator.Config{}, m, slog.New(slog.DiscardHandler))
	var errb bytes.Buffer
	assert.Equal(t, 2, limitExit(&errb, err))
	assert.Contains(t, errb.String(), "model.p.bad: config.meta.dbtorch.limits must be a list")
}

// TestBuildLimitStore builds the shop project (DuckDB) with a limit "wh"
// declared in dbt_project.yml's +meta for the staging models and kept in
// PostgreSQL by --limit-store: while another holder (this test, as another
// build would) has the limit's only slot, the staging model waits, and
// its wait is reported apart from its run time.
func TestBuildLimitStore(t *testing.T) {
	if testing.Short() {
		t.Skip("real dbt: not in -short mode")
	}
	pg := dbttest.StartPostgres(t)
	url := fmt.Sprintf("postgres://%s@%s:%d/%s?sslmode=disable", pg.User, pg.Host, pg.Port, pg.DBName)
	dir := dbttest.CopyProject(t, "shop")
	proj := filepath.Join(dir, "dbt_project.yml")
	data, err := os.ReadFile(proj)
	require.NoError(t, err)
	decl := strings.Replace(string(data), "      +tags: [\"staging\"]\n",
		"      +tags: [\"staging\"]\n      +meta: {dbtorch: {limits: [wh]}}\n", 1)
	require.NotEqual(t, string(data), decl)
	require.NoError(t, os.WriteFile(proj, []byte(decl), 0o644))
	for _, kv := range dbttest.Env(t, dir) {
		k, v, _ := strings.Cut(kv, "=")
		t.Setenv(k, v)
	}
	t.Setenv("DBTORCH_DBT", dbttest.DBT(t))

	other, err := pglimit.Open(t.Context(), url, pglimit.Options{})
	require.NoError(t, err)
	defer other.Close()
	wh, err := other.Limit("wh", 1)
	require.NoError(t, err)
	require.NoError(t, wh.AcquireAs(t.Context(), "other-build"))
	const held = time.Second
	go func() {
		// Free the slot a second after the build starts waiting for it.
		defer func() { _ = wh.ReleaseAs(context.Background(), "other-build") }()
		deadline := time.Now().Add(2 * time.Minute)
		for time.Now().Before(deadline) {
			var n int
			if err := other.Pool().QueryRow(context.Background(), `SELECT count(*) FROM dbtorch.limit_waiters WHERE limit_name = 'wh'`).Scan(&n); err == nil && n > 0 {
				time.Sleep(held)
				return
			}
			time.Sleep(20 * time.Millisecond)
		}
	}()

	out := t.TempDir()
	results, summary := filepath.Join(out, "results.json"), filepath.Join(out, "summary.md")
	var stdout, stderr bytes.Buffer
	code := runBuild(t.Context(), []string{"--project-dir", dir, "--select", "+stg_customers", "--test-strategy", "skip",
		"--limit", "wh=1", "--limit-store", url, "--results", results, "--summary", summary}, &stdout, &stderr)
	require.Equal(t, 0, code, "stdout:\n%s\nstderr:\n%s", stdout.String(), stderr.String())

	data, err = os.ReadFile(results)
	require.NoError(t, err)
	var got artifacts.RunJSON
	require.NoError(t, json.Unmarshal(data, &got))
	waits := map[string]float64{}
	for _, r := range got.Results {
		assert.Equal(t, orchestrator.Success, r.Status, r.UniqueID)
		waits[r.UniqueID] = r.WaitSeconds
	}
	// Had the seed (upstream of the model) taken the limit, it would have
	// been the waiter held back, and the model would have found the slot
	// free. The seed's own wait is not checked: it includes the warm
	// workers' start-up, seconds on a loaded machine.
	assert.GreaterOrEqual(t, waits["model.shop.stg_customers"], (held - 100*time.Millisecond).Seconds(), "the staging model waited for the shared slot")
	md, err := os.ReadFile(summary)
	require.NoError(t, err)
	assert.Contains(t, string(md), "⏳ Waited")
	assert.Contains(t, string(md), "`model.shop.stg_customers`")
	holders, err := other.Holders(t.Context(), "wh")
	require.NoError(t, err)
	assert.Empty(t, holders, "the build released its slot")
}
