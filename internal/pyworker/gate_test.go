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
internals = {
    "cache_plugin_discovery": lambda: PluginManager.__dict__["get_prefixed_modules"],
    "skip_graph_diagnostics": lambda: Compiler.write_graph_file,
    "cache_query_comment": lambda: QueryStringGenerator.__init__,
    "reuse_graph": lambda: Compiler.compile,
    "skip_unlogged_events": lambda: EventManager.fire_event,
    "remember_schemas": lambda: GraphRunnableTask.create_schemas,
    "lazy_cache_events": lambda: relcache.CacheAction,
    "index_selection": lambda: NodeSelector.select_included,
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
	py, err := dbt.Interpreter(dbttest.DBT(t))
	require.NoError(t, err)
	dir := t.TempDir()
	_, err = pyworker.WriteScript(dir)
	require.NoError(t, err)
	type probe struct {
		Real                      string
		Enabled, Applied, Changed []string
	}
	run := func(t *testing.T, minor, narrow string) probe {
		cmd := exec.CommandContext(t.Context(), py, "-c", gateProbe, dir, minor, narrow)
		cmd.Env = append(cmd.Environ(), "DBTORCH_WORKER_PATCHES=")
		out, err := cmd.Output()
		var stderr []byte
		if ee, ok := err.(*exec.ExitError); ok {
			stderr = ee.Stderr
		}
		require.NoError(t, err, "%s", stderr)
		var p probe
		require.NoError(t, json.Unmarshal(out, &p), "%s", out)
		return p
	}
	all := []string{"cache_plugin_discovery", "skip_graph_diagnostics", "cache_query_comment", "reuse_graph", "skip_unlogged_events", "remember_schemas", "lazy_cache_events", "index_selection"}
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
		assert.Equal(t, all, p.Enabled, "every patch is proven on dbt-core %s", p.Real)
		assert.Equal(t, all, p.Applied)
		assert.Equal(t, all, p.Changed)
	})
	t.Run("one patch out of range", func(t *testing.T) {
		t.Parallel()
		p := run(t, "", "reuse_graph")
		want := slices.DeleteFunc(slices.Clone(all), func(n string) bool { return n == "reuse_graph" })
		assert.Equal(t, want, p.Enabled)
		assert.Equal(t, want, p.Applied)
		assert.Equal(t, want, p.Changed, "reuse_graph's internals are dbt's own")
	})
}
