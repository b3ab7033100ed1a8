package dbtargv_test

import (
	"encoding/json"
	"os/exec"
	"slices"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/dbtorch/dbtorch/dbt"
	"github.com/dbtorch/dbtorch/internal/dbtargv"
	"github.com/dbtorch/dbtorch/internal/dbttest"
	"github.com/dbtorch/dbtorch/manifest"
)

// TestForCommand: the flags only some commands take reach only those
// commands, with their values; everything else is kept in order.
func TestForCommand(t *testing.T) {
	extra := []string{"--fail-fast", "--empty", "--sample", "3 days", "--event-time-start=2024-01-01", "--event-time-end", "2024-02-01", "--store-failures", "--warn-error"}
	assert.Equal(t, extra, dbtargv.ForCommand("build", extra))
	assert.Equal(t, []string{"--fail-fast", "--empty", "--sample", "3 days", "--event-time-start=2024-01-01", "--event-time-end", "2024-02-01", "--warn-error"}, dbtargv.ForCommand("run", extra))
	assert.Equal(t, []string{"--fail-fast", "--empty", "--warn-error"}, dbtargv.ForCommand("snapshot", extra))
	assert.Equal(t, []string{"--fail-fast", "--warn-error"}, dbtargv.ForCommand("seed", extra))
	assert.Equal(t, []string{"--fail-fast", "--store-failures", "--warn-error"}, dbtargv.ForCommand("test", extra))

	n := node(manifest.Seed, "p", "p", "s")
	args, err := dbtargv.Build(dbtargv.Options{Command: "seed", Nodes: []*manifest.Node{n}, Empty: true, Sample: "1 day", EventTimeStart: "2024-01-01"})
	require.NoError(t, err)
	for _, f := range []string{"--empty", "--sample", "--event-time-start", "1 day"} {
		assert.NotContains(t, args, f)
	}
	args, err = dbtargv.Build(dbtargv.Options{Command: "run", Nodes: []*manifest.Node{node(manifest.Model, "p", "p", "m")}, Empty: true, Sample: "1 day", EventTimeStart: "2024-01-01", EventTimeEnd: "2024-01-02"})
	require.NoError(t, err)
	assert.Subset(t, args, []string{"--empty", "--sample", "1 day", "--event-time-start", "2024-01-01", "--event-time-end", "2024-01-02"})
}

// TestCommandFlagsMatchDBT reads the options of the installed dbt's click
// commands and checks that each flag ForCommand filters is taken exactly by
// the commands dbtargv says.
func TestCommandFlagsMatchDBT(t *testing.T) {
	py, err := dbt.Interpreter(dbttest.DBT(t))
	require.NoError(t, err)
	out, err := exec.CommandContext(t.Context(), py, "-c", `
import json
from dbt.cli.main import cli
res = {}
for name in ["run", "build", "seed", "snapshot", "test", "compile"]:
    cmd = cli.commands[name]
    res[name] = sorted(o for p in cmd.params for o in list(p.opts) + list(p.secondary_opts))
print(json.dumps(res))
`).Output()
	require.NoError(t, err)
	var opts map[string][]string
	require.NoError(t, json.Unmarshal(out, &opts))
	for _, flag := range []string{"--empty", "--no-empty", "--sample", "--event-time-start", "--event-time-end", "--store-failures"} {
		for cmd, have := range opts {
			assert.Equal(t, slices.Contains(have, flag), dbtargv.Accepts(cmd, flag), "dbt %s %s", cmd, flag)
		}
	}
}
