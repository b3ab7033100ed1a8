// Package cache lets a build skip the nodes whose inputs have not changed
// since they were last built, across runs and processes, without ever
// serving a stale result.
//
// A Keyer hashes everything that changes what a node builds into its key
// (see Keyer); a Store keeps the latest successful result per node on any
// afero.Fs, with atomic writes and expiry; a Freshness snapshot from
// `dbt source freshness` (RunFreshness, ParseSources) makes new data in a
// source change the keys of exactly the nodes that read it, bounds how
// long their entries live, and tells which nodes read stale sources.
// Cache and Session tie these together for an orchestrator (package
// cache/orchcache adapts a Session to orchestrator.Cache), and
// Session.Predict tells ahead of a build what it will serve from the
// cache. Fingerprint and Store.PutManifest let an unchanged rerun skip
// `dbt parse` as well.
//
// What a key cannot see: data that changes in the warehouse outside dbt.
// A model reading a source is served from the cache until its entry
// expires, unless a freshness snapshot puts the source's max_loaded_at
// into its key; give such builds a TTL (Options.TTL, or TTLMetaKey per
// node) or a snapshot. Incremental models and snapshots, whose results
// depend on what their own table already holds, are not cached unless
// KeyConfig says so.
package cache
