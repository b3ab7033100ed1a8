package cloud_test

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/dbtorch/dbtorch/cloud"
	"github.com/dbtorch/dbtorch/cloud/cloudtest"
	"github.com/dbtorch/dbtorch/executor"
	"github.com/dbtorch/dbtorch/orchestrator"
)

// script returns an Outcome function giving each named node its outcomes
// by attempt (the last one repeats); other nodes succeed.
func script(outcomes map[string][]cloudtest.NodeOutcome) func(string, int) cloudtest.NodeOutcome {
	return func(id string, attempt int) cloudtest.NodeOutcome {
		for name, os := range outcomes {
			if idOf(name) == id {
				return os[min(attempt, len(os))-1]
			}
		}
		return cloudtest.NodeOutcome{}
	}
}

func TestExecuteSuccess(t *testing.T) {
	e := newEnv(t, cloudtest.Options{Outcome: script(map[string][]cloudtest.NodeOutcome{"stg_a": {{RowsAffected: 42}}})})
	x := e.executor(t, func(c *cloud.ExecutorConfig) { c.Vars = map[string]any{"day": "2024-01-01"} })
	nodes := e.nodes(t, "stg_a", "stg_b")
	resp, err := x.Execute(ctxT(t), executor.Request{Command: executor.Run, Nodes: nodes, BuildID: "b1", Attempt: 1, FullRefresh: true})
	require.NoError(t, err)
	require.Len(t, resp.Results, 2)
	for i, r := range resp.Results {
		assert.Equal(t, nodes[i].UniqueID, r.UniqueID)
		assert.Equal(t, executor.Success, r.Status)
		assert.Equal(t, "success", r.DBTStatus)
		assert.Equal(t, executor.KindNone, r.Kind)
		assert.Len(t, r.Timing, 2)
	}
	require.NotNil(t, resp.Results[0].RowsAffected)
	assert.EqualValues(t, 42, *resp.Results[0].RowsAffected)
	assert.Equal(t, executor.Run, resp.Invocation.Command)
	assert.Equal(t, []string{"dbt", "run", "--select",
		"fqn:shop.stg_a,resource_type:model,package:shop", "fqn:shop.stg_b,resource_type:model,package:shop",
		"--indirect-selection", "empty", "--full-refresh", "--vars", `{"day":"2024-01-01"}`}, resp.Invocation.Args)
	assert.NotEmpty(t, resp.Invocation.InvocationID)
	assert.Equal(t, -1, resp.Invocation.ExitCode)

	assert.Equal(t, 1, e.srv.JobsCreated())
	runs := e.srv.Runs()
	require.Len(t, runs, 1)
	assert.Equal(t, []string{`dbt run --select fqn:shop.stg_a,resource_type:model,package:shop fqn:shop.stg_b,resource_type:model,package:shop --indirect-selection empty --full-refresh --vars '{"day":"2024-01-01"}'`}, runs[0].Steps)
	assert.Contains(t, runs[0].Cause, "dbtorch build b1 attempt 1")
	assert.Equal(t, 1, e.srv.Attempts(idOf("stg_a")))
}

