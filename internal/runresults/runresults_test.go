package runresults_test

import (
	"os"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/dbtorch/dbtorch/internal/runresults"
)

func TestParseRealFile(t *testing.T) {
	data, err := os.ReadFile("testdata/build_failing_test.json")
	require.NoError(t, err)
	f, err := runresults.Parse(data)
	require.NoError(t, err)

	assert.Equal(t, "1.11.16", f.Metadata.DBTVersion)
	assert.NotEmpty(t, f.Metadata.Invocation())
	assert.Equal(t, "build", f.Args["which"])
	require.Len(t, f.Results, 15)

	byID := map[string]runresults.Result{}
	for _, e := range f.Results {
		byID[e.UniqueID] = e
	}
	model := byID["model.shop.fct_orders"]
	assert.Equal(t, "success", model.Status)
	assert.Equal(t, "OK", model.Text())
	assert.Nil(t, model.Failures)
	assert.Contains(t, model.Code(), "__dbt__cte__int_order_payments")
	assert.Equal(t, `"shop2"."main"."fct_orders"`, model.Relation())
	require.Len(t, model.Timing, 2)
	assert.Equal(t, "execute", model.Timing[1].Name)
	started, completed := model.Timing[1].Times()
	assert.True(t, completed.After(started))
	assert.InDelta(t, 0.488, model.ExecutionTime, 0.001)

	failing := byID["test.shop.assert_order_amounts_non_negative"]
	assert.Equal(t, "fail", failing.Status)
	require.NotNil(t, failing.Failures)
	assert.Equal(t, int64(8), *failing.Failures)
	assert.Equal(t, runresults.TestFailure, runresults.Classify(failing.Status, failing.Text()))

	assert.Equal(t, "skipped", byID["model.shop.revenue_by_segment"].Status)
}

func TestParseAdapterResponse(t *testing.T) {
	data := []byte(`{"metadata":{"dbt_schema_version":"https://schemas.getdbt.com/dbt/run-results/v6.json"},
	"results":[
	 {"unique_id":"model.p.a","status":"success","adapter_response":{"_message":"SELECT 12","code":"SELECT","rows_affected":12},"failures":null,"message":"SELECT 12","timing":[]},
	 {"unique_id":"model.p.b","status":"success","adapter_response":{"rows_affected":-1}},
	 {"unique_id":"model.p.c","status":"success","adapter_response":{"rows_affected":9007199254740993}},
	 {"unique_id":"model.p.d","status":"error","adapter_response":null,"message":null,"compiled_code":null}
	]}`)
	f, err := runresults.Parse(data)
	require.NoError(t, err)
	require.Len(t, f.Results, 4)
	require.NotNil(t, f.Results[0].RowsAffected())
	assert.Equal(t, int64(12), *f.Results[0].RowsAffected())
	assert.Equal(t, "SELECT", f.Results[0].AdapterResponse["code"])
	assert.Nil(t, f.Results[1].RowsAffected(), "negative counts mean unknown")
	require.NotNil(t, f.Results[2].RowsAffected())
	assert.Equal(t, int64(9007199254740993), *f.Results[2].RowsAffected(), "exact beyond float64")
	assert.Nil(t, f.Results[3].RowsAffected())
	assert.Empty(t, f.Results[3].Text())
}

func TestParseRejects(t *testing.T) {
	for _, in := range []string{``, `{`, `[]`, `{}`, `{"results": 3}`} {
		_, err := runresults.Parse([]byte(in))
		assert.Error(t, err, "input %q", in)
	}
}

func TestOutcomeOf(t *testing.T) {
	tests := map[string]runresults.Outcome{
		"success": runresults.OK, "pass": runresults.OK, "warn": runresults.OK, "no-op": runresults.OK,
		"error": runresults.Failed, "fail": runresults.Failed, "runtime error": runresults.Failed,
		"partial success": runresults.Failed, "something new": runresults.Failed,
		"skipped": runresults.Skipped, "Skipped": runresults.Skipped,
		"reused": runresults.Reused, "Reused": runresults.Reused,
	}
	for status, want := range tests {
		assert.Equal(t, want, runresults.OutcomeOf(status), status)
	}
}

