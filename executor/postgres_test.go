package executor_test

import (
	"bytes"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/dbtorch/dbtorch/dbt"
	"github.com/dbtorch/dbtorch/executor"
	"github.com/dbtorch/dbtorch/internal/dbttest"
	"github.com/dbtorch/dbtorch/manifest"
)

// TestPostgresConcurrent runs concurrent invocations against one
// PostgreSQL database: three seeds at once on the Core executor, then the
// staging models at once on two warm workers. Each invocation must report
// exactly its own node, with its own row count, and the tables must hold
// what the seeds hold.
func TestPostgresConcurrent(t *testing.T) {
	pg := dbttest.StartPostgres(t)
	dir := dbttest.CopyProject(t, "shop")
	env := append(dbttest.Env(t, dir), pg.Env()...)
	c, err := executor.NewCore(executor.CoreConfig{
		Options: executor.Options{Project: dbt.Project{DBT: dbttest.DBT(t), Dir: dir, Env: env, Target: "pg"},
			WorkDir: t.TempDir(),
			Logger:  testLogger(t),
		},
	})
	require.NoError(t, err)
	defer c.Close()
	m, err := c.Manifest(t.Context())
	require.NoError(t, err)
	assert.Equal(t, "postgres", m.Metadata.AdapterType)

	concurrently := func(ex executor.Executor, cmd executor.Command, ns []*manifest.Node) []*executor.Response {
		t.Helper()
		resps := make([]*executor.Response, len(ns))
		var wg sync.WaitGroup
		for i, n := range ns {
			wg.Go(func() {
				resp, err := ex.Execute(t.Context(), executor.Request{Command: cmd, Nodes: []*manifest.Node{n}, Attempt: 1})
				assert.NoError(t, err)
				resps[i] = resp
			})
		}
		wg.Wait()
		invocations := map[string]bool{}
		for i, resp := range resps {
			require.NotNil(t, resp)
			require.Len(t, resp.Results, 1)
			r := resp.Results[0]
			assert.Equal(t, ns[i].UniqueID, r.UniqueID)
			assert.Equal(t, executor.Success, r.Status, "%s: %s", r.UniqueID, r.Message)
			assert.False(t, invocations[resp.Invocation.InvocationID], "invocations share run_results")
			invocations[resp.Invocation.InvocationID] = true
		}
		return resps
	}

	seeds := nodes(t, m, "seed.shop.customers", "seed.shop.orders", "seed.shop.payments")
	for i, resp := range concurrently(c, executor.Seed, seeds) {
		data, err := os.ReadFile(filepath.Join(dir, seeds[i].OriginalFilePath))
		require.NoError(t, err)
		want := int64(bytes.Count(bytes.TrimSpace(data), []byte("\n")))
		r := resp.Results[0]
		if assert.NotNil(t, r.RowsAffected, r.UniqueID) {
			assert.Equal(t, want, *r.RowsAffected, r.UniqueID)
		}
		got := strings.TrimSpace(pg.Query(t, "select count(*) from "+seeds[i].RelationName))
		assert.Equal(t, strconv.FormatInt(want, 10), got, seeds[i].RelationName)
	}

	w, err := executor.NewWarm(executor.WarmConfig{
		Options: executor.Options{Project: dbt.Project{DBT: dbttest.DBT(t), Dir: dir, Env: env, Target: "pg"},
			WorkDir: t.TempDir(),
			Logger:  testLogger(t),
		},
		Workers: 2,
	})
	require.NoError(t, err)
	defer w.Close()
	staging := nodes(t, m, "model.shop.stg_customers", "model.shop.stg_orders", "model.shop.stg_payments")
	for _, resp := range concurrently(w, executor.Run, staging) {
		r := resp.Results[0]
		assert.Contains(t, r.RelationName, strings.TrimPrefix(r.UniqueID, "model.shop."))
		assert.Equal(t, "CREATE VIEW", r.AdapterResponse["_message"], r.UniqueID)
	}
	got := pg.Query(t, "select count(*) from information_schema.views where table_schema = 'shop'")
	assert.Equal(t, "3", strings.TrimSpace(got))
}
