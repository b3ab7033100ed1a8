// Package orchcache plugs the cache into an orchestrator: New turns a
// cache.Store into an orchestrator.BuildCache that opens a session per
// build; the *Build it returns implements orchestrator.Cache (keys,
// lookups with their reasons, recording results) and
// orchestrator.StaleChecker (skipping what reads stale sources under
// BuildOptions.OnlyFreshSources).
//
// It is a package of its own because orchestrator.Cache.Record takes an
// *orchestrator.NodeResult: package cache stays free of the orchestrator,
// which itself does not import this package.
package orchcache

import (
	"cmp"
	"context"
	"errors"
	"fmt"
	"log/slog"
	"maps"
	"strings"
	"sync"
	"time"

	"github.com/dbtorch/dbtorch/cache"
	"github.com/dbtorch/dbtorch/dbt"
	"github.com/dbtorch/dbtorch/executor"
	"github.com/dbtorch/dbtorch/manifest"
	"github.com/dbtorch/dbtorch/orchestrator"
)

// Options configures a Cache.
type Options struct {
	// Project is the dbt project the builds run on: its directory (seed
	// files, dbt_project.yml's vars), profile (target and warehouse
	// identity), environment, and the vars the executor adds itself
	// (a build's vars are merged over them).
	Project dbt.Project
	// Keys holds the other key settings (CacheIncremental,
	// CacheSnapshots, PackagesDir, Fs, Warehouse, ...). Its Project is
	// replaced by Project when Project.Dir or Project.Target is set.
	Keys cache.KeyConfig
	// TTL is how long an entry is served after it was written (zero:
	// until its key changes); see cache.Options.TTL.
	TTL time.Duration
	// AlwaysRunTests runs every test even when what it tests was served
	// from the cache (see cache.Options.AlwaysRunTests).
	AlwaysRunTests bool
	// Freshness takes a `dbt source freshness` snapshot of the project at
	// the start of every build (cache.RunFreshness): new data in a source
	// changes the keys of the nodes that read it, and
	// BuildOptions.OnlyFreshSources skips what reads a stale one. When
	// the snapshot fails the build fails open, visibly (see
	// FreshnessErr).
	Freshness bool
	// FreshnessErr is the error of a freshness snapshot that was asked for
	// but could not be taken (cache.RunFreshness's error). The build then
	// fails open, visibly: it is logged and reported in Run.Warnings, no
	// node is skipped as stale, and nothing is served from the cache, so
	// that everything runs.
	FreshnessErr error
	// Relations confirms hits against the warehouse: a node is served
	// only while its relation exists (one listing per build, of every
	// schema the cacheable nodes build into). ForBuild takes the
	// executor's (orchestrator.BuildInfo.Relations) when it has one; nil
	// makes every hit impossible (every node runs), and Warnings says so.
	Relations executor.RelationLister
	// PredictUnchecked is for plans (orchestrator.Orchestrator.Plan) made
	// without a relation lister: an unchanged entry is predicted to be a
	// hit although its relation was not checked, its reason saying so
	// (ReasonHitUnchecked), instead of a miss. A build never sets it: a
	// hit it serves is always confirmed.
	PredictUnchecked bool
	// Logger receives warnings; nil discards them.
	Logger *slog.Logger
	// Now is the clock; nil means time.Now.
	Now func() time.Time
}

func (o Options) withDefaults() Options {
	if o.Logger == nil {
		o.Logger = slog.New(slog.DiscardHandler)
	}
	if o.Now == nil {
		o.Now = time.Now
	}
	if o.Project.Dir != "" || o.Project.Target != "" {
		o.Keys.Project = o.Project
	}
	return o
}

// Cache is a cache.Store as an orchestrator.BuildCache: for every build it
// opens a cache.Session on the build's manifest and vars (and, with
// Options.Freshness, a fresh source freshness snapshot) and returns it as
// a *Build. Turning the cache on from the library takes three lines:
//
//	store := cache.NewStore(afero.NewOsFs(), dir, cache.StoreOptions{})
//	cfg.Cache = orchcache.New(store, orchcache.Options{Project: project})
//	o, err := orchestrator.New(cfg)
//
// A Cache is safe for concurrent use, by several builds at once.
type Cache struct {
	c    *cache.Cache
	opts Options
}

// Build is a cache.Session as the orchestrator.Cache of one build (also an
// orchestrator.StaleChecker and orchestrator.Warner). It is safe for
// concurrent use.
type Build struct {
	s    *cache.Session
	opts Options

	relOnce sync.Once
	rels    map[string]bool // lower-cased "database.schema.name" and "schema.name"
	relErr  error

	servedMu sync.Mutex
	served   map[string]*cache.Entry // the entries of this build's hits, by node id
}

var (
	_ orchestrator.BuildCache   = (*Cache)(nil)
	_ orchestrator.Cache        = (*Build)(nil)
	_ orchestrator.StaleChecker = (*Build)(nil)
	_ orchestrator.Warner       = (*Build)(nil)
	_ orchestrator.SavedReader  = (*Build)(nil)
)

