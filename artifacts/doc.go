// Package artifacts turns a finished build (*orchestrator.Run) into the files
// and events that people and tools already read after a dbt build:
//
//   - RunResults writes dbt's run_results.json (schema v6), which dbt itself
//     accepts as --state for result: selection and for `dbt retry`;
//   - Summary writes a Markdown report with counts, the unsuccessful,
//     skipped and successful nodes, the cost (what the warehouse reported
//     in adapter_response, and what the cache saved), the build's timeline
//     (slot utilisation, the critical path with each node's share, a
//     Mermaid gantt chart of every attempt and wait; see TimelineOf and
//     Gantt), and a Mermaid flowchart of the run coloured by status;
//   - JUnit writes JUnit XML of the tests (and failed nodes) for CI systems;
//   - Results writes dbtorch's own results contract (RunJSON: one result
//     per planned node with status, timing, attempts, invocation, cache
//     key and reason, error, skip reason), what `dbtorch build --results`
//     writes and services return; ResultsJSON gives it as a value;
//   - Lineage emits OpenLineage run events for every model, seed and
//     snapshot through a Transport (a JSON-lines file, or HTTP POST with
//     retries in the background).
//
// Each of them implements orchestrator.Reporter, so it can be handed to the
// orchestrator or called on a Run after the fact. Every file is written
// atomically (a temporary file in the same directory, then a rename), so a
// reader never sees half a file.
//
// # Status mapping
//
// dbtorch's statuses are success, error, skipped and cached; dbt's are
// richer. run_results.json uses dbt's own words: models, seeds and
// snapshots are "success", "error" or "skipped" (dbt's "partial success"
// is kept when dbt reported it); tests and unit tests are "pass", "warn",
// "fail", "error" or "skipped". A cached node — not run because its cache
// key was unchanged — is written as "success" with the message "cached" by
// default, because its relation is in place and up to date, which is what
// result:success means to dbt's selectors; `dbt retry` does not re-run it
// either way. Set RunResults.CachedStatus to "no-op" to write dbt's "no-op"
// instead (dbt 1.9+ accepts it in run_results.json and in result:no-op).
package artifacts
