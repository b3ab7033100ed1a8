package orchestrator

import (
	"context"
	"fmt"
	"sync"

	"golang.org/x/sync/semaphore"

	"github.com/dbtorch/dbtorch/manifest"
)

// Limiter bounds how many holders run at once: a counting semaphore,
// possibly shared across processes (a PostgreSQL-backed one, say). Its
// contract:
//   - Acquire blocks until the caller holds one slot, and returns nil; or,
//     when ctx is done first (also when it is done on entry, even if a slot
//     is free), returns an error wrapping ctx's error and holds nothing. It
//     may return another error (a lost connection to a shared store); it
//     then also holds nothing.
//   - Every Acquire that returned nil is paired with exactly one Release,
//     called by the orchestrator when the node (or wave invocation) stops
//     running or starts waiting out a retry delay. Release never blocks for
//     long and cannot fail; releasing a slot that is not held is a bug and
//     may panic.
//   - Acquire and Release are safe for concurrent use; a Limiter may be
//     shared by several builds and orchestrators. Fairness (which waiter
//     gets a freed slot) is the Limiter's choice; NewLimiter's is FIFO.
//
// The orchestrator acquires the limits of one node in Config.Limits order
// and releases them in reverse order.
type Limiter interface {
	Acquire(ctx context.Context) error
	Release()
}

// NodeLimit attaches a Limiter to the nodes it applies to. A node holds one
// slot of each limit that applies to it for as long as it runs (all its
// attempts, but not the delays between them); in PerWave mode an
// invocation holds one slot of each limit that applies to any of its nodes.
type NodeLimit struct {
	// Name identifies the limit in events and errors ("warehouse").
	Name string
	// Limiter is the shared semaphore. Required.
	Limiter Limiter
	// Applies reports whether the node needs the limit; nil means every
	// node does.
	Applies func(n *manifest.Node) bool
	// ForNode, when set, makes the limit one limiter per key instead of
	// the single Limiter (which may then be nil): a node the limit applies
	// to holds the limiter ForNode returns for it under key, and nothing
	// when that limiter is nil. Nodes of one invocation sharing a key hold
	// it once, and an invocation takes its keys in sorted order, so that
	// builds sharing the limiters cannot deadlock on them. Registry's
	// RelationLocks is one: a one-slot limiter per relation.
	ForNode func(n *manifest.Node) (key string, l Limiter)
}

// NewLimiter returns an in-process Limiter with n slots (n < 1 is treated
// as 1): a golang.org/x/sync/semaphore.Weighted, whose waiters are served
// in the order they arrived and whose Acquire fails when ctx is done, even
// if a slot is free. Release without a matching Acquire panics.
func NewLimiter(n int) Limiter {
	return &weighted{semaphore.NewWeighted(int64(max(n, 1)))}
}

// weighted is a semaphore.Weighted as a Limiter, one slot per holder.
type weighted struct{ w *semaphore.Weighted }

func (s *weighted) Acquire(ctx context.Context) error { return s.w.Acquire(ctx, 1) }
func (s *weighted) Release()                          { s.w.Release(1) }

// Registry holds named limiters shared in one process, so that several
// orchestrators (for instance one per project in a service) respect one
// limit such as "warehouse": 4. The zero value is ready to use; a Registry
// is safe for concurrent use.
type Registry struct {
	mu sync.Mutex
	m  map[string]*namedLimiter
}

type namedLimiter struct {
	Limiter
	size int
}

// Limiter returns the limiter registered under name, creating it with
// size slots on first use. Asking again with another size returns an
// error rather than a limiter of a different size than the others see.
func (r *Registry) Limiter(name string, size int) (Limiter, error) {
	r.mu.Lock()
	defer r.mu.Unlock()
	if l, ok := r.m[name]; ok {
		if l.size != size {
			return nil, fmt.Errorf("orchestrator: limit %q already has %d slots, not %d", name, l.size, size)
		}
		return l.Limiter, nil
	}
	if r.m == nil {
		r.m = map[string]*namedLimiter{}
	}
	l := &namedLimiter{Limiter: NewLimiter(size), size: size}
	r.m[name] = l
	return l.Limiter, nil
}

// NodeLimit returns a NodeLimit over the registry's limiter name (created
// with size slots on first use) that applies to the nodes applies selects
// (nil: every node).
func (r *Registry) NodeLimit(name string, size int, applies func(*manifest.Node) bool) (NodeLimit, error) {
	l, err := r.Limiter(name, size)
	if err != nil {
		return NodeLimit{}, err
	}
	return NodeLimit{Name: name, Limiter: l, Applies: applies}, nil
}
