package manifest_test

import (
	"fmt"

	"github.com/spf13/afero"

	"github.com/dbtorch/dbtorch/manifest"
)

// A manifest loads from any afero filesystem; the plan traces
// dependencies through ephemeral models and puts each test right after the
// nodes it checks.
func Example() {
	fsys := afero.NewMemMapFs()
	_ = afero.WriteFile(fsys, "target/manifest.json", []byte(`{
	  "metadata": {"dbt_schema_version": "https://schemas.getdbt.com/dbt/manifest/v12.json"},
	  "nodes": {
	    "seed.shop.orders": {"unique_id": "seed.shop.orders", "resource_type": "seed", "path": "orders.csv"},
	    "model.shop.int_orders": {"unique_id": "model.shop.int_orders", "resource_type": "model", "path": "int_orders.sql",
	      "config": {"materialized": "ephemeral"}, "depends_on": {"nodes": ["seed.shop.orders"]}},
	    "model.shop.fct_orders": {"unique_id": "model.shop.fct_orders", "resource_type": "model", "path": "fct_orders.sql",
	      "config": {"materialized": "table"}, "depends_on": {"nodes": ["model.shop.int_orders"]}},
	    "test.shop.unique_orders_id": {"unique_id": "test.shop.unique_orders_id", "resource_type": "test", "path": "t.sql",
	      "depends_on": {"nodes": ["seed.shop.orders"]}}
	  }
	}`), 0o644)

	m, err := manifest.Load(fsys, "target/manifest.json")
	if err != nil {
		fmt.Println(err)
		return
	}
	g, err := manifest.NewGraph(m)
	if err != nil {
		fmt.Println(err)
		return
	}
	plan := g.Plan(nil, manifest.Immediate)
	for i, wave := range plan.Waves() {
		fmt.Println(i, wave)
	}
	// Output:
	// 0 [seed.shop.orders]
	// 1 [test.shop.unique_orders_id]
	// 2 [model.shop.fct_orders]
}

// Plans keep the order of selected nodes that are linked only through
// unselected ones.
func ExampleGraph_Plan_selection() {
	m, _ := manifest.Parse([]byte(`{"nodes": {
	  "model.p.a": {"unique_id": "model.p.a", "resource_type": "model", "path": "a.sql"},
	  "model.p.b": {"unique_id": "model.p.b", "resource_type": "model", "path": "b.sql", "depends_on": {"nodes": ["model.p.a"]}},
	  "model.p.c": {"unique_id": "model.p.c", "resource_type": "model", "path": "c.sql", "depends_on": {"nodes": ["model.p.b"]}}}}`))
	g, _ := manifest.NewGraph(m)
	plan := g.Plan([]string{"model.p.a", "model.p.c"}, manifest.SkipTests)
	fmt.Println(plan.Waves(), plan.UpstreamIDs("model.p.c"))
	// Output: [[model.p.a] [model.p.c]] [model.p.a]
}

// A model reading a seed through a source, with no ref, waits for the
// seed: the graph infers the edge from the relation, and the plan warns
// that dbt itself does not order them.
func ExampleGraph_InferredEdges() {
	m, _ := manifest.Parse([]byte(`{"nodes": {
	  "seed.p.raw_orders": {"unique_id": "seed.p.raw_orders", "resource_type": "seed", "path": "raw_orders.csv",
	    "database": "dev", "schema": "main", "alias": "raw_orders", "relation_name": "\"dev\".\"main\".\"raw_orders\""},
	  "model.p.stg_orders": {"unique_id": "model.p.stg_orders", "resource_type": "model", "path": "stg_orders.sql",
	    "config": {"materialized": "view"}, "depends_on": {"nodes": ["source.p.jaffle.orders"]}}},
	  "sources": {"source.p.jaffle.orders": {"unique_id": "source.p.jaffle.orders", "resource_type": "source",
	    "database": "dev", "schema": "main", "identifier": "raw_orders"}}}`))
	g, _ := manifest.NewGraph(m)
	for _, e := range g.InferredEdges() {
		fmt.Println(e)
	}
	plan := g.Plan(nil, manifest.Immediate)
	fmt.Println(plan.Waves())
	fmt.Println(len(plan.Warnings()), "warning")
	// Output:
	// seed.p.raw_orders -> model.p.stg_orders: model.p.stg_orders reads source.p.jaffle.orders, which seed.p.raw_orders writes ("dev"."main"."raw_orders")
	// [[seed.p.raw_orders] [model.p.stg_orders]]
	// 1 warning
}
