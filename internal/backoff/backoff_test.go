package backoff

import (
	"context"
	"net/http"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
)

func TestExponential(t *testing.T) {
	assert.Equal(t, time.Second, Exponential(time.Second, time.Minute, 2, 0))
	assert.Equal(t, 4*time.Second, Exponential(time.Second, time.Minute, 2, 2))
	assert.Equal(t, time.Minute, Exponential(time.Second, time.Minute, 2, 30))
	assert.Equal(t, time.Minute, Exponential(time.Second, time.Minute, 2, 5000), "overflow caps")
	assert.Equal(t, time.Second, Exponential(time.Second, 0, 1, 7), "constant")
}

func TestJitterBounds(t *testing.T) {
	for range 1000 {
		d := EqualJitter(time.Second)
		assert.True(t, d >= 500*time.Millisecond && d <= time.Second, d)
		s := Spread(time.Second, 0.2)
		assert.True(t, s >= 800*time.Millisecond && s <= 1200*time.Millisecond, s)
	}
	assert.Equal(t, time.Second, Spread(time.Second, 0))
}

func TestRetryAfter(t *testing.T) {
	now := time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)
	resp := func(code int, v string) *http.Response {
		r := &http.Response{StatusCode: code, Header: http.Header{}}
		if v != "" {
			r.Header.Set("Retry-After", v)
		}
		return r
	}
	d, ok := RetryAfter(resp(429, "7"), now)
	assert.True(t, ok)
	assert.Equal(t, 7*time.Second, d)
	d, ok = RetryAfter(resp(503, now.Add(3*time.Second).Format(http.TimeFormat)), now)
	assert.True(t, ok)
	assert.Equal(t, 3*time.Second, d)
	_, ok = RetryAfter(resp(500, "7"), now)
	assert.False(t, ok, "500 not listed")
	_, ok = RetryAfter(resp(500, "7"), now, 500)
	assert.True(t, ok, "500 listed")
	_, ok = RetryAfter(resp(429, ""), now)
	assert.False(t, ok)
	_, ok = RetryAfter(nil, now)
	assert.False(t, ok)
}

func TestSleep(t *testing.T) {
	assert.True(t, Sleep(context.Background(), time.Millisecond))
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	start := time.Now()
	assert.False(t, Sleep(ctx, time.Hour))
	assert.Less(t, time.Since(start), time.Second)
	assert.False(t, Sleep(ctx, 0))
}
