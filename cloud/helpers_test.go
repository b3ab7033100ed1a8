package cloud_test

import (
	"context"
	"encoding/json"
	"log/slog"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/dbtorch/dbtorch/cloud"
	"github.com/dbtorch/dbtorch/cloud/cloudtest"
	"github.com/dbtorch/dbtorch/internal/syncbuf"
	"github.com/dbtorch/dbtorch/manifest"
)

// node is one entry of a test project: its kind, name and parents (names).
type node struct {
	kind    manifest.ResourceType
	name    string
	parents []string
}

// project is the multi-wave DAG the tests build:
//
//	raw ─┬─ stg_a ── fct_a ── rpt_a
//	     └─ stg_b ── fct_b ── rpt_b
//	             └─ not_null_stg_b (test)
var project = []node{
	{manifest.Seed, "raw", nil},
	{manifest.Model, "stg_a", []string{"raw"}},
	{manifest.Model, "stg_b", []string{"raw"}},
	{manifest.Test, "not_null_stg_b", []string{"stg_b"}},
	{manifest.Model, "fct_a", []string{"stg_a"}},
	{manifest.Model, "fct_b", []string{"stg_b"}},
	{manifest.Model, "rpt_a", []string{"fct_a"}},
	{manifest.Model, "rpt_b", []string{"fct_b"}},
}

func uid(kind manifest.ResourceType, name string) string {
	return string(kind) + ".shop." + name
}

func idOf(name string) string {
	for _, n := range project {
		if n.name == name {
			return uid(n.kind, n.name)
		}
	}
	panic("no node " + name)
}

// manifestJSON renders nodes as a v12 manifest.json.
func manifestJSON(t testing.TB, nodes []node) []byte {
	t.Helper()
	entries := map[string]any{}
	for _, n := range nodes {
		id := uid(n.kind, n.name)
		var deps []string
		for _, p := range n.parents {
			deps = append(deps, idOf(p))
		}
		dir := "models"
		if n.kind == manifest.Seed {
			dir = "seeds"
		}
		e := map[string]any{
			"unique_id": id, "name": n.name, "resource_type": string(n.kind), "package_name": "shop",
			"fqn": []string{"shop", n.name}, "path": n.name + ".sql", "original_file_path": dir + "/" + n.name + ".sql",
			"database": "db", "schema": "main", "alias": n.name,
			"config":     map[string]any{"enabled": true, "materialized": "table"},
			"checksum":   map[string]any{"name": "sha256", "checksum": "abc"},
			"depends_on": map[string]any{"nodes": deps, "macros": []string{}},
			"raw_code":   "select 1",
		}
		if n.kind == manifest.Test {
			e["config"] = map[string]any{"enabled": true, "severity": "ERROR"}
			e["attached_node"] = deps[0]
			e["test_metadata"] = map[string]any{"name": "not_null", "kwargs": map[string]any{"column_name": "id"}}
		}
		entries[id] = e
	}
	b, err := json.Marshal(map[string]any{
		"metadata": map[string]any{
			"dbt_schema_version": "https://schemas.getdbt.com/dbt/manifest/v12.json",
			"dbt_version":        "1.11.16", "project_name": "shop", "adapter_type": "duckdb",
		},
		"nodes": entries, "sources": map[string]any{}, "macros": map[string]any{},
		"exposures": map[string]any{}, "metrics": map[string]any{}, "unit_tests": map[string]any{},
	})
	require.NoError(t, err)
	return b
}

// env is a fake dbt Cloud, a client for it with fast retries, and the
// logs the client and executor wrote.
type env struct {
	srv  *cloudtest.Server
	c    *cloud.Client
	logs *syncbuf.Buffer
	m    *manifest.Manifest
}

func (e *env) logger() *slog.Logger {
	return slog.New(slog.NewJSONHandler(e.logs, &slog.HandlerOptions{Level: slog.LevelDebug}))
}