// TestExecuteOutcomes: every way a run can end maps onto per-node results,
// and never onto a success that did not happen.
func TestExecuteOutcomes(t *testing.T) {
	t.Parallel()
	dbErr := cloudtest.NodeOutcome{Status: "error", Message: "Database Error in model stg_a\n  relation \"x\" does not exist"}
	for _, tc := range []struct {
		name     string
		outcomes map[string][]cloudtest.NodeOutcome
		cmd      executor.Command
		nodes    []string
		status   []executor.Status
		kinds    []executor.Kind
		message  string
	}{
		{"database error", map[string][]cloudtest.NodeOutcome{"stg_a": {dbErr}}, executor.Run,
			[]string{"stg_a", "stg_b"}, []executor.Status{executor.Error, executor.Success},
			[]executor.Kind{executor.KindDatabase, executor.KindNone}, "does not exist"},
		{"compilation error", map[string][]cloudtest.NodeOutcome{"stg_a": {{Status: "error", Message: "Compilation Error in model stg_a"}}}, executor.Run,
			[]string{"stg_a"}, []executor.Status{executor.Error}, []executor.Kind{executor.KindCompilation}, "Compilation Error"},
		{"failing test", map[string][]cloudtest.NodeOutcome{"not_null_stg_b": {{Status: "fail", Failures: 3}}}, executor.Test,
			[]string{"not_null_stg_b"}, []executor.Status{executor.Error}, []executor.Kind{executor.KindTestFailure}, "Got 3 results"},
		{"warning test", map[string][]cloudtest.NodeOutcome{"not_null_stg_b": {{Status: "warn", Failures: 1}}}, executor.Test,
			[]string{"not_null_stg_b"}, []executor.Status{executor.Success}, []executor.Kind{executor.KindNone}, ""},
		{"skipped downstream in one invocation", map[string][]cloudtest.NodeOutcome{"stg_a": {dbErr}}, executor.Build,
			[]string{"stg_a", "fct_a"}, []executor.Status{executor.Error, executor.Skipped},
			[]executor.Kind{executor.KindDatabase, executor.KindNone}, ""},
		{"crash: no run_results.json", map[string][]cloudtest.NodeOutcome{"stg_b": {{Crash: true}}}, executor.Run,
			[]string{"stg_a", "stg_b"}, []executor.Status{executor.Error, executor.Error},
			[]executor.Kind{executor.KindCrash, executor.KindCrash}, "without run_results.json"},
		{"node missing from run_results.json", map[string][]cloudtest.NodeOutcome{"stg_b": {{Missing: true}}}, executor.Run,
			[]string{"stg_a", "stg_b"}, []executor.Status{executor.Success, executor.Error},
			[]executor.Kind{executor.KindNone, executor.KindCrash}, "did not report this node"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			e := newEnv(t, cloudtest.Options{Outcome: script(tc.outcomes)})
			x := e.executor(t, nil)
			resp, err := x.Execute(ctxT(t), executor.Request{Command: tc.cmd, Nodes: e.nodes(t, tc.nodes...), BuildID: "b", Attempt: 1})
			require.NoError(t, err)
			require.Len(t, resp.Results, len(tc.nodes))
			var msgs []string
			for i, r := range resp.Results {
				assert.Equal(t, idOf(tc.nodes[i]), r.UniqueID)
				assert.Equal(t, tc.status[i], r.Status, r.UniqueID)
				assert.Equal(t, tc.kinds[i], r.Kind, r.UniqueID)
				msgs = append(msgs, r.Message)
			}
			assert.Contains(t, strings.Join(msgs, "\n"), tc.message)
		})
	}
}

// TestExecuteCancel: cancelling or timing out mid-run cancels the dbt
// Cloud run, deletes the job, and reports the nodes cancelled.
func TestExecuteCancel(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct {
		name string
		ctx  func(context.Context) (context.Context, context.CancelFunc)
		kind executor.Kind
	}{
		{"cancel", func(ctx context.Context) (context.Context, context.CancelFunc) {
			ctx, cancel := context.WithCancel(ctx)
			time.AfterFunc(100*time.Millisecond, cancel)
			return ctx, cancel
		}, executor.KindCancelled},
		{"timeout", func(ctx context.Context) (context.Context, context.CancelFunc) {
			return context.WithTimeout(ctx, 100*time.Millisecond)
		}, executor.KindTimeout},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			e := newEnv(t, cloudtest.Options{CancelTime: 20 * time.Millisecond,
				Outcome: script(map[string][]cloudtest.NodeOutcome{"stg_a": {{Hang: true}}})})
			x := e.executor(t, nil)
			ctx, cancel := tc.ctx(ctxT(t))
			defer cancel()
			start := time.Now()
			resp, err := x.Execute(ctx, executor.Request{Command: executor.Run, Nodes: e.nodes(t, "stg_a", "stg_b"), BuildID: "b", Attempt: 1})
			require.NoError(t, err)
			assert.Less(t, time.Since(start), 5*time.Second)
			for _, r := range resp.Results {
				assert.Equal(t, executor.Cancelled, r.Status)
				assert.Equal(t, tc.kind, r.Kind)
			}
			runs := e.srv.Runs()
			require.Len(t, runs, 1)
			assert.True(t, runs[0].Cancelled, "the run was not cancelled")
			assert.Equal(t, 30, runs[0].Status)
		})
	}
}

