package cache

import (
	"context"
	"errors"
	"io/fs"
	"time"
)

// Reasons a Check gives. A reason may carry detail after a colon
// ("key changed: code"); compare with strings.HasPrefix.
const (
	// ReasonHit: the stored entry has the node's key, recorded a
	// successful result and has not expired.
	ReasonHit = "unchanged"
	// ReasonNotCacheable: tests with Options.AlwaysRunTests, unit tests
	// reading a fixture file, incremental models by default, nodes with a negative TTL, or a key
	// that cannot be computed.
	ReasonNotCacheable = "not cacheable"
	// ReasonNoEntry: nothing stored for the node.
	ReasonNoEntry = "no entry"
	// ReasonBadEntry: the stored entry is unreadable, corrupt, or not
	// this node's (see ErrBadEntry).
	ReasonBadEntry = "unreadable entry"
	// ReasonKeyChanged: the stored entry has another key; the detail
	// names the inputs that changed when the entry recorded them.
	ReasonKeyChanged = "key changed"
	// ReasonExpired: the entry is older than the node's TTL in force now,
	// or a source it reads crossed its freshness threshold.
	ReasonExpired = "expired"
	// ReasonNotSuccess: the entry recorded a result that was not a
	// success (a test that warned or failed).
	ReasonNotSuccess = "last result not a success"
)

// Check is the cache's verdict on one node: its key, whether its stored
// entry may be served, and why.
type Check struct {
	// Key is the node's key ("" when it cannot be computed).
	Key string
	// Hit is true when Entry may be served.
	Hit bool
	// Reason says why (one of the Reason constants, maybe with detail).
	Reason string
	// Entry is the stored entry, when one could be read.
	Entry *Entry
}

// Check decides whether node id may be served from the store: it is
// cacheable, its entry has the node's current key, recorded a success
// ("pass" for a test), is younger than the node's TTL in force now (the
// TTL at lookup decides, not the one in force when the entry was
// written) and no source it reads has crossed its freshness threshold
// since. Whether the node's relation still exists in the warehouse is not
// Check's to know (see package orchcache). Check reads the store and
// writes nothing; a miss never fails a build.
func (s *Session) Check(ctx context.Context, id string) Check {
	key, _ := s.k.Key(id)
	c := Check{Key: key}
	if !s.Cacheable(id) {
		c.Reason = ReasonNotCacheable
		return c
	}
	e, err := s.st.Get(ctx, id)
	switch {
	case errors.Is(err, fs.ErrNotExist):
		c.Reason = ReasonNoEntry
		return c
	case err != nil:
		s.c.opts.Logger.WarnContext(ctx, "cache: ignoring unreadable entry", "node", id, "err", err)
		c.Reason = ReasonBadEntry
		return c
	}
	c.Entry = e
	now := s.c.opts.Now()
	switch {
	case e.Key != key:
		c.Reason = ReasonKeyChanged
		if d := s.k.changed(id, e.Inputs); d != "" {
			c.Reason += ": " + d
		}
	case e.Result.Status != s.successWord(id):
		c.Reason = ReasonNotSuccess + " (" + e.Result.Status + ")"
	case s.expired(id, e, now):
		c.Reason = ReasonExpired
	default:
		c.Hit, c.Reason = true, ReasonHit
	}
	return c
}

// successWord is dbt's status of a successful run of the node: "pass"
// for tests, "success" for the rest.
func (s *Session) successWord(id string) string {
	if n := s.g.Node(id); n != nil && n.IsTest() {
		return "pass"
	}
	return "success"
}

// expired reports whether e, an entry of id, may no longer be served at
// now: it is older than the node's TTL in force now, or past the
// freshness expiry recorded when it was written.
func (s *Session) expired(id string, e *Entry, now time.Time) bool {
	if e.Expired(now) {
		return true
	}
	ttl := s.c.opts.TTL
	if nt, ok := s.nodeTTL(id); ok {
		ttl = nt
	}
	return ttl > 0 && !now.Before(e.Created.Add(ttl))
}
