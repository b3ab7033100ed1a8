package main

import (
	"bytes"
	"context"
	"encoding/json"
	"io"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/dbtorch/dbtorch/dbt"
	"github.com/dbtorch/dbtorch/executor"
	"github.com/dbtorch/dbtorch/manifest"
	"github.com/dbtorch/dbtorch/orchestrator"
)

// fakeDBT installs as $DBTORCH_DBT a dbt that only records that it was
// started; the returned function reports whether it was.
func fakeDBT(t *testing.T) func() bool {
	t.Helper()
	dir := t.TempDir()
	marker := filepath.Join(dir, "started")
	script := filepath.Join(dir, "dbt")
	require.NoError(t, os.WriteFile(script, []byte("#!/bin/sh\ntouch "+marker+"\nexit 1\n"), 0o755))
	t.Setenv("DBTORCH_DBT", script)
	return func() bool { _, err := os.Stat(marker); return err == nil }
}

// shopCopy copies testdata/shop's project files (no dbt run needed).
func shopCopy(t *testing.T) string {
	t.Helper()
	dir := filepath.Join(t.TempDir(), "shop")
	require.NoError(t, os.CopyFS(dir, os.DirFS(filepath.Join("..", "..", "testdata", "shop"))))
	return dir
}

// TestBadInput: every bad input exits 2 with one line on stderr naming
// it, before any dbt starts.
func TestBadInput(t *testing.T) {
	started := fakeDBT(t)
	shop := shopCopy(t)
	t.Setenv("DBT_PROJECT_DIR", "")
	t.Setenv("DBT_PROFILES_DIR", "")
	t.Setenv("DBT_TARGET", "")
	t.Setenv("HOME", t.TempDir())
	file := filepath.Join(t.TempDir(), "file")
	require.NoError(t, os.WriteFile(file, nil, 0o644))
	noProfiles := t.TempDir()
	p := func(args ...string) []string { return append([]string{"build", "--project-dir", shop}, args...) }
	for _, tc := range []struct {
		name string
		args []string
		env  map[string]string
		want string
	}{
		{"no command", nil, nil, "missing command"},
		{"unknown command", []string{"bild"}, nil, `unknown command "bild"`},
		{"unknown executor", p("--executor", "cloud"), nil, `unknown --executor "cloud"`},
		{"missing project", []string{"build", "--project-dir", t.TempDir()}, nil, "no dbt_project.yml"},
		{"cwd not a project", []string{"build"}, nil, "no dbt_project.yml"},
		{"DBT_PROJECT_DIR not a project", []string{"build"}, map[string]string{"DBT_PROJECT_DIR": noProfiles}, noProfiles + `": no dbt_project.yml`},
		{"missing profiles", p("--profiles-dir", noProfiles), nil, "no profiles.yml in " + noProfiles},
		{"DBT_PROFILES_DIR without profiles", p(), map[string]string{"DBT_PROFILES_DIR": noProfiles}, "no profiles.yml in " + noProfiles},
		{"unknown target", p("--target", "prod"), nil, `target "prod"`},
		{"DBT_TARGET unknown", p(), map[string]string{"DBT_TARGET": "qa"}, `target "qa"`},
		{"bad indirect selection", p("--indirect-selection", "lazy"), nil, `--indirect-selection: "lazy"`},
		{"bad duration", p("--node-timeout", "5 minutes"), nil, "-node-timeout"},
		{"bad kill grace", p("--kill-grace", "soon"), nil, "-kill-grace"},
		{"negative duration", p("--retry-delay", "-1s"), nil, "must not be negative"},
		{"unwritable results", p("--results", filepath.Join(file, "results.json")), nil, "--results: cannot write"},
		{"results is a directory", p("--results", noProfiles), nil, "--results: " + noProfiles + " is a directory"},
		{"unwritable run results", p("--run-results", filepath.Join(file, "rr.json")), nil, "--run-results: cannot write"},
		{"unwritable summary", p("--summary", filepath.Join(file, "s.md")), nil, "--summary: cannot write"},
		{"unwritable junit", p("--junit", filepath.Join(file, "j.xml")), nil, "--junit: cannot write"},
		{"bad resource type", p("--resource-type", "table"), nil, `"table" is not one of`},
		{"bad exclude resource type", p("--exclude-resource-type", "all"), nil, `"all" is not one of`},
		{"unknown flag", p("--colour"), nil, "-colour"},
		{"defer without state", p("--defer"), nil, "--defer needs --state"},
		{"bad vars", p("--vars", "[1]"), nil, "vars"},
		{"bad mode", p("--mode", "sideways"), nil, "sideways"},
		{"bad log format", p("--log-format", "xml"), nil, `--log-format: unknown format "xml"`},
		{"retry without results", []string{"retry", "--project-dir", shop}, nil, "--results or --run-results"},
		{"retry missing results", []string{"retry", "--project-dir", shop, "--results", filepath.Join(noProfiles, "none.json")}, nil, "none.json"},
		{"retry not results", []string{"retry", "--project-dir", shop, "--results", file}, nil, "prior results"},
		{"retry with select", []string{"retry", "--project-dir", shop, "--results", file, "-s", "x"}, nil, "--s: retry selects"},
		{"ls bad indirect", []string{"ls", "--manifest", file, "--indirect-selection", "x"}, nil, "--indirect-selection"},
		{"ls no manifest", []string{"ls"}, nil, "--manifest is required"},
		{"plan extra argument", []string{"plan", "--manifest", file, "extra"}, nil, `unexpected argument "extra"`},
	} {
		t.Run(tc.name, func(t *testing.T) {
			for k, v := range tc.env {
				t.Setenv(k, v)
			}
			if tc.name == "cwd not a project" {
				t.Chdir(noProfiles)
			}
			var out, errb bytes.Buffer
			code := run(context.Background(), tc.args, &out, &errb)
			assert.Equal(t, exitBadInput, code, "stderr: %s", errb.String())
			assert.Equal(t, 1, strings.Count(errb.String(), "\n"), "one line: %q", errb.String())
			assert.Contains(t, errb.String(), tc.want)
		})
	}
	assert.False(t, started(), "no dbt started for bad input")
}

