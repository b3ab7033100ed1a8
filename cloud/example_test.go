package cloud_test

import (
	"context"
	"fmt"
	"log"
	"time"

	"github.com/dbtorch/dbtorch/cloud"
	"github.com/dbtorch/dbtorch/cloud/cloudtest"
	"github.com/dbtorch/dbtorch/executor"
	"github.com/dbtorch/dbtorch/manifest"
	"github.com/dbtorch/dbtorch/orchestrator"
)

const exampleManifest = `{
  "metadata": {"dbt_schema_version": "https://schemas.getdbt.com/dbt/manifest/v12.json", "project_name": "shop"},
  "nodes": {
    "seed.shop.raw_orders": {"unique_id": "seed.shop.raw_orders", "name": "raw_orders", "resource_type": "seed",
      "package_name": "shop", "fqn": ["shop", "raw_orders"], "path": "raw_orders.csv",
      "original_file_path": "seeds/raw_orders.csv", "config": {"enabled": true}, "depends_on": {"nodes": []}},
    "model.shop.orders": {"unique_id": "model.shop.orders", "name": "orders", "resource_type": "model",
      "package_name": "shop", "fqn": ["shop", "orders"], "path": "orders.sql",
      "original_file_path": "models/orders.sql", "config": {"enabled": true, "materialized": "table"},
      "depends_on": {"nodes": ["seed.shop.raw_orders"]}}
  }
}`

// Example runs a build on dbt Cloud (here the fake server of package
// cloudtest): the manifest comes from a temporary `dbt compile` job, and
// every node runs as its own temporary job.
func Example() {
	srv, err := cloudtest.NewServer(cloudtest.Options{Manifest: []byte(exampleManifest)})
	if err != nil {
		log.Fatal(err)
	}
	defer srv.Close()

	client, err := cloud.NewClient(cloud.ClientConfig{
		Host:      srv.URL, // e.g. https://cloud.getdbt.com
		AccountID: srv.AccountID(),
		Token:     srv.Token(), // e.g. os.Getenv("DBT_CLOUD_TOKEN")
	})
	if err != nil {
		log.Fatal(err)
	}
	exec, err := cloud.NewExecutor(cloud.ExecutorConfig{
		Client:        client,
		ProjectID:     srv.ProjectID(),
		EnvironmentID: srv.EnvironmentID(),
		PollInterval:  10 * time.Millisecond, // seconds against the real service
	})
	if err != nil {
		log.Fatal(err)
	}
	o, err := orchestrator.New(orchestrator.Config{Executor: exec}) // manifest from the executor
	if err != nil {
		log.Fatal(err)
	}
	run, err := o.RunBuild(context.Background(), orchestrator.BuildOptions{})
	if err != nil {
		log.Fatal(err)
	}
	for _, r := range run.Results {
		fmt.Println(r.UniqueID, r.Status)
	}
	fmt.Println("jobs left:", len(srv.Jobs()))
	// Output:
	// seed.shop.raw_orders success
	// model.shop.orders success
	// jobs left: 0
}

// ExampleExecutor_Execute runs one invocation directly.
func ExampleExecutor_Execute() {
	srv, err := cloudtest.NewServer(cloudtest.Options{
		Manifest: []byte(exampleManifest),
		Outcome: func(id string, attempt int) cloudtest.NodeOutcome {
			return cloudtest.NodeOutcome{Status: "error", Message: "Database Error in model orders\n  permission denied"}
		},
	})
	if err != nil {
		log.Fatal(err)
	}
	defer srv.Close()
	client, _ := cloud.NewClient(cloud.ClientConfig{Host: srv.URL, AccountID: srv.AccountID(), Token: srv.Token()})
	exec, _ := cloud.NewExecutor(cloud.ExecutorConfig{Client: client, ProjectID: srv.ProjectID(),
		EnvironmentID: srv.EnvironmentID(), PollInterval: 10 * time.Millisecond})
	m, err := exec.Manifest(context.Background())
	if err != nil {
		log.Fatal(err)
	}
	resp, err := exec.Execute(context.Background(), executor.Request{
		Command: executor.Run,
		Nodes:   []*manifest.Node{m.Lookup("model.shop.orders")},
		BuildID: "b1",
		Attempt: 1,
	})
	if err != nil {
		log.Fatal(err)
	}
	r := resp.Results[0]
	fmt.Println(resp.Invocation.Args[:4])
	fmt.Println(r.UniqueID, r.Status, r.Kind)
	fmt.Println("jobs left:", len(srv.Jobs()))
	// Output:
	// [dbt run --select fqn:shop.orders,resource_type:model,package:shop]
	// model.shop.orders error database
	// jobs left: 0
}

// ExampleJanitor removes the temporary jobs of crashed builds.
func ExampleJanitor() {
	srv, _ := cloudtest.NewServer(cloudtest.Options{})
	defer srv.Close()
	client, _ := cloud.NewClient(cloud.ClientConfig{Host: srv.URL, AccountID: srv.AccountID(), Token: srv.Token()})

	j := &cloud.Janitor{Client: client, Prefix: cloud.DefaultJobPrefix, OlderThan: 6 * time.Hour}
	deleted, err := j.Sweep(context.Background())
	if err != nil {
		log.Fatal(err)
	}
	fmt.Println("deleted", len(deleted), "leftover jobs")
	// Output: deleted 0 leftover jobs
}
