package manifest_test

import (
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/dbtorch/dbtorch/dbt"
	"github.com/dbtorch/dbtorch/executor"
	"github.com/dbtorch/dbtorch/internal/dbttest"
	"github.com/dbtorch/dbtorch/manifest"
	"github.com/dbtorch/dbtorch/orchestrator"
	"github.com/dbtorch/dbtorch/selector"
)

// withDuckDB returns env with DBTORCH_DUCKDB_PATH set to path.
func withDuckDB(env []string, path string) []string {
	out := make([]string, 0, len(env)+1)
	for _, kv := range env {
		if !strings.HasPrefix(kv, "DBTORCH_DUCKDB_PATH=") {
			out = append(out, kv)
		}
	}
	return append(out, "DBTORCH_DUCKDB_PATH="+path)
}

// dbtorchBuild builds the project in dir into the DuckDB file db with a
// warm executor and the orchestrator in the given mode, one node at a
// time (so that per-node runs the ready nodes in priority order,
// deterministically), and requires every node to succeed. It closes the
// executor (releasing the DuckDB file) before returning the run.
func dbtorchBuild(t *testing.T, dir string, env []string, db string, mode orchestrator.Mode, opts ...orchestrator.BuildOptions) *orchestrator.Run {
	t.Helper()
	ex, err := executor.NewWarm(executor.WarmConfig{
		Options: executor.Options{Project: dbt.Project{DBT: dbttest.DBT(t), Dir: dir, ProfilesDir: dir, Env: withDuckDB(env, db)},
			WorkDir: t.TempDir()},
	})
	require.NoError(t, err)
	defer func() { require.NoError(t, ex.Close()) }()
	m, err := ex.Manifest(t.Context())
	require.NoError(t, err)
	o, err := orchestrator.New(orchestrator.Config{Executor: ex, Manifest: m, Mode: mode, Concurrency: 1})
	require.NoError(t, err)
	var bo orchestrator.BuildOptions
	if len(opts) > 0 {
		bo = opts[0]
	}
	run, err := o.RunBuild(t.Context(), bo)
	require.NoError(t, err, "%s build", mode)
	for _, r := range run.Results {
		require.Equal(t, orchestrator.Success, r.Status, "%s build: %s: %s", mode, r.UniqueID, r.Message)
	}
	return run
}

// duckdbRows returns the rows of each table in the DuckDB file db, sorted,
// as JSON text.
func duckdbRows(t *testing.T, db string, tables ...string) map[string]string {
	t.Helper()
	return dbttest.DuckDBRows(t, db, tables...)
}

func copyFile(t *testing.T, src, dst string) {
	t.Helper()
	data, err := os.ReadFile(src)
	require.NoError(t, err)
	require.NoError(t, os.WriteFile(dst, data, 0o644))
}

// TestInferredEdgesRealDBT builds testdata/seedsources, whose models read
// its seeds through sources only, with real dbt. dbtorch per node builds
// it from an empty database (dbt build cannot: it starts the staging views
// before the seeds they read). After a seed file changes, per-node,
// per-wave and `dbt build` produce the same tables, holding the new rows:
// without the inferred edges, per-node runs the readers first (their
// critical path is longer) and the marts keep the old rows.
func TestInferredEdgesRealDBT(t *testing.T) {
	p := dbttest.Project(t, "seedsources")
	dir, env := p.Dir, p.Env
	tmp := t.TempDir()
	db := func(name string) string { return filepath.Join(tmp, name+".duckdb") }

	first := dbtorchBuild(t, dir, env, db("first"), orchestrator.PerNode)
	warnings := strings.Join(first.Plan.Warnings(), "\n")
	for _, seed := range []string{"raw_customers", "raw_orders", "raw_payments"} {
		assert.Contains(t, warnings, "because it reads source.seedsources.jaffle."+strings.TrimPrefix(seed, "raw_")+
			", the relation \"first\".\"main\".\""+seed+"\" that seed.seedsources."+seed+" writes")
	}
	assert.Len(t, first.Plan.InferredEdges(), 4, "three staging models and the source test")
	assert.Subset(t, first.Warnings, first.Plan.Warnings(), "Run.Warnings names the inferred edges")
	before := duckdbRows(t, db("first"), "orders", "customers")

	// The loader delivers more orders: two new ones, one status changed.
	orders := filepath.Join(dir, "seeds", "raw_orders.csv")
	require.NoError(t, os.WriteFile(orders, []byte(`id,customer_id,order_date,status
1,1,2024-01-01,completed
2,1,2024-01-02,returned
3,2,2024-01-03,returned
4,3,2024-01-04,completed
5,2,2024-01-05,completed
6,3,2024-01-06,completed
`), 0o644))
	for _, name := range []string{"per-node", "per-wave", "dbt-build"} {
		copyFile(t, db("first"), db(name))
	}
	dbtorchBuild(t, dir, env, db("per-node"), orchestrator.PerNode)
	dbtorchBuild(t, dir, env, db("per-wave"), orchestrator.PerWave)
	// One thread: dbt's own order (generation, then id) puts every seed
	// before the marts; with more, whether they finish first is a race.
	out, err := dbttest.Run(t, dir, withDuckDB(env, db("dbt-build")), "build", "--threads", "1")
	require.NoError(t, err, out)

	want := duckdbRows(t, db("dbt-build"), "orders", "customers")
	assert.NotEqual(t, before, want, "the seed change must change the marts")
	assert.Contains(t, want["orders"], `["6", "3", "2024-01-06", "completed", "0.0"]`, "dbt build reads the new orders")
	assert.Equal(t, want, duckdbRows(t, db("per-node"), "orders", "customers"), "per-node (-dbt build +per-node)")
	assert.Equal(t, want, duckdbRows(t, db("per-wave"), "orders", "customers"), "per-wave (-dbt build +per-wave)")
}

