package orchestrator_test

import (
	"context"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/dbtorch/dbtorch/orchestrator"
)

// limitedFake is a fake executor that takes at most n invocations at once
// (executor.ConcurrencyLimiter).
type limitedFake struct {
	*fakeExec
	n int
}

func (l limitedFake) MaxConcurrency() (int, string) { return l.n, "the fake takes one at a time" }

// TestConcurrencyCappedByExecutor: an executor that says it takes one
// invocation at a time gets one at a time however much Concurrency asks,
// and the build says so in its warnings (per-node only: per-wave runs one
// invocation at a time anyway); a limit at or above Concurrency changes
// nothing.
func TestConcurrencyCappedByExecutor(t *testing.T) {
	spec := dagSpec{models: 12}
	scripts := map[string]script{}
	for i := range spec.models {
		scripts[modelID(i)] = script{dur: 5 * time.Millisecond}
	}
	ctx := context.Background()
	const warning = "concurrency 4 reduced to 1: the fake takes one at a time"

	fake := newFake(scripts)
	o := newOrch(t, orchestrator.Config{Executor: limitedFake{fake, 1}, Manifest: manifestOf(spec), Concurrency: 4})
	plan, err := o.Plan(ctx, orchestrator.BuildOptions{})
	require.NoError(t, err)
	assert.Equal(t, []string{warning}, plan.Warnings)
	run, err := o.RunBuild(ctx, orchestrator.BuildOptions{})
	require.NoError(t, err)
	assert.Equal(t, []string{warning}, run.Warnings)
	assert.Equal(t, int64(1), fake.peak.Load(), "one invocation at a time")
	assert.Equal(t, 1, run.Args["threads"])

	fake = newFake(scripts)
	run, err = newOrch(t, orchestrator.Config{Executor: limitedFake{fake, 4}, Manifest: manifestOf(spec), Concurrency: 4}).
		RunBuild(ctx, orchestrator.BuildOptions{})
	require.NoError(t, err)
	assert.Empty(t, run.Warnings)
	assert.Greater(t, fake.peak.Load(), int64(1), "12 independent models on 4 workers overlap")

	run, err = newOrch(t, orchestrator.Config{Executor: limitedFake{newFake(scripts), 1}, Manifest: manifestOf(spec), Concurrency: 4,
		Mode: orchestrator.PerWave}).RunBuild(ctx, orchestrator.BuildOptions{})
	require.NoError(t, err)
	assert.Empty(t, run.Warnings, "per-wave: one invocation at a time already")
}
