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
