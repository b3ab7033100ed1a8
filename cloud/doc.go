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
// succeeded on the server (a lost connection, a timeout, a 5xx: gateways
// answer 502/504 while the backend commits the work seconds later), the
// client looks for what it tried to create (the job by its exact name, the
// run by its exact cause), again and again for a commit window
// (ClientConfig.CommitWindow, a minute by default), and returns it as soon
// as it appears; only when the window passes without a trace is the
// request sent again. Names and causes are therefore the idempotency keys
// of CreateJob and TriggerRun.
//
// Failed requests return an *APIError carrying the HTTP status and the
// server's message, parsed leniently from dbt Cloud's JSON envelope, a
// {"detail": ...} body, or an HTML error page. The token never appears in
// a log line, an error string or anything decoded from an answer: the
// client redacts it from every response body it reads (run status
// messages, step logs and artifacts included) and from everything it logs
// or returns.
//
// # Executor
//
// Executor implements executor.Executor. Each Execute call creates one
// temporary job named Prefix + BuildID + a random suffix whose single
// execute step is `dbt <command> --select <one selector per node>`,
// triggers it with a cause naming the build, polls the run (with jitter)
// until it ends, and turns the run_results.json of that step into one
// result per requested node (waiting, bounded by ArtifactWait, for dbt
// Cloud to save the artifacts of a run that has ended). A run without
// run_results.json never counts as success: every requested node is then
// an error.
//
// Executor does not implement executor.HookRunner: a job step is a dbt
// command, which runs the project's on-run-start and on-run-end hooks
// itself and cannot run without them or run one phase with a given
// `results`, so each temporary job runs the hooks (each on-run-end seeing
// that job's results only), and an orchestrator's Run.Warnings says so
// for projects with hooks.
//
// The job is deleted on every path, by a clean-up that runs on a context
// of its own with its own budget (CleanupTimeout, ten minutes by default),
// so that it outlasts the build's context and rate-limit cooldowns of
// minutes: it finds what a creation or trigger interrupted in flight made
// (looking for the job's name and the run's cause for the commit window),
// cancels every run of the job that has not ended and waits until they
// have, and deletes the job (and any duplicate a resent creation made).
// When the context ends first, the nodes are reported cancelled, except
// those of a run that had already succeeded, which are read and reported
// as they ended. What the clean-up cannot delete, Close reports as a
// *LeakError naming the job ids.
//
// Executor also implements executor.Preparer (one request that checks the
// token, project and deployment environment before a build, so that a
// misconfiguration fails the build at once; a development environment, or
// any other unfit for jobs, is an *EnvironmentError, and no job is ever
// created in it), io.Closer, and executor.ManifestProvider:
// the manifest comes from the latest manifest.json of a given job, or from
// a temporary `dbt compile` job. Janitor finds and deletes temporary jobs
// that a crashed process left behind, cancelling every run of each that
// has not ended and waiting for them before deleting it.
//
// The package cloudtest holds a fake dbt Cloud server for tests.
package cloud
