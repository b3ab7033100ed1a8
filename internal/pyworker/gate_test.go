package pyworker_test

import (
	"encoding/json"
	"os/exec"
	"slices"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/dbtorch/dbtorch/dbt"
	"github.com/dbtorch/dbtorch/internal/dbttest"
	"github.com/dbtorch/dbtorch/internal/pyworker"
)

// gateProbe imports worker.py next to dbt, optionally narrows one patch's
// range (sys.argv[3], to (1, 99)-(1, 99)), applies the patches as on
// dbt-core minor version sys.argv[2] ("" for the real one) and prints
// what the worker says it applied next to the dbt internals that really
// changed.
const gateProbe = `
import json, sys
sys.path.insert(0, sys.argv[1])
import worker
from dbt.plugins.manager import PluginManager
from dbt.compilation import Compiler
from dbt.adapters.clients.jinja import QueryStringGenerator
from dbt_common.events.event_manager import EventManager
from dbt.task.runnable import GraphRunnableTask
from dbt.adapters import cache as relcache
from dbt.graph.selector import NodeSelector
from dbt.adapters.base.impl import BaseAdapter
from dbt_common.behavior_flags import BehaviorFlagRendered
internals = {
    "cache_plugin_discovery": lambda: PluginManager.__dict__["get_prefixed_modules"],
    "skip_graph_diagnostics": lambda: Compiler.write_graph_file,
    "cheap_behavior_source": lambda: BehaviorFlagRendered.__dict__["_default_source"],
    "cache_query_comment": lambda: QueryStringGenerator.__init__,
    "reuse_graph": lambda: Compiler.compile,
    "skip_unlogged_events": lambda: EventManager.fire_event,
    "remember_schemas": lambda: GraphRunnableTask.create_schemas,
    "lazy_cache_events": lambda: relcache.CacheAction,
    "memo_graph_members": lambda: NodeSelector.__init__,
    "index_selection": lambda: NodeSelector.select_included,
    "memo_cache_schemas": lambda: BaseAdapter._get_cache_schemas,
    "keep_relation_cache": lambda: GraphRunnableTask.populate_adapter_cache,
    "prefilter_relation_match": lambda: BaseAdapter._make_match,
    "build_session": lambda: GraphRunnableTask.execute_nodes,
}
assert sorted(internals) == sorted(p[0] for p in worker.PATCHES), "the probe knows every patch"
if sys.argv[3]:
    worker.PATCHES = [(n, (1, 99), (1, 99)) if n == sys.argv[3] else (n, a, b) for n, a, b in worker.PATCHES]
before = {n: f() for n, f in internals.items()}
minor = tuple(int(x) for x in sys.argv[2].split(".")) if sys.argv[2] else None
enabled, applied = worker.apply_patches(worker.Builds(), minor)
changed = [n for n, _, _ in worker.PATCHES if internals[n]() is not before[n]]
print(json.dumps({"real": "%d.%d" % worker.dbt_minor(), "enabled": enabled, "applied": applied, "changed": changed}))
`

// TestPatchGate runs worker.py's patch gate on the real dbt with faked
// versions: a dbt-core minor version outside every patch's range (1.7,
// 1.12) leaves every dbt internal as dbt wrote it; on the real version
// every patch applies; a patch whose range is narrowed away from the real
// version is the only one left out. "changed" is read from dbt's classes,
// not from the worker's own account.
func TestPatchGate(t *testing.T) {
	t.Parallel()
	py, dir := probeSetup(t)
	type probe struct {
		Real                      string
		Enabled, Applied, Changed []string
	}
	run := func(t *testing.T, minor, narrow string) probe {
		var p probe
		runProbe(t, &p, py, gateProbe, dir, minor, narrow)
		return p
	}
	all := []string{"cache_plugin_discovery", "cheap_behavior_source", "skip_graph_diagnostics", "cache_query_comment", "reuse_graph", "skip_unlogged_events", "remember_schemas", "lazy_cache_events", "memo_graph_members", "index_selection", "memo_cache_schemas", "keep_relation_cache", "prefilter_relation_match", "build_session"}
	for _, minor := range []string{"1.7", "1.12"} {
		t.Run("dbt "+minor, func(t *testing.T) {
			t.Parallel()
			p := run(t, minor, "")
			assert.Empty(t, p.Enabled)
			assert.Empty(t, p.Applied)
			assert.Empty(t, p.Changed, "no dbt internal replaced outside the proven versions")
		})
	}
	t.Run("real version", func(t *testing.T) {
		t.Parallel()
		p := run(t, "", "")
		want := provenOn(all, p.Real)
		assert.Equal(t, want, p.Enabled, "every patch is proven on dbt-core %s", p.Real)
		assert.Equal(t, want, p.Applied)
		assert.Equal(t, want, p.Changed)
	})
	t.Run("one patch out of range", func(t *testing.T) {
		t.Parallel()
		p := run(t, "", "reuse_graph")
		want := slices.DeleteFunc(provenOn(all, p.Real), func(n string) bool { return n == "reuse_graph" })
		assert.Equal(t, want, p.Enabled)
		assert.Equal(t, want, p.Applied)
		assert.Equal(t, want, p.Changed, "reuse_graph's internals are dbt's own")
	})
}