// newEnv starts a fake server and checks, when the test ends, that it
// holds no job and no unfinished run, and that the token never reached
// the logs.
func newEnv(t *testing.T, opts cloudtest.Options) *env {
	t.Helper()
	if opts.Manifest == nil {
		opts.Manifest = manifestJSON(t, project)
	}
	opts.Token = "s3cr3t-t0ken-" + strings.ReplaceAll(t.Name(), "/", "_")
	srv, err := cloudtest.NewServer(opts)
	require.NoError(t, err)
	e := &env{srv: srv, logs: &syncbuf.Buffer{}}
	e.m, err = manifest.Parse(opts.Manifest)
	require.NoError(t, err)
	e.c = e.client(t, nil)
	t.Cleanup(func() {
		defer srv.Close()
		if t.Failed() {
			return
		}
		srv.Settle()
		assertClean(t, srv)
		require.Zero(t, srv.Redirects(), "a request lacked its trailing slash")
		require.NotContains(t, e.logs.String(), srv.Token(), "the token reached the logs")
	})
	return e
}

// assertClean checks what every test must leave: no job, no run still
// going (of a deleted job or any other), no job deleted while one of its
// runs was still going, and at most one run per invocation (trigger
// cause) that was not cancelled as an extra.
func assertClean(t *testing.T, srv *cloudtest.Server) {
	t.Helper()
	require.Empty(t, srv.Jobs(), "the fake server still holds jobs")
	require.Zero(t, srv.ActiveRuns(), "runs are still running")
	for _, j := range srv.AllJobs() {
		require.Zero(t, j.ActiveRunsAtDelete, "job %d was deleted while %d of its runs were going", j.ID, j.ActiveRunsAtDelete)
	}
	ran := map[string]int{}
	for _, r := range srv.Runs() {
		if !r.Cancelled {
			ran[r.Cause]++
		}
	}
	for cause, n := range ran {
		require.LessOrEqual(t, n, 1, "%d runs for one invocation: %s", n, cause)
	}
}

// testWindow is the tests' commit window: longer than every late commit
// the tests inject (CommitAfter, Stall) unless a test says otherwise.
const testWindow = 400 * time.Millisecond

// client returns a client for the fake server; edit adjusts its config.
func (e *env) client(t *testing.T, edit func(*cloud.ClientConfig)) *cloud.Client {
	t.Helper()
	cfg := cloud.ClientConfig{
		Host:           e.srv.URL,
		AccountID:      e.srv.AccountID(),
		Token:          e.srv.Token(),
		Logger:         e.logger(),
		RetryWaitMin:   time.Millisecond,
		RetryWaitMax:   20 * time.Millisecond,
		AttemptTimeout: 2 * time.Second,
		RateLimit:      -1,
		CommitWindow:   testWindow,
	}
	if edit != nil {
		edit(&cfg)
	}
	c, err := cloud.NewClient(cfg)
	require.NoError(t, err)
	return c
}

// executor returns an executor on the fake server with fast polling.
func (e *env) executor(t *testing.T, edit func(*cloud.ExecutorConfig)) *cloud.Executor {
	t.Helper()
	cfg := cloud.ExecutorConfig{
		Client:         e.c,
		ProjectID:      e.srv.ProjectID(),
		EnvironmentID:  e.srv.EnvironmentID(),
		PollInterval:   5 * time.Millisecond,
		CleanupTimeout: 10 * time.Second,
		ArtifactWait:   2 * time.Second,
		Logger:         e.logger(),
	}
	if edit != nil {
		edit(&cfg)
	}
	x, err := cloud.NewExecutor(cfg)
	require.NoError(t, err)
	return x
}

func (e *env) nodes(t *testing.T, names ...string) []*manifest.Node {
	t.Helper()
	var out []*manifest.Node
	for _, n := range names {
		nd := e.m.Lookup(idOf(n))
		require.NotNil(t, nd, n)
		out = append(out, nd)
	}
	return out
}

// tempJob returns a valid temporary job body for the fake server.
func (e *env) tempJob(name string) cloud.Job {
	return cloud.Job{
		ProjectID: e.srv.ProjectID(), EnvironmentID: e.srv.EnvironmentID(), Name: name,
		ExecuteSteps: []string{"dbt run --select fqn:shop.stg_a"},
		Settings:     cloud.JobSettings{Threads: 1, TargetName: "default"},
	}
}

func ctxT(t *testing.T) context.Context {
	ctx, cancel := context.WithTimeout(t.Context(), 30*time.Second)
	t.Cleanup(cancel)
	return ctx
}
