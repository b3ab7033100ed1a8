// Package cost reads what a warehouse reported about the work of a dbt
// node — bytes processed and billed, slot time, rows affected, query ids —
// out of dbt's adapter_response, whose shape differs per adapter, and adds
// it up per build.
//
// The shapes it reads (dbt-adapters' AdapterResponse and its subclasses):
//
//   - every adapter: _message, code, rows_affected (PostgreSQL's
//     cursor.rowcount; -1, "unknown", is treated as absent), query_id
//     (Snowflake, Databricks, Redshift, ...);
//   - BigQuery: bytes_processed, bytes_billed, slot_ms, job_id (its query
//     id), location, project_id;
//   - DuckDB: _message only ("OK"), and rows_affected for seeds.
//
// A figure the adapter did not report stays absent (a nil pointer), never
// zero, so that "no bytes billed" and "not known" are told apart.
package cost

import (
	"encoding/json"
	"math"
	"slices"
	"strconv"
	"time"
)

// Cost is what the warehouse reported for one node's run. Nil fields were
// not reported.
type Cost struct {
	// BytesProcessed is the bytes the query read (BigQuery).
	BytesProcessed *int64 `json:"bytes_processed,omitempty"`
	// BytesBilled is the bytes billed for it (BigQuery, after its
	// minimum-per-query rounding).
	BytesBilled *int64 `json:"bytes_billed,omitempty"`
	// SlotMS is the slot time it used, in milliseconds (BigQuery).
	SlotMS *int64 `json:"slot_ms,omitempty"`
	// RowsAffected is the rows it inserted, updated or deleted.
	RowsAffected *int64 `json:"rows_affected,omitempty"`
	// QueryIDs are the warehouse's ids of the queries (Snowflake's
	// query_id, BigQuery's job_id), to look them up in its query history.
	QueryIDs []string `json:"query_ids,omitempty"`
}

// FromAdapterResponse reads the figures of one adapter_response (as dbt's
// run_results.json has it, decoded from JSON or built in Go). Numbers may
// be integers, floats or numeric strings; anything else is ignored. A nil
// or empty response is the zero Cost.
func FromAdapterResponse(ar map[string]any) Cost {
	var c Cost
	c.BytesProcessed = count(ar["bytes_processed"])
	c.BytesBilled = count(ar["bytes_billed"])
	c.SlotMS = count(ar["slot_ms"])
	c.RowsAffected = count(ar["rows_affected"])
	for _, k := range []string{"query_id", "job_id"} {
		switch v := ar[k].(type) {
		case string:
			if v != "" && !slices.Contains(c.QueryIDs, v) {
				c.QueryIDs = append(c.QueryIDs, v)
			}
		case []any:
			for _, e := range v {
				if s, ok := e.(string); ok && s != "" && !slices.Contains(c.QueryIDs, s) {
					c.QueryIDs = append(c.QueryIDs, s)
				}
			}
		}
	}
	return c
}

// IsZero reports whether nothing was reported.
func (c Cost) IsZero() bool {
	return c.BytesProcessed == nil && c.BytesBilled == nil && c.SlotMS == nil && c.RowsAffected == nil && len(c.QueryIDs) == 0
}

// count reads a non-negative integer; negative values (PostgreSQL's -1
// for "unknown") and non-numbers are absent.
func count(v any) *int64 {
	var n int64
	switch x := v.(type) {
	case int:
		n = int64(x)
	case int32:
		n = int64(x)
	case int64:
		n = x
	case uint64:
		if x > math.MaxInt64 {
			return nil
		}
		n = int64(x)
	case float64:
		if math.IsNaN(x) || x > math.MaxInt64 || x != math.Trunc(x) {
			return nil
		}
		n = int64(x)
	case json.Number:
		i, err := x.Int64()
		if err != nil {
			return nil
		}
		n = i
	case string:
		i, err := strconv.ParseInt(x, 10, 64)
		if err != nil {
			return nil
		}
		n = i
	default:
		return nil
	}
	if n < 0 {
		return nil
	}
	return &n
}

// Totals adds up the costs of several nodes. A figure is present when at
// least one node reported it; Nodes counts the nodes added.
type Totals struct {
	// Nodes is how many nodes were added; Reporting how many of them
	// reported any figure.
	Nodes     int `json:"nodes"`
	Reporting int `json:"reporting"`
	// ExecutionSeconds is the sum of their dbt execution times.
	ExecutionSeconds float64 `json:"execution_seconds"`
	// BytesProcessed, BytesBilled, SlotMS and RowsAffected sum what the
	// nodes that reported them reported.
	BytesProcessed *int64 `json:"bytes_processed,omitempty"`
	BytesBilled    *int64 `json:"bytes_billed,omitempty"`
	SlotMS         *int64 `json:"slot_ms,omitempty"`
	RowsAffected   *int64 `json:"rows_affected,omitempty"`
	// Queries is how many query ids the nodes reported.
	Queries int `json:"queries"`
}

// Add adds one node's cost and execution time.
func (t *Totals) Add(c Cost, execution time.Duration) {
	t.Nodes++
	if !c.IsZero() {
		t.Reporting++
	}
	// Rounded to the microsecond, so that sums of float seconds read as
	// the durations they add up.
	t.ExecutionSeconds = math.Round((t.ExecutionSeconds+execution.Seconds())*1e6) / 1e6
	t.BytesProcessed = sum(t.BytesProcessed, c.BytesProcessed)
	t.BytesBilled = sum(t.BytesBilled, c.BytesBilled)
	t.SlotMS = sum(t.SlotMS, c.SlotMS)
	t.RowsAffected = sum(t.RowsAffected, c.RowsAffected)
	t.Queries += len(c.QueryIDs)
}

// IsZero reports whether no node reported any figure (execution time
// aside).
func (t *Totals) IsZero() bool {
	return t.BytesProcessed == nil && t.BytesBilled == nil && t.SlotMS == nil && t.RowsAffected == nil && t.Queries == 0
}

func sum(acc, v *int64) *int64 {
	if v == nil {
		return acc
	}
	n := *v
	if acc != nil {
		if *acc > math.MaxInt64-n {
			n = math.MaxInt64 // saturate rather than wrap
		} else {
			n += *acc
		}
	}
	return &n
}
