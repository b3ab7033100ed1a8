package artifacts_test

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"time"

	"github.com/dbtorch/dbtorch/artifacts"
	"github.com/dbtorch/dbtorch/executor"
	"github.com/dbtorch/dbtorch/manifest"
	"github.com/dbtorch/dbtorch/orchestrator"
)

// exampleRun is a finished build of two models: stg_orders was built,
// fct_orders failed.
func exampleRun() *orchestrator.Run {
	m := &manifest.Manifest{
		Metadata: manifest.Metadata{ProjectName: "shop", AdapterType: "postgres", DBTVersion: "1.11.16"},
		Nodes: map[string]*manifest.Node{
			"model.shop.stg_orders": {UniqueID: "model.shop.stg_orders", Name: "stg_orders", ResourceType: manifest.Model, PackageName: "shop",
				Database: "shop", Schema: "public", Alias: "stg_orders", OriginalFilePath: "models/stg_orders.sql", Enabled: true},
			"model.shop.fct_orders": {UniqueID: "model.shop.fct_orders", Name: "fct_orders", ResourceType: manifest.Model, PackageName: "shop",
				Database: "shop", Schema: "public", Alias: "fct_orders", OriginalFilePath: "models/fct_orders.sql", Enabled: true,
				DependsOn: manifest.DependsOn{Nodes: []string{"model.shop.stg_orders"}}},
		},
	}
	start := time.Date(2026, 3, 1, 6, 0, 0, 0, time.UTC)
	return &orchestrator.Run{
		ID: "6a1f0c84-2f57-4b0e-a3d4-8c1a6c0f9e21", StartedAt: start, CompletedAt: start.Add(3 * time.Second), Manifest: m,
		Args: map[string]any{"select": []string{"+fct_orders"}},
		Results: []orchestrator.NodeResult{
			{Result: executor.Result{UniqueID: "model.shop.stg_orders", DBTStatus: "success", Message: "CREATE VIEW"},
				ResourceType: manifest.Model, Status: orchestrator.Success, StartedAt: start, CompletedAt: start.Add(time.Second)},
			{Result: executor.Result{UniqueID: "model.shop.fct_orders", DBTStatus: "error", Message: `relation "orders" does not exist`},
				ResourceType: manifest.Model, Status: orchestrator.Error, StartedAt: start.Add(time.Second), CompletedAt: start.Add(2 * time.Second),
				Err: &orchestrator.NodeError{Kind: "database", Message: `relation "orders" does not exist`}},
		},
	}
}

// Write dbt's run_results.json for a build, then let dbt pick up from it:
// `dbt retry --state DIR` re-runs fct_orders.
func ExampleRunResults() {
	dir, _ := os.MkdirTemp("", "state")
	defer os.RemoveAll(dir)
	r := &artifacts.RunResults{Path: filepath.Join(dir, "run_results.json")}
	if err := r.Report(context.Background(), exampleRun()); err != nil {
		fmt.Println(err)
		return
	}
	doc, _ := r.Build(exampleRun())
	for _, res := range doc.Results {
		fmt.Println(res.UniqueID, res.Status)
	}
	fmt.Println("which:", doc.Args["which"])
	// Output:
	// model.shop.stg_orders success
	// model.shop.fct_orders error
	// which: build
}

// The Mermaid chart of a run, as the summary embeds it.
func ExampleMermaid() {
	fmt.Print(artifacts.Mermaid(exampleRun()))
	// Output:
	// flowchart LR
	//   n0["stg_orders<br/><small>model · success</small>"]:::success
	//   n1["fct_orders<br/><small>model · error</small>"]:::error
	//   n0 --> n1
	//   classDef success fill:#d3f9d8,stroke:#2b8a3e,color:#1b4d2b
	//   classDef error fill:#ffe3e3,stroke:#c92a2a,color:#7d1a1a,stroke-width:2px
}

// Emit OpenLineage events for a build to a JSON-lines file; use
// OpenTransport with an http(s) URL to post them to Marquez instead.
func ExampleLineage() {
	dir, _ := os.MkdirTemp("", "lineage")
	defer os.RemoveAll(dir)
	tr, _ := artifacts.OpenTransport(filepath.Join(dir, "events.jsonl"), artifacts.HTTPOptions{})
	defer tr.Close(context.Background())
	l := &artifacts.Lineage{
		Transport:        tr,
		DatasetNamespace: artifacts.DatasetNamespace("postgres", artifacts.Connection{Host: "db.internal"}),
	}
	events, _ := l.Events(exampleRun())
	for _, ev := range events {
		var out []string
		for _, o := range ev.Outputs {
			out = append(out, o.Namespace+"/"+o.Name)
		}
		fmt.Println(ev.EventType, ev.Job.Name, out)
	}
	if err := l.Report(context.Background(), exampleRun()); err != nil {
		fmt.Println(err)
	}
	// Output:
	// START shop.build []
	// START model.shop.stg_orders [postgres://db.internal:5432/shop.public.stg_orders]
	// COMPLETE model.shop.stg_orders [postgres://db.internal:5432/shop.public.stg_orders]
	// START model.shop.fct_orders [postgres://db.internal:5432/shop.public.fct_orders]
	// FAIL model.shop.fct_orders [postgres://db.internal:5432/shop.public.fct_orders]
	// FAIL shop.build []
}

// Where a build's time went: the critical path with each node's share,
// and the slot utilisation.
func ExampleTimelineOf() {
	run := exampleRun()
	run.Args["threads"] = 2
	for i := range run.Results {
		r := &run.Results[i]
		r.Attempts = []orchestrator.Attempt{{Number: 1, StartedAt: r.StartedAt, CompletedAt: r.CompletedAt, Status: "success"}}
	}
	tl := artifacts.TimelineOf(run, 0)
	for _, st := range tl.CriticalPath {
		fmt.Printf("%s waited %s, ran %s: %.0f%% of the build\n", st.UniqueID, st.Waited, st.Ran, 100*st.Share)
	}
	fmt.Printf("after the last node: %s\n", tl.After)
	fmt.Printf("utilisation %.0f%% of %d slots\n", 100*tl.Utilisation, tl.Slots)
	// Output:
	// model.shop.stg_orders waited 0s, ran 1s: 33% of the build
	// model.shop.fct_orders waited 0s, ran 1s: 33% of the build
	// after the last node: 1s
	// utilisation 33% of 2 slots
}