// hookGateProbe checks worker.py's guards of its hook code on the real
// dbt and on one whose internals have other signatures.
const hookGateProbe = `
import json, sys
sys.path.insert(0, sys.argv[1])
import worker
from dbt.task.run import RunTask
from dbt.task.build import BuildTask
out = {}
before = RunTask.get_hooks_by_type
out["applied"] = worker.suppress_project_hooks(worker.ProjectHooks())
out["changed"] = RunTask.get_hooks_by_type is not before
out["task"] = worker.hooks_task() is BuildTask
RunTask.get_hooks_by_type = lambda self, hook_type, extra: []
other = RunTask.get_hooks_by_type
out["other_applied"] = worker.suppress_project_hooks(worker.ProjectHooks())
out["other_changed"] = RunTask.get_hooks_by_type is not other
BuildTask.after_run = lambda self, adapter: None
out["other_task"] = worker.hooks_task() is not None
print(json.dumps(out))
`

// TestHookSwitchGate: the switch that runs invocations without the
// project's hooks, and the task that runs them apart, apply on the real
// dbt and leave a dbt whose internals have other signatures as dbt wrote
// it (the worker then says it cannot, and hooks run in every invocation).
func TestHookSwitchGate(t *testing.T) {
	t.Parallel()
	py, dir := probeSetup(t)
	var got map[string]bool
	runProbe(t, &got, py, hookGateProbe, dir)
	assert.Equal(t, map[string]bool{"applied": true, "changed": true, "task": true,
		"other_applied": false, "other_changed": false, "other_task": false}, got)
}

// runProbe runs the Python script with py and args (the patches enabled
// by default) and decodes the JSON it prints into v.
func runProbe(t *testing.T, v any, py, script string, args ...string) {
	t.Helper()
	cmd := exec.CommandContext(t.Context(), py, append([]string{"-c", script}, args...)...)
	cmd.Env = append(cmd.Environ(), "DBTORCH_WORKER_PATCHES=")
	out, err := cmd.Output()
	var stderr []byte
	if ee, ok := err.(*exec.ExitError); ok {
		stderr = ee.Stderr
	}
	require.NoError(t, err, "%s", stderr)
	require.NoError(t, json.Unmarshal(out, v), "%s", out)
}

// probeSetup returns dbt's interpreter and a directory holding worker.py.
func probeSetup(t *testing.T) (py, dir string) {
	t.Helper()
	py, err := dbt.Interpreter(dbttest.DBT(t))
	require.NoError(t, err)
	dir = t.TempDir()
	_, err = pyworker.WriteScript(dir)
	require.NoError(t, err)
	return py, dir
}

// provenOn returns the patches of all that worker.py's PATCHES enables on
// dbt-core minor (e.g. "1.8"): every one on 1.8-1.11 except build_session,
// proven on 1.11 only (on 1.8 its dbt internals have other signatures).
func provenOn(all []string, minor string) []string {
	if minor == "1.11" {
		return slices.Clone(all)
	}
	return slices.DeleteFunc(slices.Clone(all), func(n string) bool { return n == "build_session" })
}
