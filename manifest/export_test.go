package manifest

// NewDBTGraph builds the graph of m with dbt's edges only (no inferred
// edges), for the tests that compare it with dbt's own graph.
func NewDBTGraph(m *Manifest) (*Graph, error) { return newGraph(m, false) }
