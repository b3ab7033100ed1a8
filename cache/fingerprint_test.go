package cache

import (
	"context"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/spf13/afero"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/dbtorch/dbtorch/dbt"
)

func writeFiles(t *testing.T, root string, files map[string]string) {
	t.Helper()
	for name, body := range files {
		p := filepath.Join(root, name)
		require.NoError(t, os.MkdirAll(filepath.Dir(p), 0o755))
		require.NoError(t, os.WriteFile(p, []byte(body), 0o644))
	}
}

func TestFingerprint(t *testing.T) {
	base := map[string]string{
		"dbt_project.yml":     "name: p\n",
		"profiles.yml":        "p:\n  outputs:\n    dev:\n      path: \"{{ env_var('DB_PATH') }}\"\n",
		"models/a.sql":        "select 1",
		"models/schema.yml":   "models: []\n",
		"seeds/s.csv":         "a\n1\n",
		"packages/pkg/m.sql":  "select {{ env_var('PKG_X', '1') }}",
		"target/manifest.yml": "ignored",
		"logs/dbt.log.md":     "ignored",
		".git/HEAD.yml":       "ignored",
		"db.duckdb":           "ignored binary",
		"notes.json":          "ignored",
	}
	env := map[string]string{"DB_PATH": "/tmp/x.duckdb", "PKG_X": "1", "UNRELATED": "a"}
	type variant struct {
		name    string
		change  func(t *testing.T, dir string, o *FingerprintOptions, env map[string]string)
		differs bool
	}
	variants := []variant{
		{"unchanged", func(*testing.T, string, *FingerprintOptions, map[string]string) {}, false},
		{"model SQL", func(t *testing.T, d string, _ *FingerprintOptions, _ map[string]string) {
			writeFiles(t, d, map[string]string{"models/a.sql": "select 2"})
		}, true},
		{"new file", func(t *testing.T, d string, _ *FingerprintOptions, _ map[string]string) {
			writeFiles(t, d, map[string]string{"models/b.sql": "select 1"})
		}, true},
		{"renamed file", func(t *testing.T, d string, _ *FingerprintOptions, _ map[string]string) {
			require.NoError(t, os.Rename(filepath.Join(d, "models/a.sql"), filepath.Join(d, "models/c.sql")))
		}, true},
		{"seed CSV", func(t *testing.T, d string, _ *FingerprintOptions, _ map[string]string) {
			writeFiles(t, d, map[string]string{"seeds/s.csv": "a\n2\n"})
		}, true},
		{"package file", func(t *testing.T, d string, _ *FingerprintOptions, _ map[string]string) {
			writeFiles(t, d, map[string]string{"packages/pkg/m.sql": "select 3"})
		}, true},
		{"profiles", func(t *testing.T, d string, _ *FingerprintOptions, _ map[string]string) {
			writeFiles(t, d, map[string]string{"profiles.yml": "p: {}\n"})
		}, true},
		{"env var read by profiles", func(_ *testing.T, _ string, _ *FingerprintOptions, e map[string]string) { e["DB_PATH"] = "/tmp/y" }, true},
		{"env var read by a package", func(_ *testing.T, _ string, _ *FingerprintOptions, e map[string]string) { delete(e, "PKG_X") }, true},
		{"vars", func(_ *testing.T, _ string, o *FingerprintOptions, _ map[string]string) {
			o.Vars = map[string]any{"x": 1}
		}, true},
		{"target", func(_ *testing.T, _ string, o *FingerprintOptions, _ map[string]string) { o.Target = "prod" }, true},
		{"extra", func(_ *testing.T, _ string, o *FingerprintOptions, _ map[string]string) {
			o.Extra = []string{"dbt 1.12"}
		}, true},
		{"target dir, logs, hidden dirs, other files", func(t *testing.T, d string, _ *FingerprintOptions, _ map[string]string) {
			writeFiles(t, d, map[string]string{"target/manifest.yml": "x", "logs/dbt.log.md": "x", ".git/HEAD.yml": "x",
				"db.duckdb": "changed", "notes.json": "x", "target/new.sql": "x"})
		}, false},
		{"unrelated env var", func(_ *testing.T, _ string, _ *FingerprintOptions, e map[string]string) { e["UNRELATED"] = "b" }, false},
	}
	fp := func(t *testing.T, dir string, o FingerprintOptions, env map[string]string) string {
		t.Helper()
		o.Dir = dir
		o.Env = envList(env)
		s, err := Fingerprint(o)
		require.NoError(t, err)
		require.Len(t, s, 64)
		return s
	}
	for _, v := range variants {
		t.Run(v.name, func(t *testing.T) {
			dir := t.TempDir()
			writeFiles(t, dir, base)
			e := map[string]string{}
			for k, val := range env {
				e[k] = val
			}
			before := fp(t, dir, FingerprintOptions{}, e)
			var o FingerprintOptions
			v.change(t, dir, &o, e)
			after := fp(t, dir, o, e)
			assert.Equal(t, v.differs, before != after)
		})
	}
}

func TestFingerprintFollowsLinks(t *testing.T) {
	dir := t.TempDir()
	pkg := t.TempDir()
	writeFiles(t, dir, map[string]string{"dbt_project.yml": "name: p\n"})
	writeFiles(t, pkg, map[string]string{"models/m.sql": "select 1"})
	require.NoError(t, os.MkdirAll(filepath.Join(dir, "dbt_packages"), 0o755))
	require.NoError(t, os.Symlink(pkg, filepath.Join(dir, "dbt_packages", "pkg")))
	require.NoError(t, os.Symlink(dir, filepath.Join(dir, "dbt_packages", "loop"))) // a cycle
	require.NoError(t, os.Symlink(filepath.Join(dir, "nowhere"), filepath.Join(dir, "dangling.sql")))
	_, err := Fingerprint(FingerprintOptions{Project: dbt.Project{Dir: dir}})
	require.Error(t, err, "a link cycle is reported, not walked forever")
	require.NoError(t, os.Remove(filepath.Join(dir, "dbt_packages", "loop")))
	a, err := Fingerprint(FingerprintOptions{Project: dbt.Project{Dir: dir}})
	require.NoError(t, err)
	writeFiles(t, pkg, map[string]string{"models/m.sql": "select 2"})
	b, err := Fingerprint(FingerprintOptions{Project: dbt.Project{Dir: dir}})
	require.NoError(t, err)
	assert.NotEqual(t, a, b, "a linked package's file changed")
}

func TestStoreManifest(t *testing.T) {
	ctx := context.Background()
	s := NewStore(afero.NewMemMapFs(), "c", StoreOptions{})
	fp1, fp2 := strings.Repeat("1", 64), strings.Repeat("2", 64)
	_, ok := s.Manifest(ctx, fp1)
	assert.False(t, ok)
	require.NoError(t, s.PutManifest(ctx, fp1, []byte(`{"a":1}`)))
	data, ok := s.Manifest(ctx, fp1)
	require.True(t, ok)
	assert.Equal(t, `{"a":1}`, string(data))
	require.NoError(t, s.PutManifest(ctx, fp2, []byte(`{"a":2}`)))
	_, ok = s.Manifest(ctx, fp1)
	assert.False(t, ok, "only the latest manifest is kept")
	_, ok = s.Manifest(ctx, fp2)
	assert.True(t, ok)
	assert.Error(t, s.PutManifest(ctx, "../../x", nil))
	_, ok = s.Manifest(ctx, "../../x")
	assert.False(t, ok)
}
