package executor_test

import (
	"context"
	"fmt"
	"log"

	"github.com/dbtorch/dbtorch/dbt"
	"github.com/dbtorch/dbtorch/executor"
	"github.com/dbtorch/dbtorch/manifest"
)

// ParseRunResults maps dbt's statuses and classifies its errors.
func ExampleParseRunResults() {
	data := []byte(`{
	  "metadata": {"dbt_schema_version": "https://schemas.getdbt.com/dbt/run-results/v6.json", "invocation_id": "inv-1"},
	  "results": [
	    {"unique_id": "model.shop.orders", "status": "success", "message": "SELECT 12",
	     "adapter_response": {"_message": "SELECT 12", "rows_affected": 12}, "execution_time": 0.25},
	    {"unique_id": "test.shop.not_null_orders_id", "status": "fail", "failures": 3,
	     "message": "Got 3 results, configured to fail if != 0"},
	    {"unique_id": "model.shop.revenue", "status": "error",
	     "message": "Database Error in model revenue (models/revenue.sql)\n  column \"amount\" does not exist"}
	  ]}`)
	results, invocationID, err := executor.ParseRunResults(data)
	if err != nil {
		log.Fatal(err)
	}
	fmt.Println(invocationID)
	for _, r := range results {
		fmt.Printf("%s: %s (dbt: %s) kind=%q", r.UniqueID, r.Status, r.DBTStatus, r.Kind)
		if r.RowsAffected != nil {
			fmt.Printf(" rows=%d", *r.RowsAffected)
		}
		if r.Failures != nil {
			fmt.Printf(" failures=%d", *r.Failures)
		}
		fmt.Println()
	}
	// Output:
	// inv-1
	// model.shop.orders: success (dbt: success) kind="" rows=12
	// test.shop.not_null_orders_id: error (dbt: fail) kind="test_failure" failures=3
	// model.shop.revenue: error (dbt: error) kind="database"
}

// NodeSelector picks exactly one node, even a version of a versioned model.
func ExampleNodeSelector() {
	n := &manifest.Node{
		UniqueID: "model.shop.dim_customers.v2", ResourceType: manifest.Model, PackageName: "shop",
		FQN: []string{"shop", "marts", "core", "dim_customers", "v2"},
	}
	sel, err := executor.NodeSelector(n)
	if err != nil {
		log.Fatal(err)
	}
	fmt.Println(sel)
	// Output:
	// fqn:shop.marts.core.dim_customers.v2,resource_type:model,package:shop
}

// Run every node of a project one invocation at a time on a warm worker.
func ExampleNewWarm() {
	ctx := context.Background()
	w, err := executor.NewWarm(executor.WarmConfig{
		// dbt from $DBTORCH_DBT, or .venv/bin/dbt above the project
		Options: executor.Options{Project: dbt.Project{Dir: "testdata/shop"}},
		Workers: 1, // DuckDB: one writer at a time
	})
	if err != nil {
		log.Fatal(err)
	}
	defer w.Close()
	m, err := w.Manifest(ctx) // starts the workers, which parse the project once
	if err != nil {
		log.Fatal(err)
	}
	g, err := manifest.NewGraph(m)
	if err != nil {
		log.Fatal(err)
	}
	for _, id := range g.Plan(nil, manifest.Immediate).Nodes() {
		n := m.Lookup(id)
		resp, err := w.Execute(ctx, executor.Request{Command: executor.CommandFor(n.ResourceType), Nodes: []*manifest.Node{n}, Attempt: 1})
		if err != nil {
			log.Fatal(err)
		}
		r := resp.Results[0]
		fmt.Println(r.UniqueID, r.Status, r.Kind)
	}
}

// AlreadyExists tells a schema created concurrently by another process,
// which a SchemaCreator treats as success, from a real failure.
func ExampleAlreadyExists() {
	fmt.Println(executor.AlreadyExists(`duplicate key value violates unique constraint "pg_namespace_nspname_index"`))
	fmt.Println(executor.AlreadyExists("permission denied for database shop"))
	// Output:
	// true
	// false
}
