package cache

import (
	"bytes"
	"context"
	"fmt"
	"log/slog"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
	"github.com/spf13/afero"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/dbtorch/dbtorch/internal/syncbuf"
)

var (
	key1 = strings.Repeat("a1", 32)
	key2 = strings.Repeat("b2", 32)
)

// logBuffer returns a logger writing to a buffer, and the buffer.
func logBuffer() (*slog.Logger, *syncbuf.Buffer) {
	var b syncbuf.Buffer
	return slog.New(slog.NewTextHandler(&b, &slog.HandlerOptions{Level: slog.LevelWarn})), &b
}

func TestStoreRoundTrip(t *testing.T) {
	ctx := context.Background()
	now := time.Date(2026, 5, 1, 12, 0, 0, 0, time.UTC)
	rows := int64(7)
	for name, fs := range map[string]afero.Fs{"mem": afero.NewMemMapFs(), "os": afero.NewOsFs()} {
		t.Run(name, func(t *testing.T) {
			dir := filepath.Join(t.TempDir(), "cache")
			s := NewStore(fs, dir, StoreOptions{Now: func() time.Time { return now }})
			_, hit := s.Lookup(ctx, "model.p.a", key1)
			assert.False(t, hit, "empty store")
			in := &Entry{Key: key1, NodeID: "model.p.a", Expires: now.Add(time.Hour),
				Result: Result{Status: "success", RowsAffected: &rows, Message: "OK", Execution: 1500 * time.Millisecond}}
			require.NoError(t, s.Put(ctx, in))
			got, hit := s.Lookup(ctx, "model.p.a", key1)
			require.True(t, hit)
			want := *in
			want.Format = EntryFormat
			want.Created = now
			if diff := cmp.Diff(&want, got); diff != "" {
				t.Errorf("entry (-want +got):\n%s", diff)
			}
			_, hit = s.Lookup(ctx, "model.p.a", key2)
			assert.False(t, hit, "other key")
			_, hit = s.Lookup(ctx, "model.p.b", key1)
			assert.False(t, hit, "other node")
			// Replace, then delete.
			require.NoError(t, s.Put(ctx, &Entry{Key: key2, NodeID: "model.p.a"}))
			_, hit = s.Lookup(ctx, "model.p.a", key1)
			assert.False(t, hit, "replaced")
			_, hit = s.Lookup(ctx, "model.p.a", key2)
			assert.True(t, hit)
			require.NoError(t, s.Delete(ctx, "model.p.a"))
			require.NoError(t, s.Delete(ctx, "model.p.a"), "deleting twice")
			_, hit = s.Lookup(ctx, "model.p.a", key2)
			assert.False(t, hit, "deleted")
			// No temp files left behind.
			names, err := afero.ReadDir(fs, dir)
			require.NoError(t, err)
			assert.Empty(t, names)
		})
	}
}

func TestStorePutRejectsBadEntries(t *testing.T) {
	s := NewStore(afero.NewMemMapFs(), "c", StoreOptions{})
	for _, e := range []*Entry{{Key: key1}, {NodeID: "x", Key: "short"}, {NodeID: "x", Key: strings.Repeat("z", 64)}} {
		assert.Error(t, s.Put(context.Background(), e))
	}
}

func TestStoreExpiry(t *testing.T) {
	ctx := context.Background()
	now := time.Date(2026, 5, 1, 12, 0, 0, 0, time.UTC)
	clock := now
	s := NewStore(afero.NewMemMapFs(), "c", StoreOptions{Now: func() time.Time { return clock }})
	require.NoError(t, s.Put(ctx, &Entry{Key: key1, NodeID: "a", Expires: now.Add(time.Minute)}))
	require.NoError(t, s.Put(ctx, &Entry{Key: key1, NodeID: "never"}))
	tests := []struct {
		at        time.Duration
		a, forver bool
	}{{0, true, true}, {59 * time.Second, true, true}, {time.Minute, false, true}, {24 * 365 * time.Hour, false, true}}
	for _, tt := range tests {
		clock = now.Add(tt.at)
		_, hit := s.Lookup(ctx, "a", key1)
		assert.Equal(t, tt.a, hit, "a at +%s", tt.at)
		_, hit = s.Lookup(ctx, "never", key1)
		assert.Equal(t, tt.forver, hit, "never at +%s", tt.at)
	}
}