// TestExecuteJobTimeout: a run that dbt Cloud stops at the job's timeout
// is a timeout of every node, not a success and not a crash.
func TestExecuteJobTimeout(t *testing.T) {
	t.Parallel()
	e := newEnv(t, cloudtest.Options{Outcome: script(map[string][]cloudtest.NodeOutcome{"stg_a": {{Hang: true}}})})
	x := e.executor(t, func(c *cloud.ExecutorConfig) { c.JobTimeout = time.Second })
	resp, err := x.Execute(ctxT(t), executor.Request{Command: executor.Run, Nodes: e.nodes(t, "stg_a", "stg_b"), BuildID: "b", Attempt: 1})
	require.NoError(t, err)
	for _, r := range resp.Results {
		assert.Equal(t, executor.Error, r.Status)
		assert.Equal(t, executor.KindTimeout, r.Kind)
		assert.Contains(t, r.Message, "timed out after running for 1 seconds")
	}
	assert.Contains(t, resp.Invocation.Stderr, "timed out")
}

// TestExecuteCancelDuringCreate: a context that ends while the job is
// being created (the creation took effect, its answer is slow) still
// leaves nothing behind.
func TestExecuteCancelDuringCreate(t *testing.T) {
	t.Parallel()
	for _, route := range []cloudtest.Route{cloudtest.CreateJob, cloudtest.TriggerRun} {
		t.Run(string(route), func(t *testing.T) {
			t.Parallel()
			e := newEnv(t, cloudtest.Options{RunTime: time.Hour})
			x := e.executor(t, nil)
			e.srv.Inject(cloudtest.Fault{Route: route, Delay: time.Second})
			ctx, cancel := context.WithTimeout(ctxT(t), 150*time.Millisecond)
			defer cancel()
			resp, err := x.Execute(ctx, executor.Request{Command: executor.Run, Nodes: e.nodes(t, "stg_a"), BuildID: "b", Attempt: 1})
			require.NoError(t, err)
			assert.Equal(t, executor.Cancelled, resp.Results[0].Status)
			assert.Equal(t, executor.KindTimeout, resp.Results[0].Kind)
			assert.Equal(t, 1, e.srv.JobsCreated())
		})
	}
}

