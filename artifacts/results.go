package artifacts

import (
	"context"
	"encoding/json"
	"io"
	"time"

	"github.com/spf13/afero"

	"github.com/dbtorch/dbtorch/internal/runresults"
	"github.com/dbtorch/dbtorch/orchestrator"
	"github.com/dbtorch/dbtorch/orchestrator/cost"
)

// Results writes dbtorch's own results contract (RunJSON) for a run: what
// `dbtorch build --results` writes and what services return. It
// implements orchestrator.Reporter.
//
// The zero value is not usable: Path is required.
type Results struct {
	// Path is the file to write. It is written atomically; missing
	// directories are created; an existing file is replaced.
	Path string
	// Fs is the file system to write on; nil means the operating system's.
	Fs afero.Fs
}

// Report writes the run's results contract to r.Path.
func (r *Results) Report(ctx context.Context, run *orchestrator.Run) error {
	return writeReport(ctx, r.Fs, r.Path, "Results", func(w io.Writer) error { return WriteResultsJSON(w, run) })
}

// RunJSON is the JSON form of an orchestrator.Run: dbtorch's own results contract (what
// `dbtorch build --results` writes and what services return). Times are
// RFC 3339 in UTC; durations are seconds. Fields are never removed; new
// ones may be added.
type RunJSON struct {
	RunID       string         `json:"run_id"`
	StartedAt   time.Time      `json:"started_at"`
	CompletedAt time.Time      `json:"completed_at"`
	Elapsed     float64        `json:"elapsed_seconds"`
	Args        map[string]any `json:"args"`
	// Counts holds how many nodes ended in each status (all four keys
	// always present).
	Counts  map[orchestrator.Status]int `json:"counts"`
	Waves   int                         `json:"waves"`
	Results []NodeResultJSON            `json:"results"`
	// Warnings is the run's Warnings (always present, possibly empty).
	Warnings []string `json:"warnings"`
	// Totals adds up what the nodes that ran cost and what the cache
	// saved (Run.Totals).
	Totals orchestrator.RunTotals `json:"totals"`
}

// NodeResultJSON is the JSON form of an orchestrator.NodeResult.
type NodeResultJSON struct {
	UniqueID     string              `json:"unique_id"`
	Name         string              `json:"name"`
	ResourceType string              `json:"resource_type"`
	Wave         int                 `json:"wave"`
	Status       orchestrator.Status `json:"status"`
	DBTStatus    string              `json:"dbt_status,omitempty"`
	StartedAt    *string             `json:"started_at"`
	CompletedAt  *string             `json:"completed_at"`
	// ExecutionSeconds is dbt's execution time of the final attempt;
	// WaitSeconds the time spent waiting for a worker or a limit.
	ExecutionSeconds float64         `json:"execution_seconds"`
	WaitSeconds      float64         `json:"wait_seconds"`
	Attempts         []AttemptJSON   `json:"attempts"`
	Invocation       *InvocationJSON `json:"invocation"`
	RowsAffected     *int64          `json:"rows_affected"`
	Failures         *int64          `json:"failures"`
	Message          string          `json:"message"`
	RelationName     string          `json:"relation_name,omitempty"`
	CacheKey         string          `json:"cache_key,omitempty"`
	CacheReason      string          `json:"cache_reason,omitempty"`
	Error            *NodeErrorJSON  `json:"error"`
	SkipReason       string          `json:"skip_reason,omitempty"`
	FailedUpstream   []string        `json:"failed_upstream"`
	AdapterResponse  map[string]any  `json:"adapter_response,omitempty"`
	// Cost is what the warehouse reported for the final attempt
	// (NodeResult.Cost); absent when it reported nothing.
	Cost *cost.Cost `json:"cost,omitempty"`
	// Saved is, for a cached node, what its cache entry recorded of the
	// run that stored it; absent when it recorded nothing.
	Saved *SavedJSON `json:"saved,omitempty"`
	// BatchResults are a microbatch model's batches as dbt reported them
	// (NodeResult.Batches), in run_results.json's shape: {"successful":
	// [[start, end], ...], "failed": [...]}; absent for other nodes.
	BatchResults map[string]any `json:"batch_results,omitempty"`
}

// SavedJSON is the JSON form of an orchestrator.SavedRun.
type SavedJSON struct {
	ExecutionSeconds float64    `json:"execution_seconds"`
	Cost             *cost.Cost `json:"cost,omitempty"`
}

