package orchestrator_test

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"sync"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/dbtorch/dbtorch/dbt"
	"github.com/dbtorch/dbtorch/executor"
	"github.com/dbtorch/dbtorch/internal/dbttest"
	"github.com/dbtorch/dbtorch/manifest"
	"github.com/dbtorch/dbtorch/orchestrator"
	"github.com/dbtorch/dbtorch/selector"
)

// auditRow is one row of testdata/lifecycle's audit table: its project
// hooks write one "start" row (on-run-start), one "end" row and one
// "result" row per result on-run-end was given (unique_id, status).
type auditRow struct{ Hook, UniqueID, Status string }

// auditLog reads the audit table of the DuckDB file env points at.
func auditLog(t *testing.T, env []string) []auditRow {
	t.Helper()
	db := dbttest.DuckDBPath(env)
	py := filepath.Join(filepath.Dir(dbttest.DBT(t)), "python")
	script := `
import duckdb, json, sys
con = duckdb.connect(sys.argv[1], read_only=True)
rows = con.execute("select hook, coalesce(unique_id, ''), coalesce(status, '') from main.audit_log").fetchall()
print(json.dumps([{"Hook": h, "UniqueID": u, "Status": s} for h, u, s in rows]))
`
	out, err := exec.CommandContext(t.Context(), py, "-c", script, db).Output()
	require.NoError(t, err)
	var rows []auditRow
	require.NoError(t, json.Unmarshal(out, &rows))
	return rows
}

// hookCounts counts the audit rows by hook.
func hookCounts(rows []auditRow) map[string]int {
	out := map[string]int{}
	for _, r := range rows {
		out[r.Hook]++
	}
	return out
}

// seenResults returns the results on-run-end was given: unique_id to
// status.
func seenResults(rows []auditRow) map[string]string {
	out := map[string]string{}
	for _, r := range rows {
		if r.Hook == "result" {
			out[r.UniqueID] = r.Status
		}
	}
	return out
}

// since returns the rows of after that are not in before (a multiset
// difference): what the builds between them wrote.
func since(before, after []auditRow) []auditRow {
	left := map[auditRow]int{}
	for _, r := range before {
		left[r]++
	}
	var out []auditRow
	for _, r := range after {
		if left[r] > 0 {
			left[r]--
			continue
		}
		out = append(out, r)
	}
	return out
}

// hookExec is an executor of testdata/lifecycle on its own DuckDB file
// (env).
type hookExec struct {
	ex interface {
		executor.Executor
		Close() error
	}
	env []string
}

func newHookExec(t *testing.T, dir string, warm, unpatched bool) *hookExec {
	t.Helper()
	env := dbttest.Env(t, dir)
	opts := executor.Options{Project: dbt.Project{DBT: dbttest.DBT(t), Dir: dir, Env: env}}
	h := &hookExec{env: env}
	var err error
	if warm {
		h.ex, err = executor.NewWarm(executor.WarmConfig{Options: opts, Unpatched: unpatched})
	} else {
		h.ex, err = executor.NewCore(executor.CoreConfig{Options: opts})
	}
	require.NoError(t, err)
	t.Cleanup(func() { _ = h.ex.Close() })
	return h
}

// built is a finished build: its run, its error and the audit rows it
// wrote.
type built struct {
	run  *orchestrator.Run
	err  error
	rows []auditRow
}

// build builds with mode and vars. A warm executor is closed first (its
// workers keep the DuckDB file open), so it builds once.
func (h *hookExec) build(t *testing.T, mode orchestrator.Mode, sel selector.Options, vars map[string]any) built {
	t.Helper()
	var before []auditRow
	if _, warm := h.ex.(*executor.Warm); !warm {
		if _, err := os.Stat(dbttest.DuckDBPath(h.env)); err == nil {
			before = auditLog(t, h.env)
		}
	}
	o, err := orchestrator.New(orchestrator.Config{Executor: h.ex, Mode: mode})
	require.NoError(t, err)
	run, err := o.RunBuild(t.Context(), orchestrator.BuildOptions{Selection: sel, Vars: vars})
	require.NotNil(t, run, "build did not start: %v", err)
	if _, warm := h.ex.(*executor.Warm); warm {
		require.NoError(t, h.ex.Close())
	}
	return built{run, err, since(before, auditLog(t, h.env))}
}

