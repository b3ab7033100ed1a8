package dbt

import (
	"os"
	"path/filepath"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

func writeProject(t *testing.T, profiles string) string {
	t.Helper()
	dir := t.TempDir()
	require.NoError(t, os.WriteFile(filepath.Join(dir, "dbt_project.yml"), []byte("name: p\nprofile: \"{{ env_var('PROF', 'shop') }}\"\n"), 0o644))
	if profiles != "" {
		require.NoError(t, os.WriteFile(filepath.Join(dir, "profiles.yml"), []byte(profiles), 0o644))
	}
	return dir
}

const shopProfiles = `
shop:
  target: "{{ env_var('T', 'dev') }}"
  outputs:
    dev:
      type: duckdb
      path: "{{ env_var('DUCK') }}"
      threads: 4
    rel:
      type: duckdb
      path: local.duckdb
    pg:
      type: postgres
      host: "{{ env_var('PGH', '127.0.0.1') }}"
      port: "{{ env_var('PGP', '5432') | as_number }}"
      user: u
      password: "{{ env_var('PGPASS', '') }}"
      dbname: shop
      schema: "{{ env_var('S', 'shop') }}"
      keyfile: /secret
    odd:
      type: postgres
      host: "{{ var('h') }}"
`

func TestProfileTargets(t *testing.T) {
	dir := writeProject(t, shopProfiles)
	env := []string{"DUCK=/tmp/x.duckdb", "PGPASS=hunter2"}

	pr, err := Project{Dir: dir, Env: env}.Profile()
	require.NoError(t, err)
	assert.Equal(t, "shop", pr.Name)
	assert.Equal(t, "dev", pr.Target, "profile's target: with env_var fallback")
	assert.Equal(t, "duckdb", pr.Adapter)
	assert.Equal(t, "/tmp/x.duckdb", pr.Fields["path"])
	assert.Equal(t, filepath.Join(dir, "profiles.yml"), pr.Path)

	pr, err = Project{Dir: dir, Env: append(env, "DBT_TARGET=pg")}.Profile()
	require.NoError(t, err)
	assert.Equal(t, "pg", pr.Target, "$DBT_TARGET")
	assert.Equal(t, int64(5432), pr.Fields["port"], "as_number")
	id := pr.Identity(dir)
	assert.Equal(t, map[string]string{"type": "postgres", "host": "127.0.0.1", "port": "5432", "user": "u", "dbname": "shop", "schema": "shop"}, id)
	for _, v := range id {
		assert.NotContains(t, v, "hunter2")
		assert.NotContains(t, v, "/secret")
	}

	pr, err = Project{Dir: dir, Target: "rel", Env: append(env, "DBT_TARGET=pg")}.Profile()
	require.NoError(t, err)
	assert.Equal(t, "rel", pr.Target, "Project.Target first")
	assert.Equal(t, filepath.Join(dir, "local.duckdb"), pr.Identity(dir)["path"], "relative DuckDB path is the project's")

	pr, err = Project{Dir: dir, Target: "odd", Env: env}.Profile()
	require.NoError(t, err)
	assert.Equal(t, []string{"host"}, pr.Unresolved)

	_, err = Project{Dir: dir, Target: "nope", Env: env}.Profile()
	require.ErrorIs(t, err, ErrUnknownTarget)
	assert.Contains(t, err.Error(), `"nope"`)
	assert.Contains(t, err.Error(), "dev, odd, pg, rel")

	_, err = Project{Dir: dir, Env: append(env, "PROF=other")}.Profile()
	require.ErrorIs(t, err, ErrNoProfile)
}

func TestProfilesSearchOrder(t *testing.T) {
	dir := writeProject(t, shopProfiles)
	other := t.TempDir()
	require.NoError(t, os.WriteFile(filepath.Join(other, "profiles.yml"), []byte("shop:\n  target: x\n  outputs:\n    x: {type: postgres}\n"), 0o644))

	path, err := Project{Dir: dir, Env: []string{"HOME=" + t.TempDir()}}.ProfilesPath()
	require.NoError(t, err)
	assert.Equal(t, filepath.Join(dir, "profiles.yml"), path, "project dir")

	path, err = Project{Dir: dir, Env: []string{"DBT_PROFILES_DIR=" + other}}.ProfilesPath()
	require.NoError(t, err)
	assert.Equal(t, filepath.Join(other, "profiles.yml"), path, "$DBT_PROFILES_DIR before the project dir")

	path, err = Project{Dir: dir, ProfilesDir: dir, Env: []string{"DBT_PROFILES_DIR=" + other}}.ProfilesPath()
	require.NoError(t, err)
	assert.Equal(t, filepath.Join(dir, "profiles.yml"), path, "ProfilesDir first")

	_, err = Project{Dir: dir, ProfilesDir: t.TempDir()}.ProfilesPath()
	require.ErrorIs(t, err, ErrNoProfile, "an explicit dir without profiles.yml is not searched past")
}
