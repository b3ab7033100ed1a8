// Package executor defines how dbtorch runs dbt: the small Executor
// interface an orchestrator calls for one dbt invocation over one or more
// nodes, the request and result types, the error kinds a retry policy
// branches on, and two executors for dbt Core:
//
//   - Core (NewCore) runs the dbt executable once per invocation, as a
//     subprocess with its own target and log directories, reusing one
//     partial-parse file. Every invocation pays Python start-up and
//     project loading (seconds).
//   - Warm (NewWarm) keeps a pool of long-lived Python workers that import
//     dbt and parse the project once, and runs each invocation through
//     dbt's programmatic runner with that manifest: a per-node invocation
//     costs about a tenth of a second of dbt's own work instead of seconds
//     (BENCHMARKS.md, "Executors").
//
// Both report the same results, read from the invocation's
// run_results.json.
//
// Writing an executor: implement Execute. It must
//   - run the request's Command over exactly the nodes in Request.Nodes
//     (never more: no indirect selection of tests unless asked for;
//     NodeSelector gives an argument that selects exactly one node);
//   - return one Result per requested node, in request order, whenever the
//     returned error is nil — a node dbt did not report is an error Result
//     naming the cause (Kind Crash when the invocation died), never a
//     success;
//   - honour ctx: when it is done, stop the work (kill the process, cancel
//     the remote run), and report the unfinished nodes with Status Cancelled
//     and Kind KindCancelled (KindTimeout if ctx's deadline passed);
//   - be safe for concurrent calls from several goroutines, each with its
//     own request.
//
// ParseRunResults turns dbt's run_results.json into Results exactly as the
// built-in executors do, and ClassifyMessage gives the Kind of a dbt error
// text. examples/customexecutor shows a complete executor.
//
// A non-nil error from Execute means the request itself could not be
// attempted (it is invalid: *ConfigError, or the executor is closed:
// ErrClosed); the orchestrator then marks every node of the request as an
// error of KindInternal.
//
// Optional capabilities are separate interfaces found by type assertion, as
// database/sql/driver does: ManifestProvider, Preparer, ConcurrencyLimiter,
// RelationLister, SchemaCreator, HookRunner and io.Closer.
package executor

import (
	"context"
	"time"

	"github.com/dbtorch/dbtorch/dbt"
	"github.com/dbtorch/dbtorch/manifest"
)

// Command is the dbt sub-command an invocation runs.
type Command string

// The dbt commands an orchestrator issues.
const (
	Run      Command = "run"
	Seed     Command = "seed"
	Snapshot Command = "snapshot"
	Test     Command = "test"
	Build    Command = "build"
)

// CommandFor returns the dbt command that builds a node of the given
// resource type on its own: seed, snapshot, test (data and unit tests),
// build (functions: dbt-core 1.11 builds UDFs in dbt build only) or run
// (models and everything else).
func CommandFor(rt manifest.ResourceType) Command {
	switch rt {
	case manifest.Function:
		return Build
	case manifest.Seed:
		return Seed
	case manifest.Snapshot:
		return Snapshot
	case manifest.Test, manifest.UnitTest:
		return Test
	}
	return Run
}

// Request is one dbt invocation.
type Request struct {
	// Command is the dbt command to run.
	Command Command
	// Nodes are the nodes to run. Each is selected by an argument that
	// picks exactly that node.
	Nodes []*manifest.Node
	// FullRefresh passes --full-refresh where the command accepts it.
	FullRefresh bool
	// Vars are passed as --vars, merged over the executor's own vars
	// (Vars.Merge).
	Vars dbt.Vars
	// BuildID identifies the orchestrated build this invocation belongs to
	// (for naming jobs, log directories, and dbt's invocation metadata).
	// Invocations of one build may share what one dbt build would check
	// once: the warm executor checks that a schema exists once per build
	// and worker. Leave it empty to check in every invocation.
	BuildID string
	// Attempt is 1 for the first try of these nodes, 2 for the first retry,
	// and so on.
	Attempt int
	// Empty passes --empty (refs and sources read as zero rows), Sample
	// --sample (dbt's sample window, such as "3 days"), and
	// EventTimeStart and EventTimeEnd --event-time-start and
	// --event-time-end (the window of microbatch models' batches; the
	// zero time leaves one out), each only when Command takes it (dbt
	// refuses them elsewhere): --empty for run, build and snapshot, the
	// others for run and build.
	Empty                        bool
	Sample                       string
	EventTimeStart, EventTimeEnd time.Time
	// NoHooks runs the invocation without the project's on-run-start and
	// on-run-end hooks, which its build runs once through HookRunner.
	// Executors that implement HookRunner honour it once their RunHooks
	// has succeeded on this dbt (when it fails with ErrHooksUnsupported
	// the hooks run, as dbt runs them); others ignore it.
	NoHooks bool
	// Independent says that no node of Nodes depends on another, directly,
	// through nodes outside Nodes or through dbt build's test edges (the
	// nodes of one wave): an executor may run them all at once, in any
	// order, and none is skipped for another's failure. Without it an
	// invocation of several nodes runs them as dbt orders them, and skips
	// what is downstream of a failure. The orchestrator sets it on every
	// request. The warm executor runs independent nodes in its build
	// session; others ignore it.
	Independent bool
}

// Status is dbtorch's verdict on one node of an invocation.
type Status string

