package orchestrator

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"slices"

	"github.com/dbtorch/dbtorch/internal/runresults"
	"github.com/dbtorch/dbtorch/manifest"
	"github.com/dbtorch/dbtorch/selector"
)

// PriorRun is what an earlier attempt of a run left behind, as Retry
// reads it: the run's ID, which attempt it was, and each node's outcome.
type PriorRun struct {
	// ID is the run's ID (dbt's invocation_id in run_results.json).
	ID string
	// Attempt is the earlier attempt's number: 1 for the first build, n for
	// the retry that made it attempt n (Run.Args["attempt"]).
	Attempt int
	// Nodes holds one entry per node of the earlier attempt, in its order.
	Nodes []PriorNode
}

// PriorNode is one node's outcome in an earlier attempt.
type PriorNode struct {
	UniqueID string
	// Status is the node's terminal status. A run_results.json's dbt
	// statuses are mapped to it: "error", "fail" and "runtime error" are
	// Error, "skipped" is Skipped, everything else Success.
	Status Status
	// TestFailed is set for a test that ran and failed (dbt's "fail"), as
	// opposed to one that could not run.
	TestFailed bool
}

// AttemptArg is the Run.Args key under which a build records
// BuildOptions.Attempt (2 for the first retry of a run).
const AttemptArg = "attempt"

// ErrNothingToRetry is returned by Retry when the earlier attempt left
// nothing to re-run: no node failed or was skipped.
var ErrNothingToRetry = errors.New("orchestrator: nothing to retry (no node failed or was skipped)")

// PriorFromRun returns the outcome of a finished run, for Retry.
func PriorFromRun(run *Run) *PriorRun {
	p := &PriorRun{ID: run.ID, Attempt: priorAttempt(run.Args)}
	for i := range run.Results {
		r := &run.Results[i]
		p.Nodes = append(p.Nodes, PriorNode{UniqueID: r.UniqueID, Status: r.Status, TestFailed: r.DBTStatus == "fail"})
	}
	return p
}

// ReadPriorRun reads the outcome of an earlier run from either of the
// files a build writes: dbtorch's results (RunJSON, with run_id) or a
// dbt run_results.json (with metadata.invocation_id; dbt's own files
// work too). It fails naming what is missing when the document is
// neither.
func ReadPriorRun(r io.Reader) (*PriorRun, error) {
	data, err := io.ReadAll(r)
	if err != nil {
		return nil, fmt.Errorf("orchestrator: prior results: %w", err)
	}
	var doc struct {
		RunID    string         `json:"run_id"`
		Args     map[string]any `json:"args"`
		Metadata *struct{}      `json:"metadata"`
		Results  []struct {
			UniqueID  string `json:"unique_id"`
			Status    string `json:"status"`
			DBTStatus string `json:"dbt_status"`
		} `json:"results"`
	}
	if err := json.Unmarshal(data, &doc); err != nil {
		return nil, fmt.Errorf("orchestrator: prior results: %w", err)
	}
	switch {
	case doc.RunID == "" && doc.Metadata != nil:
		return priorFromRunResults(data)
	case doc.RunID == "":
		return nil, errors.New("orchestrator: prior results: neither dbtorch results (run_id) nor a run_results.json (metadata)")
	}
	p := &PriorRun{ID: doc.RunID, Attempt: priorAttempt(doc.Args)}
	for _, x := range doc.Results {
		if x.UniqueID == "" {
			return nil, errors.New("orchestrator: prior results: a result without unique_id")
		}
		p.Nodes = append(p.Nodes, PriorNode{UniqueID: x.UniqueID, Status: Status(x.Status), TestFailed: x.DBTStatus == "fail"})
	}
	return p, nil
}

// priorFromRunResults reads a run_results.json (dbt's or dbtorch's) with
// internal/runresults, dbtorch's one reader of the file.
func priorFromRunResults(data []byte) (*PriorRun, error) {
	f, err := runresults.Parse(data)
	if err != nil {
		return nil, fmt.Errorf("orchestrator: prior results: %w", err)
	}
	p := &PriorRun{ID: f.Metadata.Invocation(), Attempt: priorAttempt(f.Args)}
	for _, x := range f.Results {
		if x.UniqueID == "" {
			return nil, errors.New("orchestrator: prior results: a result without unique_id")
		}
		n := PriorNode{UniqueID: x.UniqueID}
		switch x.Status {
		case "error", "runtime error":
			n.Status = Error
		case "fail":
			n.Status, n.TestFailed = Error, true
		case "skipped":
			n.Status = Skipped
		default:
			n.Status = Success
		}
		p.Nodes = append(p.Nodes, n)
	}
	return p, nil
}

func priorAttempt(args map[string]any) int {
	switch v := args[AttemptArg].(type) {
	case int:
		return max(v, 1)
	case int64:
		return max(int(v), 1)
	case float64:
		return max(int(v), 1)
	}
	return 1
}

// RetryNodes returns the nodes of g a retry of prior re-runs, sorted: the
// nodes that ended in Error, those that were Skipped (because of them, or
// because the build was cancelled before they started), and for every
// test that failed, the nodes it tests (its executable parents), so that
// the test runs against a rebuilt model. Nodes g no longer has are left
// out.
func RetryNodes(g *manifest.Graph, prior *PriorRun) []string {
	var ids []string
	for _, n := range prior.Nodes {
		if !g.Has(n.UniqueID) || (n.Status != Error && n.Status != Skipped) {
			continue
		}
		ids = append(ids, n.UniqueID)
		if n.TestFailed {
			for _, p := range g.Parents(n.UniqueID) {
				if !g.Node(p).IsTest() {
					ids = append(ids, p)
				}
			}
		}
	}
	slices.Sort(ids)
	return slices.Compact(ids)
}

// retryStatus marks the nodes a retry selects in the run results it
// hands the selector (see Retry).
const retryStatus = "dbtorch-retry"

// Retry runs the nodes RetryNodes picks from prior as a new attempt of the
// same run: the Run it returns (and its Reporters see) has prior's ID and
// Args["attempt"] set to prior.Attempt+1 (BuildOptions.Attempt).
// opts gives everything but the selection, which Retry replaces (exactly
// the retried nodes, no indirect selection), the ID and the attempt. The nodes run in
// the graph's order: a model a failed test tests is rebuilt before the
// test; nodes that are not retried count as built. The selection is
// resolved by the native selector, or by Config.Resolver if it honours
// selector.Options.RunResults.
//
// It returns ErrNothingToRetry (and no Run) when nothing failed or was
// skipped; its other errors are RunBuild's.
func (o *Orchestrator) Retry(ctx context.Context, prior *PriorRun, opts BuildOptions) (*Run, error) {
	if prior == nil || prior.ID == "" {
		return nil, errors.New("orchestrator: Retry needs the prior run's ID")
	}
	_, g, err := o.graph(ctx)
	if err != nil {
		return nil, err
	}
	ids := RetryNodes(g, prior)
	if len(ids) == 0 {
		return nil, ErrNothingToRetry
	}
	rr := &selector.RunResults{}
	for _, id := range ids {
		rr.Results = append(rr.Results, selector.RunResult{UniqueID: id, Status: retryStatus})
	}
	opts.Selection = selector.Options{Select: []string{"result:" + retryStatus}, Indirect: selector.Empty, RunResults: rr}
	opts.ID, opts.Attempt = prior.ID, prior.Attempt+1
	return o.RunBuild(ctx, opts)
}
