package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"os"

	"github.com/dbtorch/dbtorch/orchestrator"
)

// runRetry is `dbtorch retry`: it reads what an earlier build left
// (--results, dbtorch's results, or --run-results, a run_results.json)
// and runs again, as a new attempt of the same run id, only the nodes
// that failed, those skipped because of them or because the build was
// interrupted, and the models of failed tests before those tests (see
// orchestrator.Retry). Every other build flag means what it means for
// build; the files named are replaced by the retry's, so that a second
// retry goes on from the first.
func runRetry(ctx context.Context, args []string, stdout, stderr io.Writer) int {
	fs, f := newBuildFlagSet("retry", stderr)
	fs.Lookup("results").Usage = "the earlier build's dbtorch results JSON: read, then replaced by the retry's"
	fs.Lookup("run-results").Usage = "the earlier build's run_results.json (read when --results is not given), then replaced by the retry's"
	if code, ok := parseFlags(fs, args, stderr); !ok {
		return code
	}
	if err := f.finish(fs); err != nil {
		return badInput(stderr, "retry", err)
	}
	for _, name := range []string{"select", "s", "m", "models", "model", "exclude", "selector", "resource-type",
		"resource-types", "exclude-resource-type", "exclude-resource-types", "indirect-selection"} {
		if f.set[name] {
			return badInput(stderr, "retry", fmt.Errorf("--%s: retry selects the nodes itself (what failed or was skipped)", name))
		}
	}
	path := f.results
	if path == "" {
		path = f.runResults
	}
	f.replaceRunResults = f.runResults != "" // dbt's own file, perhaps
	if path == "" {
		return badInput(stderr, "retry", errors.New("--results or --run-results (the earlier build's file) is required"))
	}
	file, err := os.Open(path)
	if err != nil {
		return badInput(stderr, "retry", err)
	}
	prior, err := orchestrator.ReadPriorRun(file)
	file.Close()
	if err != nil {
		return badInput(stderr, "retry", fmt.Errorf("%s: %w", path, err))
	}
	fmt.Fprintf(stdout, "Retrying run %s (attempt %d)\n", prior.ID, prior.Attempt+1)
	return build(ctx, "retry", f, prior, stdout, stderr)
}