// AttemptJSON is one attempt of a node.
type AttemptJSON struct {
	Number      int     `json:"number"`
	Status      string  `json:"status"`
	Kind        string  `json:"kind,omitempty"`
	Message     string  `json:"message,omitempty"`
	StartedAt   *string `json:"started_at"`
	CompletedAt *string `json:"completed_at"`
}

// InvocationJSON is the dbt invocation of a node's final attempt.
type InvocationJSON struct {
	Command      string   `json:"command"`
	Args         []string `json:"args"`
	InvocationID string   `json:"invocation_id,omitempty"`
	ExitCode     int      `json:"exit_code"`
}

// NodeErrorJSON is why a node ended in error.
type NodeErrorJSON struct {
	Kind    string `json:"kind"`
	Message string `json:"message"`
}

func jsonTime(t time.Time) *string {
	if t.IsZero() {
		return nil
	}
	s := t.UTC().Format(time.RFC3339Nano)
	return &s
}

func nonNil(s []string) []string {
	if s == nil {
		return []string{}
	}
	return s
}

// ResultsJSON returns the run in the results contract's shape.
func ResultsJSON(r *orchestrator.Run) *RunJSON {
	out := &RunJSON{
		RunID: r.ID, StartedAt: r.StartedAt.UTC(), CompletedAt: r.CompletedAt.UTC(),
		Elapsed: r.CompletedAt.Sub(r.StartedAt).Seconds(), Args: r.Args,
		Counts:   map[orchestrator.Status]int{orchestrator.Success: 0, orchestrator.Error: 0, orchestrator.Skipped: 0, orchestrator.Cached: 0},
		Results:  make([]NodeResultJSON, 0, len(r.Results)),
		Warnings: nonNil(r.Warnings),
	}
	if r.Plan != nil {
		out.Waves = len(r.Plan.Waves())
	}
	out.Totals = r.Totals()
	for i := range r.Results {
		nr := &r.Results[i]
		out.Counts[nr.Status]++
		j := NodeResultJSON{
			UniqueID: nr.UniqueID, Name: nr.Name, ResourceType: string(nr.ResourceType), Wave: nr.Wave,
			Status: nr.Status, DBTStatus: nr.DBTStatus,
			StartedAt: jsonTime(nr.StartedAt), CompletedAt: jsonTime(nr.CompletedAt),
			ExecutionSeconds: nr.ExecutionTime.Seconds(), WaitSeconds: nr.WaitTime.Seconds(),
			Attempts:     []AttemptJSON{},
			RowsAffected: nr.RowsAffected, Failures: nr.Failures, Message: nr.Message,
			RelationName: nr.RelationName, CacheKey: nr.CacheKey, CacheReason: nr.CacheReason, SkipReason: nr.SkipReason,
			FailedUpstream: nonNil(nr.FailedUpstream), AdapterResponse: nr.AdapterResponse,
		}
		for _, a := range nr.Attempts {
			j.Attempts = append(j.Attempts, AttemptJSON{Number: a.Number, Status: string(a.Status), Kind: string(a.Kind),
				Message: a.Message, StartedAt: jsonTime(a.StartedAt), CompletedAt: jsonTime(a.CompletedAt)})
		}
		if inv := nr.Invocation; inv != nil {
			j.Invocation = &InvocationJSON{Command: string(inv.Command), Args: nonNil(inv.Args), InvocationID: inv.InvocationID, ExitCode: inv.ExitCode}
		}
		if nr.Err != nil {
			j.Error = &NodeErrorJSON{Kind: string(nr.Err.Kind), Message: nr.Err.Message}
		}
		if b := nr.Batches; b != nil {
			j.BatchResults = runresults.BatchResultsOf(batchesOf(b.Successful), batchesOf(b.Failed))
		}
		if c := nr.Cost(); !c.IsZero() {
			j.Cost = &c
		}
		if sv := nr.Saved; sv != nil {
			j.Saved = &SavedJSON{ExecutionSeconds: sv.ExecutionTime.Seconds()}
			if c := nr.SavedCost(); !c.IsZero() {
				j.Saved.Cost = &c
			}
		}
		out.Results = append(out.Results, j)
	}
	return out
}

// WriteResultsJSON writes the run's results contract (see RunJSON),
// indented, to w.
func WriteResultsJSON(w io.Writer, run *orchestrator.Run) error {
	enc := json.NewEncoder(w)
	enc.SetIndent("", "  ")
	return enc.Encode(ResultsJSON(run))
}