// TestStoreBadEntries: every damaged entry is a miss with a warning.
func TestStoreBadEntries(t *testing.T) {
	ctx := context.Background()
	good := func(t *testing.T, s *Store) []byte {
		require.NoError(t, s.Put(ctx, &Entry{Key: key1, NodeID: "model.p.a", Result: Result{Status: "success"}}))
		data, err := afero.ReadFile(s.fs, s.Path("model.p.a"))
		require.NoError(t, err)
		return data
	}
	tests := []struct {
		name   string
		damage func(data []byte) []byte
	}{
		{"empty", func([]byte) []byte { return nil }},
		{"truncated", func(d []byte) []byte { return d[:len(d)/2] }},
		{"one byte short", func(d []byte) []byte { return bytes.TrimRight(d, "}\n") }},
		{"garbage", func([]byte) []byte { return []byte("\x00\x01not json") }},
		{"json array", func([]byte) []byte { return []byte("[1,2]") }},
		{"foreign format", func(d []byte) []byte { return bytes.Replace(d, []byte(EntryFormat), []byte("someone-else/9"), 1) }},
		{"no format", func(d []byte) []byte { return bytes.Replace(d, []byte(`"format": "`+EntryFormat+`",`), nil, 1) }},
		{"other node", func(d []byte) []byte { return bytes.Replace(d, []byte(`"model.p.a"`), []byte(`"model.p.b"`), 1) }},
		{"unknown field", func(d []byte) []byte { return bytes.Replace(d, []byte(`{`), []byte(`{"surprise": 1,`), 1) }},
		{"trailing data", func(d []byte) []byte { return append(d, []byte(`{"x":1}`)...) }},
		{"bad key", func(d []byte) []byte { return bytes.Replace(d, []byte(key1), []byte("zz"), 1) }},
		{"no created", func(d []byte) []byte {
			i := bytes.Index(d, []byte(`"created"`))
			j := bytes.IndexByte(d[i:], '\n')
			return append(append([]byte{}, d[:i]...), d[i+j+1:]...)
		}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			logger, logs := logBuffer()
			s := NewStore(afero.NewMemMapFs(), "c", StoreOptions{Logger: logger})
			data := good(t, s)
			_, hit := s.Lookup(ctx, "model.p.a", key1)
			require.True(t, hit, "undamaged entry")
			require.NoError(t, afero.WriteFile(s.fs, s.Path("model.p.a"), tt.damage(data), 0o644))
			_, hit = s.Lookup(ctx, "model.p.a", key1)
			assert.False(t, hit)
			assert.Contains(t, logs.String(), "unreadable entry")
			assert.Contains(t, logs.String(), "model.p.a")
			_, err := s.Get(ctx, "model.p.a")
			assert.ErrorIs(t, err, ErrBadEntry)
			// The next write repairs it.
			good(t, s)
			_, hit = s.Lookup(ctx, "model.p.a", key1)
			assert.True(t, hit)
		})
	}
}

func TestStoreMissingIsQuiet(t *testing.T) {
	logger, logs := logBuffer()
	s := NewStore(afero.NewMemMapFs(), "c", StoreOptions{Logger: logger})
	_, hit := s.Lookup(context.Background(), "model.p.a", key1)
	assert.False(t, hit)
	assert.Empty(t, logs.String())
}

