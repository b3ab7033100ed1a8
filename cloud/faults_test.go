package cloud_test

// The faults of issue 15, each driven through the executor (or the
// janitor) against the fake server. newEnv's clean-up asserts, after every
// test, that the fake holds no job, no run still going, no job deleted
// while a run of it was going, and at most one run per invocation.

import (
	"context"
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/dbtorch/dbtorch/artifacts"
	"github.com/dbtorch/dbtorch/cloud"
	"github.com/dbtorch/dbtorch/cloud/cloudtest"
	"github.com/dbtorch/dbtorch/executor"
	"github.com/dbtorch/dbtorch/orchestrator"
)

// execute runs one node through x and returns its result.
func (e *env) execute(t *testing.T, ctx context.Context, x *cloud.Executor, name string) (executor.Result, *executor.Response) {
	t.Helper()
	nd := e.nodes(t, name)
	resp, err := x.Execute(ctx, executor.Request{Command: executor.CommandFor(nd[0].ResourceType), Nodes: nd, BuildID: "b", Attempt: 1})
	require.NoError(t, err)
	require.Len(t, resp.Results, 1)
	return resp.Results[0], resp
}

// TestLateCommit (point 1): a creation or a trigger answered with a
// 502/504, or whose connection is dropped, that the server commits a
// moment later anyway, gives one job, one run and one execution of the
// node: the client finds the late job (run) within the commit window
// instead of sending the request again.
func TestLateCommit(t *testing.T) {
	t.Parallel()
	for _, route := range []cloudtest.Route{cloudtest.CreateJob, cloudtest.TriggerRun} {
		for _, f := range []cloudtest.Fault{{Status: 502}, {Status: 504}, {Drop: true}} {
			t.Run(fmt.Sprintf("%s status=%d drop=%v", route, f.Status, f.Drop), func(t *testing.T) {
				t.Parallel()
				e := newEnv(t, cloudtest.Options{})
				x := e.executor(t, nil)
				f.Route, f.CommitAfter = route, 200*time.Millisecond
				e.srv.Inject(f)
				r, _ := e.execute(t, ctxT(t), x, "stg_a")
				assert.Equal(t, executor.Success, r.Status, r.Message)
				assert.Equal(t, 1, e.srv.Settle(), "the fault's request did not land late")
				assert.Equal(t, 1, e.srv.JobsCreated(), "duplicate job")
				assert.Len(t, e.srv.Runs(), 1, "duplicate run")
				assert.Equal(t, 1, e.srv.Attempts(idOf("stg_a")), "the node ran twice")
				require.NoError(t, x.Close())
			})
		}
	}
}

// TestCancelInFlight (point 2): a context that ends while a creation or a
// trigger is in flight (stalled on the server, or answered 504 and
// committed later) leaves nothing behind: the clean-up, on its own
// context, waits out the commit window for the job or run the request
// makes, deletes the job and cancels the run.
func TestCancelInFlight(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct {
		name  string
		fault cloudtest.Fault
		runs  int
	}{
		{"create stalled", cloudtest.Fault{Route: cloudtest.CreateJob, Stall: 300 * time.Millisecond}, 0},
		{"create 504, committed later", cloudtest.Fault{Route: cloudtest.CreateJob, Status: 504, CommitAfter: 300 * time.Millisecond}, 0},
		{"trigger stalled", cloudtest.Fault{Route: cloudtest.TriggerRun, Stall: 300 * time.Millisecond}, 1},
		{"trigger 504, committed later", cloudtest.Fault{Route: cloudtest.TriggerRun, Status: 504, CommitAfter: 300 * time.Millisecond}, 1},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			e := newEnv(t, cloudtest.Options{RunTime: time.Hour, CancelTime: 50 * time.Millisecond})
			x := e.executor(t, nil)
			e.srv.Inject(tc.fault)
			// Cancel once the request has reached the server: it is then
			// in flight (stalled), or answered and being looked for.
			ctx, cancel := context.WithCancel(ctxT(t))
			defer cancel()
			go func() {
				for e.srv.Calls(tc.fault.Route) == 0 && ctx.Err() == nil {
					time.Sleep(time.Millisecond)
				}
				time.Sleep(10 * time.Millisecond)
				cancel()
			}()
			r, _ := e.execute(t, ctx, x, "stg_a")
			assert.Equal(t, executor.Cancelled, r.Status)
			assert.Equal(t, executor.KindCancelled, r.Kind)
			assert.Equal(t, 1, e.srv.JobsCreated(), "the in-flight creation did not land")
			runs := e.srv.Runs()
			require.Len(t, runs, tc.runs)
			for _, run := range runs {
				assert.True(t, run.Cancelled, "the run the in-flight trigger started was not cancelled")
			}
			require.NoError(t, x.Close())
			// newEnv: the late job is deleted, its run ended before that.
		})
	}
}