// TestDefaultsFromEnvironment: with a good project, --project-dir comes
// from the current directory or $DBT_PROJECT_DIR: the unknown target is
// then reported against that project's profiles.yml.
func TestDefaultsFromEnvironment(t *testing.T) {
	fakeDBT(t)
	shop := shopCopy(t)
	t.Setenv("DBT_PROFILES_DIR", "")
	for name, setup := range map[string]func(t *testing.T){
		"cwd":             func(t *testing.T) { t.Chdir(shop); t.Setenv("DBT_PROJECT_DIR", "") },
		"DBT_PROJECT_DIR": func(t *testing.T) { t.Setenv("DBT_PROJECT_DIR", shop) },
	} {
		t.Run(name, func(t *testing.T) {
			setup(t)
			var out, errb bytes.Buffer
			assert.Equal(t, exitBadInput, run(context.Background(), []string{"build", "--target", "nope"}, &out, &errb))
			assert.Contains(t, errb.String(), filepath.Join(shop, "profiles.yml"))
		})
	}
}

func TestHelpExitsZero(t *testing.T) {
	for _, args := range [][]string{{"-h"}, {"--help"}, {"build", "-h"}, {"build", "--help"}, {"retry", "-h"}, {"ls", "-h"}, {"plan", "-h"}} {
		var out, errb bytes.Buffer
		assert.Equal(t, exitOK, run(context.Background(), args, &out, &errb), "%v", args)
		assert.NotEmpty(t, errb.String(), "%v prints usage", args)
	}
}

func TestExpandMulti(t *testing.T) {
	for _, tc := range []struct{ in, want []string }{
		{[]string{"--select", "a", "b", "--exclude", "c", "d", "--quiet"},
			[]string{"--select", "a", "--select", "b", "--exclude", "c", "--exclude", "d", "--quiet"}},
		{[]string{"-s", "a", "+b", "-m", "c"}, []string{"-s", "a", "-s", "+b", "-m", "c"}},
		{[]string{"--select=a", "b"}, []string{"--select=a", "b"}},
		{[]string{"--resource-types", "model", "seed"}, []string{"--resource-types", "model", "--resource-types", "seed"}},
		{[]string{"--target", "a", "b"}, []string{"--target", "a", "b"}},
		{[]string{"--select", "a", "--", "b"}, []string{"--select", "a", "--", "b"}},
		{[]string{"--select"}, []string{"--select"}},
	} {
		assert.Equal(t, tc.want, expandMulti(tc.in), "%v", tc.in)
	}
}