func TestFileName(t *testing.T) {
	assert.Equal(t, "model.p.a.json", fileName("model.p.a"))
	assert.Equal(t, "model.p.dim.v2.json", fileName("model.p.dim.v2"))
	odd := []string{"model.p.a/b", "model.p.a b", "../../etc/passwd", strings.Repeat("x", 300), "model.p.a_b", "model.p.a?b"}
	seen := map[string]string{}
	for _, id := range odd {
		n := fileName(id)
		assert.NotContains(t, n, "/")
		assert.False(t, strings.HasPrefix(n, "."), n)
		assert.LessOrEqual(t, len(n), 180)
		if other, dup := seen[n]; dup {
			t.Errorf("%q and %q share file %s", id, other, n)
		}
		seen[n] = id
	}
}

// TestStoreConcurrentWriters has many goroutines, on two Stores sharing a
// directory on the real file system, write and read the same nodes at
// once: every read is a complete entry of one writer or a miss, never a
// warning, and the final entries are intact.
func TestStoreConcurrentWriters(t *testing.T) {
	ctx := context.Background()
	dir := t.TempDir()
	logger, logs := logBuffer()
	stores := []*Store{
		NewStore(afero.NewOsFs(), dir, StoreOptions{Logger: logger}),
		NewStore(afero.NewBasePathFs(afero.NewOsFs(), filepath.Dir(dir)), filepath.Base(dir), StoreOptions{Logger: logger}),
	}
	keys := []string{key1, key2}
	var wg sync.WaitGroup
	for w := range 8 {
		wg.Go(func() {
			s := stores[w%2]
			for i := range 50 {
				id := fmt.Sprintf("model.p.n%d", i%5)
				key := keys[(w+i)%2]
				msg := strings.Repeat(fmt.Sprint(w), 1000+w*100) // entries of different sizes
				if err := s.Put(ctx, &Entry{Key: key, NodeID: id, Result: Result{Status: "success", Message: msg}}); err != nil {
					t.Error(err)
					return
				}
				if e, err := s.Get(ctx, id); err != nil {
					t.Errorf("read during writes: %v", err)
				} else if e.NodeID != id {
					t.Errorf("entry for %s holds %s", id, e.NodeID)
				}
			}
		})
	}
	wg.Wait()
	assert.Empty(t, logs.String())
	entries, err := os.ReadDir(dir)
	require.NoError(t, err)
	assert.Len(t, entries, 5, "one file per node, no temp files left")
	for i := range 5 {
		e, err := stores[0].Get(ctx, fmt.Sprintf("model.p.n%d", i))
		require.NoError(t, err)
		assert.Contains(t, keys, e.Key)
	}
}

// TestStoreConcurrentMem is the same on an in-memory file system.
func TestStoreConcurrentMem(t *testing.T) {
	ctx := context.Background()
	s := NewStore(afero.NewMemMapFs(), "c", StoreOptions{})
	var wg sync.WaitGroup
	for w := range 8 {
		wg.Go(func() {
			for i := range 100 {
				id := fmt.Sprintf("n%d", i%3)
				require.NoError(t, s.Put(ctx, &Entry{Key: key1, NodeID: id, Result: Result{Message: fmt.Sprint(w, i)}}))
				_, hit := s.Lookup(ctx, id, key1)
				assert.True(t, hit)
			}
		})
	}
	wg.Wait()
}

// TestStoreUnwritable: a store that cannot be written reports the error
// on Put and stays a quiet miss on Lookup.
func TestStoreUnwritable(t *testing.T) {
	ctx := context.Background()
	base := afero.NewMemMapFs()
	ro := NewStore(afero.NewReadOnlyFs(base), "c", StoreOptions{})
	err := ro.Put(ctx, &Entry{Key: key1, NodeID: "model.p.a"})
	require.Error(t, err)
	assert.Contains(t, err.Error(), "model.p.a")
	_, hit := ro.Lookup(ctx, "model.p.a", key1)
	assert.False(t, hit)
	// Entries written through another view are served read-only.
	require.NoError(t, NewStore(base, "c", StoreOptions{}).Put(ctx, &Entry{Key: key1, NodeID: "model.p.a"}))
	_, hit = ro.Lookup(ctx, "model.p.a", key1)
	assert.True(t, hit)
	assert.Error(t, ro.Delete(ctx, "model.p.a"))
}

