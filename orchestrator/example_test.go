package orchestrator_test

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/dbtorch/dbtorch/executor"
	"github.com/dbtorch/dbtorch/manifest"
	"github.com/dbtorch/dbtorch/orchestrator"
)

// flakyWarehouse is a stand-in for executor.NewWarm or executor.NewCore:
// it fails model.shop.orders once with a connection error and
// model.shop.customers always with a database error.
type flakyWarehouse struct{ ordersTries int }

func (f *flakyWarehouse) Execute(_ context.Context, req executor.Request) (*executor.Response, error) {
	resp := &executor.Response{Invocation: executor.Invocation{Command: req.Command}}
	for _, n := range req.Nodes {
		r := executor.Result{UniqueID: n.UniqueID, Status: executor.Success, DBTStatus: "success"}
		switch n.UniqueID {
		case "model.shop.orders":
			if f.ordersTries++; f.ordersTries == 1 {
				r = executor.Result{UniqueID: n.UniqueID, Status: executor.Error, Kind: executor.KindConnection, Message: "connection reset"}
			}
		case "model.shop.customers":
			r = executor.Result{UniqueID: n.UniqueID, Status: executor.Error, Kind: executor.KindDatabase, Message: `relation "raw.customers" does not exist`}
		}
		resp.Results = append(resp.Results, r)
	}
	return resp, nil
}

func Example() {
	// A tiny project: orders and customers feed revenue; events stands
	// alone. In a program, the manifest comes from manifest.Load or from
	// the executor (executor.ManifestProvider).
	model := func(name string, deps ...string) *manifest.Node {
		n := &manifest.Node{UniqueID: "model.shop." + name, Name: name, ResourceType: manifest.Model, PackageName: "shop",
			Path: name + ".sql", OriginalFilePath: "models/" + name + ".sql", Materialized: "table", Enabled: true,
			FQN: []string{"shop", name}, RawCode: "select 1"}
		for _, d := range deps {
			n.DependsOn.Nodes = append(n.DependsOn.Nodes, "model.shop."+d)
		}
		return n
	}
	m := &manifest.Manifest{Nodes: map[string]*manifest.Node{}}
	for _, n := range []*manifest.Node{model("orders"), model("customers"), model("revenue", "orders", "customers"), model("events")} {
		m.Nodes[n.UniqueID] = n
	}

	var limits orchestrator.Registry // share it between orchestrators of one process
	warehouse, _ := limits.NodeLimit("warehouse", 2, nil)
	o, err := orchestrator.New(orchestrator.Config{
		Executor:    &flakyWarehouse{},
		Manifest:    m,
		Concurrency: 1, // deterministic output for this example
		Retry:       orchestrator.RetryConfig{Retries: 2, Delay: time.Millisecond},
		Limits:      []orchestrator.NodeLimit{warehouse},
	})
	if err != nil {
		panic(err)
	}
	run, err := o.RunBuild(context.Background(), orchestrator.BuildOptions{})
	for _, r := range run.Results {
		fmt.Printf("%-22s %-7s attempts=%d", r.UniqueID, r.Status, len(r.Attempts))
		if r.Err != nil {
			fmt.Printf(" %s: %s", r.Err.Kind, r.Err.Message)
		}
		if len(r.FailedUpstream) > 0 {
			fmt.Printf(" %s: %v", r.SkipReason, r.FailedUpstream)
		}
		fmt.Println()
	}
	var be *orchestrator.BuildError
	if errors.As(err, &be) {
		fmt.Println("failed:", be.Failed, "skipped:", be.Skipped)
	}
	// Output:
	// model.shop.customers   error   attempts=3 database: relation "raw.customers" does not exist
	// model.shop.events      success attempts=1
	// model.shop.orders      success attempts=2
	// model.shop.revenue     skipped attempts=0 upstream failed: [model.shop.customers]
	// failed: [model.shop.customers] skipped: 1
}