// TestExecuteFaults: injected faults on every call of an invocation
// neither change its results nor leave or duplicate anything.
func TestExecuteFaults(t *testing.T) {
	t.Parallel()
	faults := []cloudtest.Fault{
		{Route: cloudtest.CreateJob, LoseResponse: true},
		{Route: cloudtest.CreateJob, Status: 500},
		{Route: cloudtest.CreateJob, Status: 429, RetryAfter: "0"},
		{Route: cloudtest.ListJobs, Status: 502},
		{Route: cloudtest.TriggerRun, LoseResponse: true},
		{Route: cloudtest.TriggerRun, Drop: true},
		{Route: cloudtest.TriggerRun, Delay: 700 * time.Millisecond},
		{Route: cloudtest.ListRuns, Drop: true},
		{Route: cloudtest.GetRun, Status: 500, Times: 3},
		{Route: cloudtest.GetRun, Drop: true, Times: 2},
		{Route: cloudtest.GetRun, Status: 429, RetryAfter: "0"},
		{Route: cloudtest.RunArtifact, Status: 503, Body: "<html><title>Service Unavailable</title></html>"},
		{Route: cloudtest.RunArtifact, Drop: true},
		{Route: cloudtest.DeleteJob, Drop: true},
		{Route: cloudtest.DeleteJob, LoseResponse: true},
		{Route: cloudtest.DeleteJob, Status: 500},
	}
	for _, f := range faults {
		t.Run(fmt.Sprintf("%s status=%d drop=%v lose=%v delay=%v", f.Route, f.Status, f.Drop, f.LoseResponse, f.Delay), func(t *testing.T) {
			t.Parallel()
			e := newEnv(t, cloudtest.Options{Outcome: script(map[string][]cloudtest.NodeOutcome{"stg_b": {{Status: "error", Message: "Database Error"}}})})
			e.c = e.client(t, func(c *cloud.ClientConfig) { c.AttemptTimeout = 300 * time.Millisecond })
			x := e.executor(t, nil)
			e.srv.Inject(f)
			resp, err := x.Execute(ctxT(t), executor.Request{Command: executor.Run, Nodes: e.nodes(t, "stg_a", "stg_b"), BuildID: "b", Attempt: 1})
			require.NoError(t, err)
			assert.Equal(t, executor.Success, resp.Results[0].Status, resp.Results[0].Message)
			assert.Equal(t, executor.Error, resp.Results[1].Status)
			assert.Equal(t, executor.KindDatabase, resp.Results[1].Kind)
			assert.Equal(t, 1, e.srv.JobsCreated(), "duplicate job")
			assert.Len(t, e.srv.Runs(), 1, "duplicate run")
		})
	}
}

// TestExecuteAPIFailure: when dbt Cloud keeps failing, the nodes are
// errors of a kind the orchestrator's retry policy understands, and
// nothing is left behind.
func TestExecuteAPIFailure(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct {
		name  string
		fault cloudtest.Fault
		kind  executor.Kind
	}{
		{"create rejected", cloudtest.Fault{Route: cloudtest.CreateJob, Status: 403}, executor.KindInternal},
		{"create keeps failing", cloudtest.Fault{Route: cloudtest.CreateJob, Status: 500, Times: 100}, executor.KindConnection},
		{"trigger keeps failing", cloudtest.Fault{Route: cloudtest.TriggerRun, Status: 503, Times: 100}, executor.KindConnection},
		{"polling keeps failing", cloudtest.Fault{Route: cloudtest.GetRun, Drop: true, Times: 100}, executor.KindConnection},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			e := newEnv(t, cloudtest.Options{RunTime: 200 * time.Millisecond})
			e.c = e.client(t, func(c *cloud.ClientConfig) { c.RetryMax = 2 })
			x := e.executor(t, nil)
			e.srv.Inject(tc.fault)
			resp, err := x.Execute(ctxT(t), executor.Request{Command: executor.Run, Nodes: e.nodes(t, "stg_a"), BuildID: "b", Attempt: 1})
			require.NoError(t, err)
			r := resp.Results[0]
			assert.Equal(t, executor.Error, r.Status)
			assert.Equal(t, tc.kind, r.Kind)
			assert.Contains(t, r.Message, "dbt Cloud")
			assert.NotContains(t, r.Message, e.srv.Token())
			// Let the fault drain so that the clean-up checks can talk to
			// the server... they already did: the executor cleaned up with
			// the same client, through the remaining faults.
		})
	}
}

func TestExecuteRejectsBadRequests(t *testing.T) {
	e := newEnv(t, cloudtest.Options{})
	x := e.executor(t, nil)
	for _, req := range []executor.Request{
		{Command: executor.Run},
		{Command: "docs", Nodes: e.nodes(t, "stg_a")},
	} {
		_, err := x.Execute(ctxT(t), req)
		require.Error(t, err)
	}
	assert.Zero(t, e.srv.JobsCreated())
}