// TestCooldownDuringCleanup (point 3): a rate-limit cooldown without
// Retry-After that outlasts the client's own retries does not stop the
// clean-up, which retries for its whole budget; one that outlasts the
// budget leaves the job, and Close names it in a *LeakError (the Janitor
// removes it once the cooldown is over).
func TestCooldownDuringCleanup(t *testing.T) {
	t.Parallel()
	const cooldown = 500 * time.Millisecond
	for _, tc := range []struct {
		name   string
		budget time.Duration
		leak   bool
	}{{"within the budget", 3 * time.Second, false}, {"beyond the budget", 150 * time.Millisecond, true}} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			e := newEnv(t, cloudtest.Options{})
			// The client gives up on a request after ~30ms of 429s.
			e.c = e.client(t, func(c *cloud.ClientConfig) { c.RetryMax = 2 })
			x := e.executor(t, func(c *cloud.ExecutorConfig) { c.CleanupTimeout = tc.budget })
			e.srv.Inject(cloudtest.Fault{Route: cloudtest.DeleteJob, Cooldown: cooldown})
			start := time.Now()
			r, _ := e.execute(t, ctxT(t), x, "stg_a")
			assert.Equal(t, executor.Success, r.Status, "the node's own result is not the clean-up's")
			err := x.Close()
			if !tc.leak {
				require.NoError(t, err)
				assert.GreaterOrEqual(t, time.Since(start), cooldown, "the job was deleted during the cooldown?")
				return
			}
			var le *cloud.LeakError
			require.ErrorAs(t, err, &le)
			jobs := e.srv.Jobs()
			require.Len(t, jobs, 1)
			assert.Equal(t, []int64{jobs[0].ID}, le.JobIDs)
			assert.Contains(t, err.Error(), fmt.Sprintf("delete job(s) %d", jobs[0].ID))
			assert.Contains(t, err.Error(), "429")
			assert.EqualError(t, x.Close(), err.Error(), "Close reports the same leak again")
			_, err = x.Execute(ctxT(t), executor.Request{Command: executor.Run, Nodes: e.nodes(t, "stg_a")})
			assert.ErrorIs(t, err, executor.ErrClosed)

			time.Sleep(cooldown) // it began before Close returned
			deleted, err := (&cloud.Janitor{Client: e.c, Prefix: cloud.DefaultJobPrefix, PollInterval: 5 * time.Millisecond}).Sweep(ctxT(t))
			require.NoError(t, err)
			assert.Len(t, deleted, 1)
		})
	}
}

// TestLateArtifacts (point 4): a run whose artifacts are saved a while
// after it ends (artifacts_saved false, 404 meanwhile), or whose saved
// run_results.json is still 404 for a few reads, is a success, read once
// the artifacts are there, and not run again; the manifest of a compile
// job is awaited the same way.
func TestLateArtifacts(t *testing.T) {
	t.Parallel()
	t.Run("not saved yet", func(t *testing.T) {
		t.Parallel()
		e := newEnv(t, cloudtest.Options{ArtifactDelay: 300 * time.Millisecond})
		x := e.executor(t, nil)
		m, err := x.Manifest(ctxT(t))
		require.NoError(t, err)
		assert.NotNil(t, m.Lookup(idOf("stg_a")))
		r, resp := e.execute(t, ctxT(t), x, "stg_a")
		assert.Equal(t, executor.Success, r.Status, r.Message)
		assert.NotEmpty(t, resp.Invocation.InvocationID)
		assert.Equal(t, 1, e.srv.Attempts(idOf("stg_a")))
		require.NoError(t, x.Close())
	})
	t.Run("saved but 404 for a while", func(t *testing.T) {
		t.Parallel()
		e := newEnv(t, cloudtest.Options{})
		x := e.executor(t, nil)
		e.srv.Inject(cloudtest.Fault{Route: cloudtest.RunArtifact, Status: 404, Times: 3})
		r, _ := e.execute(t, ctxT(t), x, "stg_a")
		assert.Equal(t, executor.Success, r.Status, r.Message)
		assert.Zero(t, e.srv.PendingFaults())
		require.NoError(t, x.Close())
	})
	t.Run("a crash still has none", func(t *testing.T) {
		t.Parallel()
		e := newEnv(t, cloudtest.Options{ArtifactDelay: 100 * time.Millisecond,
			Outcome: script(map[string][]cloudtest.NodeOutcome{"stg_a": {{Crash: true}}})})
		x := e.executor(t, nil)
		r, _ := e.execute(t, ctxT(t), x, "stg_a")
		assert.Equal(t, executor.Error, r.Status)
		assert.Equal(t, executor.KindCrash, r.Kind)
		assert.Contains(t, r.Message, "without run_results.json")
		require.NoError(t, x.Close())
	})
}

