package cloud

import (
	"context"
	"sync"
	"time"

	"golang.org/x/time/rate"

	"github.com/dbtorch/dbtorch/internal/backoff"
)

// limiter paces a client's requests: a token bucket (golang.org/x/time/rate)
// for the account's request rate, and a gate that holds every caller until
// the end of a pause a 429's Retry-After asked for.
type limiter struct {
	bucket *rate.Limiter // nil: no rate limit

	mu    sync.Mutex
	pause time.Time
}

// newLimiter returns a limiter of perSecond requests per second with the
// given burst; a rate of zero or less means no limit.
func newLimiter(perSecond float64, burst int) *limiter {
	l := &limiter{}
	if perSecond > 0 {
		l.bucket = rate.NewLimiter(rate.Limit(perSecond), max(burst, 1))
	}
	return l
}

// Wait blocks until the caller may send one request, or ctx ends.
func (l *limiter) Wait(ctx context.Context) error {
	l.mu.Lock()
	d := time.Until(l.pause)
	l.mu.Unlock()
	if !backoff.Sleep(ctx, d) {
		return ctx.Err()
	}
	if l.bucket == nil {
		return ctx.Err()
	}
	if err := l.bucket.Wait(ctx); err != nil {
		// rate.Limiter refuses at once a wait that would outlast ctx's
		// deadline; wait for the deadline like any other caller would.
		<-ctx.Done()
		return ctx.Err()
	}
	return nil
}

// PauseUntil holds every caller of Wait until t.
func (l *limiter) PauseUntil(t time.Time) {
	l.mu.Lock()
	if t.After(l.pause) {
		l.pause = t
	}
	l.mu.Unlock()
}
