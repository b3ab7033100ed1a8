// Package orchestrator runs a dbt build node by node: it resolves the
// selection, plans the executable DAG, schedules nodes on a bounded worker
// pool as soon as their upstreams finish, retries failed nodes, skips what
// is downstream of a failure while independent branches go on, honours
// named concurrency limits, and returns one result per planned node.
package orchestrator
