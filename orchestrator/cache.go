package orchestrator

import (
	"context"

	"github.com/dbtorch/dbtorch/manifest"
)

// Cache lets a build report nodes whose inputs are unchanged as Cached
// instead of running them. The cache package implements it; any
// implementation must be safe for concurrent use.
//
// The orchestrator asks only about models, seeds and snapshots (never
// tests), and only when every planned upstream of the node was itself
// Cached in this build: anything downstream of a node that ran is run too.
// With BuildOptions.FullRefresh it does not call Lookup, but still records
// what it builds. After every model, seed or snapshot that ran (not cached,
// not skipped) it calls Record, so that a success is stored and a failure
// removes any entry: a failed node leaves no entry.
type Cache interface {
	// Key returns the node's cache key for this build. An empty key with a
	// nil error means the node is not cacheable (it is then run, and not
	// stored).
	Key(ctx context.Context, node *manifest.Node) (string, error)
	// Lookup reports whether a live (unexpired) entry for node exists
	// under key.
	Lookup(ctx context.Context, node *manifest.Node, key string) (bool, error)
	// Record is told the final result of a node that ran, with the key
	// Key gave (possibly empty): store it under key when res.Status is
	// Success, and delete the node's entry otherwise.
	Record(ctx context.Context, node *manifest.Node, key string, res *NodeResult) error
}

// StaleChecker is an optional interface of a Cache, used when
// BuildOptions.OnlyFreshSources is set: it names the planned nodes that
// read (directly or through ephemeral models) a stale source, with the
// reason. Those nodes and their descendants are Skipped with that reason.
// When freshness cannot be determined it should return no stale nodes and
// report the problem itself (fail open).
type StaleChecker interface {
	StaleNodes(ctx context.Context, g *manifest.Graph, nodes []string) (map[string]string, error)
}

// BuildInfo describes one build to a BuildCache.
type BuildInfo struct {
	// Manifest and Graph are the build's project and its graph.
	Manifest *manifest.Manifest
	Graph    *manifest.Graph
	// Vars are the build's vars: BuildOptions.Vars merged over
	// Config.Vars, as every executor request of the build carries them.
	// Nil when there are none.
	Vars map[string]any
	// FullRefresh is BuildOptions.FullRefresh.
	FullRefresh bool
	// RunID is the build's id.
	RunID string
}

// BuildCache is an optional interface of a Cache whose keys depend on the
// build, not only on the node: Cache.Key sees the node only, so a cache
// whose keys cover vars must learn each build's vars from ForBuild.
//
// The orchestrator calls ForBuild once per build (RunBuild and Plan),
// before it asks for any key, and uses the Cache it returns for everything
// in that build, optional interfaces (StaleChecker, Warner) included; it
// may return its receiver. When ForBuild fails the build fails open,
// visibly: it runs without a cache (every node runs, none is skipped as
// stale) and the error is logged and added to Run.Warnings.
type BuildCache interface {
	Cache
	ForBuild(ctx context.Context, info BuildInfo) (Cache, error)
}

// Warner is an optional interface of a Cache. Warnings returns the
// problems that make the cache do less than the build asked for, one
// sentence each: for instance a source freshness snapshot that could not
// be taken, so that nothing is served from the cache and nothing is
// skipped as stale (failing open). The orchestrator asks once per build
// (RunBuild or Plan), before running anything, and reports them in
// Run.Warnings and BuildPlan.Warnings; the cache logs them itself.
type Warner interface {
	Warnings() []string
}
