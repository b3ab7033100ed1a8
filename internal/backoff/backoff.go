// Package backoff is dbtorch's one retry-timing vocabulary: exponential
// delays with jitter, Retry-After parsing and a context-aware sleep. The
// orchestrator's node retries, the dbt Cloud client and the OpenLineage
// HTTP transport all time their retries with it.
package backoff

import (
	"context"
	"math"
	"math/rand/v2"
	"net/http"
	"strconv"
	"strings"
	"time"
)

// Exponential returns base·mult^n capped at max (n counts from 0 for the
// first retry). base <= 0 means 1ms, mult <= 0 means 2, max <= 0 means no
// cap.
func Exponential(base, max time.Duration, mult float64, n int) time.Duration {
	if base <= 0 {
		base = time.Millisecond
	}
	if mult <= 0 {
		mult = 2
	}
	if n < 0 {
		n = 0
	}
	f := float64(base) * math.Pow(mult, float64(n))
	if math.IsInf(f, 0) || math.IsNaN(f) || f <= 0 || f > float64(math.MaxInt64) {
		if max > 0 {
			return max
		}
		return time.Duration(math.MaxInt64)
	}
	if max > 0 && f > float64(max) {
		return max
	}
	return time.Duration(f)
}

// EqualJitter returns a duration uniformly in [d/2, d], so that many
// clients failing together do not retry together.
func EqualJitter(d time.Duration) time.Duration {
	if d <= 1 {
		return d
	}
	half := d / 2
	return half + rand.N(d-half+1)
}

// Spread returns d changed by a uniformly random fraction in
// [-frac, +frac] of itself (frac 0.2 = ±20%). frac <= 0 returns d.
func Spread(d time.Duration, frac float64) time.Duration {
	if frac <= 0 || d <= 0 {
		return d
	}
	return time.Duration(float64(d) * (1 + frac*(2*rand.Float64()-1)))
}

// RetryAfter reads the Retry-After header of resp (seconds, or an HTTP
// date relative to now) when resp's status is one of statuses (429 and 503
// when none are given). A date in the past is zero.
func RetryAfter(resp *http.Response, now time.Time, statuses ...int) (time.Duration, bool) {
	if resp == nil {
		return 0, false
	}
	if len(statuses) == 0 {
		statuses = []int{http.StatusTooManyRequests, http.StatusServiceUnavailable}
	}
	match := false
	for _, s := range statuses {
		match = match || resp.StatusCode == s
	}
	if !match {
		return 0, false
	}
	v := strings.TrimSpace(resp.Header.Get("Retry-After"))
	if v == "" {
		return 0, false
	}
	if s, err := strconv.Atoi(v); err == nil {
		if s < 0 {
			return 0, false
		}
		return time.Duration(s) * time.Second, true
	}
	if t, err := http.ParseTime(v); err == nil {
		return max(t.Sub(now), 0), true
	}
	return 0, false
}

// Sleep waits d or until ctx is done, and reports whether it waited all of
// d (false when ctx ended first). d <= 0 returns at once, true unless ctx
// is already done.
func Sleep(ctx context.Context, d time.Duration) bool {
	if d <= 0 {
		return ctx.Err() == nil
	}
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-t.C:
		return true
	case <-ctx.Done():
		return false
	}
}