func TestClassify(t *testing.T) {
	tests := []struct {
		name, status, message string
		want                  runresults.Class
	}{
		{"success", "success", "OK", runresults.None},
		{"warn", "warn", "Got 3 results, configured to warn if != 0", runresults.None},
		{"skipped", "skipped", "", runresults.None},
		{"test fail", "fail", "Got 8 results, configured to fail if != 0", runresults.TestFailure},
		{"duckdb catalog", "error", "Runtime Error in model customer_revenue (models/marts/finance/customer_revenue.sql)\n  Catalog Error: Table with name dim_customers_v2 does not exist!", runresults.Database},
		{"duckdb binder", "error", "Runtime Error in model x (models/x.sql)\n  Binder Error: Referenced column \"c\" not found in FROM clause!", runresults.Database},
		{"duckdb lock", "error", "Runtime Error\n  IO Error: Could not set lock on file \"/tmp/x.duckdb\": Conflicting lock is held in python3.11 (PID 42)", runresults.Connection},
		{"postgres column", "error", "Database Error in model x (models/x.sql)\n  column orders.column_that_does_not_exist does not exist\n  LINE 10: where orders.column_that_does_not_exist = 1", runresults.Database},
		{"postgres refused", "error", "Database Error\n  connection to server at \"127.0.0.1\", port 1 failed: Connection refused\n\tIs the server running on that host and accepting TCP/IP connections?", runresults.Connection},
		{"postgres terminated", "error", "Database Error in model x (models/x.sql)\n  terminating connection due to administrator command\n  server closed the connection unexpectedly", runresults.Connection},
		{"compilation", "error", "Compilation Error in model x (models/x.sql)\n  Model 'model.p.x' (models/x.sql) depends on a node named 'missing' which was not found", runresults.Compilation},
		{"parsing", "error", "Parsing Error\n  Error reading p: schema.yml - Runtime Error", runresults.Compilation},
		{"contract", "error", "Compilation Error in model x\n  Contract Error ...", runresults.Compilation},
		{"test erroring on sql", "error", "Database Error in test not_null_x (models/s.yml)\n  relation \"x\" does not exist", runresults.Database},
		{"python model", "error", "Runtime Error in model flaky (models/flaky.py)\n  Python model failed:\n  RuntimeError: failing on purpose", runresults.Unknown},
		{"empty", "error", "", runresults.Unknown},
		{"unknown status", "partial success", "Database Error: 2 batches failed", runresults.Database},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			assert.Equal(t, tt.want.String(), runresults.Classify(tt.status, tt.message).String())
		})
	}
}

// TestWriteReadRoundTrip: what Marshal writes, Parse reads back unchanged
// (the writer and the readers share one schema).
func TestWriteReadRoundTrip(t *testing.T) {
	at := time.Date(2026, 1, 2, 3, 4, 5, 678901000, time.UTC)
	id, msg, code, rel := "inv-1", "OK", "select 1", `"db"."main"."a"`
	compiled := true
	n := int64(3)
	in := &runresults.File{
		Metadata: runresults.Metadata{DBTSchemaVersion: "https://schemas.getdbt.com/dbt/run-results/v6.json", DBTVersion: "1.11.0",
			GeneratedAt: runresults.FormatTime(at), InvocationID: &id, Env: map[string]string{}},
		Results: []runresults.Result{{Status: "success", Timing: []runresults.Timing{runresults.NewTiming("execute", at, at.Add(time.Second))},
			ThreadID: "Thread-1", ExecutionTime: 1, AdapterResponse: map[string]any{"rows_affected": int64(3)}, Message: &msg,
			Failures: &n, UniqueID: "model.p.a", Compiled: &compiled, CompiledCode: &code, RelationName: &rel}},
		ElapsedTime: 1.5,
		Args:        map[string]any{"which": "build", "threads": int64(4)},
	}
	data, err := in.Marshal()
	require.NoError(t, err)
	out, err := runresults.Parse(data)
	require.NoError(t, err)
	assert.Equal(t, in, out)
	started, completed := out.Results[0].Timing[0].Times()
	assert.Equal(t, at, started)
	assert.Equal(t, at.Add(time.Second), completed)
}