// TestExecuteConcurrent: concurrent invocations each get their own job.
func TestExecuteConcurrent(t *testing.T) {
	e := newEnv(t, cloudtest.Options{})
	x := e.executor(t, nil)
	names := []string{"raw", "stg_a", "stg_b", "fct_a", "fct_b", "rpt_a", "rpt_b"}
	var wg sync.WaitGroup
	errs := make(chan error, len(names))
	for _, n := range names {
		wg.Go(func() {
			nd := e.nodes(t, n)
			resp, err := x.Execute(t.Context(), executor.Request{Command: executor.CommandFor(nd[0].ResourceType), Nodes: nd, BuildID: "par", Attempt: 1})
			if err == nil && resp.Results[0].Status != executor.Success {
				err = errors.New(resp.Results[0].Message)
			}
			errs <- err
		})
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		require.NoError(t, err)
	}
	assert.Equal(t, len(names), e.srv.JobsCreated())
	seen := map[int64]bool{}
	for _, r := range e.srv.Runs() {
		assert.False(t, seen[r.JobID], "two runs on one job")
		seen[r.JobID] = true
	}
}

func TestManifest(t *testing.T) {
	t.Parallel()
	t.Run("from a compile job", func(t *testing.T) {
		t.Parallel()
		e := newEnv(t, cloudtest.Options{})
		x := e.executor(t, nil)
		m, err := x.Manifest(ctxT(t))
		require.NoError(t, err)
		assert.NotNil(t, m.Lookup(idOf("rpt_b")))
		runs := e.srv.Runs()
		require.Len(t, runs, 1)
		assert.Equal(t, []string{"dbt compile"}, runs[0].Steps)
	})
	t.Run("compile job fails", func(t *testing.T) {
		e := newEnv(t, cloudtest.Options{})
		x := e.executor(t, func(c *cloud.ExecutorConfig) {
			c.ManifestStep = "dbt parse --bogus"
			c.ArtifactWait = 100 * time.Millisecond
		})
		e.srv.Inject(cloudtest.Fault{Route: cloudtest.RunArtifact, Status: 404, Times: 1000})
		_, err := x.Manifest(ctxT(t))
		require.Error(t, err)
	})
	t.Run("from a job's latest artifact", func(t *testing.T) {
		e := newEnv(t, cloudtest.Options{})
		ctx := ctxT(t)
		// A production job with one finished run.
		j := e.tempJob("nightly")
		j.ExecuteSteps = []string{"dbt build"}
		job, err := e.c.CreateJob(ctx, j)
		require.NoError(t, err)
		run, err := e.c.TriggerRun(ctx, job.ID, cloud.TriggerOptions{Cause: "nightly"})
		require.NoError(t, err)
		for !run.Status.Terminal() {
			time.Sleep(5 * time.Millisecond)
			run, err = e.c.GetRun(ctx, run.ID, false)
			require.NoError(t, err)
		}
		x := e.executor(t, func(c *cloud.ExecutorConfig) { c.ManifestJobID = job.ID })
		m, err := x.Manifest(ctx)
		require.NoError(t, err)
		assert.NotNil(t, m.Lookup(idOf("stg_a")))
		assert.Equal(t, 1, e.srv.JobsCreated(), "no temporary job needed")
		require.NoError(t, e.c.DeleteJob(ctx, job.ID))
	})
}