func TestCauseLine(t *testing.T) {
	for msg, want := range map[string]string{
		"Runtime Error in model customer_revenue (models/marts/finance/customer_revenue.sql)\n  Binder Error: Table \"orders\" does not have a column named \"x\"\n\n  Candidate bindings: ...": `Binder Error: Table "orders" does not have a column named "x" ...`,
		"Database Error\n  connection to server at \"127.0.0.1\", port 1 failed: Connection refused\n\tIs the server running on that host?":                                                     `connection to server at "127.0.0.1", port 1 failed: Connection refused ...`,
		"Got 8 results, configured to fail if != 0":                         "Got 8 results, configured to fail if != 0",
		"Compilation Error in model x (models/x.sql)\n  'foo' is undefined": "'foo' is undefined",
		"dbt raised: dbt.adapters.exceptions.connection.FailedToConnectError: Database Error\n  connection to server at \"127.0.0.1\", port 1 failed: Connection refused":                                                                                                                                        `connection to server at "127.0.0.1", port 1 failed: Connection refused`,
		"dbt wrote no run_results.json: dbt exited with status 2\n14:41:45  Running with dbt=1.11.16\n14:41:50  Encountered an error:\nDatabase Error\n  connection to server at \"127.0.0.1\", port 1 failed: Connection refused\n  \tIs the server running on that host and accepting TCP/IP connections?\n  ": `connection to server at "127.0.0.1", port 1 failed: Connection refused ...`,
		"creating schemas s before the node: dbt show: exit status 2\n{\"info\": {\"level\": \"info\", \"msg\": \"Running with dbt=1.11.16\"}}\n" +
			`{"info": {"level": "error", "msg": "Encountered an error:\nDatabase Error\n  connection to server at \"127.0.0.1\", port 1 failed: Connection refused\n  \tIs the server running?\n  "}}`: `connection to server at "127.0.0.1", port 1 failed: Connection refused ...`,
		"": "",
	} {
		assert.Equal(t, want, causeLine(msg), "%q", msg)
	}
}

func TestSkipText(t *testing.T) {
	for _, tc := range []struct {
		r    orchestrator.NodeResult
		want string
	}{
		{orchestrator.NodeResult{FailedUpstream: []string{"model.p.a", "model.p.b", "model.p.c"}, SkipReason: orchestrator.ReasonUpstreamFailed}, "upstream failed: model.p.a and 2 more"},
		{orchestrator.NodeResult{FailedUpstream: []string{"model.p.a"}, SkipReason: orchestrator.ReasonUpstreamFailed}, "upstream failed: model.p.a"},
		{orchestrator.NodeResult{SkipReason: "upstream skipped: model.p.b: upstream skipped: model.p.a: " + orchestrator.ReasonCancelled}, orchestrator.ReasonCancelled},
		{orchestrator.NodeResult{SkipReason: orchestrator.ReasonCancelled}, orchestrator.ReasonCancelled},
		{orchestrator.NodeResult{SkipReason: "upstream skipped: model.p.b: upstream skipped: model.p.a: source stale"}, "upstream model.p.a skipped: source stale"},
	} {
		assert.Equal(t, tc.want, skipText(&tc.r))
	}
}

// TestProgressTerminal: on a terminal the status line shows done/total,
// the running nodes and an ETA from the estimates; without one, a line
// per start and per finish.
func TestProgressTerminal(t *testing.T) {
	m := &manifest.Manifest{Nodes: map[string]*manifest.Node{}}
	for _, name := range []string{"a", "b", "c"} {
		id := "model.p." + name
		m.Nodes[id] = &manifest.Node{UniqueID: id, Name: name, ResourceType: manifest.Model, Enabled: true, Materialized: "table", RawCode: "select 1", PackageName: "p", Path: name + ".sql", OriginalFilePath: "models/" + name + ".sql"}
	}
	g, err := manifest.NewGraph(m)
	require.NoError(t, err)
	plan := g.Plan(nil, manifest.Immediate)
	t0 := time.Now()
	est := map[string]time.Duration{"model.p.a": 10 * time.Second, "model.p.b": 20 * time.Second, "model.p.c": 30 * time.Second}
	for _, tty := range []bool{true, false} {
		var out bytes.Buffer
		p := newProgress(&out, tty, 1, func(id string) time.Duration { return est[id] })
		ctx := context.Background()
		p.Event(ctx, orchestrator.Event{Type: orchestrator.RunStarted, Time: t0, Plan: plan, RunID: "r"})
		p.Event(ctx, orchestrator.Event{Type: orchestrator.NodeStarted, Time: t0, Node: "model.p.a", Attempt: 1})
		p.Event(ctx, orchestrator.Event{Type: orchestrator.NodeFinished, Time: t0.Add(5 * time.Second), Node: "model.p.a",
			Result: &orchestrator.NodeResult{
				Result: executor.Result{UniqueID: "model.p.a"}, Status: orchestrator.Success, StartedAt: t0, CompletedAt: t0.Add(5 * time.Second),
				Attempts: []orchestrator.Attempt{{Number: 1}},
			}})
		p.Event(ctx, orchestrator.Event{Type: orchestrator.NodeStarted, Time: t0.Add(5 * time.Second), Node: "model.p.b", Attempt: 1})
		if tty {
			// b has run 5s of its 20, c's 30 are to come: 45s left.
			assert.Equal(t, "[######..............] 1/3  ETA 45s  error 0  skipped 0  running 1: b", p.status(t0.Add(10*time.Second)))
			assert.Contains(t, out.String(), "\r\033[K")
		} else {
			assert.Contains(t, out.String(), "START  model.p.a\n")
			assert.Contains(t, out.String(), "1/3 OK     model.p.a (5s)\n")
			assert.Contains(t, out.String(), "START  model.p.b\n")
			assert.NotContains(t, out.String(), "\r")
		}
		p.stop()
		p.stop()
	}
}

