package blobstore_test

import (
	"fmt"
	"io/fs"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/dbtorch/dbtorch/cache"
	"github.com/dbtorch/dbtorch/cache/blobstore"
	"github.com/dbtorch/dbtorch/internal/dbttest"
)

// s3Store starts SeaweedFS and opens a store under prefix through the
// CLI's URL syntax.
func s3Store(t *testing.T, s3 *dbttest.S3, prefix string) *cache.Store {
	t.Helper()
	st, closer, err := blobstore.Open(t.Context(), s3.URL(prefix), cache.StoreOptions{})
	require.NoError(t, err)
	t.Cleanup(func() { closer.Close() })
	return st
}

func setEnv(t *testing.T, env []string) {
	for _, kv := range env {
		k, v, _ := strings.Cut(kv, "=")
		t.Setenv(k, v)
	}
}

// TestS3Store: a Store on a real S3-compatible server (SeaweedFS on
// loopback): entries round-trip, a missing one is absent, concurrent
// writers of one node leave a whole entry, kept manifests are written
// conditionally, and Prune lists and deletes objects.
func TestS3Store(t *testing.T) {
	if testing.Short() {
		t.Skip("starts SeaweedFS: not in -short mode")
	}
	s3 := dbttest.StartSeaweed(t)
	setEnv(t, s3.Env())
	ctx := t.Context()
	st := s3Store(t, s3, "ci/cache")
	assert.Equal(t, "ci/cache/model.p.a.json", st.Path("model.p.a"))

	_, err := st.Get(ctx, "model.p.a")
	require.ErrorIs(t, err, errNotExist)
	key := strings.Repeat("ab", 32)
	put := func(msg string) error {
		return st.Put(ctx, &cache.Entry{Key: key, NodeID: "model.p.a", Result: cache.Result{Status: "success", Message: msg}})
	}
	var retryErr error
	for deadline := time.Now().Add(30 * time.Second); ; time.Sleep(time.Second) {
		// The bucket is created while the server starts.
		if retryErr = put("first"); retryErr == nil || time.Now().After(deadline) {
			break
		}
	}
	require.NoError(t, retryErr)
	e, err := st.Get(ctx, "model.p.a")
	require.NoError(t, err)
	assert.Equal(t, "first", e.Result.Message)

	// Concurrent writers of other keys (each replacing the entry): a
	// reader finds one writer's whole entry, or none while one replaces
	// it (a miss), never a torn one.
	putKey := func(k, msg string) error {
		return st.Put(ctx, &cache.Entry{Key: k, NodeID: "model.p.a", Result: cache.Result{Status: "success", Message: msg}})
	}
	require.NoError(t, putKey(strings.Repeat("0", 64), strings.Repeat("x", 1000)))
	var wg sync.WaitGroup
	for i := range 8 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			assert.NoError(t, putKey(fmt.Sprintf("%064x", i+1), strings.Repeat("x", 1000*(i+1))))
		}()
		wg.Add(1)
		go func() {
			defer wg.Done()
			e, err := st.Get(ctx, "model.p.a")
			if err == nil {
				assert.Equal(t, 0, len(e.Result.Message)%1000, "a torn entry")
			} else {
				assert.ErrorIs(t, err, errNotExist)
			}
		}()
	}
	wg.Wait()
	e, err = st.Get(ctx, "model.p.a")
	require.NoError(t, err, "one writer's entry is there at the end")
	assert.Equal(t, 0, len(e.Result.Message)%1000)

	// Two stores (two clients, as two machines) write one node at once:
	// each entry is one conditional write, so the first writer of a key
	// wins, the others succeed without overwriting it, and a reader sees
	// a whole entry. Without conditional writes the last writer would win.
	other := s3Store(t, s3, "ci/cache")
	key2 := strings.Repeat("cd", 32)
	putOn := func(s *cache.Store, k, msg string, created time.Time) error {
		return s.Put(ctx, &cache.Entry{Key: k, NodeID: "model.p.b", Created: created, Result: cache.Result{Status: "success", Message: msg}})
	}
	require.NoError(t, putOn(st, key, "machine A", time.Time{}))
	require.NoError(t, putOn(other, key, "machine B", time.Time{}), "an entry of the same key already there is a success")
	e, err = other.Get(ctx, "model.p.b")
	require.NoError(t, err)
	assert.Equal(t, "machine A", e.Result.Message, "the first writer's entry stays")
	// Another key replaces it (delete, then a conditional write).
	require.NoError(t, putOn(other, key2, "machine B", time.Time{}))
	e, err = st.Get(ctx, "model.p.b")
	require.NoError(t, err)
	assert.Equal(t, key2, e.Key)
	// An entry of the same key made long ago (expired, rebuilt) is
	// replaced too.
	require.NoError(t, putOn(st, key, "old", time.Now().Add(-2*time.Hour)))
	require.NoError(t, putOn(other, key, "fresh", time.Time{}))
	e, err = st.Get(ctx, "model.p.b")
	require.NoError(t, err)
	assert.Equal(t, "fresh", e.Result.Message)
	// At once, from both stores, with both keys.
	var won sync.Map
	var wg2 sync.WaitGroup
	for i := range 8 {
		wg2.Add(2)
		go func() {
			defer wg2.Done()
			s, k := st, key
			if i%2 == 1 {
				s, k = other, key2
			}
			msg := strings.Repeat("y", 1000*(i+1))
			if assert.NoError(t, putOn(s, k, msg, time.Time{})) {
				won.Store(msg, k)
			}
		}()
		go func() {
			defer wg2.Done()
			if e, err := other.Get(ctx, "model.p.b"); err == nil && e.Result.Message != "fresh" {
				assert.Equal(t, 0, len(e.Result.Message)%1000, "a torn entry")
			}
		}()
	}
	wg2.Wait()
	e, err = st.Get(ctx, "model.p.b")
	require.NoError(t, err)
	k, ok := won.Load(e.Result.Message)
	if assert.True(t, ok || e.Result.Message == "fresh", "the entry is one writer's, whole: %d bytes", len(e.Result.Message)) && ok {
		assert.Equal(t, k, e.Key)
	}

	// Kept manifests: conditional, the first one kept under a fingerprint
	// stays; another fingerprint replaces it.
	fp, fp2 := strings.Repeat("1", 64), strings.Repeat("2", 64)
	require.NoError(t, st.PutManifest(ctx, fp, []byte(`{"a":1}`)))
	require.NoError(t, st.PutManifest(ctx, fp, []byte(`{"a":2}`)), "a concurrent writer's manifest is kept, not an error")
	data, ok := st.Manifest(ctx, fp)
	require.True(t, ok)
	assert.JSONEq(t, `{"a":1}`, string(data))
	require.NoError(t, st.PutManifest(ctx, fp2, []byte(`{"b":1}`)))
	_, ok = st.Manifest(ctx, fp)
	assert.False(t, ok, "replaced")

	// Prune: the entry of a node that is gone, and an unreadable one.
	require.NoError(t, st.Put(ctx, &cache.Entry{Key: key, NodeID: "model.p.gone", Result: cache.Result{Status: "success"}}))
	n, err := st.Prune(ctx, func(id string) bool { return id != "model.p.gone" })
	require.NoError(t, err)
	assert.Equal(t, 1, n)
	_, err = st.Get(ctx, "model.p.gone")
	assert.ErrorIs(t, err, errNotExist)
	require.NoError(t, st.Delete(ctx, "model.p.a"))
	require.NoError(t, st.Delete(ctx, "model.p.a"), "deleting a missing entry")
}

var errNotExist = fs.ErrNotExist
