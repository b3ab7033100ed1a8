package dbt

import (
	"os"
	"path/filepath"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

func writeExec(t *testing.T, path, text string) {
	t.Helper()
	require.NoError(t, os.MkdirAll(filepath.Dir(path), 0o755))
	require.NoError(t, os.WriteFile(path, []byte(text), 0o755))
}

func noEnv(string) (string, bool) { return "", false }

func TestFindDBTOrder(t *testing.T) {
	root := t.TempDir()
	proj := filepath.Join(root, "a", "proj")
	require.NoError(t, os.MkdirAll(proj, 0o755))
	venvDBT := filepath.Join(root, ".venv", "bin", "dbt")
	writeExec(t, venvDBT, "#!/bin/sh\n")
	explicit := filepath.Join(root, "other", "dbt")
	writeExec(t, explicit, "#!/bin/sh\n")

	got, err := FindDBT("", proj, noEnv)
	require.NoError(t, err)
	assert.Equal(t, venvDBT, got, "walks up to .venv/bin/dbt")

	env := func(k string) (string, bool) {
		if k == "DBTORCH_DBT" {
			return explicit, true
		}
		return "", false
	}
	got, err = FindDBT("", proj, env)
	require.NoError(t, err)
	assert.Equal(t, explicit, got, "$DBTORCH_DBT before .venv")

	got, err = FindDBT(venvDBT, proj, env)
	require.NoError(t, err)
	assert.Equal(t, venvDBT, got, "explicit path first")

	_, err = FindDBT(filepath.Join(root, "missing"), proj, noEnv)
	require.ErrorIs(t, err, ErrNoDBT)
}

func TestInterpreterFollowsShebangThroughSymlink(t *testing.T) {
	root := t.TempDir()
	// A pipx-style install: the tool's venv holds the script and its
	// python; ~/.local/bin/dbt is a symlink to the script, and a python
	// beside the symlink must not be taken.
	venvPy := filepath.Join(root, "pipx", "venvs", "dbt-core", "bin", "python")
	writeExec(t, venvPy, "#!/bin/sh\n")
	script := filepath.Join(root, "pipx", "venvs", "dbt-core", "bin", "dbt")
	writeExec(t, script, "#!"+venvPy+"\nimport dbt\n")
	bin := filepath.Join(root, "local", "bin")
	writeExec(t, filepath.Join(bin, "python"), "#!/bin/sh\n")
	link := filepath.Join(bin, "dbt")
	require.NoError(t, os.Symlink(script, link))

	got, err := Interpreter(link)
	require.NoError(t, err)
	assert.Equal(t, venvPy, got)
}

func TestInterpreterEnvShebangAndFallback(t *testing.T) {
	root := t.TempDir()
	pyDir := filepath.Join(root, "pybin")
	writeExec(t, filepath.Join(pyDir, "python3"), "#!/bin/sh\n")
	t.Setenv("PATH", pyDir+string(os.PathListSeparator)+os.Getenv("PATH"))
	script := filepath.Join(root, "s", "dbt")
	writeExec(t, script, "#!/usr/bin/env python3\n")
	got, err := Interpreter(script)
	require.NoError(t, err)
	assert.Equal(t, filepath.Join(pyDir, "python3"), got)

	launcher := filepath.Join(root, "l", "dbt")
	writeExec(t, launcher, "\x7fELF")
	writeExec(t, filepath.Join(root, "l", "python"), "#!/bin/sh\n")
	got, err = Interpreter(launcher)
	require.NoError(t, err)
	assert.Equal(t, filepath.Join(root, "l", "python"), got)

	bare := filepath.Join(root, "bare", "dbt")
	writeExec(t, bare, "\x7fELF")
	_, err = Interpreter(bare)
	require.ErrorIs(t, err, ErrNoDBT)
}

func TestParseVars(t *testing.T) {
	for _, tc := range []struct {
		in   string
		want Vars
		bad  bool
	}{
		{in: "", want: nil},
		{in: "{broken_model: true}", want: Vars{"broken_model": true}},
		{in: `{"limit": 3, "s": "x"}`, want: Vars{"limit": 3, "s": "x"}},
		{in: "a: 1\nb: [x, y]\n", want: Vars{"a": 1, "b": []any{"x", "y"}}},
		{in: "[1, 2]", bad: true},
		{in: "{a: [}", bad: true},
	} {
		got, err := ParseVars(tc.in)
		if tc.bad {
			assert.Error(t, err, tc.in)
			continue
		}
		require.NoError(t, err, tc.in)
		assert.Equal(t, tc.want, got, tc.in)
	}
}

func TestVarsMerge(t *testing.T) {
	base := Vars{"a": 1, "b": 2}
	got := base.Merge(Vars{"b": 3})
	assert.Equal(t, Vars{"a": 1, "b": 3}, got)
	assert.Equal(t, Vars{"a": 1, "b": 2}, base, "receiver unchanged")
	assert.Nil(t, Vars(nil).Merge(nil))
	js, err := got.JSON()
	require.NoError(t, err)
	assert.Equal(t, `{"a":1,"b":3}`, js)
}

func TestProjectGetenv(t *testing.T) {
	p := Project{Env: []string{"A=1", "B=2", "A=3"}}
	v, ok := p.Getenv("A")
	assert.True(t, ok)
	assert.Equal(t, "3", v, "last wins, as exec does")
	_, ok = p.Getenv("C")
	assert.False(t, ok)
}
