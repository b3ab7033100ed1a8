package cost_test

import (
	"encoding/json"
	"math"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/dbtorch/dbtorch/orchestrator/cost"
)

func i64(v int64) *int64 { return &v }

// decode reads an adapter_response as the executor does (encoding/json
// into map[string]any: numbers are float64).
func decode(t *testing.T, s string) map[string]any {
	t.Helper()
	var m map[string]any
	require.NoError(t, json.Unmarshal([]byte(s), &m))
	return m
}

// TestAdapterShapes: the adapter_response of each adapter, as its
// AdapterResponse dataclass serialises it into run_results.json.
func TestAdapterShapes(t *testing.T) {
	for _, tc := range []struct {
		name, response string
		want           cost.Cost
	}{
		{"bigquery", `{"_message": "CREATE TABLE (5.0 rows, 1.2 KiB processed)", "code": "CREATE TABLE", "rows_affected": 5,
			"bytes_processed": 1234, "bytes_billed": 10485760, "location": "US", "project_id": "acme", "job_id": "job_4f2a", "slot_ms": 350}`,
			cost.Cost{BytesProcessed: i64(1234), BytesBilled: i64(10485760), SlotMS: i64(350), RowsAffected: i64(5), QueryIDs: []string{"job_4f2a"}}},
		{"bigquery view", `{"_message": "CREATE VIEW", "code": "CREATE VIEW", "rows_affected": null, "bytes_processed": 0, "bytes_billed": 0,
			"location": "US", "project_id": "acme", "job_id": "job_77", "slot_ms": 0}`,
			cost.Cost{BytesProcessed: i64(0), BytesBilled: i64(0), SlotMS: i64(0), QueryIDs: []string{"job_77"}}},
		{"snowflake", `{"_message": "SUCCESS 1", "code": "SUCCESS", "rows_affected": 1, "query_id": "01b2c3d4-0602-ab5e-0000-4b2d0004f0e6",
			"rows_inserted": 1, "rows_deleted": 0, "rows_updated": 0, "rows_duplicates": 0}`,
			cost.Cost{RowsAffected: i64(1), QueryIDs: []string{"01b2c3d4-0602-ab5e-0000-4b2d0004f0e6"}}},
		{"postgres insert", `{"_message": "INSERT 0 8", "code": "INSERT", "rows_affected": 8}`, cost.Cost{RowsAffected: i64(8)}},
		{"postgres ddl", `{"_message": "CREATE VIEW", "code": "CREATE VIEW", "rows_affected": -1}`, cost.Cost{}},
		{"duckdb model", `{"_message": "OK"}`, cost.Cost{}},
		{"duckdb seed", `{"_message": "INSERT 5", "code": "INSERT", "rows_affected": 5}`, cost.Cost{RowsAffected: i64(5)}},
		{"empty", `{}`, cost.Cost{}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			got := cost.FromAdapterResponse(decode(t, tc.response))
			assert.Equal(t, tc.want, got)
			assert.Equal(t, tc.want.IsZero(), got.IsZero())
		})
	}
	assert.True(t, cost.FromAdapterResponse(nil).IsZero())
}

// TestNumberForms: integers, floats, json.Number and numeric strings are
// read; fractions, negatives, NaN, overflow and other types are absent.
func TestNumberForms(t *testing.T) {
	for v, want := range map[any]*int64{
		int(7): i64(7), int64(7): i64(7), uint64(7): i64(7), float64(7): i64(7), json.Number("7"): i64(7), "7": i64(7),
		float64(7.5): nil, int64(-1): nil, "-3": nil, "7 bytes": nil, true: nil, math.NaN(): nil, math.Inf(1): nil,
		uint64(math.MaxUint64): nil, json.Number("7.5"): nil,
	} {
		assert.Equal(t, want, cost.FromAdapterResponse(map[string]any{"bytes_billed": v}).BytesBilled, "%T %v", v, v)
	}
	ids := cost.FromAdapterResponse(map[string]any{"query_id": []any{"a", "b", "a", 3, ""}, "job_id": "b"}).QueryIDs
	assert.Equal(t, []string{"a", "b"}, ids, "query id lists, deduplicated")
}

func TestTotals(t *testing.T) {
	var tot cost.Totals
	tot.Add(cost.Cost{BytesBilled: i64(10), RowsAffected: i64(5), QueryIDs: []string{"q1"}}, time.Second)
	tot.Add(cost.Cost{}, 500*time.Millisecond)
	tot.Add(cost.Cost{BytesBilled: i64(30), SlotMS: i64(7), QueryIDs: []string{"q2", "q3"}}, 0)
	assert.Equal(t, 3, tot.Nodes)
	assert.Equal(t, 2, tot.Reporting)
	assert.InDelta(t, 1.5, tot.ExecutionSeconds, 1e-9)
	assert.Equal(t, i64(40), tot.BytesBilled)
	assert.Equal(t, i64(7), tot.SlotMS)
	assert.Equal(t, i64(5), tot.RowsAffected)
	assert.Nil(t, tot.BytesProcessed, "nobody reported it: absent, not zero")
	assert.Equal(t, 3, tot.Queries)
	assert.False(t, tot.IsZero())

	b, err := json.Marshal(tot)
	require.NoError(t, err)
	assert.JSONEq(t, `{"nodes": 3, "reporting": 2, "execution_seconds": 1.5, "bytes_billed": 40, "slot_ms": 7, "rows_affected": 5, "queries": 3}`, string(b))
	assert.False(t, strings.Contains(string(b), "bytes_processed"))

	var big cost.Totals
	big.Add(cost.Cost{BytesBilled: i64(math.MaxInt64 - 1)}, 0)
	big.Add(cost.Cost{BytesBilled: i64(5)}, 0)
	assert.Equal(t, i64(math.MaxInt64), big.BytesBilled, "saturates, never wraps")
	assert.True(t, (&cost.Totals{}).IsZero())
}
