package dbttest

import (
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

func TestRepoRoot(t *testing.T) {
	root := RepoRoot(t)
	mod, err := os.ReadFile(filepath.Join(root, "go.mod"))
	require.NoError(t, err)
	assert.Contains(t, string(mod), "module github.com/dbtorch/dbtorch\n")
}

func TestCopyTreeLeavesBuildOutputBehind(t *testing.T) {
	src := t.TempDir()
	for name, body := range map[string]string{
		"dbt_project.yml":                "name: p\n",
		"package-lock.yml":               "lock\n",
		"models/a.sql":                   "select 1\n",
		"packages/local/target/x.sql":    "select 2\n",
		"target/manifest.json":           "{}",
		"logs/dbt.log":                   "log",
		"dbt_packages/pkg/x.sql":         "select 3\n",
		"p.duckdb":                       "db",
		"seeds/s.csv":                    "a\n1\n",
		"packages/local/dbt_project.yml": "name: local\n",
	} {
		path := filepath.Join(src, name)
		require.NoError(t, os.MkdirAll(filepath.Dir(path), 0o755))
		require.NoError(t, os.WriteFile(path, []byte(body), 0o644))
	}
	dst := filepath.Join(t.TempDir(), "copy")
	require.NoError(t, copyTree(src, dst))

	var got []string
	require.NoError(t, filepath.Walk(dst, func(path string, info os.FileInfo, err error) error {
		if err == nil && !info.IsDir() {
			rel, _ := filepath.Rel(dst, path)
			got = append(got, filepath.ToSlash(rel))
		}
		return err
	}))
	slices.Sort(got)
	// Directories named target, logs or dbt_packages go at any depth (a
	// local package may have been built on its own).
	assert.Equal(t, []string{
		"dbt_project.yml",
		"models/a.sql",
		"packages/local/dbt_project.yml",
		"seeds/s.csv",
	}, got)
	body, err := os.ReadFile(filepath.Join(dst, "models", "a.sql"))
	require.NoError(t, err)
	assert.Equal(t, "select 1\n", string(body))
}

func TestCopyProjectShop(t *testing.T) {
	dir := CopyProject(t, "shop")
	assert.Equal(t, "shop", filepath.Base(dir))
	assert.NotEqual(t, filepath.Join(RepoRoot(t), "testdata", "shop"), dir)
	for _, name := range []string{"dbt_project.yml", "profiles.yml", "packages.yml", "packages/shop_pkg/dbt_project.yml"} {
		assert.FileExists(t, filepath.Join(dir, name))
	}
}

// TestCopyProjectOverlay: the overlays are copied over the project in
// order, an overlay without the project's directory is skipped, and the
// repository's own compat overlays (make compat) apply.
func TestCopyProjectOverlay(t *testing.T) {
	first, second, other := t.TempDir(), t.TempDir(), t.TempDir()
	write := func(path, body string) {
		t.Helper()
		require.NoError(t, os.MkdirAll(filepath.Dir(path), 0o755))
		require.NoError(t, os.WriteFile(path, []byte(body), 0o644))
	}
	write(filepath.Join(first, "shop", "models", "added.sql"), "select 1\n")
	write(filepath.Join(first, "shop", "profiles.yml"), "first\n")
	write(filepath.Join(second, "shop", "profiles.yml"), "second\n")
	write(filepath.Join(other, "jaffle", "profiles.yml"), "other project\n")
	t.Setenv(OverlayEnv, strings.Join([]string{first, other, second}, string(filepath.ListSeparator)))

	dir := CopyProject(t, "shop")
	body, err := os.ReadFile(filepath.Join(dir, "models", "added.sql"))
	require.NoError(t, err)
	assert.Equal(t, "select 1\n", string(body), "a file the overlay adds")
	body, err = os.ReadFile(filepath.Join(dir, "profiles.yml"))
	require.NoError(t, err)
	assert.Equal(t, "second\n", string(body), "the last overlay wins")
	assert.FileExists(t, filepath.Join(dir, "dbt_project.yml"), "files no overlay names are the project's")

	t.Setenv(OverlayEnv, filepath.Join("compat", "testdata", "1.9")+string(filepath.ListSeparator)+filepath.Join("compat", "testdata", "1.8"))
	dir = CopyProject(t, "shop")
	assert.FileExists(t, filepath.Join(dir, "snapshots", "orders_snapshot.sql"), "relative to the repository root")
	body, err = os.ReadFile(filepath.Join(dir, "models", "staging", "_staging.yml"))
	require.NoError(t, err)
	assert.NotRegexp(t, `(?m)^\s+arguments:`, string(body), "generic test arguments at the top level")
}

func TestEnv(t *testing.T) {
	t.Setenv("DBTORCH_FLAKY_COUNTER", "/somewhere")
	dir := t.TempDir()
	env := Env(t, dir)
	vars := map[string]string{}
	for _, kv := range env {
		k, v, _ := strings.Cut(kv, "=")
		vars[k] = v // last one wins, as in exec.Cmd
	}
	assert.Equal(t, dir, vars["DBT_PROFILES_DIR"])
	assert.Equal(t, "false", vars["DBT_SEND_ANONYMOUS_USAGE_STATS"])
	assert.Equal(t, "1", vars["DO_NOT_TRACK"])
	assert.NotContains(t, vars, "DBTORCH_FLAKY_COUNTER")
	db := vars["DBTORCH_DUCKDB_PATH"]
	assert.Equal(t, filepath.Base(dir)+".duckdb", filepath.Base(db))
	assert.NoFileExists(t, db)
	assert.False(t, strings.HasPrefix(db, dir+string(filepath.Separator)), "the database must not live in the project")

	again := Env(t, dir)
	assert.NotContains(t, again, "DBTORCH_DUCKDB_PATH="+db, "each call gets its own database")
}

func TestDBT(t *testing.T) {
	path := DBT(t)
	info, err := os.Stat(path)
	require.NoError(t, err)
	assert.NotZero(t, info.Mode()&0o111, "dbt must be executable")
}

// TestProject: Project describes a copy of the project with the pinned
// dbt and Env's environment followed by the extra entries, and Setenv
// makes that environment the process's.
func TestProject(t *testing.T) {
	p := Project(t, "shop", "DBTORCH_FLAKY_COUNTER=/counter")
	assert.Equal(t, DBT(t), p.DBT)
	assert.Equal(t, "shop", filepath.Base(p.Dir))
	assert.FileExists(t, filepath.Join(p.Dir, "dbt_project.yml"))
	assert.Contains(t, p.Env, "DBT_PROFILES_DIR="+p.Dir)
	assert.Equal(t, "DBTORCH_FLAKY_COUNTER=/counter", p.Env[len(p.Env)-1])
	db := DuckDBPath(p.Env)
	require.NotEmpty(t, db)

	Setenv(t, p)
	assert.Equal(t, p.DBT, os.Getenv("DBTORCH_DBT"))
	assert.Equal(t, db, os.Getenv("DBTORCH_DUCKDB_PATH"))
	assert.Equal(t, "/counter", os.Getenv("DBTORCH_FLAKY_COUNTER"))
}
