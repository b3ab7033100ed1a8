// Package cloud runs dbtorch builds on dbt Cloud: a client for the parts of
// the Administrative API v2 that an orchestrator needs, and an
// executor.Executor that runs every invocation as its own temporary dbt
// Cloud job.
//
// # Client
//
// Client talks to {Host}/api/v2/accounts/{AccountID}/... with a service
// token. It is safe for concurrent use. Every request goes through one
// token-bucket rate limiter shared by all goroutines using the client, and
// a 429 answer pauses the whole client for the Retry-After it carries.
// Requests that are safe to repeat (GET, DELETE, cancelling a run) are
// retried according to a RetryPolicy with the delays of a Backoff; both are
// plain functions with defaults in the style of hashicorp/go-retryablehttp
// (DefaultRetryPolicy, DefaultBackoff).
//
// The two requests that create something — creating a job and triggering a
// run — are never repeated blindly. When one fails in a way that may have
// succeeded on the server (a lost connection, a timeout, a 5xx), the client
// first looks for what it tried to create (the job by its exact name, the
// run by its exact cause) and returns that if it exists; only when it does
// not is the request sent again. Names and causes are therefore the
// idempotency keys of CreateJob and TriggerRun.
//
// Failed requests return an *APIError carrying the HTTP status and the
// server's message, parsed leniently from dbt Cloud's JSON envelope, a
// {"detail": ...} body, or an HTML error page. The token never appears in
// a log line or an error string: the client redacts it from everything it
// logs or returns.
//
// # Executor
//
// Executor implements executor.Executor. Each Execute call creates one
// temporary job named Prefix + BuildID + a random suffix whose single
// execute step is `dbt <command> --select <one selector per node>`,
// triggers it with a cause naming the build, polls the run (with jitter)
// until it ends, and turns the run_results.json of that step into one
// result per requested node. A run without run_results.json never counts
// as success: every requested node is then an error. The job is deleted on
// every path; when the context ends first, the run is cancelled, given a
// short grace period, and the job deleted with a fresh context, and the
// nodes are reported cancelled.
//
// If a creation or trigger had to be resent, the clean-up also removes any
// duplicate it made (jobs of the same unique name, other runs of the job).
//
// Executor also implements executor.Preparer (one request that checks the
// token, project and deployment environment before a build, so that a
// misconfiguration fails the build at once) and executor.ManifestProvider:
// the manifest comes from the latest manifest.json of a given job, or from
// a temporary `dbt compile` job. Janitor finds and deletes temporary jobs
// that a crashed process left behind.
//
// The package cloudtest holds a fake dbt Cloud server for tests.
package cloud
