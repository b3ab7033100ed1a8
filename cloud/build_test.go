package cloud_test

import (
	"context"
	"errors"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/dbtorch/dbtorch/cloud"
	"github.com/dbtorch/dbtorch/cloud/cloudtest"
	"github.com/dbtorch/dbtorch/executor"
	"github.com/dbtorch/dbtorch/orchestrator"
)

// TestRunBuild runs the whole multi-wave project through the orchestrator
// on the fake dbt Cloud, with the manifest from a compile job: stg_a always
// fails (its descendants are skipped, the other branch goes on), stg_b
// fails once and succeeds on retry. Faults are sprinkled over the build.
func TestRunBuild(t *testing.T) {
	t.Parallel()
	for _, mode := range []orchestrator.Mode{orchestrator.PerNode, orchestrator.PerWave} {
		t.Run(mode.String(), func(t *testing.T) {
			t.Parallel()
			e := newEnv(t, cloudtest.Options{Outcome: script(map[string][]cloudtest.NodeOutcome{
				"stg_a": {{Status: "error", Message: "Database Error in model stg_a\n  division by zero"}},
				"stg_b": {{Status: "error", Message: "Database Error in model stg_b\n  could not serialize access"}, {}},
			})})
			e.c = e.client(t, func(c *cloud.ClientConfig) { c.AttemptTimeout = 300 * time.Millisecond })
			x := e.executor(t, nil)
			e.srv.Inject(cloudtest.Fault{Route: cloudtest.CreateJob, LoseResponse: true, Times: 2})
			e.srv.Inject(cloudtest.Fault{Route: cloudtest.TriggerRun, LoseResponse: true})
			e.srv.Inject(cloudtest.Fault{Route: cloudtest.GetRun, Status: 500, Times: 3})
			e.srv.Inject(cloudtest.Fault{Route: cloudtest.DeleteJob, Drop: true})

			o, err := orchestrator.New(orchestrator.Config{
				Executor:    x,
				Mode:        mode,
				Concurrency: 3,
				Retry:       orchestrator.RetryConfig{Retries: 2, Delay: 5 * time.Millisecond},
			})
			require.NoError(t, err)
			run, err := o.RunBuild(ctxT(t), orchestrator.BuildOptions{ID: "build-1"})
			var be *orchestrator.BuildError
			require.ErrorAs(t, err, &be)
			assert.Equal(t, []string{idOf("stg_a")}, be.Failed)
			require.NotNil(t, run)
			require.Len(t, run.Results, len(project))

			want := map[string]orchestrator.Status{
				"raw": orchestrator.Success, "stg_a": orchestrator.Error, "fct_a": orchestrator.Skipped,
				"rpt_a": orchestrator.Skipped, "stg_b": orchestrator.Success, "not_null_stg_b": orchestrator.Success,
				"fct_b": orchestrator.Success, "rpt_b": orchestrator.Success,
			}
			for name, st := range want {
				r := run.Result(idOf(name))
				require.NotNil(t, r, name)
				assert.Equal(t, st, r.Status, "%s: %s", name, r.Message)
			}
			for _, name := range []string{"fct_a", "rpt_a"} {
				assert.Equal(t, []string{idOf("stg_a")}, run.Result(idOf(name)).FailedUpstream, name)
			}
			stgA := run.Result(idOf("stg_a"))
			assert.Len(t, stgA.Attempts, 3)
			assert.Equal(t, executor.KindDatabase, stgA.Err.Kind)
			assert.Contains(t, stgA.Err.Message, "division by zero")
			assert.Len(t, run.Result(idOf("stg_b")).Attempts, 2)
			assert.Equal(t, 3, e.srv.Attempts(idOf("stg_a")))
			assert.Equal(t, 2, e.srv.Attempts(idOf("stg_b")))
			assert.Zero(t, e.srv.Attempts(idOf("fct_a")))

			// One job and one run per invocation, plus the compile job:
			// lost responses created no duplicates.
			runs := e.srv.Runs()
			assert.Equal(t, len(runs), e.srv.JobsCreated())
			jobs := map[int64]bool{}
			for _, r := range runs {
				assert.False(t, jobs[r.JobID], "job %d ran twice", r.JobID)
				jobs[r.JobID] = true
			}
			assert.Zero(t, e.srv.PendingFaults())
		})
	}
}

// TestRunBuildCancelled: cancelling a build while dbt Cloud runs are in
// flight leaves no job and no running run.
func TestRunBuildCancelled(t *testing.T) {
	t.Parallel()
	e := newEnv(t, cloudtest.Options{CancelTime: 30 * time.Millisecond, Outcome: script(map[string][]cloudtest.NodeOutcome{
		"fct_a": {{Hang: true}}, "fct_b": {{Hang: true}},
	})})
	x := e.executor(t, nil)
	started := make(chan struct{}, 8)
	o, err := orchestrator.New(orchestrator.Config{
		Executor: x, Manifest: e.m, Concurrency: 4,
		Observer: orchestrator.ObserverFunc(func(_ context.Context, ev orchestrator.Event) {
			if ev.Type == orchestrator.NodeStarted && (ev.Node == idOf("fct_a") || ev.Node == idOf("fct_b")) {
				started <- struct{}{}
			}
		}),
	})
	require.NoError(t, err)
	ctx, cancel := context.WithCancel(ctxT(t))
	go func() {
		<-started
		<-started
		time.Sleep(50 * time.Millisecond)
		cancel()
	}()
	run, err := o.RunBuild(ctx, orchestrator.BuildOptions{})
	require.True(t, errors.Is(err, context.Canceled), "%v", err)
	require.NotNil(t, run)
	for _, name := range []string{"fct_a", "fct_b"} {
		r := run.Result(idOf(name))
		assert.Equal(t, orchestrator.Error, r.Status, name)
		assert.Equal(t, executor.KindCancelled, r.Err.Kind, name)
	}
	for _, name := range []string{"rpt_a", "rpt_b"} {
		assert.Equal(t, orchestrator.Skipped, run.Result(idOf(name)).Status, name)
	}
	cancelled := 0
	for _, r := range e.srv.Runs() {
		if r.Cancelled {
			cancelled++
		}
	}
	assert.Equal(t, 2, cancelled)
}
