package pglimit_test

import (
	"context"
	"log"
	"os"

	"github.com/dbtorch/dbtorch/executor"
	"github.com/dbtorch/dbtorch/manifest"
	"github.com/dbtorch/dbtorch/orchestrator"
	"github.com/dbtorch/dbtorch/orchestrator/pglimit"
)

// A build whose nodes declaring the limit "snowflake_wh" (in
// config.meta.dbtorch.limits, or as a tag) share four slots with every
// other build, service or host using the same database, and which never
// writes a relation another of them is writing. (Not run: it needs a
// PostgreSQL server and a dbt project.)
func Example() {
	ctx := context.Background()
	store, err := pglimit.Open(ctx, os.Getenv("DBTORCH_LIMIT_STORE"), pglimit.Options{}) // postgres://...
	if err != nil {
		log.Fatal(err)
	}
	defer store.Close()
	wh, err := store.NodeLimit("snowflake_wh", 4, orchestrator.DeclaredBy("snowflake_wh"))
	if err != nil {
		log.Fatal(err)
	}
	var ex executor.Executor // for instance executor.NewWarm(...)
	var m *manifest.Manifest // for instance ex.Manifest(ctx)
	o, err := orchestrator.New(orchestrator.Config{Executor: ex, Manifest: m, Concurrency: 8,
		Limits: []orchestrator.NodeLimit{store.RelationLocks(), wh}})
	if err != nil {
		log.Fatal(err)
	}
	run, err := o.RunBuild(ctx, orchestrator.BuildOptions{})
	if err != nil {
		log.Fatal(err)
	}
	for _, r := range run.Results {
		log.Printf("%s: %s, waited %v for slots", r.UniqueID, r.Status, r.WaitTime)
	}
}

// Slots with the caller's holder ids: acquiring again under the same id
// (a retried request, a restarted worker) takes no second slot.
func ExampleLimit_AcquireAs() {
	ctx := context.Background()
	store, err := pglimit.Open(ctx, os.Getenv("DBTORCH_LIMIT_STORE"), pglimit.Options{})
	if err != nil {
		log.Fatal(err)
	}
	defer store.Close()
	api, err := store.Limit("partner_api", 2)
	if err != nil {
		log.Fatal(err)
	}
	if err := api.AcquireAs(ctx, "job-42"); err != nil { // waits, oldest first
		log.Fatal(err)
	}
	defer api.ReleaseAs(ctx, "job-42")
	// ... call the partner API; the Store renews the lease meanwhile.
}