// TestStoreTwoProcesses runs two processes (this test binary, re-run as
// writers) that write and read the same entries of one directory at once.
func TestStoreTwoProcesses(t *testing.T) {
	dir := t.TempDir()
	var cmds []*exec.Cmd
	for w := range 2 {
		cmd := exec.Command(os.Args[0], "-test.run=^TestStoreWriterProcess$", "-test.count=1")
		cmd.Env = append(os.Environ(), "DBTORCH_CACHE_WRITER_DIR="+dir, fmt.Sprintf("DBTORCH_CACHE_WRITER_ID=%d", w))
		var out bytes.Buffer
		cmd.Stdout, cmd.Stderr = &out, &out
		require.NoError(t, cmd.Start())
		t.Cleanup(func() {
			if t.Failed() {
				t.Logf("writer %d:\n%s", w, out.String())
			}
		})
		cmds = append(cmds, cmd)
	}
	for _, cmd := range cmds {
		assert.NoError(t, cmd.Wait())
	}
	entries, err := os.ReadDir(dir)
	require.NoError(t, err)
	assert.Len(t, entries, 5, "one file per node, no temp files left")
	s := NewStore(afero.NewOsFs(), dir, StoreOptions{})
	for i := range 5 {
		_, err := s.Get(context.Background(), fmt.Sprintf("model.p.n%d", i))
		assert.NoError(t, err)
	}
}

// TestStoreWriterProcess is the body of one writer process of
// TestStoreTwoProcesses; it does nothing when run directly.
func TestStoreWriterProcess(t *testing.T) {
	dir := os.Getenv("DBTORCH_CACHE_WRITER_DIR")
	if dir == "" {
		t.Skip("run by TestStoreTwoProcesses")
	}
	id := os.Getenv("DBTORCH_CACHE_WRITER_ID")
	logger, logs := logBuffer()
	s := NewStore(afero.NewOsFs(), dir, StoreOptions{Logger: logger})
	ctx := context.Background()
	for i := range 300 {
		node := fmt.Sprintf("model.p.n%d", i%5)
		msg := strings.Repeat(id, 500+i)
		require.NoError(t, s.Put(ctx, &Entry{Key: key1, NodeID: node, Result: Result{Message: msg}}))
		e, err := s.Get(ctx, node)
		require.NoError(t, err, "read during the other process's writes")
		require.Equal(t, node, e.NodeID)
	}
	require.Empty(t, logs.String())
}

func TestStorePrune(t *testing.T) {
	ctx := context.Background()
	now := time.Date(2026, 5, 1, 12, 0, 0, 0, time.UTC)
	fsys := afero.NewMemMapFs()
	s := NewStore(fsys, "c", StoreOptions{Now: func() time.Time { return now }})
	n, err := s.Prune(ctx, nil)
	require.NoError(t, err)
	assert.Zero(t, n, "no directory yet")
	for _, id := range []string{"model.p.live", "model.p.gone", "model.p.expired", "model.p.bad"} {
		e := &Entry{Key: key1, NodeID: id}
		if id == "model.p.expired" {
			e.Expires = now.Add(-time.Second)
		}
		require.NoError(t, s.Put(ctx, e))
	}
	require.NoError(t, afero.WriteFile(fsys, s.Path("model.p.bad"), []byte("{"), 0o644))
	require.NoError(t, afero.WriteFile(fsys, "c/.x.json.tmp-old", []byte("{"), 0o644))
	require.NoError(t, fsys.Chtimes("c/.x.json.tmp-old", now.Add(-2*time.Hour), now.Add(-2*time.Hour)))
	require.NoError(t, afero.WriteFile(fsys, "c/.y.json.tmp-new", []byte("{"), 0o644))
	require.NoError(t, fsys.Chtimes("c/.y.json.tmp-new", now, now))
	require.NoError(t, s.PutManifest(ctx, key2, []byte("{}")))

	n, err = s.Prune(ctx, func(id string) bool { return id != "model.p.gone" })
	require.NoError(t, err)
	assert.Equal(t, 4, n)
	var left []string
	infos, err := afero.ReadDir(fsys, "c")
	require.NoError(t, err)
	for _, fi := range infos {
		left = append(left, fi.Name())
	}
	assert.ElementsMatch(t, []string{".y.json.tmp-new", "manifests", "model.p.live.json"}, left)
	_, ok := s.Manifest(ctx, key2)
	assert.True(t, ok, "the kept manifest survives")
}

