// Package selector implements dbt's node-selection language natively:
// `--select`, `--exclude`, `--selector`, `--indirect-selection` and
// `--resource-type` give the same set of unique_ids as `dbt ls` (and
// `dbt build`) on the same manifest, in microseconds to milliseconds and
// without a dbt installation.
//
// The grammar is dbt's (dbt-core 1.11, core/dbt/graph): one criterion is
//
//	[@][N+][method[.arg...]:]value[+[N]]
//
// where a value without a method is a path when it contains "/", a file when
// it ends in .sql, .py or .csv, and an fqn otherwise. Space-separated criteria
// are united, comma-separated ones intersected, repeated Select elements
// united and Exclude subtracted. Methods: fqn, tag, group, access, source,
// path, file, package, config.KEY[.KEY...], test_name, test_type,
// resource_type, state, exposure, metric, result, source_status, version,
// semantic_model, saved_query and unit_test. Tests and unit tests are added
// by indirect selection per criterion (eager, cautious, buildable, empty) as
// dbt adds them. YAML selectors come from the manifest's "selectors" block.
//
// Three Resolvers give the answer. Native evaluates the manifest itself
// (microseconds on small projects, milliseconds on thousands of nodes);
// WithProjectFS makes its path: globs read the project's real files as dbt
// does. DBTLs asks `dbt ls --output json --output-keys unique_id` for dbt's
// own word, one process per question; DBTLs.Start returns a Session, a warm
// Python worker that parses once and answers many questions through dbt's
// programmatic runner. The package's tests run hundreds of expressions
// through Native and dbt and require identical sets, and identical failures.
//
// Parity target: the dbt-core that wrote the manifest (metadata.dbt_version),
// for 1.8 to 1.11 (the pinned 1.11.16 in the tests, each minor in make
// compat). Where those versions select differently Native follows the
// manifest's version; where it cannot promise dbt's answer (state: on 1.8
// manifests, anything on manifests older than 1.8) it fails with a
// *VersionError rather than guess. dbt 1.12's selector: method is not in
// 1.11 and is rejected like any unknown method.
//
// Errors are typed: *SyntaxError for an expression that does not parse
// (including an unknown method), *ValueError for a value a method rejects
// (an unknown resource type, state sub-selector, version kind, ...),
// *UnknownSelectorError for an unknown --selector name, errors wrapping
// ErrNoState, ErrNoRunResults or ErrNoSources when a state-based method
// lacks its input, and *VersionError (wrapping ErrUnsupportedVersion) for
// a selection Native does not resolve on the manifest's dbt-core version.
// An unknown method is never an empty set.
package selector
