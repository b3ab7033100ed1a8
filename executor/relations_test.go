package executor_test

import (
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/dbtorch/dbtorch/executor"
	"github.com/dbtorch/dbtorch/internal/dbttest"
	"github.com/dbtorch/dbtorch/manifest"
)

// TestListRelations: one dbt show (--inline-direct where dbt takes it)
// lists what a seed built, and a schema with nothing in it lists nothing;
// through Core and through a warm worker (whose rows come from dbt's
// ShowNode event: dbt show --inline-direct returns no result object).
func TestListRelations(t *testing.T) {
	opts := executor.Options{Project: dbttest.Project(t, "shop"), WorkDir: t.TempDir(), Logger: testLogger(t)}
	c, err := executor.NewCore(executor.CoreConfig{Options: opts})
	require.NoError(t, err)
	t.Cleanup(func() { require.NoError(t, c.Close()) })
	m, err := c.Manifest(t.Context())
	require.NoError(t, err)
	seed := nodes(t, m, "seed.shop.customers")[0]
	resp, err := c.Execute(t.Context(), executor.Request{Command: executor.Seed, Nodes: []*manifest.Node{seed}})
	require.NoError(t, err)
	require.Equal(t, executor.Success, resp.Results[0].Status, resp.Results[0].Message)
	schemas := []executor.Schema{{Database: seed.Database, Schema: seed.Schema}, {Schema: "no_such_schema"}}
	check := func(name string, rl executor.RelationLister) {
		t.Helper()
		rels, err := rl.ListRelations(t.Context(), schemas)
		require.NoError(t, err, name)
		assert.Contains(t, rels, executor.Relation{Database: seed.Database, Schema: seed.Schema, Name: "customers"}, name)
		for _, r := range rels {
			assert.Equal(t, seed.Schema, r.Schema, name)
		}
	}
	check("core", c)
	w, err := executor.NewWarm(executor.WarmConfig{Options: opts, Workers: 1})
	require.NoError(t, err)
	defer w.Close()
	check("warm", w)
}
