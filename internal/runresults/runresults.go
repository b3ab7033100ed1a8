// Package runresults reads dbt's run_results.json (schema v4 to v6) and
// classifies dbt's per-node statuses and messages.
//
// It is shared by the executors (executor, cloud) and by tests of the
// artifact writers. It has no dependency on the executor package: the
// executor package maps Entry and Class onto its public Result and Kind.
package runresults

import (
	"encoding/json"
	"fmt"
	"strings"
	"time"
)

// File is a decoded run_results.json.
type File struct {
	Metadata    Metadata
	ElapsedTime float64
	// Args is dbt's "args" block as generic JSON.
	Args    map[string]any
	Results []Entry
}

// Metadata is run_results.json's metadata block.
type Metadata struct {
	SchemaVersion       string `json:"dbt_schema_version"`
	DBTVersion          string `json:"dbt_version"`
	GeneratedAt         string `json:"generated_at"`
	InvocationID        string `json:"invocation_id"`
	InvocationStartedAt string `json:"invocation_started_at"`
}

// Timing is one timing entry of a result.
type Timing struct {
	Name        string    `json:"name"`
	StartedAt   time.Time `json:"started_at"`
	CompletedAt time.Time `json:"completed_at"`
}

// Entry is one node's result as dbt wrote it.
type Entry struct {
	UniqueID        string         `json:"unique_id"`
	Status          string         `json:"status"`
	Timing          []Timing       `json:"timing"`
	ThreadID        string         `json:"thread_id"`
	ExecutionTime   float64        `json:"execution_time"`
	AdapterResponse map[string]any `json:"adapter_response"`
	Message         string         `json:"message"`
	// Failures is a test's failure count; nil when dbt wrote null.
	Failures     *int64 `json:"failures"`
	Compiled     *bool  `json:"compiled"`
	CompiledCode string `json:"compiled_code"`
	RelationName string `json:"relation_name"`
}

// RowsAffected returns adapter_response.rows_affected, or nil when the
// adapter gave none (or a negative count, which adapters use for
// "unknown").
func (e *Entry) RowsAffected() *int64 {
	v, ok := e.AdapterResponse["rows_affected"]
	if !ok || v == nil {
		return nil
	}
	var n int64
	switch x := v.(type) {
	case int64:
		n = x
	case float64:
		n = int64(x)
	case int:
		n = int64(x)
	default:
		return nil
	}
	if n < 0 {
		return nil
	}
	return &n
}

type rawFile struct {
	Metadata    Metadata          `json:"metadata"`
	ElapsedTime float64           `json:"elapsed_time"`
	Args        map[string]any    `json:"args"`
	Results     []json.RawMessage `json:"results"`
}

// Parse decodes the contents of a run_results.json file. Unknown fields
// are ignored; null fields decode as zero values.
func Parse(data []byte) (*File, error) {
	var raw rawFile
	if err := json.Unmarshal(data, &raw); err != nil {
		return nil, fmt.Errorf("runresults: decode: %w", err)
	}
	if raw.Results == nil && raw.Metadata.SchemaVersion == "" {
		return nil, fmt.Errorf("runresults: not a run_results.json (no metadata and no results)")
	}
	f := &File{Metadata: raw.Metadata, ElapsedTime: raw.ElapsedTime, Args: raw.Args}
	f.Results = make([]Entry, 0, len(raw.Results))
	for i, r := range raw.Results {
		var e Entry
		dec := json.NewDecoder(strings.NewReader(string(r)))
		dec.UseNumber()
		// Decode twice: typed fields, then adapter_response with numbers
		// kept exact.
		if err := json.Unmarshal(r, &e); err != nil {
			return nil, fmt.Errorf("runresults: result %d: %w", i, err)
		}
		var ar struct {
			AdapterResponse map[string]any `json:"adapter_response"`
		}
		if err := dec.Decode(&ar); err != nil {
			return nil, fmt.Errorf("runresults: result %d: %w", i, err)
		}
		e.AdapterResponse = normalizeNumbers(ar.AdapterResponse)
		f.Results = append(f.Results, e)
	}
	return f, nil
}

// normalizeNumbers turns json.Number values into int64 where they are
// integers and float64 otherwise, recursively, so callers see plain Go
// values.
func normalizeNumbers(m map[string]any) map[string]any {
	if m == nil {
		return nil
	}
	for k, v := range m {
		m[k] = normalizeValue(v)
	}
	return m
}

func normalizeValue(v any) any {
	switch x := v.(type) {
	case json.Number:
		if i, err := x.Int64(); err == nil {
			return i
		}
		f, _ := x.Float64()
		return f
	case map[string]any:
		return normalizeNumbers(x)
	case []any:
		for i := range x {
			x[i] = normalizeValue(x[i])
		}
		return x
	}
	return v
}
