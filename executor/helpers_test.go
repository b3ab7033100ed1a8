package executor_test

import (
	"io/fs"
	"log/slog"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"

	"github.com/stretchr/testify/require"

	"github.com/dbtorch/dbtorch/executor"
	"github.com/dbtorch/dbtorch/manifest"
)

// copyProbe copies executor/testdata/probe to a temp dir.
func copyProbe(t *testing.T) string {
	t.Helper()
	dst := filepath.Join(t.TempDir(), "probe")
	err := filepath.WalkDir("testdata/probe", func(path string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		rel, _ := filepath.Rel("testdata/probe", path)
		if d.IsDir() {
			return os.MkdirAll(filepath.Join(dst, rel), 0o755)
		}
		data, err := os.ReadFile(path)
		if err != nil {
			return err
		}
		return os.WriteFile(filepath.Join(dst, rel), data, 0o644)
	})
	require.NoError(t, err)
	return dst
}

// nodes returns the manifest nodes with the given ids, in order.
func nodes(t *testing.T, m *manifest.Manifest, ids ...string) []*manifest.Node {
	t.Helper()
	out := make([]*manifest.Node, len(ids))
	for i, id := range ids {
		out[i] = m.Lookup(id)
		require.NotNil(t, out[i], "no node %s", id)
	}
	return out
}

// ofType returns the executable nodes of m of the given resource type, in
// plan order.
func ofType(t *testing.T, m *manifest.Manifest, rt ...manifest.ResourceType) []*manifest.Node {
	t.Helper()
	g, err := manifest.NewGraph(m)
	require.NoError(t, err)
	var out []*manifest.Node
	for _, id := range g.Plan(nil, manifest.Immediate).Nodes() {
		n := m.Lookup(id)
		for _, r := range rt {
			if n.ResourceType == r {
				out = append(out, n)
			}
		}
	}
	return out
}

// byID indexes results by unique_id.
func byID(rs []executor.Result) map[string]executor.Result {
	out := make(map[string]executor.Result, len(rs))
	for _, r := range rs {
		out[r.UniqueID] = r
	}
	return out
}

// processesWith returns the pids of the processes whose command line
// contains s.
func processesWith(t *testing.T, s string) []string {
	t.Helper()
	entries, err := os.ReadDir("/proc")
	require.NoError(t, err)
	var pids []string
	self := os.Getpid()
	for _, e := range entries {
		if !e.IsDir() || strings.TrimLeft(e.Name(), "0123456789") != "" || e.Name() == strconv.Itoa(self) {
			continue
		}
		cmdline, err := os.ReadFile(filepath.Join("/proc", e.Name(), "cmdline"))
		if err != nil {
			continue
		}
		if strings.Contains(string(cmdline), s) {
			// Zombies have an empty cmdline, so a match is alive.
			pids = append(pids, e.Name())
		}
	}
	return pids
}

// testLogger returns a logger that writes debug records to t.Log.
func testLogger(t *testing.T) *slog.Logger {
	return slog.New(slog.NewTextHandler(tWriter{t}, &slog.HandlerOptions{Level: slog.LevelDebug}))
}

type tWriter struct{ t *testing.T }

func (w tWriter) Write(p []byte) (int, error) {
	w.t.Log(strings.TrimSpace(string(p)))
	return len(p), nil
}
