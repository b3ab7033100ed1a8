package main

import (
	"os"
	"path/filepath"
	"sort"
	"strings"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/dbtorch/dbtorch/internal/projgen"
)

func genManifestFile(t *testing.T) string {
	t.Helper()
	path := filepath.Join(t.TempDir(), "manifest.json")
	f, err := os.Create(path)
	require.NoError(t, err)
	require.NoError(t, projgen.WriteManifest(f, projgen.ManifestOptions{Models: 30, Seed: 2}))
	require.NoError(t, f.Close())
	return path
}

func TestLsContract(t *testing.T) {
	path := genManifestFile(t)
	tests := []struct {
		name string
		args []string
		code int
		// check inspects the listed ids
		check func(t *testing.T, ids []string)
	}{
		{"default", nil, 0, func(t *testing.T, ids []string) {
			assert.NotEmpty(t, ids)
		}},
		{"seeds", []string{"--select", "resource_type:seed", "--indirect-selection", "empty"}, 0, func(t *testing.T, ids []string) {
			require.NotEmpty(t, ids)
			for _, id := range ids {
				assert.True(t, strings.HasPrefix(id, "seed."), id)
			}
		}},
		{"resource type filter", []string{"--select", "resource_type:seed+", "--resource-type", "test"}, 0, func(t *testing.T, ids []string) {
			require.NotEmpty(t, ids)
			for _, id := range ids {
				assert.True(t, strings.HasPrefix(id, "test."), id)
			}
		}},
		{"exclude everything", []string{"--exclude", "fqn:* source:*"}, 0, func(t *testing.T, ids []string) {
			assert.Empty(t, ids)
		}},
		{"unknown method", []string{"--select", "colour:red"}, 2, nil},
		{"missing manifest flag", []string{"--select", "x"}, 2, nil},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			args := append([]string{"ls"}, tt.args...)
			if tt.name != "missing manifest flag" {
				args = append(args, "--manifest", path)
			}
			code, out, errs := runCLI(t, args...)
			require.Equal(t, tt.code, code, errs)
			if tt.code != 0 {
				assert.Contains(t, errs, "dbtorch ls:")
				return
			}
			var ids []string
			if out != "" {
				ids = strings.Split(strings.TrimSuffix(out, "\n"), "\n")
			}
			assert.True(t, sort.StringsAreSorted(ids), "output is sorted")
			tt.check(t, ids)
		})
	}
}
