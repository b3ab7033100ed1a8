package cache_test

import (
	"context"
	"errors"
	"os"
	"path/filepath"
	"strconv"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/dbtorch/dbtorch/cache"
	"github.com/dbtorch/dbtorch/dbt"
)

// fakeDBT writes an executable script standing in for dbt: it writes
// sources (when not empty) as sources.json into the --target-path it is
// given, prints a line, and exits with code.
func fakeDBT(t *testing.T, sources string, code int) string {
	t.Helper()
	dir := t.TempDir()
	if sources != "" {
		require.NoError(t, os.WriteFile(filepath.Join(dir, "sources.json"), []byte(sources), 0o644))
	}
	script := `#!/bin/sh
while [ $# -gt 0 ]; do
  if [ "$1" = "--target-path" ]; then target="$2"; fi
  shift
done
if [ -f "` + dir + `/sources.json" ]; then cp "` + dir + `/sources.json" "$target/sources.json"; fi
echo "fake dbt: something went wrong"
exit ` + strconv.Itoa(code) + `
`
	path := filepath.Join(dir, "dbt")
	require.NoError(t, os.WriteFile(path, []byte(script), 0o755))
	return path
}

func TestRunFreshnessFailures(t *testing.T) {
	ctx := context.Background()
	valid := `{"metadata": {"dbt_schema_version": "https://schemas.getdbt.com/dbt/sources/v3.json"},
		"results": [{"unique_id": "source.p.s.t", "status": "error", "max_loaded_at": "2024-01-01T00:00:00Z",
		"snapshotted_at": "2024-01-03T00:00:00Z", "criteria": {"error_after": {"count": 1, "period": "day"}}}]}`
	// Non-zero exit with a file: the snapshot.
	f, err := cache.RunFreshness(ctx, cache.FreshnessOptions{Project: dbt.Project{DBT: fakeDBT(t, valid, 1), Dir: t.TempDir()}})
	require.NoError(t, err)
	assert.Equal(t, []string{"source.p.s.t"}, f.StaleSources())

	tests := []struct {
		name    string
		sources string
		code    int
		exit    int
	}{
		{"no file", "", 2, 2},
		{"no file, exit 0", "", 0, 0},
		{"corrupt file", `{"results": [`, 1, 1},
	}
	for _, tt := range tests {
		_, err := cache.RunFreshness(ctx, cache.FreshnessOptions{Project: dbt.Project{DBT: fakeDBT(t, tt.sources, tt.code), Dir: t.TempDir()}})
		var fe *cache.FreshnessError
		require.True(t, errors.As(err, &fe), "%s: %v", tt.name, err)
		assert.Equal(t, tt.exit, fe.ExitCode, tt.name)
		assert.Contains(t, fe.Error(), "something went wrong", tt.name)
	}
	// dbt missing altogether.
	_, err = cache.RunFreshness(ctx, cache.FreshnessOptions{Project: dbt.Project{DBT: filepath.Join(t.TempDir(), "nope")}})
	var fe *cache.FreshnessError
	require.True(t, errors.As(err, &fe))
	assert.Equal(t, -1, fe.ExitCode)
}
