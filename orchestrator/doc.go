// Package orchestrator runs a dbt build node by node: it resolves the
// selection, plans the executable DAG, schedules nodes on a bounded worker
// pool as soon as their upstreams finish, retries failed nodes, skips what
// is downstream of a failure while independent branches go on, honours
// named concurrency limits, and returns one result per planned node.
//
// # Use
//
// Build an Orchestrator once per project with New, then call RunBuild (or
// Plan, to see the plan and predicted cache hits without running dbt) as
// often as needed, from as many goroutines as needed. The executor runs
// dbt (package executor: Core, Warm, or your own); the manifest comes from
// Config.Manifest or from the executor.
//
// # Scheduling contract (PerNode mode)
//
// For every build:
//   - every planned node ends with exactly one terminal Status, and exactly
//     one NodeFinished event is emitted for it, before RunFinished;
//   - a node is handed to the executor only after every planned upstream
//     has a terminal status (under manifest.Deferred, tests additionally
//     wait for every non-test node; with Config.StrictWaves, every node
//     waits for every node of the earlier waves);
//   - at most Config.Concurrency nodes of the build are in the executor at
//     once, and at most the limiter's size hold each NodeLimit, across all
//     builds and orchestrators that share the limiter;
//   - among ready nodes, the one with the highest Config.Priority starts
//     first;
//   - a node is Skipped, without running, if and only if an upstream ended
//     in Error or Skipped, a source it reads is stale (OnlyFreshSources),
//     or the build was cancelled before the node started; its
//     FailedUpstream names every failed ancestor;
//   - when RunBuild returns, no goroutine it started is running and no
//     executor call it made is in progress.
//
// PerWave mode runs the waves one after another, each as one `dbt build`
// over the wave's runnable nodes (plus one `dbt test` for the wave's unit
// tests, which dbt build runs only together with their model); dbt's
// results say which nodes failed, and only their descendants are skipped.
//
// # Failures, retries, tests
//
// A failed attempt is retried when Config.Retry allows it (Retries,
// exponential backoff with jitter, RetryPolicy; the default retries
// transient kinds only). Each attempt is in NodeResult.Attempts and in the
// events. A failing data test at severity error is an Error and skips what
// dbt build would skip downstream of the nodes it tests; a warning is a
// Success with DBTStatus "warn" and skips nothing; a failing unit test
// skips its model.
package orchestrator
