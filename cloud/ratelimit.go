package cloud

import (
	"context"
	"sync"
	"time"
)

// limiter is a token bucket: rate tokens per second, at most burst stored
// (a rate of zero or less means no limit). Wait reserves a token and sleeps
// until it is due; a pause (after a 429) holds every caller until it ends.
type limiter struct {
	mu     sync.Mutex
	rate   float64 // tokens per second
	burst  float64
	tokens float64
	last   time.Time
	pause  time.Time
}

func newLimiter(perSecond float64, burst int) *limiter {
	if burst < 1 {
		burst = 1
	}
	return &limiter{rate: perSecond, burst: float64(burst), tokens: float64(burst), last: time.Now()}
}

// reserve takes one token and returns how long the caller must wait for it.
func (l *limiter) reserve(now time.Time) time.Duration {
	l.mu.Lock()
	defer l.mu.Unlock()
	if l.rate <= 0 {
		return max(l.pause.Sub(now), 0)
	}
	if elapsed := now.Sub(l.last); elapsed > 0 {
		l.tokens += elapsed.Seconds() * l.rate
		if l.tokens > l.burst {
			l.tokens = l.burst
		}
		l.last = now
	}
	l.tokens--
	var wait time.Duration
	if l.tokens < 0 {
		wait = time.Duration(-l.tokens / l.rate * float64(time.Second))
	}
	if p := l.pause.Sub(now); p > wait {
		wait = p
	}
	return wait
}

// cancel returns a token reserved by a caller that gave up waiting.
func (l *limiter) cancel() {
	l.mu.Lock()
	if l.rate <= 0 {
		l.mu.Unlock()
		return
	}
	l.tokens++
	if l.tokens > l.burst {
		l.tokens = l.burst
	}
	l.mu.Unlock()
}

// Wait blocks until the caller may send one request, or ctx ends.
func (l *limiter) Wait(ctx context.Context) error {
	d := l.reserve(time.Now())
	if d <= 0 {
		return ctx.Err()
	}
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-t.C:
		return nil
	case <-ctx.Done():
		l.cancel()
		return ctx.Err()
	}
}

// PauseUntil holds every caller of Wait until t.
func (l *limiter) PauseUntil(t time.Time) {
	l.mu.Lock()
	if t.After(l.pause) {
		l.pause = t
	}
	l.mu.Unlock()
}
