package orchestrator

import (
	"context"
	"fmt"
	"time"

	"github.com/dbtorch/dbtorch/executor"
	"github.com/dbtorch/dbtorch/internal/backoff"
	"github.com/dbtorch/dbtorch/manifest"
)

// RetryPolicy decides whether a failed attempt of node is tried again. res
// is the attempt's result (Status Error or Cancelled). It is only asked
// while attempts remain and the build's context is not done.
type RetryPolicy func(ctx context.Context, node *manifest.Node, res *executor.Result) bool

// DefaultRetryPolicy retries errors that may be transient: database,
// connection, crash, timeout and unknown kinds. It does not retry
// compilation errors and failing tests (running again gives the same
// answer), cancellations, or internal errors.
func DefaultRetryPolicy(_ context.Context, _ *manifest.Node, res *executor.Result) bool {
	switch res.Kind {
	case executor.KindDatabase, executor.KindConnection, executor.KindCrash,
		executor.KindTimeout, executor.KindUnknown:
		return true
	}
	return false
}

// RetryConfig says how often and when a failed node is tried again. The
// zero value never retries.
type RetryConfig struct {
	// Retries is how many times a failed node is tried again (so at most
	// Retries+1 attempts).
	Retries int
	// Delay is the wait before the first retry; zero means 1s when Retries
	// > 0.
	Delay time.Duration
	// Multiplier grows the delay after each retry (exponential backoff);
	// zero means 2. Use 1 for a constant delay.
	Multiplier float64
	// MaxDelay caps the delay; zero means 1 minute.
	MaxDelay time.Duration
	// Jitter randomizes each delay by up to ±Jitter of itself (0.2 = ±20%),
	// so that nodes failing together do not retry together. Zero means no
	// jitter; it must be in [0, 1].
	Jitter float64
	// Policy decides which failures are retried; nil means
	// DefaultRetryPolicy.
	Policy RetryPolicy
}

func (r RetryConfig) validate() error {
	switch {
	case r.Retries < 0:
		return fmt.Errorf("orchestrator: Retry.Retries %d < 0", r.Retries)
	case r.Delay < 0 || r.MaxDelay < 0:
		return fmt.Errorf("orchestrator: negative retry delay")
	case r.Multiplier < 0:
		return fmt.Errorf("orchestrator: Retry.Multiplier %v < 0", r.Multiplier)
	case r.Jitter < 0 || r.Jitter > 1:
		return fmt.Errorf("orchestrator: Retry.Jitter %v not in [0, 1]", r.Jitter)
	}
	return nil
}

func (r RetryConfig) policy() RetryPolicy {
	if r.Policy != nil {
		return r.Policy
	}
	return DefaultRetryPolicy
}

// Backoff returns the wait before retry number retry (1 for the first
// retry): Delay × Multiplier^(retry-1), capped at MaxDelay, then jittered
// by ±Jitter (internal/backoff's Exponential and Spread, the timing the
// dbt Cloud client and the lineage transport use too).
func (r RetryConfig) Backoff(retry int) time.Duration {
	d, mult, maxd := r.Delay, r.Multiplier, r.MaxDelay
	if d == 0 {
		d = time.Second
	}
	if mult == 0 {
		mult = 2
	}
	if maxd == 0 {
		maxd = time.Minute
	}
	return backoff.Spread(backoff.Exponential(d, maxd, mult, retry-1), r.Jitter)
}
