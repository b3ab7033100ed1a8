package main

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"time"

	"github.com/dbtorch/dbtorch/artifacts"
	"github.com/dbtorch/dbtorch/dbt"
	"github.com/dbtorch/dbtorch/executor"
	"github.com/dbtorch/dbtorch/orchestrator"
)

// errFailFast is the cause of a build cancelled by --fail-fast.
var errFailFast = errors.New("--fail-fast")

// failFast returns an observer that cancels the build, with errFailFast,
// when the first node ends in error.
func failFast(cancel context.CancelCauseFunc) orchestrator.Observer {
	return orchestrator.ObserverFunc(func(_ context.Context, e orchestrator.Event) {
		if e.Type == orchestrator.NodeFinished && e.Result.Status == orchestrator.Error &&
			(e.Result.Err == nil || e.Result.Err.Kind != executor.KindCancelled) {
			cancel(fmt.Errorf("%w: %s failed", errFailFast, e.Node))
		}
	})
}

// interrupted reports an interrupted command: one line, exit 130.
func interrupted(ctx context.Context, stderr io.Writer, cmd, what string) int {
	fmt.Fprintf(stderr, "dbtorch %s: interrupted (%v)%s\n", cmd, context.Cause(ctx), what)
	return exitInterrupted
}

// failure reports an error that stopped the command before the build ran:
// bad input (no dbt executable, a refused executor option) exits 2, an
// interrupt 130, anything else (dbt could not parse the project, say) 1.
func failure(ctx context.Context, stderr io.Writer, cmd string, err error) int {
	var ce *executor.ConfigError
	var ue usageError
	switch {
	case ctx.Err() != nil:
		return interrupted(ctx, stderr, cmd, " before the build started")
	case errors.As(err, &ce), errors.As(err, &ue), errors.Is(err, dbt.ErrNoDBT):
		return badInput(stderr, cmd, err)
	}
	fmt.Fprintf(stderr, "dbtorch %s: %v\n", cmd, err)
	return exitFailed
}

// noRun reports a build that did not start: nothing to retry (0), an
// interrupt (130), or a selection the project cannot resolve (2).
func noRun(ctx context.Context, stdout, stderr io.Writer, cmd string, err error) int {
	switch {
	case errors.Is(err, orchestrator.ErrNothingToRetry):
		fmt.Fprintln(stdout, "Nothing to retry: no node failed or was skipped.")
		return exitOK
	case ctx.Err() != nil:
		return interrupted(ctx, stderr, cmd, " before the build started")
	}
	return badInput(stderr, cmd, err)
}

// buildExit reports how a build that ran ended: 130 when interrupted
// (ctx is the command's, bctx the build's), 1 when nodes failed or a
// reporter did, 0 otherwise.
func buildExit(ctx, bctx context.Context, stderr io.Writer, cmd string, run *orchestrator.Run, err error) int {
	notRun := 0
	for i := range run.Results {
		if r := &run.Results[i]; r.Status == orchestrator.Skipped && r.SkipReason == orchestrator.ReasonCancelled {
			notRun++
		}
	}
	var be *orchestrator.BuildError
	switch {
	case ctx.Err() != nil:
		return interrupted(ctx, stderr, cmd, fmt.Sprintf(": %d of %d nodes did not run, %d failed (`dbtorch retry --results FILE` runs them)",
			notRun, len(run.Results), run.Count(orchestrator.Error)))
	case errors.Is(context.Cause(bctx), errFailFast):
		fmt.Fprintf(stderr, "dbtorch %s: stopped by %v; %d node(s) did not run\n", cmd, context.Cause(bctx), notRun)
		return exitFailed
	case err == nil:
		return exitOK
	case errors.As(err, &be) && len(multiErrors(err)) == 1:
		return exitFailed // the summary names the failed nodes
	}
	fmt.Fprintf(stderr, "dbtorch %s: %v\n", cmd, err)
	return exitFailed
}

func multiErrors(err error) []error {
	if j, ok := err.(interface{ Unwrap() []error }); ok {
		return j.Unwrap()
	}
	return []error{err}
}

// priorDurations returns, when path holds the results of an earlier
// build, each node's duration then, for the critical-path order and the
// progress ETA; nil otherwise.
func priorDurations(path string) func(id string) time.Duration {
	if path == "" {
		return nil
	}
	data, err := os.ReadFile(path)
	if err != nil {
		return nil
	}
	var doc artifacts.RunJSON
	if err := json.Unmarshal(data, &doc); err != nil {
		return nil
	}
	d := map[string]time.Duration{}
	for _, r := range doc.Results {
		if r.StartedAt != nil && r.CompletedAt != nil {
			s, err1 := time.Parse(time.RFC3339Nano, *r.StartedAt)
			c, err2 := time.Parse(time.RFC3339Nano, *r.CompletedAt)
			if err1 == nil && err2 == nil && c.After(s) {
				d[r.UniqueID] = c.Sub(s)
			}
		}
	}
	if len(d) == 0 {
		return nil
	}
	return func(id string) time.Duration { return d[id] }
}

// writeResults writes the results contract to path atomically, with the
// library's reporter (artifacts.Results). It runs after the build, so an
// interrupted build still leaves its results: the build's context is not
// its context.
func writeResults(path string, run *orchestrator.Run) error {
	return (&artifacts.Results{Path: path}).Report(context.Background(), run)
}
