package cache

import (
	"context"
	"fmt"
	"log/slog"
	"strconv"
	"strings"
	"time"

	"github.com/dbtorch/dbtorch/manifest"
)

// TTLMetaKey is the key under a node's config meta that overrides the
// default TTL for that node: a Go duration ("6h", "90m"), or a number of
// seconds. Zero means the node's entries never expire; a negative value
// means the node is never cached.
const TTLMetaKey = "dbtorch_cache_ttl"

// Options configures a Cache.
type Options struct {
	// TTL is how long an entry is served after it is written; zero means
	// entries do not expire (unless freshness says so). The TTL in force
	// when an entry is looked up decides, from the entry's creation time:
	// lowering it expires older entries at once.
	TTL time.Duration
	// AlwaysRunTests makes tests not cacheable. By default a test whose
	// key is unchanged (its code, config and the keys of the nodes it
	// tests) and whose last result passed may be served from the cache,
	// when every node it tests was (the orchestrator's rule); a test that
	// warned or failed never is.
	AlwaysRunTests bool
	// NodeTTL, when set, overrides TTL per node: it returns the node's TTL
	// and true, or false to use the default. When nil, the node's config
	// meta TTLMetaKey is read.
	NodeTTL func(n *manifest.Node) (ttl time.Duration, ok bool)
	// Logger receives the cache's warnings; nil discards them.
	Logger *slog.Logger
	// Now is the clock; nil means time.Now.
	Now func() time.Time
}

// Cache is a cross-run build cache: a Store plus the expiry policy. Open
// binds it to one build's manifest. A Cache is safe for concurrent use.
type Cache struct {
	store *Store
	opts  Options
}

// New returns a Cache on store.
func New(store *Store, opts Options) *Cache {
	if opts.Logger == nil {
		opts.Logger = slog.New(slog.DiscardHandler)
	}
	if opts.Now == nil {
		opts.Now = time.Now
	}
	return &Cache{store: store, opts: opts}
}

// Store returns the cache's store.
func (c *Cache) Store() *Store { return c.store }

// Open returns the Session of one build of m (whose graph is g) under
// cfg. Opening reads dbt_project.yml under cfg.Dir (when set) and the
// project's profile (for the target and the warehouse identity). The
// session reads and writes the store's namespace of the project, target
// and warehouse (Keyer.Namespace).
func (c *Cache) Open(m *manifest.Manifest, g *manifest.Graph, cfg KeyConfig) (*Session, error) {
	k, err := NewKeyer(m, g, cfg)
	if err != nil {
		return nil, err
	}
	return &Session{c: c, k: k, g: g, st: c.store.Namespace(k.Namespace())}, nil
}

// Session is a Cache bound to one build: it computes keys and serves and
// stores entries. A Session is safe for concurrent use.
//
// An orchestrator uses it as follows, per planned node:
//   - if Cacheable is false (tests, unit tests, incremental models by
//     default, nodes whose key cannot be computed), run the node and do
//     not store it;
//   - unless the build is a full refresh, or a planned upstream of the
//     node ran in this build (not served from the cache; tests do not
//     count), call Lookup: a hit means the node is reported cached and
//     not run;
//   - after a successful run, call Put (full refresh included); after a
//     failed one, Invalidate, so a failed node leaves no entry.
type Session struct {
	c  *Cache
	k  *Keyer
	g  *manifest.Graph
	st *Store // the session's namespace of c's store
}

// Store returns the session's part of the cache's store: the namespace
// of its project, target and warehouse.
func (s *Session) Store() *Store { return s.st }

// Cache returns the Cache the session was opened on.
func (s *Session) Cache() *Cache { return s.c }

// Manifest returns the manifest the session was opened for.
func (s *Session) Manifest() *manifest.Manifest { return s.k.m }

// Graph returns the graph the session was opened for.
func (s *Session) Graph() *manifest.Graph { return s.g }

// Keyer returns the session's Keyer.
func (s *Session) Keyer() *Keyer { return s.k }

// Key returns the node's cache key (see Keyer.Key).
func (s *Session) Key(id string) (string, error) { return s.k.Key(id) }

