package orchestrator

import (
	"context"
	"time"

	"github.com/dbtorch/dbtorch/executor"
	"github.com/dbtorch/dbtorch/manifest"
)

// Cache lets a build report nodes whose inputs are unchanged as Cached
// instead of running them. The cache package implements it; any
// implementation must be safe for concurrent use.
//
// The orchestrator asks for the key of every planned node once its planned
// upstreams have finished, and looks a node up (Lookup) only when its key
// is not empty and every planned upstream of it that is not a test was
// itself Cached in this build: anything downstream of a node that ran is
// run too. That one rule serves models, seeds and snapshots, and tests
// alike (a test's upstreams are the nodes it tests; a cache that never
// reuses tests gives them an empty key). With BuildOptions.FullRefresh it
// does not call Lookup, but still records what it builds. After every
// node that ran (not cached, not skipped) it calls Record, tests only when
// their key is not empty, so that a success is stored and a failure
// removes any entry: a failed node leaves no entry.
type Cache interface {
	// Key returns the node's cache key for this build. An empty key with a
	// nil error means the node is not cacheable (it is then run, and not
	// stored).
	Key(ctx context.Context, node *manifest.Node) (string, error)
	// Lookup reports whether the node may be served from an entry stored
	// under key, and why (or why not), in a few words: "unchanged and
	// relation present", "key changed: code", "expired", "relation
	// missing", ... The reason is reported in NodeResult.CacheReason and
	// BuildPlan.Reasons. An error is logged and makes the node run.
	Lookup(ctx context.Context, node *manifest.Node, key string) (hit bool, why string, err error)
	// Record is told the final result of a node that ran, with the key
	// Key gave (possibly empty): store it under key when res.Status is
	// Success, and delete the node's entry otherwise.
	Record(ctx context.Context, node *manifest.Node, key string, res *NodeResult) error
}

// Cache reasons the orchestrator gives itself, when it does not ask the
// cache (NodeResult.CacheReason, BuildPlan.Reasons).
const (
	// CacheReasonFullRefresh: the build is a full refresh; nothing is
	// served from the cache.
	CacheReasonFullRefresh = "full refresh"
	// CacheReasonUpstreamRan: a planned upstream ran in this build (or is
	// predicted to); the reason names it ("upstream ran: <unique_id>").
	CacheReasonUpstreamRan = "upstream ran"
	// CacheReasonStaleSource: the node reads a stale source and is
	// skipped (BuildOptions.OnlyFreshSources).
	CacheReasonStaleSource = "stale source"
)

// cacheStep is the build's one cache decision for node i, taken when its
// planned upstreams have finished (or, in Plan, have been predicted): it
// computes the node's key and, when the node may be served — caching is
// on, the key is not empty, the build is not a full refresh, no source it
// reads is stale, and every planned upstream that is not a test was
// served from the cache in this build — looks it up. On a hit the node
// ends as Cached (queuedAt, when not zero, gives its WaitTime). The key
// and the reason are recorded on the node's result. looked tells whether
// the cache was asked; keyErr is the cache's error for the key (the node
// then runs, uncached).
func (b *build) cacheStep(ctx context.Context, i int32, queuedAt time.Time) (hit, looked bool, keyErr error) {
	if b.cache == nil {
		return false, false, nil
	}
	n, res := b.plan.Node(i), &b.results[i]
	key, err := b.cache.Key(ctx, n)
	res.CacheKey = key
	if err != nil || key == "" {
		return false, false, err
	}
	switch {
	case b.opts.FullRefresh:
		res.CacheReason = CacheReasonFullRefresh
		return false, false, nil
	case b.stale[i] != "":
		res.CacheReason = CacheReasonStaleSource
		return false, false, nil
	}
	for _, u := range b.plan.Upstream(i) {
		// Tests change nothing a node builds; nor does a function built
		// again (its definition is in the node's key; one that failed
		// skipped the node before this).
		if un := b.plan.Node(u); un.IsTest() || un.ResourceType == manifest.Function {
			continue
		}
		if b.results[u].Status != Cached {
			res.CacheReason = CacheReasonUpstreamRan + ": " + b.plan.ID(u)
			return false, false, nil
		}
	}
	hit, why, err := b.cache.Lookup(ctx, n, key)
	res.CacheReason = why
	if err != nil {
		b.o.log.WarnContext(ctx, "cache lookup failed; running the node", "node", n.UniqueID, "error", err)
		res.CacheReason = "lookup failed: " + err.Error()
		return false, true, nil
	}
	if hit {
		b.servedFromCache(res, queuedAt)
		if sr, ok := b.cache.(SavedReader); ok {
			res.Saved = sr.Saved(ctx, n, key)
		}
	}
	return hit, true, nil
}

// servedFromCache makes res a cache hit found now; queuedAt, when not
// zero, gives its WaitTime.
func (b *build) servedFromCache(res *NodeResult, queuedAt time.Time) {
	now := b.cfg.Now()
	res.Status = Cached
	res.StartedAt, res.CompletedAt = now, now
	if !queuedAt.IsZero() {
		res.WaitTime = now.Sub(queuedAt)
	}
	res.Message = "cached"
}

// record tells the cache the final result of node i when it ran (a test
// only when it has a key).
func (b *build) record(ctx context.Context, i int32) {
	res := &b.results[i]
	if b.cache == nil || len(res.Attempts) == 0 || (b.plan.Node(i).IsTest() && res.CacheKey == "") {
		return
	}
	if err := b.cache.Record(context.WithoutCancel(ctx), b.plan.Node(i), res.CacheKey, res); err != nil {
		b.o.log.WarnContext(ctx, "cache record failed", "node", b.plan.ID(i), "error", err)
	}
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
	// Relations lists the warehouse's relations: Config.Executor when it
	// implements executor.RelationLister, else nil. A cache confirms its
	// hits with it (a relation dropped outside dbt must be rebuilt).
	Relations executor.RelationLister
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
