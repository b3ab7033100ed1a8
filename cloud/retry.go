package cloud

import (
	"context"
	"crypto/x509"
	"errors"
	"net/http"
	"strings"
	"time"

	"github.com/dbtorch/dbtorch/internal/backoff"
)

// RetryPolicy decides, after one attempt of a request, whether another
// attempt is worth making. resp is nil when err is not; the body of resp
// has been read and must not be used. Returning a non-nil error stops the
// retries and returns that error instead of the attempt's.
//
// The client consults the policy for every request, but only repeats
// requests that are safe to repeat. For job creation and run triggers a
// "retry" first looks up whether the failed attempt took effect.
type RetryPolicy func(ctx context.Context, resp *http.Response, err error) (bool, error)

// Backoff returns how long to wait before attempt number attempt+1 (attempt
// counts from 0 for the first retry). resp is the failed attempt's response
// or nil.
type Backoff func(min, max time.Duration, attempt int, resp *http.Response) time.Duration

// DefaultRetryPolicy retries transport errors (except TLS certificate
// errors and malformed requests), 429 Too Many Requests, and 5xx statuses
// other than 501 Not Implemented. It never retries once ctx is done.
func DefaultRetryPolicy(ctx context.Context, resp *http.Response, err error) (bool, error) {
	if ctx.Err() != nil {
		return false, ctx.Err()
	}
	if err != nil {
		var certErr *x509.UnknownAuthorityError
		var hostErr x509.HostnameError
		var invalidErr x509.CertificateInvalidError
		switch {
		case errors.As(err, &certErr), errors.As(err, &hostErr), errors.As(err, &invalidErr):
			return false, nil
		case strings.Contains(err.Error(), "unsupported protocol scheme"),
			strings.Contains(err.Error(), "stopped after"): // too many redirects
			return false, nil
		}
		return true, nil
	}
	if resp == nil {
		return false, nil
	}
	switch {
	case resp.StatusCode == http.StatusTooManyRequests:
		return true, nil
	case resp.StatusCode >= 500 && resp.StatusCode != http.StatusNotImplemented:
		return true, nil
	}
	return false, nil
}

// DefaultBackoff honours a Retry-After header (seconds or an HTTP date) on
// 429 and 503 responses; otherwise it waits min·2^attempt, capped at max,
// with "equal jitter": a uniformly random duration between half that and
// all of it, so that many clients failing together do not retry together.
func DefaultBackoff(min, max time.Duration, attempt int, resp *http.Response) time.Duration {
	if d, ok := backoff.RetryAfter(resp, time.Now()); ok {
		return d
	}
	return backoff.EqualJitter(backoff.Exponential(min, max, 2, attempt))
}
