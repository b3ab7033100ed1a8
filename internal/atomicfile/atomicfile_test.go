package atomicfile

import (
	"bytes"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"

	"github.com/spf13/afero"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

func TestWrite(t *testing.T) {
	for name, fsys := range map[string]afero.Fs{"os": nil, "memory": afero.NewMemMapFs()} {
		t.Run(name, func(t *testing.T) {
			dir := t.TempDir()
			if fsys != nil {
				dir = "/x"
			}
			read := afero.ReadFile
			path := filepath.Join(dir, "a", "b", "out.json")
			fs := fsys
			if fs == nil {
				fs = afero.NewOsFs()
			}
			require.NoError(t, Write(fsys, path, []byte("one"), 0o644), "missing parents are created")
			got, err := read(fs, path)
			require.NoError(t, err)
			assert.Equal(t, "one", string(got))
			st, err := fs.Stat(path)
			require.NoError(t, err)
			assert.Equal(t, os.FileMode(0o644), st.Mode().Perm())

			require.NoError(t, Write(fsys, path, []byte("two"), 0o600))
			got, err = read(fs, path)
			require.NoError(t, err)
			assert.Equal(t, "two", string(got), "replaced")
			st, err = fs.Stat(path)
			require.NoError(t, err)
			assert.Equal(t, os.FileMode(0o600), st.Mode().Perm())

			entries, err := afero.ReadDir(fs, filepath.Dir(path))
			require.NoError(t, err)
			require.Len(t, entries, 1, "no temp file left")
			assert.Equal(t, "out.json", entries[0].Name())
		})
	}
}

// TestWriteFailure: a write that cannot finish leaves the old file and no
// temp file, and names the path.
func TestWriteFailure(t *testing.T) {
	dir := t.TempDir()
	target := filepath.Join(dir, "busy")
	require.NoError(t, os.MkdirAll(filepath.Join(target, "child"), 0o755))
	err := Write(nil, target, []byte("x"), 0o644)
	require.Error(t, err, "renaming a file over a non-empty directory fails")
	assert.Contains(t, err.Error(), target)
	entries, err := os.ReadDir(dir)
	require.NoError(t, err)
	require.Len(t, entries, 1, "the temp file is removed")
	assert.Equal(t, "busy", entries[0].Name())

	ro := afero.NewReadOnlyFs(afero.NewMemMapFs())
	err = Write(ro, "/d/f", []byte("x"), 0o644)
	require.Error(t, err)
	assert.Contains(t, err.Error(), "/d/f")
}

// TestWriteConcurrent: readers racing writers only ever see a complete
// version.
func TestWriteConcurrent(t *testing.T) {
	path := filepath.Join(t.TempDir(), "f")
	versions := map[string]bool{}
	for i := range 4 {
		versions[strings.Repeat(string(rune('a'+i)), 1<<16)] = true
	}
	require.NoError(t, Write(nil, path, []byte(strings.Repeat("a", 1<<16)), 0o644))
	var wg sync.WaitGroup
	for v := range versions {
		wg.Go(func() {
			for range 20 {
				assert.NoError(t, Write(nil, path, []byte(v), 0o644))
			}
		})
	}
	done := make(chan struct{})
	var rd sync.WaitGroup
	rd.Go(func() {
		for {
			select {
			case <-done:
				return
			default:
			}
			got, err := os.ReadFile(path)
			if assert.NoError(t, err) {
				assert.True(t, versions[string(got)], "partial or mixed contents (%d bytes, starts %q)", len(got), bytes.TrimSpace(got[:min(8, len(got))]))
			}
		}
	})
	wg.Wait()
	close(done)
	rd.Wait()
}
