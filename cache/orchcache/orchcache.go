// Package orchcache plugs a cache.Session into an orchestrator: its Cache
// implements orchestrator.Cache (keys, lookups, recording results) and
// orchestrator.StaleChecker (skipping what reads stale sources under
// BuildOptions.OnlyFreshSources).
//
// It is a package of its own because orchestrator.Cache.Record takes an
// *orchestrator.NodeResult: package cache stays free of the orchestrator,
// which itself does not import this package.
package orchcache

import (
	"context"
	"fmt"
	"log/slog"
	"maps"
	"reflect"
	"strings"

	"github.com/dbtorch/dbtorch/cache"
	"github.com/dbtorch/dbtorch/manifest"
	"github.com/dbtorch/dbtorch/orchestrator"
)

// Options configures a Cache.
type Options struct {
	// FreshnessErr is the error of a freshness snapshot that was asked for
	// but could not be taken (cache.RunFreshness's error). The build then
	// fails open, visibly: it is logged, no node is skipped as stale, and
	// nothing is served from the cache, so that everything runs.
	FreshnessErr error
	// Logger receives warnings; nil discards them.
	Logger *slog.Logger
}

// Cache is a cache.Session as an orchestrator.Cache and
// orchestrator.StaleChecker. It is safe for concurrent use.
type Cache struct {
	s    *cache.Session
	opts Options
}

var (
	_ orchestrator.Cache        = (*Cache)(nil)
	_ orchestrator.StaleChecker = (*Cache)(nil)
	_ orchestrator.Warner       = (*Cache)(nil)
	_ orchestrator.BuildCache   = (*Cache)(nil)
)

// ForBuild implements orchestrator.BuildCache: it returns c itself when the
// build's graph is c's and its vars change none of c's, and otherwise a
// Cache (same store, options and freshness) on a session opened for the
// build's manifest with the build's vars merged over c's. Keys then cover
// the vars the build actually passes to dbt, even when one Cache serves
// builds with different vars.
func (c *Cache) ForBuild(_ context.Context, info orchestrator.BuildInfo) (orchestrator.Cache, error) {
	kc := c.s.Keyer().Config()
	vars := kc.Vars
	if len(info.Vars) > 0 {
		vars = maps.Clone(kc.Vars)
		if vars == nil {
			vars = make(map[string]any, len(info.Vars))
		}
		maps.Copy(vars, info.Vars)
	}
	m, g := info.Manifest, info.Graph
	if m == nil || g == nil {
		m, g = c.s.Manifest(), c.s.Graph()
	}
	if g == c.s.Graph() && reflect.DeepEqual(vars, kc.Vars) {
		return c, nil
	}
	kc.Vars = vars
	s, err := c.s.Cache().Open(m, g, kc)
	if err != nil {
		return nil, fmt.Errorf("orchcache: open the build's session: %w", err)
	}
	return &Cache{s: s, opts: c.opts}, nil
}

// New returns the orchestrator.Cache of session s. The session's
// KeyConfig must describe the builds it is used for (target, freshness
// snapshot, ...), except for vars: as an orchestrator.BuildCache it opens,
// per build, a session whose KeyConfig.Vars are the build's vars merged
// over s's (s's KeyConfig.Vars hold the vars the executor adds itself, if
// any, as the executor merges a request's vars over its own).
func New(s *cache.Session, opts Options) *Cache {
	if opts.Logger == nil {
		opts.Logger = slog.New(slog.DiscardHandler)
	}
	if opts.FreshnessErr != nil {
		opts.Logger.Warn("cache: source freshness unavailable; running every node, serving nothing from the cache", "err", opts.FreshnessErr)
	}
	return &Cache{s: s, opts: opts}
}

// Warnings implements orchestrator.Warner: when Options.FreshnessErr is
// set, it says that freshness could not be read and that the build fails
// open (every node runs; none is served from the cache or skipped as
// stale), so that the build's result says so, not only the log.
func (c *Cache) Warnings() []string {
	if c.opts.FreshnessErr == nil {
		return nil
	}
	return []string{"source freshness unavailable, so every node runs (none served from the cache or skipped as stale): " + c.opts.FreshnessErr.Error()}
}

// Session returns the underlying session.
func (c *Cache) Session() *cache.Session { return c.s }

// Key returns the node's key, or "" for a node that is not cacheable
// (tests, incremental models by default, ...). A key that cannot be
// computed (an unreadable seed file, say) is "" with the *cache.KeyError,
// which the orchestrator logs before running the node.
func (c *Cache) Key(_ context.Context, n *manifest.Node) (string, error) {
	if !c.s.Cacheable(n.UniqueID) {
		if _, err := c.s.Key(n.UniqueID); err != nil && n.Executable() && !n.IsTest() {
			return "", err
		}
		return "", nil
	}
	return c.s.Key(n.UniqueID)
}

// Lookup reports a live entry for the node under key. Unreadable entries
// are misses (logged by the store), never errors.
func (c *Cache) Lookup(ctx context.Context, n *manifest.Node, key string) (bool, error) {
	if c.opts.FreshnessErr != nil || key == "" {
		return false, nil
	}
	_, current, hit := c.s.Lookup(ctx, n.UniqueID)
	return hit && current == key, nil
}

// Record stores a successful result under key and deletes the node's
// entry otherwise, so that a failed node leaves no entry.
func (c *Cache) Record(ctx context.Context, n *manifest.Node, key string, res *orchestrator.NodeResult) error {
	if res == nil || res.Status != orchestrator.Success || key == "" {
		return c.s.Invalidate(ctx, n.UniqueID)
	}
	r := cache.Result{
		Status:       res.DBTStatus,
		RowsAffected: res.RowsAffected,
		Message:      res.Message,
		StartedAt:    res.StartedAt,
		CompletedAt:  res.CompletedAt,
		Execution:    res.ExecutionTime,
		RelationName: res.RelationName,
	}
	if r.Status == "" {
		r.Status = string(res.Status)
	}
	return c.s.Put(ctx, n.UniqueID, key, r)
}

// StaleNodes names the nodes among ids that read, directly or through
// other nodes, a source whose freshness check ended in error or runtime
// error, with the reason. Without a snapshot (none configured, or it
// failed) no node is stale.
func (c *Cache) StaleNodes(_ context.Context, g *manifest.Graph, ids []string) (map[string]string, error) {
	f := c.s.Keyer().Config().Freshness
	if f == nil || c.opts.FreshnessErr != nil {
		return nil, nil
	}
	out := map[string]string{}
	for _, id := range ids {
		stale := f.StaleAncestors(g, id)
		if len(stale) == 0 {
			continue
		}
		parts := make([]string, len(stale))
		for i, s := range stale {
			parts[i] = fmt.Sprintf("%s (%s)", s, f.Sources[s].Status)
		}
		out[id] = "stale source: " + strings.Join(parts, ", ")
	}
	return out, nil
}
