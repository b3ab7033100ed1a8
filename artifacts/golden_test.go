package artifacts_test

import (
	"flag"
	"os"
	"path/filepath"
	"testing"

	"github.com/google/go-cmp/cmp"
	"github.com/stretchr/testify/require"

	"github.com/dbtorch/dbtorch/internal/dbttest"
)

var update = flag.Bool("update", false, "rewrite the golden files under testdata/artifacts")

// golden compares got with testdata/artifacts/<name>, or rewrites the file
// when the test runs with -update.
func golden(t *testing.T, name string, got []byte) {
	t.Helper()
	path := filepath.Join(dbttest.RepoRoot(t), "testdata", "artifacts", name)
	if *update {
		require.NoError(t, os.MkdirAll(filepath.Dir(path), 0o755))
		require.NoError(t, os.WriteFile(path, got, 0o644))
		return
	}
	want, err := os.ReadFile(path)
	require.NoError(t, err, "golden file missing: run go test ./artifacts -update")
	if diff := cmp.Diff(string(want), string(got)); diff != "" {
		t.Errorf("%s differs from the golden file (-want +got), rerun with -update if intended:\n%s", name, diff)
	}
}
