// Package runresults is dbtorch's one reader and writer of dbt's result
// artifacts: run_results.json (read: schema v4 to v6; written: v6) and
// sources.json (`dbt source freshness`, read: v1 to v3). It also
// classifies dbt's per-node statuses and messages.
//
// The executors (executor, cloud, through executor.ParseRunResults) read
// run_results.json with it, the artifacts reporter writes it, the selector
// (result: and source_status: methods) and the cache (source freshness)
// read their files with it. It depends on no other dbtorch package: each
// caller maps File, Result and Class onto its own public types.
package runresults

import (
	"bytes"
	"encoding/json"
	"fmt"
	"time"
)

// File is a run_results.json document. Its fields are the file's keys, in
// the order dbt writes them; a nullable key is a pointer (nil is null).
type File struct {
	Metadata    Metadata       `json:"metadata"`
	Results     []Result       `json:"results"`
	ElapsedTime float64        `json:"elapsed_time"`
	Args        map[string]any `json:"args"`
}

// Metadata is run_results.json's metadata block.
type Metadata struct {
	DBTSchemaVersion    string            `json:"dbt_schema_version"`
	DBTVersion          string            `json:"dbt_version"`
	GeneratedAt         string            `json:"generated_at"`
	InvocationID        *string           `json:"invocation_id"`
	InvocationStartedAt *string           `json:"invocation_started_at"`
	Env                 map[string]string `json:"env"`
}

// Invocation returns the invocation_id, or "" when dbt wrote none.
func (m *Metadata) Invocation() string {
	return deref(m.InvocationID)
}

// Result is one node's entry in run_results.json. Every key dbt requires
// is always written; nullable ones are nil pointers when unknown.
type Result struct {
	Status          string         `json:"status"`
	Timing          []Timing       `json:"timing"`
	ThreadID        string         `json:"thread_id"`
	ExecutionTime   float64        `json:"execution_time"`
	AdapterResponse map[string]any `json:"adapter_response"`
	Message         *string        `json:"message"`
	// Failures is a test's failure count; nil when dbt wrote null.
	Failures     *int64  `json:"failures"`
	UniqueID     string  `json:"unique_id"`
	Compiled     *bool   `json:"compiled"`
	CompiledCode *string `json:"compiled_code"`
	RelationName *string `json:"relation_name"`
	BatchResults any     `json:"batch_results"`
}

// Batch is one microbatch batch's window as dbt writes it in
// batch_results: [start, end], ISO 8601 times.
type Batch [2]time.Time

// Batches returns the entry's batch_results (a microbatch model's):
// the windows of the batches that succeeded and failed, and false when
// dbt wrote none (null, or not in dbt's shape).
func (r *Result) Batches() (successful, failed []Batch, ok bool) {
	m, isMap := r.BatchResults.(map[string]any)
	if !isMap {
		return nil, nil, false
	}
	read := func(key string) ([]Batch, bool) {
		list, isList := m[key].([]any)
		if m[key] == nil {
			return nil, true
		}
		if !isList {
			return nil, false
		}
		out := make([]Batch, 0, len(list))
		for _, b := range list {
			pair, isPair := b.([]any)
			if !isPair || len(pair) != 2 {
				return nil, false
			}
			var w Batch
			for k, v := range pair {
				text, _ := v.(string)
				t, err := time.Parse(time.RFC3339Nano, text)
				if err != nil {
					return nil, false
				}
				w[k] = t
			}
			out = append(out, w)
		}
		return out, true
	}
	s, ok1 := read("successful")
	f, ok2 := read("failed")
	if !ok1 || !ok2 {
		return nil, nil, false
	}
	return s, f, true
}

// BatchResultsOf returns batch_results in dbt's shape ({"successful":
// [[start, end], ...], "failed": [...]}, times as dbt writes them:
// 2024-01-01T00:00:00+00:00).
func BatchResultsOf(successful, failed []Batch) map[string]any {
	enc := func(bs []Batch) []any {
		out := make([]any, 0, len(bs))
		for _, b := range bs {
			out = append(out, []any{b[0].UTC().Format("2006-01-02T15:04:05-07:00"), b[1].UTC().Format("2006-01-02T15:04:05-07:00")})
		}
		return out
	}
	return map[string]any{"successful": enc(successful), "failed": enc(failed)}
}

// Timing is one of dbt's timing entries ("compile", "execute"), its times
// as dbt writes them (FormatTime), null when unknown.
type Timing struct {
	Name        string  `json:"name"`
	StartedAt   *string `json:"started_at"`
	CompletedAt *string `json:"completed_at"`
}

// Times returns the entry's times; a missing or unreadable one is zero.
func (t Timing) Times() (started, completed time.Time) {
	started, _ = ParseTime(deref(t.StartedAt))
	completed, _ = ParseTime(deref(t.CompletedAt))
	return started, completed
}

// NewTiming returns a timing entry; a zero time is written as null.
func NewTiming(name string, started, completed time.Time) Timing {
	return Timing{Name: name, StartedAt: OptTime(started), CompletedAt: OptTime(completed)}
}

// Text returns the result's message, "" for null.
func (e *Result) Text() string { return deref(e.Message) }

// Code returns the result's compiled code, "" for null.
func (e *Result) Code() string { return deref(e.CompiledCode) }

// Relation returns the result's relation name, "" for null.
func (e *Result) Relation() string { return deref(e.RelationName) }

// RowsAffected returns adapter_response.rows_affected, or nil when the
// adapter gave none (or a negative count, which adapters use for
// "unknown").
func (e *Result) RowsAffected() *int64 {
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

// Parse decodes the contents of a run_results.json file. Unknown keys are
// ignored; null keys decode as nil or zero values; numbers in
// adapter_response and args are int64 when integral (exact beyond
// float64's range), float64 otherwise.
func Parse(data []byte) (*File, error) {
	var f File
	dec := json.NewDecoder(bytes.NewReader(data))
	dec.UseNumber()
	if err := dec.Decode(&f); err != nil {
		return nil, fmt.Errorf("runresults: decode: %w", err)
	}
	if f.Results == nil && f.Metadata.DBTSchemaVersion == "" {
		return nil, fmt.Errorf("runresults: not a run_results.json (no metadata and no results)")
	}
	if f.Results == nil {
		f.Results = []Result{}
	}
	f.Args = normalizeNumbers(f.Args)
	for i := range f.Results {
		r := &f.Results[i]
		r.AdapterResponse = normalizeNumbers(r.AdapterResponse)
		r.BatchResults = normalizeValue(r.BatchResults)
	}
	return &f, nil
}

// Marshal encodes the document as dbt does: indented JSON, HTML characters
// not escaped, a final newline.
func (f *File) Marshal() ([]byte, error) {
	var buf bytes.Buffer
	enc := json.NewEncoder(&buf)
	enc.SetEscapeHTML(false)
	enc.SetIndent("", "  ")
	if err := enc.Encode(f); err != nil {
		return nil, fmt.Errorf("runresults: encode run_results.json: %w", err)
	}
	return buf.Bytes(), nil
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

func deref[T any](p *T) T {
	var zero T
	if p == nil {
		return zero
	}
	return *p
}