// TestJanitorSeveralActiveRuns (point 5): the janitor cancels every run of
// a leftover job that has not ended, not only the latest, and deletes the
// job only once they have all ended (newEnv checks that no job was
// deleted with a run still going).
func TestJanitorSeveralActiveRuns(t *testing.T) {
	t.Parallel()
	e := newEnv(t, cloudtest.Options{RunTime: time.Hour, CancelTime: 100 * time.Millisecond, PageSize: 2})
	ctx := ctxT(t)
	job, err := e.c.CreateJob(ctx, e.tempJob("dbtorch-left-aa"))
	require.NoError(t, err)
	for i := range 3 {
		_, err := e.c.TriggerRun(ctx, job.ID, cloud.TriggerOptions{Cause: fmt.Sprintf("left running %d", i)})
		require.NoError(t, err)
	}
	require.Equal(t, 3, e.srv.ActiveRuns())
	deleted, err := (&cloud.Janitor{Client: e.c, Prefix: "dbtorch-", PollInterval: 10 * time.Millisecond}).Sweep(ctx)
	require.NoError(t, err)
	require.Len(t, deleted, 1)
	assert.Zero(t, e.srv.ActiveRuns(), "a run of the deleted job is still going")
	for _, r := range e.srv.Runs() {
		assert.True(t, r.Cancelled, "run %d was not cancelled", r.ID)
		assert.Equal(t, 30, r.Status)
	}
}

// TestCancelAfterSuccess (point 6): when the context ends after the run
// has already succeeded (while its results are being read, or while dbt
// Cloud is still saving its artifacts), the node is reported a success,
// read on the clean-up's context, not cancelled.
func TestCancelAfterSuccess(t *testing.T) {
	t.Parallel()
	ended := func(e *env) bool {
		runs := e.srv.Runs()
		return len(runs) == 1 && runs[0].Status == 10
	}
	for _, tc := range []struct {
		name  string
		opts  cloudtest.Options
		fault *cloudtest.Fault
		// cancelWhen says when the context is cancelled.
		cancelWhen func(*env) bool
	}{
		{"while reading run_results.json", cloudtest.Options{}, &cloudtest.Fault{Route: cloudtest.RunArtifact, Delay: 5 * time.Second},
			func(e *env) bool { return e.srv.Calls(cloudtest.RunArtifact) > 0 }},
		{"while the artifacts are being saved", cloudtest.Options{ArtifactDelay: 400 * time.Millisecond}, nil, ended},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			e := newEnv(t, tc.opts)
			x := e.executor(t, nil)
			if tc.fault != nil {
				e.srv.Inject(*tc.fault)
			}
			ctx, cancel := context.WithCancel(ctxT(t))
			defer cancel()
			go func() {
				for !tc.cancelWhen(e) && ctx.Err() == nil {
					time.Sleep(time.Millisecond)
				}
				time.Sleep(10 * time.Millisecond)
				cancel()
			}()
			r, _ := e.execute(t, ctx, x, "stg_a")
			require.Error(t, ctx.Err(), "the context should have ended during the invocation")
			assert.Equal(t, executor.Success, r.Status, r.Message)
			assert.Equal(t, "success", r.DBTStatus)
			runs := e.srv.Runs()
			require.Len(t, runs, 1)
			assert.Equal(t, 10, runs[0].Status, "a finished run stays a success")
			require.NoError(t, x.Close())
		})
	}
}