// TestProjectHooksOncePerBuild builds testdata/lifecycle with dbt build
// and with dbtorch (Core per node and per wave, Warm per node and,
// unpatched, per wave, and Warm on the whole project): on-run-start and
// on-run-end run once per build in every
// case, as in dbt build, although dbtorch runs several invocations, and
// on-run-end sees the build's results with dbt's statuses. Then with a
// failing on-run-start: every node is skipped, naming the hook, the
// build's error is a *HookError, and on-run-end runs once, seeing no
// results, as in dbt build with skip_nodes_if_on_run_start_fails (dbt
// 1.12's default).
func TestProjectHooksOncePerBuild(t *testing.T) {
	if testing.Short() {
		t.Skip("real dbt")
	}
	dir := dbttest.CopyProject(t, "lifecycle")
	// A seed and the microbatch model reading it, without tests: two
	// invocations per node, two waves. (Not the whole project, to keep
	// Core's invocations few, and since with a failing on-run-start dbt
	// 1.11 fails skipping a saved query, "'SavedQuery' object has no
	// attribute 'schema'"; the lifecycle comparison test builds all of
	// it.)
	sel := selector.Options{Select: []string{"+events_mb"}, Indirect: selector.Empty}
	fail := map[string]any{"fail_on_run_start": true}
	dbtBuild := func(vars ...string) []auditRow {
		env := dbttest.Env(t, dir)
		out, err := dbttest.Run(t, dir, env, append([]string{"build", "--select", "+events_mb", "--indirect-selection", "empty"}, vars...)...)
		if len(vars) == 0 {
			require.NoError(t, err, out)
		} else {
			require.Error(t, err, "dbt build with a failing on-run-start")
		}
		return auditLog(t, env)
	}
	want, wantFail := dbtBuild(), dbtBuild("--vars", "{fail_on_run_start: true}")
	require.Equal(t, map[string]int{"start": 1, "end": 1, "result": 2}, hookCounts(want))
	require.Equal(t, map[string]int{"start": 1, "end": 1}, hookCounts(wantFail))

	ok := func(t *testing.T, b built) {
		t.Helper()
		run, err, got := b.run, b.err, b.rows
		require.NoError(t, err)
		for _, w := range run.Warnings {
			assert.NotContains(t, w, "hooks", "warning")
		}
		invocations := map[*executor.Invocation]bool{}
		for i := range run.Results {
			invocations[run.Results[i].Invocation] = true
		}
		assert.Len(t, invocations, 2, "one invocation per node or wave")
		assert.Equal(t, hookCounts(want), hookCounts(got), "audit rows by hook: dbt build vs dbtorch")
		assert.Equal(t, seenResults(want), seenResults(got), "the results on-run-end saw")
		var hooks []string
		for _, h := range run.Hooks {
			assert.Equal(t, executor.Success, h.Status, h.UniqueID)
			hooks = append(hooks, h.UniqueID)
		}
		assert.Equal(t, []string{"operation.lifecycle.lifecycle-on-run-start-0", "operation.lifecycle.lifecycle-on-run-end-0"}, hooks)
	}
	failed := func(t *testing.T, b built) {
		t.Helper()
		run, err, got := b.run, b.err, b.rows
		var he *orchestrator.HookError
		require.True(t, errors.As(err, &he), "error %v", err)
		assert.Equal(t, executor.OnRunStart, he.Phase)
		assert.Equal(t, "operation.lifecycle.lifecycle-on-run-start-0", he.Hook)
		assert.Contains(t, he.Message, "no_such_relation")
		require.Len(t, run.Results, 2)
		for _, r := range run.Results {
			assert.Equal(t, orchestrator.Skipped, r.Status, r.UniqueID)
			assert.Contains(t, r.SkipReason, "on-run-start failed: operation.lifecycle.lifecycle-on-run-start-0: Catalog Error: Table with name no_such_relation does not exist", r.UniqueID)
			assert.Empty(t, r.Attempts, r.UniqueID)
		}
		assert.Equal(t, wantFail, got, "audit rows: dbt build vs dbtorch")
		statuses := map[string]executor.Status{}
		for _, h := range run.Hooks {
			statuses[h.UniqueID] = h.Status
		}
		assert.Equal(t, map[string]executor.Status{
			"operation.lifecycle.lifecycle-on-run-start-0": executor.Error,
			"operation.lifecycle.lifecycle-on-run-end-0":   executor.Success,
		}, statuses)
	}

	t.Run("core", func(t *testing.T) {
		// One executor, one database: each build's audit rows are those
		// it added.
		h := newHookExec(t, dir, false, false)
		t.Run("per-node", func(t *testing.T) { ok(t, h.build(t, orchestrator.PerNode, sel, nil)) })
		t.Run("per-wave", func(t *testing.T) { ok(t, h.build(t, orchestrator.PerWave, sel, nil)) })
		t.Run("failing-start", func(t *testing.T) { failed(t, h.build(t, orchestrator.PerWave, sel, fail)) })
	})
	t.Run("warm/per-node", func(t *testing.T) { ok(t, newHookExec(t, dir, true, false).build(t, orchestrator.PerNode, sel, nil)) })
	// The hook switch is not one of the worker's optional patches: it
	// stays on without them.
	t.Run("warm-unpatched/per-wave", func(t *testing.T) { ok(t, newHookExec(t, dir, true, true).build(t, orchestrator.PerWave, sel, nil)) })
	// The whole project (a function, a unit test, an exposure, a saved
	// query, a microbatch model): the same audit rows as dbt build's, on
	// the warm executor (Core's invocations cost seconds each).
	t.Run("warm/whole-project", func(t *testing.T) {
		env := dbttest.Env(t, dir)
		out, err := dbttest.Run(t, dir, env, "build")
		require.NoError(t, err, out)
		want := auditLog(t, env)
		require.Equal(t, map[string]int{"start": 1, "end": 1, "result": 11}, hookCounts(want))
		b := newHookExec(t, dir, true, false).build(t, orchestrator.PerNode, selector.Options{}, nil)
		require.NoError(t, b.err)
		assert.ElementsMatch(t, want, b.rows, "audit rows: dbt build vs dbtorch")
	})
	t.Run("warm/failing-start", func(t *testing.T) {
		failed(t, newHookExec(t, dir, true, false).build(t, orchestrator.PerNode, sel, fail))
	})
}