func TestJanitor(t *testing.T) {
	t.Parallel()
	e := newEnv(t, cloudtest.Options{PageSize: 2, RunTime: time.Hour})
	ctx := ctxT(t)
	var keep []int64
	for _, name := range []string{"dbtorch-b1-aa", "dbtorch-b2-bb", "dbtorch-b3-cc", "nightly", "my-dbtorch-job"} {
		job, err := e.c.CreateJob(ctx, e.tempJob(name))
		require.NoError(t, err)
		if !strings.HasPrefix(name, "dbtorch-") {
			keep = append(keep, job.ID)
		}
		if name == "dbtorch-b1-aa" {
			_, err := e.c.TriggerRun(ctx, job.ID, cloud.TriggerOptions{Cause: "left running"})
			require.NoError(t, err)
		}
	}
	j := &cloud.Janitor{Client: e.c, Prefix: "dbtorch-", OlderThan: time.Hour}
	found, err := j.Sweep(ctx)
	require.NoError(t, err)
	assert.Empty(t, found, "young jobs are spared")

	j = &cloud.Janitor{Client: e.c, Prefix: "dbtorch-", DryRun: true}
	found, err = j.Sweep(ctx)
	require.NoError(t, err)
	assert.Len(t, found, 3)
	assert.Len(t, e.srv.Jobs(), 5)

	j.DryRun = false
	found, err = j.Sweep(ctx)
	require.NoError(t, err)
	assert.Len(t, found, 3)
	var left []int64
	for _, job := range e.srv.Jobs() {
		left = append(left, job.ID)
	}
	assert.Equal(t, keep, left)
	assert.Zero(t, e.srv.ActiveRuns(), "the leftover run was not cancelled")
	for _, id := range keep {
		require.NoError(t, e.c.DeleteJob(ctx, id))
	}
	_, err = (&cloud.Janitor{Client: e.c}).Sweep(ctx)
	require.Error(t, err, "an empty prefix would match everything")
}

func TestPrepare(t *testing.T) {
	e := newEnv(t, cloudtest.Options{})
	ctx := ctxT(t)
	require.NoError(t, e.executor(t, nil).Prepare(ctx))
	for _, tc := range []struct {
		name string
		edit func(*cloud.ExecutorConfig)
		want string
	}{
		{"unknown environment", func(c *cloud.ExecutorConfig) { c.EnvironmentID = 999 }, "404"},
		{"environment of another project", func(c *cloud.ExecutorConfig) { c.ProjectID = 11 }, "belongs to project 10, not 11"},
		{"bad token", func(c *cloud.ExecutorConfig) {
			c.Client = e.client(t, func(cc *cloud.ClientConfig) { cc.Token = "not-the-token" })
		}, "401"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			err := e.executor(t, tc.edit).Prepare(ctx)
			require.ErrorContains(t, err, tc.want)
		})
	}
	// A misconfigured build fails before creating any job.
	o, err := orchestrator.New(orchestrator.Config{Executor: e.executor(t, func(c *cloud.ExecutorConfig) { c.EnvironmentID = 999 }), Manifest: e.m})
	require.NoError(t, err)
	run, err := o.RunBuild(ctx, orchestrator.BuildOptions{})
	require.ErrorContains(t, err, "environment 999")
	require.NotNil(t, run)
	// The executor is prepared before the first invocation: every node
	// that would have run fails with the error, and what is downstream of
	// those is skipped.
	assert.Positive(t, run.Count(orchestrator.Error))
	assert.Equal(t, len(project), run.Count(orchestrator.Error)+run.Count(orchestrator.Skipped))
	for _, r := range run.Results {
		if r.Status == orchestrator.Error {
			assert.Contains(t, r.Err.Message, "environment 999")
		}
	}
	assert.Zero(t, e.srv.JobsCreated())
}