// Cacheable reports whether the node's results may be served and stored
// (see Keyer.Cacheable; data tests and unit tests too unless
// Options.AlwaysRunTests, unit tests only when they read no fixture file),
// also honouring a negative per-node TTL.
func (s *Session) Cacheable(id string) bool {
	if n := s.g.Node(id); n != nil && n.IsTest() {
		if s.c.opts.AlwaysRunTests || n.ResourceType == manifest.UnitTest && UsesFixtureFile(n) {
			return false
		}
		if _, err := s.k.Key(id); err != nil {
			return false
		}
	} else if !s.k.Cacheable(id) {
		return false
	}
	if ttl, ok := s.nodeTTL(id); ok && ttl < 0 {
		return false
	}
	return true
}

// Lookup returns the node's entry and key when Check says it may be
// served. Otherwise it is a miss; a miss never fails a build.
func (s *Session) Lookup(ctx context.Context, id string) (e *Entry, key string, hit bool) {
	c := s.Check(ctx, id)
	if !c.Hit {
		return nil, c.Key, false
	}
	return c.Entry, c.Key, true
}

// Put stores a successful result of the node under key (as Lookup or Key
// returned it), with the node's key inputs (Keyer.Inputs) and its
// freshness expiry: when an upstream source crosses its freshness
// threshold (the TTL is applied at lookup). It does nothing for nodes
// that are not cacheable. A result whose data is already past its
// freshness expiry is not stored.
func (s *Session) Put(ctx context.Context, id, key string, r Result) error {
	if !s.Cacheable(id) || key == "" {
		return nil
	}
	now := s.c.opts.Now()
	exp, ok := s.k.cfg.Freshness.Expiry(s.g, id)
	if ok && !exp.After(now) {
		// Stored, it would never be served; drop any older entry too.
		return s.st.Delete(ctx, id)
	}
	if r.RelationName == "" {
		if n := s.g.Node(id); n != nil {
			r.RelationName = n.RelationName
		}
	}
	return s.st.Put(ctx, &Entry{Key: key, NodeID: id, Result: r, Created: now, Expires: exp, Inputs: s.k.Inputs(id)})
}

// Invalidate deletes the node's entry (after a failed run).
func (s *Session) Invalidate(ctx context.Context, id string) error {
	return s.st.Delete(ctx, id)
}

// Expires returns when an entry for id written at now would expire: the
// earlier of now + the node's TTL and the freshness expiry of its upstream
// sources. ok is false when it would not expire.
func (s *Session) Expires(id string, now time.Time) (t time.Time, ok bool) {
	ttl := s.c.opts.TTL
	if nt, has := s.nodeTTL(id); has {
		ttl = nt
	}
	if ttl > 0 {
		t, ok = now.Add(ttl), true
	}
	if fe, has := s.k.cfg.Freshness.Expiry(s.g, id); has && (!ok || fe.Before(t)) {
		t, ok = fe, true
	}
	return t, ok
}

func (s *Session) nodeTTL(id string) (time.Duration, bool) {
	n := s.g.Node(id)
	if n == nil {
		return 0, false
	}
	if s.c.opts.NodeTTL != nil {
		return s.c.opts.NodeTTL(n)
	}
	ttl, ok, err := MetaTTL(n)
	if err != nil {
		s.c.opts.Logger.Warn("cache: ignoring invalid TTL in node meta", "node", id, "err", err)
		return 0, false
	}
	return ttl, ok
}

// MetaTTL reads the TTLMetaKey override from a node's config meta. ok is
// false when the node has none.
func MetaTTL(n *manifest.Node) (ttl time.Duration, ok bool, err error) {
	meta, _ := n.Config.Get("meta").(map[string]any)
	v, has := meta[TTLMetaKey]
	if !has || v == nil {
		return 0, false, nil
	}
	switch v := v.(type) {
	case float64:
		return time.Duration(v * float64(time.Second)), true, nil
	case string:
		s := strings.TrimSpace(v)
		if f, err := strconv.ParseFloat(s, 64); err == nil {
			return time.Duration(f * float64(time.Second)), true, nil
		}
		d, err := time.ParseDuration(s)
		if err != nil {
			return 0, false, fmt.Errorf("%s: %w", TTLMetaKey, err)
		}
		return d, true, nil
	}
	return 0, false, fmt.Errorf("%s: want a duration string or seconds, got %T", TTLMetaKey, v)
}

// Prune removes from the store the entries of nodes that are no longer in
// the session's graph, and every entry that can no longer be served (see
// Store.Prune).
func (s *Session) Prune(ctx context.Context) (int, error) {
	return s.st.Prune(ctx, s.g.Has)
}