// memObjects is an in-memory Objects that honours conditional writes and
// counts the unconditional ones.
type memObjects struct {
	mu            sync.Mutex
	objs          map[string][]byte
	unconditional int
}

func (m *memObjects) ReadObject(_ context.Context, key string) ([]byte, error) {
	m.mu.Lock()
	defer m.mu.Unlock()
	b, ok := m.objs[key]
	if !ok {
		return nil, fmt.Errorf("%s: %w", key, os.ErrNotExist)
	}
	return b, nil
}

func (m *memObjects) WriteObject(_ context.Context, key string, data []byte, ifNotExist bool) error {
	m.mu.Lock()
	defer m.mu.Unlock()
	if !ifNotExist {
		m.unconditional++
	} else if _, ok := m.objs[key]; ok {
		return fmt.Errorf("%s: %w", key, os.ErrExist)
	}
	m.objs[key] = bytes.Clone(data)
	return nil
}

func (m *memObjects) DeleteObject(_ context.Context, key string) error {
	m.mu.Lock()
	defer m.mu.Unlock()
	delete(m.objs, key)
	return nil
}

func (m *memObjects) ListObjects(_ context.Context, prefix string) ([]ObjectInfo, error) {
	m.mu.Lock()
	defer m.mu.Unlock()
	var out []ObjectInfo
	for k := range m.objs {
		if rest, ok := strings.CutPrefix(k, prefix+"/"); ok && !strings.Contains(rest, "/") {
			out = append(out, ObjectInfo{Name: rest})
		}
	}
	return out, nil
}

// TestObjectStoreConditionalPut: on an object store every entry is one
// conditional write. An entry of the same key made at about the same time
// (a concurrent writer) stays and the second Put succeeds; another key, or
// the same key made more than SameEntryWindow earlier, replaces it.
func TestObjectStoreConditionalPut(t *testing.T) {
	ctx := context.Background()
	now := time.Date(2026, 5, 1, 12, 0, 0, 0, time.UTC)
	clock := func() time.Time { return now }
	objs := &memObjects{objs: map[string][]byte{}}
	a := NewObjectStore(objs, "p", StoreOptions{Now: clock})
	b := NewObjectStore(objs, "p", StoreOptions{Now: clock})
	put := func(s *Store, key, msg string) {
		t.Helper()
		require.NoError(t, s.Put(ctx, &Entry{Key: key, NodeID: "model.p.a", Result: Result{Status: "success", Message: msg}}))
	}
	message := func() string {
		t.Helper()
		e, err := b.Get(ctx, "model.p.a")
		require.NoError(t, err)
		return e.Key[:2] + " " + e.Result.Message
	}
	put(a, key1, "A")
	put(b, key1, "B")
	assert.Equal(t, "a1 A", message(), "the first writer's entry of a key stays")
	put(b, key2, "B")
	assert.Equal(t, "b2 B", message(), "another key replaces it")
	now = now.Add(SameEntryWindow + time.Second)
	put(a, key2, "A later")
	assert.Equal(t, "b2 A later", message(), "an older entry of the same key is replaced")
	put(a, strings.Repeat("c3", 32), "failed")
	require.NoError(t, a.Put(ctx, &Entry{Key: strings.Repeat("c3", 32), NodeID: "model.p.a", Result: Result{Status: "error"}}))
	assert.Equal(t, "c3 ", message(), "same key, another status: replaced")
	assert.Zero(t, objs.unconditional, "every entry write is conditional")
}
