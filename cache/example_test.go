package cache_test

import (
	"context"
	"fmt"
	"strings"
	"time"

	"github.com/spf13/afero"

	"github.com/dbtorch/dbtorch/cache"
	"github.com/dbtorch/dbtorch/dbt"
	"github.com/dbtorch/dbtorch/manifest"
)

const exampleManifest = `{
  "metadata": {"dbt_schema_version": "https://schemas.getdbt.com/dbt/manifest/v12.json",
               "dbt_version": "1.11.16", "adapter_type": "duckdb", "project_name": "shop"},
  "nodes": {
    "model.shop.orders": {"unique_id": "model.shop.orders", "resource_type": "model", "name": "orders",
      "package_name": "shop", "path": "orders.sql", "original_file_path": "models/orders.sql",
      "raw_code": "select * from {{ source('raw', 'orders') }} where amount > {{ var('min_amount', 0) }}",
      "checksum": {"name": "sha256", "checksum": "5f0c"}, "config": {"materialized": "table"},
      "relation_name": "\"main\".\"orders\"", "depends_on": {"nodes": ["source.shop.raw.orders"], "macros": []}}
  },
  "sources": {
    "source.shop.raw.orders": {"unique_id": "source.shop.raw.orders", "resource_type": "source", "name": "orders",
      "source_name": "raw", "package_name": "shop", "path": "s.yml", "original_file_path": "models/s.yml",
      "relation_name": "\"raw\".\"orders\""}
  }
}`

// A build asks a Session for a node's key, serves the node from the store
// when the key is unchanged, and stores successful results. Changing a
// var the model reads changes its key.
func Example() {
	ctx := context.Background()
	m, err := manifest.Parse([]byte(exampleManifest))
	if err != nil {
		panic(err)
	}
	g, err := manifest.NewGraph(m)
	if err != nil {
		panic(err)
	}
	store := cache.NewStore(afero.NewMemMapFs(), "/cache", cache.StoreOptions{})
	c := cache.New(store, cache.Options{TTL: 24 * time.Hour})

	var sess *cache.Session
	build := func(vars map[string]any) {
		var err error
		sess, err = c.Open(m, g, cache.KeyConfig{Project: dbt.Project{Target: "dev", Vars: vars}})
		if err != nil {
			panic(err)
		}
		const id = "model.shop.orders"
		_, key, hit := sess.Lookup(ctx, id)
		if hit {
			fmt.Printf("cached %s\n", id)
		} else {
			fmt.Printf("run %s\n", id)
			// ... run dbt for the node, then:
			if err := sess.Put(ctx, id, key, cache.Result{Status: "success", Message: "OK"}); err != nil {
				panic(err)
			}
		}
	}
	build(map[string]any{"min_amount": 10})
	build(map[string]any{"min_amount": 10})
	build(map[string]any{"min_amount": 20})
	// The session's entries are in the namespace of the project, target
	// and warehouse.
	entries, _ := afero.ReadDir(store.Fs(), sess.Store().Dir())
	fmt.Println(len(entries), "entry:", strings.TrimSuffix(entries[0].Name(), ".json"))
	// Output:
	// run model.shop.orders
	// cached model.shop.orders
	// run model.shop.orders
	// 1 entry: model.shop.orders
}
