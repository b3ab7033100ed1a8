package cache_test

import (
	"fmt"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/dbtorch/dbtorch/cache"
	"github.com/dbtorch/dbtorch/dbt"
	"github.com/dbtorch/dbtorch/manifest"
)

// TestKeysFollowInferredEdges (issue 21): a model reading a source that
// names a seed's relation has a key that changes with the seed's
// contents, through the edge manifest.Graph infers (keys follow
// Graph.Parents); a model reading a source naming another relation does
// not.
func TestKeysFollowInferredEdges(t *testing.T) {
	keys := func(seedSum string) map[string]string {
		t.Helper()
		m, err := manifest.Parse(fmt.Appendf(nil, `{"nodes": {
		  "seed.p.raw": {"unique_id": "seed.p.raw", "resource_type": "seed", "name": "raw", "path": "raw.csv",
		    "database": "dev", "schema": "main", "alias": "raw", "checksum": {"name": "sha256", "checksum": %q}},
		  "model.p.reader": {"unique_id": "model.p.reader", "resource_type": "model", "name": "reader", "path": "reader.sql",
		    "database": "dev", "schema": "main", "alias": "reader", "config": {"materialized": "table"},
		    "depends_on": {"nodes": ["source.p.src.raw"]}},
		  "model.p.other": {"unique_id": "model.p.other", "resource_type": "model", "name": "other", "path": "other.sql",
		    "database": "dev", "schema": "main", "alias": "other", "config": {"materialized": "table"},
		    "depends_on": {"nodes": ["source.p.src.elsewhere"]}}},
		  "sources": {
		    "source.p.src.raw": {"unique_id": "source.p.src.raw", "resource_type": "source", "name": "raw", "source_name": "src",
		      "database": "dev", "schema": "main", "identifier": "raw"},
		    "source.p.src.elsewhere": {"unique_id": "source.p.src.elsewhere", "resource_type": "source", "name": "elsewhere", "source_name": "src",
		      "database": "dev", "schema": "landing", "identifier": "raw"}}}`, seedSum))
		require.NoError(t, err)
		g, err := manifest.NewGraph(m)
		require.NoError(t, err)
		require.Len(t, g.InferredEdges(), 1)
		k, err := cache.NewKeyer(m, g, cache.KeyConfig{Project: dbt.Project{Target: "dev"}})
		require.NoError(t, err)
		out := map[string]string{}
		for _, id := range []string{"seed.p.raw", "model.p.reader", "model.p.other", "source.p.src.raw"} {
			out[id], err = k.Key(id)
			require.NoError(t, err, id)
		}
		return out
	}
	before, after := keys("aaaa"), keys("bbbb")
	assert.NotEqual(t, before["seed.p.raw"], after["seed.p.raw"])
	assert.NotEqual(t, before["model.p.reader"], after["model.p.reader"], "the reader's key must follow the seed's")
	assert.Equal(t, before["model.p.other"], after["model.p.other"])
	assert.Equal(t, before["source.p.src.raw"], after["source.p.src.raw"], "the edge is the reader's, not the source's")
}