// Node statuses an executor reports.
const (
	// Success: the node was built, or the test passed or warned.
	Success Status = "success"
	// Error: the node failed, or the test failed at severity error.
	Error Status = "error"
	// Skipped: dbt skipped the node (in a multi-node invocation, because
	// something upstream of it failed in the same invocation).
	Skipped Status = "skipped"
	// Cancelled: the context ended before the node finished.
	Cancelled Status = "cancelled"
	// Reused: dbt did not run the node and reused an earlier run's result
	// for it (dbt-core 1.12's "reused" status, from --manage-state, the
	// dbt-state plugin or dbt v2, or a test dbt state reports as passed
	// without running it, adapter_response "NO-OP"). An orchestrator
	// treats it as served from a cache.
	Reused Status = "reused"
)

// Kind classifies an error so a retry policy can decide what to do.
type Kind string

// Error kinds. Compilation and TestFailure are deterministic: running again
// gives the same answer. Database and Connection may be transient. Crash,
// Timeout and Cancelled describe the invocation rather than the node.
const (
	KindNone        Kind = ""
	KindCompilation Kind = "compilation" // parse, compile, Jinja or dependency errors
	KindTestFailure Kind = "test_failure"
	KindDatabase    Kind = "database"   // the warehouse rejected the SQL
	KindConnection  Kind = "connection" // could not reach or lost the warehouse
	KindCrash       Kind = "crash"      // dbt died or wrote no result for the node
	KindTimeout     Kind = "timeout"
	KindCancelled   Kind = "cancelled"
	KindInternal    Kind = "internal" // dbtorch or executor misuse
	KindUnknown     Kind = "unknown"
)

// Timing is one of dbt's timing entries ("compile", "execute").
type Timing struct {
	Name        string
	StartedAt   time.Time
	CompletedAt time.Time
}

// Result is the outcome of one node in one invocation.
type Result struct {
	UniqueID string
	// Status is dbtorch's verdict; DBTStatus is dbt's own word ("success",
	// "error", "pass", "fail", "warn", "skipped", ...), empty when dbt gave
	// none.
	Status    Status
	DBTStatus string
	// Kind classifies errors; KindNone on success.
	Kind Kind
	// Message is dbt's message for the node (an error's text, "OK", a
	// test's "Got 3 results, configured to fail if != 0").
	Message string
	// Failures is a test's failure count, nil when not a test or unknown.
	Failures *int64
	// RowsAffected is adapter_response.rows_affected when the adapter gave
	// it.
	RowsAffected *int64
	// AdapterResponse is dbt's adapter_response as it gave it.
	AdapterResponse map[string]any
	CompiledCode    string
	RelationName    string
	ThreadID        string
	Timing          []Timing
	// ExecutionTime is dbt's execution_time for the node.
	ExecutionTime time.Duration
	// Batches are a microbatch model's batch results as dbt reported them
	// (run_results.json batch_results); nil for other nodes.
	Batches *Batches
}

// Batches are the batches of a microbatch model that dbt ran, each a
// [start, end) window of event time, split into those that succeeded
// and those that failed (dbt's "partial success" when both are there).
type Batches struct {
	Successful, Failed [][2]time.Time
}

// Invocation describes the dbt invocation that produced a response.
type Invocation struct {
	// Command and Args are what was run (Args without secrets).
	Command Command
	Args    []string
	// InvocationID is dbt's invocation_id, when known.
	InvocationID string
	Started      time.Time
	Ended        time.Time
	// ExitCode is the dbt process's exit code, or -1 when not applicable.
	ExitCode int
	// Stderr holds the tail of dbt's error output, for crashes.
	Stderr string
}

// Response is the outcome of one Execute call.
type Response struct {
	Invocation Invocation
	// Results holds one result per requested node, in request order.
	Results []Result
}

// Executor runs dbt invocations. See the package documentation for the
// full contract.
type Executor interface {
	Execute(ctx context.Context, req Request) (*Response, error)
}

// ManifestProvider is implemented by executors that can supply the
// project's manifest themselves (for instance by running `dbt parse`, or
// from a dbt Cloud job's artifacts).
type ManifestProvider interface {
	Manifest(ctx context.Context) (*manifest.Manifest, error)
}

// Preparer is implemented by executors with one-time set-up to do before a
// build (dbt deps, dbt parse, starting workers). An orchestrator calls
// Prepare once before the first Execute; Execute must also work without it.
type Preparer interface {
	Prepare(ctx context.Context) error
}

// ConcurrencyLimiter is implemented by executors that can run only so many
// invocations at once. An orchestrator that finds it (by type assertion)
// should run at most n invocations of the executor at a time and tell its
// user why, with reason, when that lowers the concurrency asked for. n <= 0
// means no limit is known.
//
// Core and Warm implement it from the project's profile (dbt.Project's
// Profile): on a DuckDB target n is 1 with the reason "one DuckDB file
// takes one writing process at a time" (a second dbt process fails with a
// lock error, reported as KindConnection); otherwise Core has no limit and
// Warm's is its number of workers (an invocation beyond them waits for an
// idle worker). MaxConcurrency is cheap and safe for concurrent use.
type ConcurrencyLimiter interface {
	MaxConcurrency() (n int, reason string)
}

// duckDBReason is the reason Core and Warm give for one invocation at a
// time on a DuckDB target.
const duckDBReason = "one DuckDB file takes one writing process at a time"
