package cache

import (
	"context"
	"time"

	"github.com/dbtorch/dbtorch/manifest"
)

// Reason says why a node is predicted to run or to be served from the
// cache.
type Reason string

// Prediction reasons.
const (
	// ReasonHit: the stored entry has the node's key and has not expired.
	ReasonHit Reason = "hit"
	// ReasonNotCacheable: tests, unit tests, incremental models by
	// default, nodes with a negative TTL, or a key that cannot be
	// computed.
	ReasonNotCacheable Reason = "not cacheable"
	// ReasonNoEntry: nothing stored for the node, or the entry is
	// unreadable.
	ReasonNoEntry Reason = "no entry"
	// ReasonKeyChanged: the stored entry has another key.
	ReasonKeyChanged Reason = "key changed"
	// ReasonExpired: the stored entry has the key but has expired.
	ReasonExpired Reason = "expired"
	// ReasonUpstreamRuns: an upstream model, seed or snapshot of the plan
	// will run, so this node must run after it.
	ReasonUpstreamRuns Reason = "upstream runs"
	// ReasonFullRefresh: full refresh bypasses reads.
	ReasonFullRefresh Reason = "full refresh"
)

// Prediction is the predicted cache outcome of one planned node.
type Prediction struct {
	UniqueID string
	Key      string
	Hit      bool
	Reason   Reason
	// Expires is the stored entry's expiry (zero: none, or no entry).
	Expires time.Time
}

// Predict predicts, in plan order, which planned nodes a build would
// serve from the cache, with the rules a Session's user follows: a node
// hits when it is cacheable, its entry has its key and is unexpired at
// the store's clock, and no planned upstream model, seed or snapshot is
// predicted to run. With fullRefresh nothing hits. Predict reads the
// store and writes nothing.
func (s *Session) Predict(ctx context.Context, plan *manifest.Plan, fullRefresh bool) []Prediction {
	out := make([]Prediction, 0, plan.Len())
	runs := map[string]bool{}
	now := s.c.store.now()
	for _, id := range plan.Nodes() {
		p := Prediction{UniqueID: id}
		p.Key, _ = s.k.Key(id)
		switch {
		case !s.Cacheable(id):
			p.Reason = ReasonNotCacheable
		case fullRefresh:
			p.Reason = ReasonFullRefresh
		default:
			p.Reason = s.predictEntry(ctx, id, p.Key, now, &p)
			if p.Reason == ReasonHit {
				for _, u := range plan.UpstreamIDs(id) {
					if runs[u] {
						p.Reason = ReasonUpstreamRuns
						break
					}
				}
			}
		}
		p.Hit = p.Reason == ReasonHit
		if !p.Hit {
			if n := s.g.Node(id); n != nil && !n.IsTest() {
				runs[id] = true
			}
		}
		out = append(out, p)
	}
	return out
}

func (s *Session) predictEntry(ctx context.Context, id, key string, now time.Time, p *Prediction) Reason {
	e, err := s.c.store.Get(ctx, id)
	if err != nil {
		return ReasonNoEntry
	}
	p.Expires = e.Expires
	switch {
	case e.Key != key:
		return ReasonKeyChanged
	case e.Expired(now):
		return ReasonExpired
	}
	return ReasonHit
}
