package executor_test

import (
	"os"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/dbtorch/dbtorch/executor"
)

// TestParseNewerStatuses: dbt 1.12's reused status and dbt state's
// tests checked without running (pass, adapter_response NO-OP) are
// Reused, never an error; a saved query's no-op is a Success.
func TestParseNewerStatuses(t *testing.T) {
	data, err := os.ReadFile("../internal/runresults/testdata/build_newer_statuses.json")
	require.NoError(t, err)
	rs, inv, err := executor.ParseRunResults(data)
	require.NoError(t, err)
	assert.Equal(t, "5b0e3c44-7f4e-4a53-9d0a-0c9e0a6b1f20", inv)
	got := map[string]executor.Status{}
	for _, r := range rs {
		got[r.UniqueID] = r.Status
		assert.Equal(t, executor.KindNone, r.Kind, r.UniqueID)
	}
	assert.Equal(t, map[string]executor.Status{
		"model.shop.stg_orders":                                  executor.Reused,
		"test.shop.not_null_stg_orders_order_id.81cfe2fe64":      executor.Reused,
		"test.shop.unique_stg_orders_order_id.e3b841c71a":        executor.Success,
		"saved_query.shop.orders_by_day":                         executor.Success,
		"model.shop.fct_orders":                                  executor.Success,
		"test.shop.accepted_values_fct_orders_status.1ce6ab157c": executor.Success,
	}, got)
}
