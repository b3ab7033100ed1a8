package orchestrator

import (
	"context"
	"fmt"
	"strings"
	"time"

	"github.com/dbtorch/dbtorch/executor"
	"github.com/dbtorch/dbtorch/manifest"
)

// Status is a node's terminal status in a build.
type Status string

// Terminal statuses. Every planned node ends with exactly one of them.
const (
	// Success: the node was built, or the test passed (or warned).
	Success Status = "success"
	// Error: the node failed after its retries, or was cancelled while
	// running.
	Error Status = "error"
	// Skipped: the node was not run, because an upstream node failed (see
	// FailedUpstream), the build was cancelled before it started, or a
	// source it reads was stale.
	Skipped Status = "skipped"
	// Cached: the node's cache key was unchanged and unexpired; it was not
	// run.
	Cached Status = "cached"
)

// Attempt is one try of a node.
type Attempt struct {
	Number      int
	StartedAt   time.Time
	CompletedAt time.Time
	Status      executor.Status
	Kind        executor.Kind
	Message     string
	Invocation  executor.Invocation
}

// NodeError describes why a node ended in Error.
type NodeError struct {
	Kind    executor.Kind
	Message string
}

// NodeResult is what happened to one planned node.
//
// It holds the executor's Result of the node's final attempt (embedded:
// UniqueID, DBTStatus, Message, Failures, RowsAffected, AdapterResponse,
// CompiledCode, RelationName, ThreadID, Timing, ExecutionTime and Kind are
// that Result's), with the build's own verdict and bookkeeping beside it.
// Status is the build's terminal status; the executor's status word for
// the final attempt is Result.Status. A node that never ran (skipped,
// cached) has only UniqueID set in Result.
type NodeResult struct {
	executor.Result
	Name         string
	ResourceType manifest.ResourceType
	Wave         int
	// Status is the node's terminal status in the build.
	Status Status
	// StartedAt and CompletedAt bound the node's execution (all attempts),
	// excluding time spent waiting for a worker or a limit slot.
	StartedAt   time.Time
	CompletedAt time.Time
	// WaitTime is the time spent waiting for a concurrency slot or named
	// limit, reported apart from execution time.
	WaitTime time.Duration
	// Attempts lists every try, in order; empty for skipped and cached
	// nodes.
	Attempts []Attempt
	// Invocation is the dbt invocation of the final attempt.
	Invocation *executor.Invocation
	// Err is set when Status is Error.
	Err *NodeError
	// CacheKey is the node's cache key, when caching is on.
	CacheKey string
	// CacheReason says why a node with a key was served from the cache
	// or ran: the cache's answer to Lookup ("unchanged and relation
	// present", "key changed: ...", "expired", "relation missing", ...),
	// or the orchestrator's (CacheReasonUpstreamRan, CacheReasonFullRefresh,
	// CacheReasonStaleSource).
	CacheReason string
	// SkipReason says why a Skipped node was not run.
	SkipReason string
	// FailedUpstream lists the failed ancestors that caused a skip, sorted.
	FailedUpstream []string
	// Saved is, for a Cached node, what its cache entry recorded of the
	// run that stored it (when the cache is a SavedReader): what serving
	// it from the cache saved.
	Saved *SavedRun
}

// Run is a finished build: one result per planned node, in plan order.
type Run struct {
	// ID identifies the build (used as dbt's invocation_id in artifacts).
	ID          string
	StartedAt   time.Time
	CompletedAt time.Time
	Manifest    *manifest.Manifest
	Plan        *manifest.Plan
	// Args records the build's options as dbt-style arguments (select,
	// exclude, full_refresh, ...), for artifacts.
	Args    map[string]any
	Results []NodeResult
	// Hooks are the results of the project's on-run-start and on-run-end
	// hooks when the build ran them once (executor.HookRunner), in the
	// order they ran: one per hook, unique_id
	// "operation.<package>.<package>-on-run-start-<n>". Empty when the
	// project has none or each invocation ran them.
	Hooks []executor.Result
	// Warnings lists the problems that did not stop the build but made it
	// do less than asked, one sentence each, in the order found: for
	// instance source freshness that could not be read, so every node ran
	// and none was served from the cache or skipped as stale (see Warner);
	// and the plan's (manifest.Plan.Warnings): the edges dbtorch inferred
	// from sources naming relations the build writes, an order dbt itself
	// does not guarantee.
	Warnings []string
}

// Result returns the result for the node id, or nil.
func (r *Run) Result(id string) *NodeResult {
	for i := range r.Results {
		if r.Results[i].UniqueID == id {
			return &r.Results[i]
		}
	}
	return nil
}

// Count returns how many results have the given status.
func (r *Run) Count(s Status) int {
	n := 0
	for i := range r.Results {
		if r.Results[i].Status == s {
			n++
		}
	}
	return n
}

// Reporter turns a finished run into something durable (files, events).
// Reporters run after the build, in order; a reporter's error is returned
// joined with the build's.
type Reporter interface {
	Report(ctx context.Context, run *Run) error
}

// BuildError is returned with the full *Run when one or more nodes ended
// in Error. Use errors.As to get it.
type BuildError struct {
	// Failed lists the unique_ids of the nodes that ended in Error, sorted.
	Failed []string
	// Skipped is how many nodes were skipped because of them.
	Skipped int
}

func (e *BuildError) Error() string {
	const show = 5
	ids := e.Failed
	more := ""
	if len(ids) > show {
		more = fmt.Sprintf(" and %d more", len(ids)-show)
		ids = ids[:show]
	}
	return fmt.Sprintf("dbtorch: %d node(s) failed (%s%s), %d skipped", len(e.Failed), strings.Join(ids, ", "), more, e.Skipped)
}
