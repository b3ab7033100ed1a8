package artifacts_test

import (
	"bytes"
	"encoding/json"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/dbtorch/dbtorch/artifacts"
	"github.com/dbtorch/dbtorch/orchestrator"
)

// bigQueryRun is the fixture build as BigQuery would have reported it:
// bytes, slot time and job ids in adapter_response, and a cache entry
// that recorded the same for the cached node.
func bigQueryRun(t *testing.T) *orchestrator.Run {
	run := fixtureRun(t)
	bq := func(processed, billed, slot float64, job string) map[string]any {
		return map[string]any{"_message": "CREATE TABLE", "code": "CREATE TABLE", "bytes_processed": processed,
			"bytes_billed": billed, "slot_ms": slot, "job_id": job, "location": "US", "project_id": "acme"}
	}
	run.Result("model.shop.stg_customers").AdapterResponse = bq(2048, 10485760, 1500, "job_stg")
	run.Result("snapshot.shop.orders_snapshot").AdapterResponse = bq(5<<30, 5<<30, 93000, "job_snap")
	run.Result("model.shop.customer_revenue").AdapterResponse = bq(1<<20, 10485760, 200, "job_rev")
	run.Result("model.shop.fct_orders").Saved = &orchestrator.SavedRun{ExecutionTime: 2 * time.Second,
		AdapterResponse: bq(3<<30, 3<<30, 45000, "job_fct_earlier")}
	return run
}

func TestSummaryCost(t *testing.T) {
	md := render(t, &artifacts.Summary{}, fixtureRun(t))
	assert.Contains(t, md, "## Cost\n\n💰 The warehouse reported, for 2 of the 8 nodes that ran: **13** rows affected.\n\n"+
		"♻️ Saved by the cache: 1 node not run, 250ms of dbt execution time, **8** rows affected (as recorded when their cache entries were stored).\n\n")
	assert.Contains(t, md, "| `model.shop.fct_orders` ♻️ saved |  |  |  | 8 |  |\n")

	md = render(t, &artifacts.Summary{}, bigQueryRun(t))
	for _, want := range []string{
		"💰 The warehouse reported, for 5 of the 8 nodes that ran: **5.0 GiB** processed · **5.0 GiB** billed · **1m35s** of slot time · **13** rows affected · 3 query ids.\n",
		"♻️ Saved by the cache: 1 node not run, 2.00s of dbt execution time, **3.0 GiB** processed · **3.0 GiB** billed · **45.00s** of slot time · 1 query id",
		"| node | bytes processed | bytes billed | slot time | rows | query id |\n|---|---:|---:|---:|---:|---|\n" +
			"| `snapshot.shop.orders_snapshot` | 5.0 GiB | 5.0 GiB | 1m33s |  | `job_snap` |\n" +
			"| `model.shop.fct_orders` ♻️ saved | 3.0 GiB | 3.0 GiB | 45.00s |  | `job_fct_earlier` |\n" +
			"| `model.shop.customer_revenue` | 1.0 MiB | 10.0 MiB | 200ms |  | `job_rev` |\n" +
			"| `model.shop.stg_customers` | 2.0 KiB | 10.0 MiB | 1.50s |  | `job_stg` |\n" +
			"| `seed.shop.orders` |  |  |  | 8 |  |\n",
	} {
		assert.Contains(t, md, want)
	}
	assert.Less(t, strings.Index(md, "## Cost"), strings.Index(md, "## Timeline"))

	none := fixtureRun(t)
	for i := range none.Results {
		none.Results[i].AdapterResponse, none.Results[i].RowsAffected, none.Results[i].Saved = nil, nil, nil
		if none.Results[i].Status == orchestrator.Cached {
			none.Results[i].Status = orchestrator.Skipped
		}
	}
	assert.NotContains(t, render(t, &artifacts.Summary{}, none), "## Cost", "nothing reported, nothing cached: no section")
	quiet := fixtureRun(t)
	for i := range quiet.Results {
		quiet.Results[i].AdapterResponse, quiet.Results[i].RowsAffected = nil, nil
	}
	assert.Contains(t, render(t, &artifacts.Summary{}, quiet), "💰 The warehouse reported no figures (adapter\\_response) for the 8 nodes that ran.\n\n♻️ Saved by the cache: 1 node not run")
}

// TestLineageCostFacets: a node's COMPLETE or FAIL event carries what the
// warehouse reported for it (dbtorch_cost), the build's last event the
// totals (dbtorch_cost_totals); both validate against their schema, which
// rejects a negative figure.
func TestLineageCostFacets(t *testing.T) {
	schemas := openLineageSchemas(t)
	events, err := (&artifacts.Lineage{DatasetNamespace: "bigquery://"}).Events(bigQueryRun(t))
	require.NoError(t, err)
	costs := map[string]map[string]any{}
	var totals map[string]any
	for _, ev := range events {
		line, err := json.Marshal(ev)
		require.NoError(t, err)
		for _, err := range schemas.check(t, line) {
			t.Errorf("%v\nevent: %s", err, line)
		}
		doc := mustJSON(t, line)
		facets := doc["run"].(map[string]any)["facets"].(map[string]any)
		if c, ok := facets["dbtorch_cost"]; ok {
			assert.NotEqual(t, "START", ev.EventType)
			costs[ev.Job.Name] = c.(map[string]any)
		}
		if c, ok := facets["dbtorch_cost_totals"]; ok {
			assert.Equal(t, "dbtorch", ev.Job.Namespace)
			assert.Nil(t, totals, "once")
			totals = c.(map[string]any)
		}
	}
	require.Contains(t, costs, "snapshot.shop.orders_snapshot")
	assert.Equal(t, map[string]any{"_producer": artifacts.DefaultProducer, "_schemaURL": artifacts.CostRunFacetSchemaURL,
		"bytes_processed": float64(5 << 30), "bytes_billed": float64(5 << 30), "slot_ms": float64(93000), "query_ids": []any{"job_snap"}},
		costs["snapshot.shop.orders_snapshot"])
	assert.Equal(t, []any{"job_rev"}, costs["model.shop.customer_revenue"]["query_ids"], "a failed node's cost too")
	assert.Equal(t, float64(8), costs["seed.shop.orders"]["rows_affected"])
	assert.Len(t, costs, 5, "only nodes that reported something")
	require.NotNil(t, totals)
	ran := totals["ran"].(map[string]any)
	assert.Equal(t, float64(8), ran["nodes"])
	assert.Equal(t, float64(5), ran["reporting"])
	assert.Equal(t, float64(5<<30+1<<20+2048), ran["bytes_processed"])
	saved := totals["saved_by_cache"].(map[string]any)
	assert.Equal(t, float64(1), saved["nodes"])
	assert.Equal(t, float64(2), saved["execution_seconds"])
	assert.Equal(t, float64(3<<30), saved["bytes_billed"])

	// The schema can fail.
	line, err := json.Marshal(events[len(events)-1])
	require.NoError(t, err)
	bad := bytes.Replace(line, []byte(`"bytes_processed":`), []byte(`"bytes_processed":-`), 1)
	assert.NotEmpty(t, schemas.check(t, bad), "a negative figure is rejected")
}