// TestSelectionFlagsLsPlan: dbt's spellings on ls and plan, without dbt:
// several values after one flag, -s/-m, --resource-types,
// --exclude-resource-type, and --state for state:modified.
func TestSelectionFlagsLsPlan(t *testing.T) {
	path := genManifestFile(t)
	for _, cmd := range []string{"ls", "plan"} {
		out := func(args ...string) string {
			t.Helper()
			code, stdout, stderr := runCLI(t, append([]string{cmd, "--manifest", path}, args...)...)
			require.Equal(t, 0, code, "%s %v: %s", cmd, args, stderr)
			return stdout
		}
		both := out("--select", "seed_001 seed_002")
		assert.Equal(t, both, out("--select", "seed_001", "seed_002"), cmd+": --select a b")
		assert.Equal(t, both, out("-s", "seed_001", "-m", "seed_002"), cmd+": -s a -m b")
		assert.NotEqual(t, both, out("--select", "seed_001"), cmd+": the second value is not dropped")
		assert.Equal(t, out("--select", "seed_001+", "--exclude", "seed_002+ seed_001"),
			out("--select", "seed_001+", "--exclude", "seed_002+", "seed_001"), cmd+": --exclude a b")
	}
	ls := func(args ...string) []string {
		t.Helper()
		code, stdout, stderr := runCLI(t, append([]string{"ls", "--manifest", path}, args...)...)
		require.Equal(t, 0, code, stderr)
		return strings.Fields(stdout)
	}
	ids := ls("--resource-types", "seed", "test")
	require.NotEmpty(t, ids)
	kinds := map[string]bool{}
	for _, id := range ids {
		kinds[strings.SplitN(id, ".", 2)[0]] = true
	}
	assert.Equal(t, map[string]bool{"seed": true, "test": true}, kinds, "--resource-types a b")
	for _, id := range ls("--exclude-resource-type", "test", "seed") {
		assert.False(t, strings.HasPrefix(id, "test.") || strings.HasPrefix(id, "seed."), id)
	}

	// --state: a manifest in which one model's code differs.
	data, err := os.ReadFile(path)
	require.NoError(t, err)
	var doc map[string]any
	require.NoError(t, json.Unmarshal(data, &doc))
	nodes := doc["nodes"].(map[string]any)
	var changed string
	for id := range nodes {
		if strings.HasPrefix(id, "model.") && (changed == "" || id < changed) {
			changed = id
		}
	}
	n := nodes[changed].(map[string]any)
	n["raw_code"] = "select 'old'"
	n["checksum"] = map[string]any{"name": "sha256", "checksum": "0000"}
	state := t.TempDir()
	data, err = json.Marshal(doc)
	require.NoError(t, err)
	require.NoError(t, os.WriteFile(filepath.Join(state, "manifest.json"), data, 0o644))
	assert.Equal(t, []string{changed}, ls("--select", "state:modified", "--state", state, "--indirect-selection", "empty"))
	code, _, stderr := runCLI(t, "ls", "--manifest", path, "--select", "state:modified")
	assert.Equal(t, 2, code)
	assert.Contains(t, stderr, "state")
}

// TestThreadsFlag: --threads is dbt's threads per wave in per-wave mode,
// and how many nodes run at once in per-node mode unless --concurrency
// says otherwise.
func TestThreadsFlag(t *testing.T) {
	for _, tc := range []struct {
		args              []string
		concurrency, dbtT int
	}{
		{[]string{"--threads", "3"}, 3, 0},
		{[]string{"--threads", "3", "--concurrency", "2"}, 2, 0},
		{[]string{"--threads", "3", "--mode", "per-wave"}, 4, 3},
		{nil, 4, 0},
	} {
		var errb bytes.Buffer
		f, code, ok := parseBuildFlags(tc.args, &errb)
		require.True(t, ok, "%v: %d %s", tc.args, code, errb.String())
		assert.Equal(t, tc.concurrency, f.concurrency, "%v", tc.args)
		assert.Equal(t, tc.dbtT, f.executorOptions(dbt.Project{}).Threads, "%v", tc.args)
	}
	f, _, _ := parseBuildFlags([]string{"--fail-fast", "--mode", "per-wave"}, io.Discard)
	assert.Equal(t, []string{"--fail-fast"}, f.executorOptions(dbt.Project{}).ExtraArgs, "per-wave --fail-fast is dbt's too")
}
