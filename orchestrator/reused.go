package orchestrator

import "github.com/dbtorch/dbtorch/executor"

// CacheReasonReusedByDBT is the CacheReason of a node that dbt itself did
// not run because it reused an earlier run's result (executor.Reused:
// dbt-core 1.12's "reused" status, dbt state, dbt v2). The node ends
// Cached, as if served from dbtorch's cache; dbt's message follows the
// reason ("reused by dbt: <message>") when it gave one.
const CacheReasonReusedByDBT = "reused by dbt"

// reusedReason is the CacheReason of a result dbt reported as reused.
func reusedReason(er *executor.Result) string {
	if er.Message == "" {
		return CacheReasonReusedByDBT
	}
	return CacheReasonReusedByDBT + ": " + er.Message
}
