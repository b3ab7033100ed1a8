package blobstore_test

import (
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

	// Concurrent writers: a reader always finds one writer's whole entry.
	require.NoError(t, put(strings.Repeat("x", 1000)))
	var wg sync.WaitGroup
	for i := range 8 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			assert.NoError(t, put(strings.Repeat("x", 1000*(i+1))))
		}()
		wg.Add(1)
		go func() {
			defer wg.Done()
			e, err := st.Get(ctx, "model.p.a")
			if assert.NoError(t, err) {
				assert.Equal(t, 0, len(e.Result.Message)%1000, "a torn entry")
			}
		}()
	}
	wg.Wait()

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
