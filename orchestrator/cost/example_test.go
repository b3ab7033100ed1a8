package cost_test

import (
	"fmt"
	"time"

	"github.com/dbtorch/dbtorch/orchestrator/cost"
)

// Read a BigQuery node's adapter_response and add it to a build's totals
// with a DuckDB seed's: each figure is summed over the nodes that
// reported it.
func ExampleFromAdapterResponse() {
	bq := cost.FromAdapterResponse(map[string]any{
		"_message": "CREATE TABLE (12.0 rows, 3.1 GiB processed)", "code": "CREATE TABLE", "rows_affected": 12.0,
		"bytes_processed": 3.3e9, "bytes_billed": 3.3e9, "slot_ms": 81000.0, "job_id": "job_9Xb2", "location": "EU",
	})
	duck := cost.FromAdapterResponse(map[string]any{"_message": "INSERT 5", "code": "INSERT", "rows_affected": 5.0})
	var t cost.Totals
	t.Add(bq, 40*time.Second)
	t.Add(duck, 2*time.Second)
	fmt.Println(*bq.BytesBilled, *bq.SlotMS, bq.QueryIDs)
	fmt.Println(t.Nodes, t.Reporting, t.ExecutionSeconds, *t.BytesBilled, *t.RowsAffected, t.Queries)
	// Output:
	// 3300000000 81000 [job_9Xb2]
	// 2 2 42 3300000000 17 1
}
