package executor_test

import (
	"os"
	"path/filepath"
	"testing"

	"github.com/stretchr/testify/require"

	"github.com/dbtorch/dbtorch/dbt"
	"github.com/dbtorch/dbtorch/executor"
	"github.com/dbtorch/dbtorch/internal/dbttest"
)

// TestCoreHooksUnsupportedInterpreter: a dbt reached through a shell
// wrapper whose neighbouring python cannot run the worker script parses
// and runs nodes as before, and RunHooks says it cannot run the hooks
// apart (ErrHooksUnsupported: the build then leaves them to each
// invocation) instead of failing the build's on-run-start.
func TestCoreHooksUnsupportedInterpreter(t *testing.T) {
	if testing.Short() {
		t.Skip("real dbt")
	}
	bin := t.TempDir()
	wrapper := filepath.Join(bin, "dbt")
	require.NoError(t, os.WriteFile(wrapper, []byte("#!/bin/sh\nexec '"+dbttest.DBT(t)+"' \"$@\"\n"), 0o755))
	require.NoError(t, os.WriteFile(filepath.Join(bin, "python"), []byte("#!/bin/sh\necho no dbt here >&2\nexit 1\n"), 0o755))
	dir := dbttest.CopyProject(t, "lifecycle")
	c, err := executor.NewCore(executor.CoreConfig{Options: executor.Options{Project: dbt.Project{DBT: wrapper, Dir: dir, Env: dbttest.Env(t, dir)}}})
	require.NoError(t, err)
	defer c.Close()
	_, err = c.RunHooks(t.Context(), executor.HookRequest{Phase: executor.OnRunStart})
	require.ErrorIs(t, err, executor.ErrHooksUnsupported)
	require.Contains(t, err.Error(), "no dbt here")
}
