package orchestrator

import (
	"context"
	"fmt"
	"sync"

	"github.com/dbtorch/dbtorch/manifest"
)

// Limiter bounds how many holders run at once. Acquire blocks until a slot
// is free or ctx is done (then it returns ctx's error and holds nothing);
// every successful Acquire must be paired with one Release. A Limiter is
// safe for concurrent use and may be shared by several orchestrators.
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
}

// semaphore is a counting semaphore with FIFO-fair, cancellable Acquire.
type semaphore struct {
	mu      sync.Mutex
	size    int
	held    int
	waiters []chan struct{} // FIFO; closed when granted a slot
}

// NewLimiter returns a Limiter with n slots (n < 1 is treated as 1).
// Waiters are served in the order they arrived.
func NewLimiter(n int) Limiter {
	return &semaphore{size: max(n, 1)}
}

func (s *semaphore) Acquire(ctx context.Context) error {
	s.mu.Lock()
	if s.held < s.size && len(s.waiters) == 0 {
		s.held++
		s.mu.Unlock()
		return nil
	}
	if err := ctx.Err(); err != nil {
		s.mu.Unlock()
		return err
	}
	ch := make(chan struct{})
	s.waiters = append(s.waiters, ch)
	s.mu.Unlock()
	select {
	case <-ch:
		return nil
	case <-ctx.Done():
		s.mu.Lock()
		select {
		case <-ch:
			// Granted while we were giving up: hand the slot on.
			s.mu.Unlock()
			s.Release()
		default:
			for i, w := range s.waiters {
				if w == ch {
					s.waiters = append(s.waiters[:i], s.waiters[i+1:]...)
					break
				}
			}
			s.mu.Unlock()
		}
		return ctx.Err()
	}
}

func (s *semaphore) Release() {
	s.mu.Lock()
	defer s.mu.Unlock()
	if len(s.waiters) > 0 {
		// The slot passes straight to the first waiter.
		close(s.waiters[0])
		s.waiters = s.waiters[1:]
		return
	}
	if s.held == 0 {
		panic("orchestrator: Limiter.Release without Acquire")
	}
	s.held--
}

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
