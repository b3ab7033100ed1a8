package orchestrator

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"strings"

	"github.com/dbtorch/dbtorch/executor"
	"github.com/dbtorch/dbtorch/manifest"
)

// Project hooks. dbt runs a project's on-run-start hooks (every package's)
// before the nodes of each invocation and its on-run-end hooks after them;
// `dbt build` therefore runs each once. A build of many invocations does
// the same when the executor implements executor.HookRunner: on-run-start
// runs once before the first node (after the executor is prepared), every
// invocation of the build runs without hooks (Request.NoHooks), and
// on-run-end runs once after the last node, given the build's results as
// dbt's `results` (dbt's status words). When on-run-start fails, every
// node is Skipped with a reason naming the hook and the first line of
// dbt's error (dbt 1.12's default,
// skip_nodes_if_on_run_start_fails) and on-run-end still runs, seeing no
// results, as dbt's does then; the build's error is a *HookError. A
// cancelled build runs no on-run-end, as dbt does not after an interrupt.
// A build whose plan is empty runs no hooks ("Nothing to do"), and one
// whose project has none asks the executor for nothing. An executor
// without the capability, or one whose RunHooks fails with
// executor.ErrHooksUnsupported, leaves the hooks to each invocation, as
// dbt runs them, and Run.Warnings says so.

// HookError reports that a phase of the project's hooks failed. A failed
// on-run-start skipped every node of the build.
type HookError struct {
	Phase executor.HookPhase
	// Hook is the unique_id of the hook that failed, "" when the phase
	// failed as a whole (a hook that does not compile, a worker that
	// died).
	Hook string
	// Message is dbt's message.
	Message string
}

func (e *HookError) Error() string {
	if e.Hook != "" {
		return fmt.Sprintf("dbtorch: %s hook %s failed: %s", e.Phase, e.Hook, e.Message)
	}
	return fmt.Sprintf("dbtorch: %s hooks failed: %s", e.Phase, e.Message)
}

// hasHooks reports whether the manifest holds project hooks.
func hasHooks(m *manifest.Manifest) bool {
	for _, n := range m.Nodes {
		if n.ResourceType == manifest.Operation &&
			(slices.Contains(n.Tags, string(executor.OnRunStart)) || slices.Contains(n.Tags, string(executor.OnRunEnd))) {
			return true
		}
	}
	return false
}

// hooksUnsupported is the warning of a build whose executor leaves the
// project's hooks to each invocation.
const hooksUnsupported = "the project's on-run-start and on-run-end hooks run in every dbt invocation, not once per build: "

// startHooks runs on-run-start when the build runs the project's hooks
// itself (see the comment at the top of this file), and returns its
// failure, nil when it succeeded or did not run.
func (b *build) startHooks(ctx context.Context) *HookError {
	if b.n == 0 || !hasHooks(b.m) {
		return nil
	}
	hr, ok := b.cfg.Executor.(executor.HookRunner)
	if !ok {
		b.warnings = append(b.warnings, hooksUnsupported+"the executor cannot run them apart (executor.HookRunner)")
		return nil
	}
	b.prepOnce.Do(func() { b.prepErr = b.o.prepare(ctx) })
	if b.prepErr != nil {
		return nil // every invocation fails with it
	}
	nodes := make([]*manifest.Node, b.n)
	for i := range int32(b.n) {
		nodes[i] = b.plan.Node(i)
	}
	resp, err := hr.RunHooks(ctx, b.hookRequest(executor.OnRunStart, nodes, nil))
	if errors.Is(err, executor.ErrHooksUnsupported) {
		b.warnings = append(b.warnings, hooksUnsupported+err.Error())
		return nil
	}
	b.hooks, b.noHooks = hr, true
	he := b.hookOutcome(executor.OnRunStart, resp, err)
	if he == nil {
		// dbt created the schemas of the nodes before the hooks (as dbt
		// build's before_run does): awaitSchemas has none left to create.
		b.o.schemas.exist(b, schemasOf(nodes))
	}
	return he
}

// endHooks runs on-run-end after the build's last node when startHooks
// ran on-run-start; started is false when that failed.
func (b *build) endHooks(ctx context.Context, started bool) *HookError {
	if b.hooks == nil || ctx.Err() != nil {
		return nil
	}
	var results []executor.Result
	if started {
		results = make([]executor.Result, len(b.results))
		for i := range b.results {
			results[i] = b.results[i].dbtResult(b.plan.Node(int32(i)).ResourceType)
		}
	}
	resp, err := b.hooks.RunHooks(ctx, b.hookRequest(executor.OnRunEnd, nil, results))
	return b.hookOutcome(executor.OnRunEnd, resp, err)
}

func (b *build) hookRequest(phase executor.HookPhase, nodes []*manifest.Node, results []executor.Result) executor.HookRequest {
	return executor.HookRequest{Phase: phase, Nodes: nodes, Results: results, Vars: b.vars, BuildID: b.runID, FullRefresh: b.opts.FullRefresh}
}

// hookOutcome records the hooks' results on the build and returns the
// phase's failure, if any.
func (b *build) hookOutcome(phase executor.HookPhase, resp *executor.Response, err error) *HookError {
	if resp != nil {
		b.hookResults = append(b.hookResults, resp.Results...)
		for _, r := range resp.Results {
			if r.Status == executor.Error {
				return &HookError{Phase: phase, Hook: r.UniqueID, Message: r.Message}
			}
		}
	}
	if err != nil {
		return &HookError{Phase: phase, Message: err.Error()}
	}
	return nil
}

// skipAll ends every node as Skipped because on-run-start failed.
func (b *build) skipAll(ctx context.Context, he *HookError) {
	reason := "on-run-start failed"
	if he.Hook != "" {
		reason += ": " + he.Hook
	}
	// dbt's message is "<hook> failed, error:\n <the error>": the error's
	// first line says what went wrong.
	msg := he.Message
	if _, after, ok := strings.Cut(msg, "failed, error:"); ok && strings.TrimSpace(after) != "" {
		msg = after
	}
	if line, _, _ := strings.Cut(strings.TrimSpace(msg), "\n"); line != "" {
		reason += ": " + strings.TrimSpace(line)
	}
	for i := range int32(b.n) {
		b.skip(i, nil, reason)
		b.finished(ctx, i)
	}
}

// dbtResult is r as dbt's `results` holds it for on-run-end: the final
// attempt's result, dbt's status word kept when the node ran, and for the
// nodes that did not run "skipped" with the skip reason, or "success"
// ("pass" for tests) with the message "cached".
func (r *NodeResult) dbtResult(rt manifest.ResourceType) executor.Result {
	er := r.Result
	test := rt == manifest.Test || rt == manifest.UnitTest
	word := func(model, test_ string) string {
		if test {
			return test_
		}
		return model
	}
	switch {
	case r.Status == Skipped:
		er.DBTStatus = "skipped"
	case r.Status == Cached:
		er.DBTStatus = word("success", "pass")
		er.Message = cmpOr(er.Message, "cached")
	case er.DBTStatus != "":
	case r.Status == Success:
		er.DBTStatus = word("success", "pass")
	default:
		er.DBTStatus = "error"
	}
	if er.Message == "" && r.Err != nil {
		er.Message = r.Err.Message
	}
	er.ThreadID = cmpOr(er.ThreadID, "dbtorch")
	return er
}
