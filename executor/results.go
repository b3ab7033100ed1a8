package executor

import (
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"time"

	"github.com/dbtorch/dbtorch/internal/dbtargv"
	"github.com/dbtorch/dbtorch/internal/runresults"
	"github.com/dbtorch/dbtorch/manifest"
)

// kindOf returns the Kind of a runresults class: the one of the same name.
func kindOf(c runresults.Class) Kind { return Kind(c) }

// ClassifyMessage returns the Kind of a dbt error message (a node's
// message in run_results.json, or the tail of dbt's log when an invocation
// failed before running any node): KindConnection, KindCompilation,
// KindDatabase, or KindUnknown when the message does not say. Custom
// executors use it to classify errors as the built-in ones do.
func ClassifyMessage(message string) Kind {
	return kindOf(runresults.ClassifyMessage(message))
}

// ParseRunResults decodes a run_results.json written by dbt (schema v4 to
// v6) into one Result per node dbt reported, in dbt's order, with statuses
// mapped and errors classified as the built-in executors do: success, pass,
// warn and no-op are Success; reused (dbt 1.12, dbt state, dbt v2), and a
// pass or success whose adapter_response says dbt executed nothing
// ("NO-OP", a test dbt state checked without running it), are Reused;
// skipped is Skipped; everything else is Error, "fail" with
// KindTestFailure and other errors classified from dbt's message. It also
// returns dbt's invocation_id.
func ParseRunResults(data []byte) (results []Result, invocationID string, err error) {
	f, err := runresults.Parse(data)
	if err != nil {
		return nil, "", err
	}
	results = make([]Result, len(f.Results))
	for i := range f.Results {
		results[i] = resultOf(&f.Results[i])
	}
	return results, f.Metadata.Invocation(), nil
}

// resultOf converts one run_results entry.
func resultOf(e *runresults.Result) Result {
	r := Result{
		UniqueID:        e.UniqueID,
		DBTStatus:       e.Status,
		Message:         e.Text(),
		Failures:        e.Failures,
		RowsAffected:    e.RowsAffected(),
		AdapterResponse: e.AdapterResponse,
		CompiledCode:    e.Code(),
		RelationName:    e.Relation(),
		ThreadID:        e.ThreadID,
		ExecutionTime:   time.Duration(e.ExecutionTime * float64(time.Second)),
		Kind:            kindOf(runresults.Classify(e.Status, e.Text())),
	}
	if ok, failed, isBatched := e.Batches(); isBatched {
		r.Batches = &Batches{}
		for _, b := range ok {
			r.Batches.Successful = append(r.Batches.Successful, b)
		}
		for _, b := range failed {
			r.Batches.Failed = append(r.Batches.Failed, b)
		}
	}
	for _, t := range e.Timing {
		started, completed := t.Times()
		r.Timing = append(r.Timing, Timing{Name: t.Name, StartedAt: started, CompletedAt: completed})
	}
	switch runresults.EntryOutcome(e) {
	case runresults.OK:
		r.Status = Success
	case runresults.Skipped:
		r.Status = Skipped
	case runresults.Reused:
		r.Status = Reused
	default:
		r.Status = Error
	}
	return r
}

// Failure describes an invocation that did not end normally: dbt exited
// with an error before reporting every node, or the process died. It is
// what Complete reports for the nodes the invocation left without a
// result.
type Failure struct {
	// Kind classifies the failure; KindCrash unless the output says more.
	Kind Kind
	// Message is reported as each unreported node's Result.Message.
	Message string
}

// Complete turns what an invocation left behind into exactly one Result
// per requested node, in request order, as the Executor contract asks:
// a node dbt reported keeps its Result (after a cancellation only when it
// succeeded); a node without one is Cancelled (KindCancelled, or
// KindTimeout when ctxErr is a deadline) when ctxErr is non-nil, an Error
// with fail's kind and message when fail is non-nil, and otherwise an
// Error of KindInternal saying dbt matched nothing. reported may be nil
// (no run_results.json) and may hold results for other nodes, which are
// dropped. Every executor, built-in or custom, should end Execute with it.
func Complete(nodes []*manifest.Node, reported []Result, ctxErr error, fail *Failure) []Result {
	if ctxErr == nil && inOrder(nodes, reported) {
		return append([]Result(nil), reported...)
	}
	rr := reported
	byID := make(map[string]*Result, len(rr))
	for i := range rr {
		byID[rr[i].UniqueID] = &rr[i]
	}
	out := make([]Result, len(nodes))
	for i, n := range nodes {
		if r, ok := byID[n.UniqueID]; ok && (ctxErr == nil || r.Status == Success || r.Status == Reused) {
			out[i] = *r
			continue
		}
		switch {
		case ctxErr != nil:
			kind, why := KindCancelled, "cancelled"
			if errors.Is(ctxErr, context.DeadlineExceeded) {
				kind, why = KindTimeout, "timed out"
			}
			out[i] = Result{UniqueID: n.UniqueID, Status: Cancelled, Kind: kind,
				Message: fmt.Sprintf("dbt invocation %s before the node finished: %v", why, ctxErr)}
		case fail != nil:
			out[i] = Result{UniqueID: n.UniqueID, Status: Error, Kind: fail.Kind, Message: fail.Message}
		default:
			out[i] = Result{UniqueID: n.UniqueID, Status: Error, Kind: KindInternal,
				Message: "dbt finished without a result for the node (its selector matched nothing: is the node enabled in this project?)"}
		}
	}
	return out
}

// inOrder reports whether reported holds one result per node, in the
// nodes' order (the common case, which needs no matching).
func inOrder(nodes []*manifest.Node, reported []Result) bool {
	if len(reported) != len(nodes) {
		return false
	}
	for i, n := range nodes {
		if reported[i].UniqueID != n.UniqueID {
			return false
		}
	}
	return true
}

// readRunResults reads <targetDir>/run_results.json; a missing file is
// (nil, "", nil).
func readRunResults(targetDir string) ([]Result, string, error) {
	data, err := os.ReadFile(filepath.Join(targetDir, "run_results.json"))
	if errors.Is(err, os.ErrNotExist) {
		return nil, "", nil
	}
	if err != nil {
		return nil, "", err
	}
	return ParseRunResults(data)
}

// crashFailure builds the failure of an invocation that exited abnormally
// (cause says how) with output tail: classified from the output when dbt
// said what went wrong, else KindCrash.
func crashFailure(cause, tail string) *Failure {
	kind := ClassifyMessage(tail)
	if kind == KindUnknown {
		kind = KindCrash
	}
	msg := cause
	if tail != "" {
		msg += "\n" + tail
	}
	return &Failure{Kind: kind, Message: msg}
}

// NodeSelector returns a dbt --select argument that picks exactly n, e.g.
// "fqn:shop.staging.stg_orders,resource_type:model,package:shop". Run dbt
// with --indirect-selection empty so that it does not add n's tests.
// Custom executors use it to build their dbt command lines.
func NodeSelector(n *manifest.Node) (string, error) {
	return dbtargv.Selector(n)
}
