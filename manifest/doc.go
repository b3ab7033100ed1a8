// Package manifest reads dbt's manifest.json — every schema version dbt has
// written, v4 (dbt 1.0) to v12 (dbt 1.8+ and dbt's Rust engine) — into typed
// nodes, and derives from it what an orchestrator needs: the dependency
// graph (Graph), and for a selection and test strategy the executable plan
// (Plan) with dependencies traced through sources, ephemeral models and
// unselected nodes, and waves.
//
// Parsing is lenient where dbt versions differ (unknown fields are ignored,
// missing optional fields are defaulted, v6 and v7+ field names are both
// read) and strict where the bytes are not a manifest: invalid JSON, a
// section of the wrong type or a node without unique_id is a *ParseError
// that names the file, section, node and field.
package manifest