// TestExecuteChaos: concurrent invocations under a stream of faults on
// every route never leave a job behind, never run a job twice, and never
// report a success that did not happen.
func TestExecuteChaos(t *testing.T) {
	t.Parallel()
	e := newEnv(t, cloudtest.Options{Outcome: script(map[string][]cloudtest.NodeOutcome{
		"rpt_b": {{Status: "error", Message: "Database Error in model rpt_b"}},
	})})
	e.c = e.client(t, func(c *cloud.ClientConfig) { c.AttemptTimeout = 250 * time.Millisecond; c.RetryMax = 8 })
	x := e.executor(t, nil)
	kinds := []cloudtest.Fault{
		{LoseResponse: true}, {Drop: true}, {Status: 500}, {Status: 429, RetryAfter: "0"},
		{Delay: 400 * time.Millisecond}, {Status: 502, Body: "<html><title>Bad Gateway</title></html>"},
	}
	for i := range 36 {
		e.srv.Inject(kinds[i%len(kinds)])
	}
	names := []string{"raw", "stg_a", "stg_b", "fct_a", "fct_b", "rpt_a", "rpt_b", "not_null_stg_b"}
	results := make([]executor.Result, len(names))
	var wg sync.WaitGroup
	for i, n := range names {
		wg.Go(func() {
			nd := e.nodes(t, n)
			resp, err := x.Execute(t.Context(), executor.Request{Command: executor.CommandFor(nd[0].ResourceType), Nodes: nd, BuildID: "chaos", Attempt: 1})
			if assert.NoError(t, err) {
				results[i] = resp.Results[0]
			}
		})
	}
	wg.Wait()
	succeeded := 0
	for i, r := range results {
		switch {
		case names[i] == "rpt_b":
			assert.Equal(t, executor.Error, r.Status, "rpt_b must never succeed")
		case r.Status == executor.Success:
			succeeded++
		default:
			assert.Equal(t, executor.KindConnection, r.Kind, "%s: %s", names[i], r.Message)
		}
	}
	assert.GreaterOrEqual(t, succeeded, 5, "too few invocations survived the faults")
	perJob := map[int64]int{}
	for _, r := range e.srv.Runs() {
		perJob[r.JobID]++
	}
	for id, n := range perJob {
		assert.Equal(t, 1, n, "job %d ran %d times", id, n)
	}
	assert.LessOrEqual(t, e.srv.JobsCreated(), len(names), "duplicate jobs")
	t.Logf("%d faults left unused, %d of %d invocations succeeded", e.srv.PendingFaults(), succeeded, len(names)-1)
}

// TestExecuteInFlightDuplicate: a creation or trigger that reaches dbt
// Cloud only after the client has given up on it (issue 15, point 1):
// within the commit window the client finds the job by name (the run by
// its cause) and never sends it again, so there is one job and one run; a
// request committed later than the window is beyond what the client can
// tell from a failure, so it sends it again, and the executor deletes both
// jobs, or cancels the extra run before deleting the job.
func TestExecuteInFlightDuplicate(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct {
		route      cloudtest.Route
		window     time.Duration
		jobs, runs int
	}{
		{cloudtest.CreateJob, testWindow, 1, 1},
		{cloudtest.CreateJob, 50 * time.Millisecond, 2, 1},
		{cloudtest.TriggerRun, testWindow, 1, 1},
		{cloudtest.TriggerRun, 50 * time.Millisecond, 1, 2},
	} {
		t.Run(fmt.Sprintf("%s window=%v", tc.route, tc.window), func(t *testing.T) {
			t.Parallel()
			e := newEnv(t, cloudtest.Options{RunTime: 600 * time.Millisecond})
			e.c = e.client(t, func(c *cloud.ClientConfig) { c.AttemptTimeout = 150 * time.Millisecond; c.CommitWindow = tc.window })
			x := e.executor(t, nil)
			e.srv.Inject(cloudtest.Fault{Route: tc.route, Stall: 300 * time.Millisecond})
			resp, err := x.Execute(ctxT(t), executor.Request{Command: executor.Run, Nodes: e.nodes(t, "stg_a"), BuildID: "b", Attempt: 1})
			require.NoError(t, err)
			assert.Equal(t, executor.Success, resp.Results[0].Status)
			assert.Equal(t, tc.jobs, e.srv.JobsCreated())
			runs := e.srv.Runs()
			require.Len(t, runs, tc.runs)
			if tc.runs == 2 {
				assert.True(t, runs[0].Cancelled || runs[1].Cancelled, "the duplicate run was not cancelled")
			} else {
				assert.Equal(t, 1, e.srv.Attempts(idOf("stg_a")))
			}
			require.NoError(t, x.Close())
			// newEnv's clean-up checks that no job is left.
		})
	}
}