func TestParseSources(t *testing.T) {
	doc := `{"metadata": {"dbt_schema_version": "https://schemas.getdbt.com/dbt/sources/v3.json", "generated_at": "2026-01-02T10:00:00.000000Z"},
	"results": [
	 {"unique_id": "source.p.raw.a", "status": "warn", "max_loaded_at": "2026-01-02 08:00:00+00:00",
	  "criteria": {"warn_after": {"count": 1, "period": "hour"}, "error_after": {"count": 1, "period": "day"}}},
	 {"unique_id": "source.p.raw.b", "status": "runtime error", "message": "relation missing"}]}`
	s, err := runresults.ParseSources(strings.NewReader(doc))
	require.NoError(t, err)
	gen := time.Date(2026, 1, 2, 10, 0, 0, 0, time.UTC)
	assert.Equal(t, []runresults.Source{
		{UniqueID: "source.p.raw.a", Status: "warn", MaxLoadedAt: gen.Add(-2 * time.Hour), SnapshottedAt: gen, WarnAfter: time.Hour, ErrorAfter: 24 * time.Hour},
		{UniqueID: "source.p.raw.b", Status: "runtime error", SnapshottedAt: gen, Error: "relation missing"},
	}, s.Results)
	for _, bad := range []string{`{}`, `{"results": [{"status": "pass"}]}`, `{"results": [{"unique_id": "s", "status": "stale"}]}`,
		`{"metadata": {"dbt_schema_version": "https://schemas.getdbt.com/dbt/run-results/v6.json"}, "results": []}`,
		`{"results": [{"unique_id": "s", "status": "pass", "max_loaded_at": "yesterday"}]}`} {
		_, err := runresults.ParseSources(strings.NewReader(bad))
		assert.Error(t, err, bad)
	}
}

// TestNewerStatuses reads a run_results.json in the form dbt 1.12 writes
// it for a build with --manage-state (testdata/build_newer_statuses.json,
// written by hand after dbt-core's NodeStatus and the dbt-state
// reports): a reused model and a test dbt state checked without running
// it (pass, adapter_response NO-OP) are Reused; a saved query's no-op, a
// test that ran and passed, a warning test and a built model are OK.
func TestNewerStatuses(t *testing.T) {
	data, err := os.ReadFile("testdata/build_newer_statuses.json")
	require.NoError(t, err)
	f, err := runresults.Parse(data)
	require.NoError(t, err)
	want := map[string]runresults.Outcome{
		"model.shop.stg_orders":                                  runresults.Reused,
		"test.shop.not_null_stg_orders_order_id.81cfe2fe64":      runresults.Reused,
		"test.shop.unique_stg_orders_order_id.e3b841c71a":        runresults.OK,
		"saved_query.shop.orders_by_day":                         runresults.OK,
		"model.shop.fct_orders":                                  runresults.OK,
		"test.shop.accepted_values_fct_orders_status.1ce6ab157c": runresults.OK,
	}
	require.Len(t, f.Results, len(want))
	for i := range f.Results {
		e := &f.Results[i]
		assert.Equal(t, want[e.UniqueID], runresults.EntryOutcome(e), e.UniqueID)
		assert.Equal(t, runresults.None, runresults.Classify(e.Status, e.Text()), e.UniqueID)
	}
}