// TestTokenNeverPrinted (point 7): a faulty build against a server that
// echoes the token in its error answers, its runs' status messages and a
// node's dbt message never gets the token into any text dbtorch prints or
// stores: logs, errors, node results, the results JSON, the leak report.
func TestTokenNeverPrinted(t *testing.T) {
	t.Parallel()
	var tok string
	e := newEnv(t, cloudtest.Options{EchoToken: true, Outcome: func(id string, attempt int) cloudtest.NodeOutcome {
		switch id {
		case idOf("stg_a"):
			return cloudtest.NodeOutcome{Status: "error", Message: "Database Error: password authentication failed for token " + tok}
		case idOf("fct_b"):
			return cloudtest.NodeOutcome{Crash: true}
		}
		return cloudtest.NodeOutcome{}
	}})
	tok = e.srv.Token()
	x := e.executor(t, func(c *cloud.ExecutorConfig) { c.CleanupTimeout = 100 * time.Millisecond })
	echo := "<html><title>Bad Gateway: Token " + tok + "</title></html>"
	e.srv.Inject(cloudtest.Fault{Route: cloudtest.CreateJob, Status: 502, Body: echo, CommitAfter: 50 * time.Millisecond})
	e.srv.Inject(cloudtest.Fault{Route: cloudtest.GetRun, Status: 500, Times: 2})
	e.srv.Inject(cloudtest.Fault{Route: cloudtest.TriggerRun, Status: 502, Body: `{"detail":"upstream said: token ` + tok + ` unknown"}`, ContentType: "application/json"})
	o, err := orchestrator.New(orchestrator.Config{Executor: x, Manifest: e.m, Concurrency: 2, Logger: e.logger(),
		Retry: orchestrator.RetryConfig{Retries: 1, Delay: time.Millisecond}})
	require.NoError(t, err)
	run, buildErr := o.RunBuild(ctxT(t), orchestrator.BuildOptions{ID: "leaky"})
	require.Error(t, buildErr)
	require.NotNil(t, run)
	require.Zero(t, e.srv.PendingFaults(), "the build did not meet every fault")
	// A cooldown during the last clean-ups leaves a job: its report too.
	e.srv.Inject(cloudtest.Fault{Route: cloudtest.DeleteJob, Cooldown: 300 * time.Millisecond})
	r, _ := e.execute(t, ctxT(t), x, "raw")
	require.Equal(t, executor.Success, r.Status, r.Message)
	leakErr := x.Close()
	require.Error(t, leakErr)

	var texts []string
	texts = append(texts, buildErr.Error(), fmt.Sprintf("%+v %#v", buildErr, buildErr), leakErr.Error(), e.logs.String())
	var js strings.Builder
	require.NoError(t, artifacts.WriteResultsJSON(&js, run))
	texts = append(texts, js.String())
	for _, nr := range run.Results {
		texts = append(texts, fmt.Sprintf("%+v", nr))
		if nr.Err != nil {
			texts = append(texts, nr.Err.Message)
		}
	}
	all := strings.Join(texts, "\n")
	assert.NotContains(t, all, tok)
	assert.Contains(t, all, "[REDACTED]", "the server's echo did not reach the texts: the test proves nothing")
	stgA := run.Result(idOf("stg_a"))
	require.NotNil(t, stgA.Err, "stg_a: %s", stgA.Status)
	assert.Contains(t, stgA.Err.Message, "password authentication failed for token [REDACTED]")

	time.Sleep(300 * time.Millisecond)
	_, err = (&cloud.Janitor{Client: e.c, Prefix: cloud.DefaultJobPrefix, PollInterval: 5 * time.Millisecond}).Sweep(ctxT(t))
	require.NoError(t, err)
}

// TestUnfitEnvironment (point 8): a development environment, or a
// deleted one, is refused with an *EnvironmentError by Prepare, Manifest,
// Execute and a whole build, before any job is created.
func TestUnfitEnvironment(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct {
		name string
		opts cloudtest.Options
		want string
	}{
		{"development", cloudtest.Options{EnvironmentType: "development"}, "it is a development environment; jobs need a deployment environment"},
		{"deleted", cloudtest.Options{EnvironmentState: 2}, "it is deleted"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			e := newEnv(t, tc.opts)
			ctx := ctxT(t)
			var ee *cloud.EnvironmentError
			err := e.executor(t, nil).Prepare(ctx)
			require.ErrorAs(t, err, &ee)
			assert.Contains(t, err.Error(), tc.want)
			assert.Equal(t, e.srv.EnvironmentID(), ee.ID)

			_, err = e.executor(t, nil).Manifest(ctx)
			require.ErrorAs(t, err, &ee)
			_, err = e.executor(t, nil).Execute(ctx, executor.Request{Command: executor.Run, Nodes: e.nodes(t, "stg_a"), Attempt: 1})
			require.ErrorAs(t, err, &ee)

			// A build whose executor also provides the manifest.
			o, err := orchestrator.New(orchestrator.Config{Executor: e.executor(t, nil)})
			require.NoError(t, err)
			_, err = o.RunBuild(ctx, orchestrator.BuildOptions{})
			require.ErrorAs(t, err, &ee)
			assert.NotContains(t, err.Error(), "\n", "one line")
			assert.Zero(t, e.srv.JobsCreated(), "a job was created in an unfit environment")
		})
	}
}

