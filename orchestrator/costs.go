package orchestrator

import (
	"context"
	"time"

	"github.com/dbtorch/dbtorch/manifest"
	"github.com/dbtorch/dbtorch/orchestrator/cost"
)

// SavedRun is what the cache entry that served a node recorded of the run
// that stored it: the work that serving the node from the cache saved.
type SavedRun struct {
	// ExecutionTime is dbt's execution time of that run.
	ExecutionTime time.Duration
	// RowsAffected and AdapterResponse are what dbt reported for it (nil
	// when the entry did not record them).
	RowsAffected    *int64
	AdapterResponse map[string]any
}

// SavedReader is an optional interface of a Cache. After a hit the
// orchestrator asks it what the entry it served recorded of the run that
// stored it, and keeps the answer in NodeResult.Saved; nil means it does
// not know.
type SavedReader interface {
	Saved(ctx context.Context, node *manifest.Node, key string) *SavedRun
}

// Cost returns what the warehouse reported for the node's final attempt,
// read from its adapter_response (rows_affected from RowsAffected when
// the response lacks it). A node that did not run has none. Tests and
// unit tests have no rows affected: what the adapter reports as such is
// the rows their query returned.
func (r *NodeResult) Cost() cost.Cost {
	if len(r.Attempts) == 0 {
		return cost.Cost{}
	}
	return costOf(r.ResourceType, r.AdapterResponse, r.RowsAffected)
}

// SavedCost returns what the warehouse reported for the run that stored
// the cache entry that served the node (Saved), read as Cost reads a
// run; none when Saved is nil.
func (r *NodeResult) SavedCost() cost.Cost {
	if r.Saved == nil {
		return cost.Cost{}
	}
	return costOf(r.ResourceType, r.Saved.AdapterResponse, r.Saved.RowsAffected)
}

func costOf(rt manifest.ResourceType, ar map[string]any, rows *int64) cost.Cost {
	c := cost.FromAdapterResponse(ar)
	if c.RowsAffected == nil && rows != nil && *rows >= 0 {
		v := *rows
		c.RowsAffected = &v
	}
	if rt == manifest.Test || rt == manifest.UnitTest {
		c.RowsAffected = nil
	}
	return c
}

// RunTotals adds up what a build's nodes cost and what the cache saved.
type RunTotals struct {
	// Ran adds up the nodes that ran in this build (succeeded or failed):
	// dbt's execution time of their final attempts, and what the
	// warehouse reported for them.
	Ran cost.Totals `json:"ran"`
	// SavedByCache adds up the nodes served from the cache: what their
	// cache entries recorded of the runs that stored them (nodes whose
	// entries recorded nothing count in Nodes only).
	SavedByCache cost.Totals `json:"saved_by_cache"`
}

// Totals returns the run's totals.
func (r *Run) Totals() RunTotals {
	var t RunTotals
	for i := range r.Results {
		nr := &r.Results[i]
		switch {
		case len(nr.Attempts) > 0:
			t.Ran.Add(nr.Cost(), nr.ExecutionTime)
		case nr.Status == Cached:
			var c cost.Cost
			var exec time.Duration
			if nr.Saved != nil {
				c, exec = nr.SavedCost(), nr.Saved.ExecutionTime
			}
			t.SavedByCache.Add(c, exec)
		}
	}
	return t
}
