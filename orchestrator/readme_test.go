package orchestrator_test

import (
	"context"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/dbtorch/dbtorch/dbt"
	"github.com/dbtorch/dbtorch/executor"
	"github.com/dbtorch/dbtorch/internal/dbttest"
	"github.com/dbtorch/dbtorch/orchestrator"
	"github.com/dbtorch/dbtorch/selector"
)

// buildShop is README.md's library snippet ("Using the library"), word for
// word: TestREADMELibrarySnippet checks that the README still shows it and
// runs it.
func buildShop(ctx context.Context) (*orchestrator.Run, error) {
	ex, err := executor.NewWarm(executor.WarmConfig{
		Options: executor.Options{Project: dbt.Project{Dir: "testdata/shop"}},
	})
	if err != nil {
		return nil, err
	}
	defer ex.Close()

	o, err := orchestrator.New(orchestrator.Config{
		Executor:    ex, // or executor.NewCore(...), cloud.NewExecutor(...), your own
		Concurrency: 4,  // capped by what the executor takes at once (see Run.Warnings)
		Retry:       orchestrator.RetryConfig{Retries: 2},
	})
	if err != nil {
		return nil, err
	}
	// No Manifest: the executor parses the project (executor.ManifestProvider).
	return o.RunBuild(ctx, orchestrator.BuildOptions{
		// fct_orders and its ancestors, with the tests of what is built
		Selection: selector.Options{Select: []string{"+fct_orders"}, Indirect: selector.Cautious},
	})
}

// TestREADMELibrarySnippet: the README's library snippet is buildShop's
// code, and run as written (from a directory holding testdata/shop, dbt
// found as dbt.FindDBT finds it, the DuckDB file named by the profile's
// env_var) it builds the bundled DuckDB project without a lock error:
// four nodes at once in the warm worker's build session (one process),
// or, where sessions do not run, one node at a time because the executor
// says DuckDB takes one writing process, said in Run.Warnings.
func TestREADMELibrarySnippet(t *testing.T) {
	readme, err := os.ReadFile(filepath.Join(dbttest.RepoRoot(t), "README.md"))
	require.NoError(t, err)
	snippet := librarySnippet(t, string(readme))
	self, err := os.ReadFile("readme_test.go")
	require.NoError(t, err)
	assert.Contains(t, string(self), snippet, "README.md's library snippet is buildShop, word for word")

	if testing.Short() {
		t.Skip("real dbt: not in -short mode")
	}
	dir := t.TempDir()
	require.NoError(t, os.MkdirAll(filepath.Join(dir, "testdata"), 0o755))
	require.NoError(t, os.Rename(dbttest.CopyProject(t, "shop"), filepath.Join(dir, "testdata", "shop")))
	dbtBin := dbttest.DBT(t) // before Chdir: it finds the repository from the working directory
	t.Chdir(dir)
	t.Setenv("DBTORCH_DBT", dbtBin)
	t.Setenv("DBTORCH_DUCKDB_PATH", filepath.Join(dir, "shop.duckdb"))
	t.Setenv("DBTORCH_FLAKY_COUNTER", "")
	t.Setenv("DBT_SEND_ANONYMOUS_USAGE_STATS", "false")
	t.Setenv("DO_NOT_TRACK", "1")

	run, err := buildShop(t.Context())
	require.NoError(t, err)
	if dbttest.Sessions(t) {
		assert.Empty(t, run.Warnings)
		assert.Equal(t, 4, run.Args["threads"])
	} else {
		assert.Equal(t, []string{"concurrency 4 reduced to 1: one DuckDB file takes one writing process at a time"}, run.Warnings)
		assert.Equal(t, 1, run.Args["threads"])
	}
	require.NotEmpty(t, run.Results)
	for _, r := range run.Results {
		assert.Equal(t, orchestrator.Success, r.Status, "%s: %s", r.UniqueID, r.Message)
		assert.Len(t, r.Attempts, 1, "%s ran once: no lock error to retry", r.UniqueID)
		assert.NotContains(t, strings.ToLower(r.Message), "lock", r.UniqueID)
	}
	assert.NotNil(t, run.Result("model.shop.fct_orders"))
}

// librarySnippet returns the first Go code block of the README's "Using
// the library" section.
func librarySnippet(t *testing.T, readme string) string {
	t.Helper()
	_, section, ok := strings.Cut(readme, "\n## Using the library\n")
	require.True(t, ok, "README.md has a section \"Using the library\"")
	_, code, ok := strings.Cut(section, "```go\n")
	require.True(t, ok, "the section has a Go code block")
	code, _, ok = strings.Cut(code, "```")
	require.True(t, ok)
	if strings.TrimSpace(code) == "" {
		require.Fail(t, "empty snippet")
	}
	return code
}