// New returns the orchestrator cache of builds of opts.Project on store.
func New(store *cache.Store, opts Options) *Cache {
	opts = opts.withDefaults()
	return &Cache{c: cache.New(store, cache.Options{TTL: opts.TTL, AlwaysRunTests: opts.AlwaysRunTests, Logger: opts.Logger, Now: opts.Now}), opts: opts}
}

// Store returns the cache's store.
func (c *Cache) Store() *cache.Store { return c.c.Store() }

// ForBuild implements orchestrator.BuildCache: it opens the build's
// session, with the build's vars merged over Options.Project's, and takes
// the source freshness snapshot when Options.Freshness asks for one.
func (c *Cache) ForBuild(ctx context.Context, info orchestrator.BuildInfo) (orchestrator.Cache, error) {
	if info.Manifest == nil || info.Graph == nil {
		return nil, errors.New("orchcache: the build has no manifest")
	}
	kc := c.opts.Keys
	if len(info.Vars) > 0 {
		vars := maps.Clone(kc.Vars)
		if vars == nil {
			vars = make(dbt.Vars, len(info.Vars))
		}
		maps.Copy(vars, info.Vars)
		kc.Vars = vars
	}
	opts := c.opts
	if info.Relations != nil {
		opts.Relations = info.Relations
	}
	if opts.Freshness && opts.FreshnessErr == nil {
		fr, err := cache.RunFreshness(ctx, cache.FreshnessOptions{Project: kc.Project})
		if err != nil {
			opts.FreshnessErr = err
		} else {
			kc.Freshness = fr
		}
	}
	s, err := c.c.Open(info.Manifest, info.Graph, kc)
	if err != nil {
		return nil, fmt.Errorf("orchcache: open the build's session: %w", err)
	}
	return NewBuild(s, opts), nil
}

// errNoBuild is what a Cache's own Key, Lookup and Record return: the
// orchestrator uses the *Build its ForBuild returns.
var errNoBuild = errors.New("orchcache: a Cache serves builds through ForBuild")

// Key implements orchestrator.Cache; the orchestrator calls ForBuild
// instead. It returns an error.
func (c *Cache) Key(context.Context, *manifest.Node) (string, error) { return "", errNoBuild }

// Lookup implements orchestrator.Cache; the orchestrator calls ForBuild
// instead. It is always a miss.
func (c *Cache) Lookup(context.Context, *manifest.Node, string) (bool, string, error) {
	return false, "", errNoBuild
}

// Record implements orchestrator.Cache; the orchestrator calls ForBuild
// instead. It returns an error.
func (c *Cache) Record(context.Context, *manifest.Node, string, *orchestrator.NodeResult) error {
	return errNoBuild
}

// NewBuild returns the orchestrator.Cache of session s, for callers that
// open sessions themselves. Of opts it uses FreshnessErr and Logger.
func NewBuild(s *cache.Session, opts Options) *Build {
	opts = opts.withDefaults()
	if opts.FreshnessErr != nil {
		opts.Logger.Warn("cache: source freshness unavailable; running every node, serving nothing from the cache", "err", opts.FreshnessErr)
	}
	return &Build{s: s, opts: opts}
}

// Warnings implements orchestrator.Warner: when Options.FreshnessErr is
// set, it says that freshness could not be read and that the build fails
// open (every node runs; none is served from the cache or skipped as
// stale), so that the build's result says so, not only the log.
//
// When no relation lister is known (Options.Relations), it says that
// nothing can be served from the cache, since no hit can be confirmed
// against the warehouse.
func (c *Build) Warnings() []string {
	var out []string
	if c.opts.FreshnessErr != nil {
		out = append(out, "source freshness unavailable, so every node runs (none served from the cache or skipped as stale): "+c.opts.FreshnessErr.Error())
	}
	if c.opts.Relations == nil && c.opts.PredictUnchecked {
		out = append(out, "relations not checked: a predicted hit whose relation was dropped outside dbt will run")
	} else if c.opts.Relations == nil {
		out = append(out, "the executor cannot list the warehouse's relations (executor.RelationLister), so no cache hit can be confirmed and every node runs")
	}
	return out
}

// Session returns the underlying session.
func (c *Build) Session() *cache.Session { return c.s }

// Key returns the node's key, or "" for a node that is not cacheable
// (unit tests, incremental models by default, ...). A key that cannot be
// computed (an unreadable seed file, say) is "" with the *cache.KeyError,
// which the orchestrator logs before running the node.
func (c *Build) Key(_ context.Context, n *manifest.Node) (string, error) {
	if !c.s.Cacheable(n.UniqueID) {
		if _, err := c.s.Key(n.UniqueID); err != nil && n.Executable() && !n.IsTest() {
			return "", err
		}
		return "", nil
	}
	return c.s.Key(n.UniqueID)
}

