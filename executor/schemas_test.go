package executor_test

import (
	"strings"
	"sync"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/dbtorch/dbtorch/dbt"
	"github.com/dbtorch/dbtorch/executor"
	"github.com/dbtorch/dbtorch/internal/dbttest"
)

// TestAlreadyExists: the errors of a concurrent "create schema if not
// exists" are recognised; others are not.
func TestAlreadyExists(t *testing.T) {
	for _, msg := range []string{
		`Database Error
  duplicate key value violates unique constraint "pg_namespace_nspname_index"
  DETAIL:  Key (nspname)=(x) already exists.`,
		`Catalog Error: Schema with name "x" already exists!`,
	} {
		assert.True(t, executor.AlreadyExists(msg), msg)
	}
	for _, msg := range []string{
		`Database Error
  permission denied for database shop`,
		`duplicate key value violates unique constraint "orders_pkey"`,
	} {
		assert.False(t, executor.AlreadyExists(msg), msg)
	}
}

// TestPostgresCreateSchemas: Core and Warm (two workers) create the same
// new schemas at once, six calls together, on PostgreSQL: every call
// succeeds (a concurrent creator's duplicate key is no failure), the
// schemas exist, and a schema that cannot be created is an error naming
// it. Two workers are no serial creator (SerialSchemas).
func TestPostgresCreateSchemas(t *testing.T) {
	pg := dbttest.StartPostgres(t)
	dir := dbttest.CopyProject(t, "shop")
	env := append(dbttest.Env(t, dir), pg.Env()...)
	opts := executor.Options{Project: dbt.Project{DBT: dbttest.DBT(t), Dir: dir, Env: env, Target: "pg"}, WorkDir: t.TempDir(), Logger: testLogger(t)}
	c, err := executor.NewCore(executor.CoreConfig{Options: opts})
	require.NoError(t, err)
	defer c.Close()
	w, err := executor.NewWarm(executor.WarmConfig{Options: opts, Workers: 2})
	require.NoError(t, err)
	defer w.Close()
	m, err := c.Manifest(t.Context())
	require.NoError(t, err)
	require.NoError(t, w.Prepare(t.Context()))
	assert.False(t, w.SerialSchemas(), "two workers create schemas at once")
	db := m.Lookup("seed.shop.customers").Database

	schemas := []executor.Schema{{Database: db, Schema: "created_a"}, {Database: db, Schema: "created_B"}}
	var wg sync.WaitGroup
	errs := make([]error, 6)
	for i := range errs {
		var sc executor.SchemaCreator = c
		if i%2 == 1 {
			sc = w
		}
		wg.Go(func() { errs[i] = sc.CreateSchemas(t.Context(), schemas) })
	}
	wg.Wait()
	for i, err := range errs {
		assert.NoError(t, err, "call %d", i)
	}
	got := pg.Query(t, "select count(*) from information_schema.schemata where schema_name in ('created_a', 'created_B')")
	assert.Equal(t, "2", strings.TrimSpace(got), "dbt quotes schema names on PostgreSQL: their case is kept")

	// pg_catalog's prefix is reserved: PostgreSQL refuses to create it.
	bad := []executor.Schema{{Database: db, Schema: "pg_nope"}}
	for _, sc := range []executor.SchemaCreator{c, w} {
		err = sc.CreateSchemas(t.Context(), bad)
		require.Error(t, err)
		assert.Contains(t, err.Error(), db+".pg_nope")
		assert.Contains(t, err.Error(), "unacceptable schema name")
	}
}