// hookFake is the fake executor with a scripted HookRunner: it records
// each phase asked for and the results on-run-end was given.
type hookFake struct {
	*fakeExec
	failStart   bool // on-run-start's hook fails
	mu          sync.Mutex
	phases      []executor.HookPhase
	endResults  []executor.Result
	startNodes  int
	unsupported bool
	creations   int
}

// CreateSchemas counts the creations (executor.SchemaCreator).
func (h *hookFake) CreateSchemas(ctx context.Context, schemas []executor.Schema) error {
	h.mu.Lock()
	defer h.mu.Unlock()
	h.creations++
	return nil
}

func (h *hookFake) RunHooks(ctx context.Context, req executor.HookRequest) (*executor.Response, error) {
	h.mu.Lock()
	defer h.mu.Unlock()
	if h.unsupported {
		return nil, fmt.Errorf("%w: scripted", executor.ErrHooksUnsupported)
	}
	h.phases = append(h.phases, req.Phase)
	id := "operation.p.p-" + string(req.Phase) + "-0"
	r := executor.Result{UniqueID: id, Status: executor.Success, DBTStatus: "success"}
	if req.Phase == executor.OnRunStart {
		h.startNodes = len(req.Nodes)
		if h.failStart {
			r = executor.Result{UniqueID: id, Status: executor.Error, DBTStatus: "error", Message: "p.on-run-start.0 failed, error:\n boom"}
		}
	} else {
		h.endResults = req.Results
	}
	return &executor.Response{Results: []executor.Result{r}}, nil
}

// withHooks adds an on-run-start and an on-run-end hook to m.
func withHooks(m *manifest.Manifest) *manifest.Manifest {
	for _, phase := range []string{"on-run-start", "on-run-end"} {
		id := "operation.p.p-" + phase + "-0"
		m.Nodes[id] = &manifest.Node{UniqueID: id, Name: "p-" + phase + "-0", ResourceType: manifest.Operation, PackageName: "p", Tags: []string{phase}, Enabled: true}
	}
	return m
}