// Lookup reports whether the node may be served from its entry under key
// (cache.Session.Check), and why. Unreadable entries are misses, never
// errors.
func (c *Build) Lookup(ctx context.Context, n *manifest.Node, key string) (bool, string, error) {
	if c.opts.FreshnessErr != nil {
		return false, "source freshness unavailable", nil
	}
	if key == "" {
		return false, cache.ReasonNotCacheable, nil
	}
	ch := c.s.Check(ctx, n.UniqueID)
	switch {
	case !ch.Hit:
		return false, ch.Reason, nil
	case ch.Key != key:
		return false, cache.ReasonKeyChanged, nil
	case orchestrator.RelationKey(n) == "":
		c.remember(n.UniqueID, ch.Entry)
		return true, ch.Reason, nil // a test: nothing to find in the warehouse
	case c.opts.Relations == nil && c.opts.PredictUnchecked:
		return true, ReasonHitUnchecked, nil
	case c.opts.Relations == nil:
		return false, ReasonRelationUnchecked, nil
	}
	present, err := c.relationExists(ctx, n)
	switch {
	case err != nil:
		return false, "relations could not be listed: " + err.Error(), nil
	case !present:
		return false, ReasonRelationMissing, nil
	}
	c.remember(n.UniqueID, ch.Entry)
	return true, ReasonHit, nil
}

// remember keeps the entry a hit served, for Saved.
func (c *Build) remember(id string, e *cache.Entry) {
	if e == nil {
		return
	}
	c.servedMu.Lock()
	defer c.servedMu.Unlock()
	if c.served == nil {
		c.served = map[string]*cache.Entry{}
	}
	c.served[id] = e
}

// Saved implements orchestrator.SavedReader: what the entry that served
// the node under key recorded of the run that stored it (dbt's execution
// time, rows affected and adapter response), or nil.
func (c *Build) Saved(_ context.Context, n *manifest.Node, key string) *orchestrator.SavedRun {
	c.servedMu.Lock()
	e := c.served[n.UniqueID]
	c.servedMu.Unlock()
	if e == nil || e.Key != key {
		return nil
	}
	return &orchestrator.SavedRun{ExecutionTime: e.Result.Execution, RowsAffected: e.Result.RowsAffected, AdapterResponse: e.Result.AdapterResponse}
}

// Lookup reasons of a Build, besides the cache package's.
const (
	// ReasonHit: the entry is served: unchanged, and its relation exists.
	ReasonHit = "unchanged and relation present"
	// ReasonRelationMissing: the entry is unchanged but its relation is
	// not in the warehouse (dropped outside dbt, or a new database): the
	// node is rebuilt.
	ReasonRelationMissing = "relation missing"
	// ReasonRelationUnchecked: the executor cannot list relations, so no
	// hit can be confirmed.
	ReasonRelationUnchecked = "relation not checked (the executor cannot list relations)"
	// ReasonHitUnchecked: a plan's predicted hit (Options.PredictUnchecked):
	// the entry is unchanged; whether its relation exists was not checked.
	ReasonHitUnchecked = "unchanged (relation not checked)"
)

// relationExists reports whether n's relation exists, listing the
// relations of every schema the session's cacheable nodes build into on
// the first call.
func (c *Build) relationExists(ctx context.Context, n *manifest.Node) (bool, error) {
	c.relOnce.Do(func() {
		g := c.s.Graph()
		seen := map[executor.Schema]bool{}
		var schemas []executor.Schema
		for _, id := range g.IDs() {
			m := g.Node(id)
			if m == nil || orchestrator.RelationKey(m) == "" {
				continue
			}
			sc := executor.Schema{Database: m.Database, Schema: m.Schema}
			if !seen[sc] {
				seen[sc] = true
				schemas = append(schemas, sc)
			}
		}
		rels, err := c.opts.Relations.ListRelations(ctx, schemas)
		if err != nil {
			c.relErr = err
			c.opts.Logger.WarnContext(ctx, "cache: cannot list the warehouse's relations; every node runs", "err", err)
			return
		}
		c.rels = make(map[string]bool, 2*len(rels))
		for _, r := range rels {
			c.rels[relKey(r.Database, r.Schema, r.Name)] = true
			c.rels[relKey("", r.Schema, r.Name)] = true
		}
	})
	if c.relErr != nil {
		return false, c.relErr
	}
	return c.rels[relKey(n.Database, n.Schema, cmp.Or(n.Alias, n.Name))], nil
}

func relKey(db, schema, name string) string {
	return strings.ToLower(db + "\x00" + schema + "\x00" + name)
}

// Record stores a successful result under key (a test's only when it
// passed) and deletes the node's entry otherwise, so that a failed node,
// or a test that warned, leaves no entry.
func (c *Build) Record(ctx context.Context, n *manifest.Node, key string, res *orchestrator.NodeResult) error {
	if res == nil || res.Status != orchestrator.Success || key == "" || (n.IsTest() && res.DBTStatus != "pass") {
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
		// What the run cost, for the hits' "saved by the cache" figures.
		AdapterResponse: res.AdapterResponse,
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
func (c *Build) StaleNodes(_ context.Context, g *manifest.Graph, ids []string) (map[string]string, error) {
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
