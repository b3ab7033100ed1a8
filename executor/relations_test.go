package executor_test

import (
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/dbtorch/dbtorch/executor"
	"github.com/dbtorch/dbtorch/manifest"
)

// TestCoreListRelations: one dbt show lists what a seed built, and a
// schema with nothing in it lists nothing.
func TestCoreListRelations(t *testing.T) {
	if testing.Short() {
		t.Skip("real dbt: not in -short mode")
	}
	c, m, _ := newShopCore(t)
	seed := nodes(t, m, "seed.shop.customers")[0]
	resp, err := c.Execute(t.Context(), executor.Request{Command: executor.Seed, Nodes: []*manifest.Node{seed}})
	require.NoError(t, err)
	require.Equal(t, executor.Success, resp.Results[0].Status, resp.Results[0].Message)
	rels, err := c.ListRelations(t.Context(), []executor.Schema{{Database: seed.Database, Schema: seed.Schema}, {Schema: "no_such_schema"}})
	require.NoError(t, err)
	assert.Contains(t, rels, executor.Relation{Database: seed.Database, Schema: seed.Schema, Name: "customers"})
	for _, r := range rels {
		assert.Equal(t, seed.Schema, r.Schema)
	}
}