// TestShopWithoutDependsOnRealDBT: in a copy of testdata/shop whose
// stg_customer_notes has lost its `-- depends_on: ref('raw_customer_notes')`
// workaround, dbtorch builds everything from an empty database, and after
// the seed's file changes a build of the seed and everything reading it
// gives the same dim_customers in per-node, per-wave and dbt build.
func TestShopWithoutDependsOnRealDBT(t *testing.T) {
	p := dbttest.Project(t, "shop")
	dir, env := p.Dir, p.Env
	dropDependsOn(t, dir, "models/staging/stg_customer_notes.sql")
	out, err := dbttest.Run(t, dir, env, "deps")
	require.NoError(t, err, out)
	tmp := t.TempDir()
	db := func(name string) string { return filepath.Join(tmp, name+".duckdb") }

	first := dbtorchBuild(t, dir, env, db("first"), orchestrator.PerNode, orchestrator.BuildOptions{Tests: manifest.SkipTests})
	require.Len(t, first.Plan.InferredEdges(), 1)
	e := first.Plan.InferredEdges()[0]
	assert.Equal(t, [2]string{"seed.shop.raw_customer_notes", "model.shop.stg_customer_notes"}, [2]string{e.Writer, e.Reader})
	before := duckdbRows(t, db("first"), "dim_customers_v2")

	require.NoError(t, os.WriteFile(filepath.Join(dir, "seeds", "raw_customer_notes.csv"), []byte(`customer_id,note
1,prefers phone
2,new account
3,key account
`), 0o644))
	for _, name := range []string{"per-node", "per-wave", "dbt-build"} {
		copyFile(t, db("first"), db(name))
	}
	// The seed is selected on its own: dbt's graph does not reach it from
	// its readers.
	sel := []string{"raw_customer_notes", "stg_customer_notes+"}
	opts := orchestrator.BuildOptions{Selection: selector.Options{Select: sel}}
	dbtorchBuild(t, dir, env, db("per-node"), orchestrator.PerNode, opts)
	dbtorchBuild(t, dir, env, db("per-wave"), orchestrator.PerWave, opts)
	out, err = dbttest.Run(t, dir, withDuckDB(env, db("dbt-build")), "build", "--threads", "1", "--select", sel[0], sel[1])
	require.NoError(t, err, out)

	want := duckdbRows(t, db("dbt-build"), "dim_customers_v2")
	assert.NotEqual(t, before, want, "the seed change must change dim_customers")
	assert.Contains(t, want["dim_customers_v2"], "new account")
	assert.Equal(t, want, duckdbRows(t, db("per-node"), "dim_customers_v2"), "per-node (-dbt build +per-node)")
	assert.Equal(t, want, duckdbRows(t, db("per-wave"), "dim_customers_v2"), "per-wave (-dbt build +per-wave)")
}