// TestProjectHooksOrchestration runs the hook rules on the fake executor:
// once per build with every invocation hook-less, on-run-end given every
// node's result with dbt's words; a failing on-run-start skips every node
// and runs no invocation; an executor without the capability, or whose
// RunHooks says unsupported, leaves the hooks to the invocations with a
// warning; a project without hooks asks for none.
func TestProjectHooksOrchestration(t *testing.T) {
	spec := dagSpec{models: 3, parents: map[int][]int{1: {0}, 2: {1}}, tests: [][]int{{0}}}
	scripts := map[string]script{modelID(1): {failures: -1}}
	for _, mode := range []orchestrator.Mode{orchestrator.PerNode, orchestrator.PerWave} {
		t.Run(mode.String(), func(t *testing.T) {
			h := &hookFake{fakeExec: newFake(scripts)}
			run, err := newOrch(t, orchestrator.Config{Executor: h, Manifest: withHooks(manifestOf(spec)), Mode: mode}).RunBuild(t.Context(), orchestrator.BuildOptions{})
			var be *orchestrator.BuildError
			require.True(t, errors.As(err, &be), "%v", err)
			assert.Equal(t, []executor.HookPhase{executor.OnRunStart, executor.OnRunEnd}, h.phases)
			assert.Equal(t, 4, h.startNodes)
			require.NotEmpty(t, h.reqs)
			for _, req := range h.reqs {
				assert.True(t, req.NoHooks, "invocation of %s runs hooks", req.Nodes[0].UniqueID)
			}
			words := map[string]string{}
			for _, r := range h.endResults {
				words[r.UniqueID] = r.DBTStatus
			}
			assert.Equal(t, map[string]string{modelID(0): "success", testID(0): "success", modelID(1): "error", modelID(2): "skipped"}, words)
			assert.Len(t, run.Hooks, 2)
			assert.Empty(t, run.Warnings)
		})
	}
	t.Run("failing on-run-start", func(t *testing.T) {
		h := &hookFake{fakeExec: newFake(nil), failStart: true}
		run, err := newOrch(t, orchestrator.Config{Executor: h, Manifest: withHooks(manifestOf(spec))}).RunBuild(t.Context(), orchestrator.BuildOptions{})
		var he *orchestrator.HookError
		require.True(t, errors.As(err, &he), "%v", err)
		assert.Equal(t, &orchestrator.HookError{Phase: executor.OnRunStart, Hook: "operation.p.p-on-run-start-0", Message: "p.on-run-start.0 failed, error:\n boom"}, he)
		assert.Empty(t, h.reqs, "no node runs")
		for _, r := range run.Results {
			assert.Equal(t, orchestrator.Skipped, r.Status)
			assert.Equal(t, "on-run-start failed: operation.p.p-on-run-start-0: boom", r.SkipReason)
		}
		assert.Equal(t, []executor.HookPhase{executor.OnRunStart, executor.OnRunEnd}, h.phases)
		assert.Empty(t, h.endResults, "dbt's on-run-end sees no results after a failed on-run-start")
	})
	t.Run("no capability", func(t *testing.T) {
		f := newFake(nil)
		run, err := newOrch(t, orchestrator.Config{Executor: f, Manifest: withHooks(manifestOf(spec))}).RunBuild(t.Context(), orchestrator.BuildOptions{})
		require.NoError(t, err)
		assert.Contains(t, run.Warnings, "the project's on-run-start and on-run-end hooks run in every dbt invocation, not once per build: the executor cannot run them apart (executor.HookRunner)")
		for _, req := range f.reqs {
			assert.False(t, req.NoHooks)
		}
	})
	t.Run("unsupported", func(t *testing.T) {
		h := &hookFake{fakeExec: newFake(nil), unsupported: true}
		run, err := newOrch(t, orchestrator.Config{Executor: h, Manifest: withHooks(manifestOf(spec))}).RunBuild(t.Context(), orchestrator.BuildOptions{})
		require.NoError(t, err)
		require.Len(t, run.Warnings, 1)
		assert.Contains(t, run.Warnings[0], "not once per build: executor: project hooks cannot be run apart")
		for _, req := range h.reqs {
			assert.False(t, req.NoHooks)
		}
		assert.Empty(t, run.Hooks)
	})
	// dbt creates the schemas before on-run-start: the build creates
	// none; without hooks it creates them.
	inSchema := func(m *manifest.Manifest) *manifest.Manifest {
		for _, n := range m.Nodes {
			if n.ResourceType == manifest.Model {
				n.Schema = "s"
			}
		}
		return m
	}
	t.Run("schemas", func(t *testing.T) {
		h := &hookFake{fakeExec: newFake(nil)}
		_, err := newOrch(t, orchestrator.Config{Executor: h, Manifest: inSchema(withHooks(manifestOf(spec)))}).RunBuild(t.Context(), orchestrator.BuildOptions{})
		require.NoError(t, err)
		assert.Equal(t, 0, h.creations)
	})
	t.Run("no hooks in the project", func(t *testing.T) {
		h := &hookFake{fakeExec: newFake(nil)}
		run, err := newOrch(t, orchestrator.Config{Executor: h, Manifest: inSchema(manifestOf(spec))}).RunBuild(t.Context(), orchestrator.BuildOptions{})
		require.NoError(t, err)
		assert.Equal(t, 1, h.creations)
		assert.Empty(t, h.phases)
		assert.Empty(t, run.Warnings)
		for _, req := range h.reqs {
			assert.False(t, req.NoHooks)
		}
	})
	t.Run("cancelled", func(t *testing.T) {
		h := &hookFake{fakeExec: newFake(map[string]script{modelID(0): {dur: time.Hour}})}
		ctx, cancel := context.WithCancel(t.Context())
		h.onStart = func(string) { cancel() }
		_, err := newOrch(t, orchestrator.Config{Executor: h, Manifest: withHooks(manifestOf(spec))}).RunBuild(ctx, orchestrator.BuildOptions{})
		require.ErrorIs(t, err, context.Canceled)
		assert.Equal(t, []executor.HookPhase{executor.OnRunStart}, h.phases, "no on-run-end after an interrupt, as in dbt")
	})
}