// TestFaultMix runs the whole project through the orchestrator twice,
// fault-free and under the worst mix of issue 15's faults at once (late
// commits of creations and triggers behind 502/504 and dropped
// connections, a processing delay, lost responses, late artifacts, a
// cooldown without Retry-After during the clean-ups, 5xx on polls), and
// checks that the faulty build gives the same results with one job and
// one run per invocation. It logs both durations (the closing note's
// figure).
func TestFaultMix(t *testing.T) {
	t.Parallel()
	outcome := script(map[string][]cloudtest.NodeOutcome{
		"stg_a": {{Status: "error", Message: "Database Error in model stg_a\n  division by zero"}},
	})
	build := func(t *testing.T, opts cloudtest.Options, faults []cloudtest.Fault) (time.Duration, *orchestrator.Run, *env) {
		opts.Outcome = outcome
		e := newEnv(t, opts)
		x := e.executor(t, nil)
		for _, f := range faults {
			e.srv.Inject(f)
		}
		o, err := orchestrator.New(orchestrator.Config{Executor: x, Concurrency: 3,
			Retry: orchestrator.RetryConfig{Retries: 2, Delay: 5 * time.Millisecond}})
		require.NoError(t, err)
		start := time.Now()
		run, err := o.RunBuild(ctxT(t), orchestrator.BuildOptions{ID: "mix"})
		took := time.Since(start)
		var be *orchestrator.BuildError
		require.ErrorAs(t, err, &be)
		require.NoError(t, x.Close(), "jobs leaked")
		e.srv.Settle()
		return took, run, e
	}
	clean, cleanRun, _ := build(t, cloudtest.Options{}, nil)
	late := 150 * time.Millisecond
	mix := []cloudtest.Fault{
		{Route: cloudtest.CreateJob, Status: 502, CommitAfter: late},
		{Route: cloudtest.TriggerRun, Status: 504, CommitAfter: late},
		{Route: cloudtest.CreateJob, Drop: true, CommitAfter: late},
		{Route: cloudtest.TriggerRun, Drop: true, CommitAfter: late},
		{Route: cloudtest.CreateJob, LoseResponse: true},
		{Route: cloudtest.TriggerRun, LoseResponse: true},
		{Route: cloudtest.GetRun, Status: 500, Times: 4},
		{Route: cloudtest.DeleteJob, Cooldown: 400 * time.Millisecond},
		{Route: cloudtest.CreateJob, Status: 502, CommitAfter: late},
		{Route: cloudtest.TriggerRun, Status: 502, CommitAfter: late},
	}
	faulty, faultyRun, e := build(t, cloudtest.Options{ProcessingDelay: 20 * time.Millisecond, ArtifactDelay: 100 * time.Millisecond}, mix)
	assert.Zero(t, e.srv.PendingFaults(), "some faults never fired")
	for _, r := range cleanRun.Results {
		f := faultyRun.Result(r.UniqueID)
		require.NotNil(t, f)
		assert.Equal(t, r.Status, f.Status, "%s: %s", r.UniqueID, f.Message)
		assert.Len(t, f.Attempts, len(r.Attempts), r.UniqueID)
	}
	invocations := 0
	for _, r := range faultyRun.Results {
		invocations += len(r.Attempts)
	}
	assert.Equal(t, invocations+1, e.srv.JobsCreated(), "one job per invocation, plus the compile job")
	assert.Len(t, e.srv.Runs(), invocations+1, "one run per invocation, plus the compile job's")
	t.Logf("fault-free build: %v; worst fault mix: %v (%.1fx; commit window %v, late commits %v, cooldown 400ms)",
		clean.Round(time.Millisecond), faulty.Round(time.Millisecond), float64(faulty)/float64(clean), testWindow, late)
}
