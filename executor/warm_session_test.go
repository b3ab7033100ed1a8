package executor_test

import (
	"context"
	"os"
	"path/filepath"
	"sync"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/dbtorch/dbtorch/dbt"
	"github.com/dbtorch/dbtorch/executor"
	"github.com/dbtorch/dbtorch/internal/dbttest"
	"github.com/dbtorch/dbtorch/manifest"
)

// perNode is one node's request of a per-node build.
type perNode struct {
	node *manifest.Node
	vars map[string]any
}

// shopPerNode returns the per-node requests of a build of shop, in
// three phases: every seed, model and snapshot and a few tests of each
// kind (passing, failing, on a failed model, a unit test) in plan order;
// then fct_orders again (a node built twice in one session; it reads an
// ephemeral model); then customer_revenue again with broken_model off
// (other vars: another session).
func shopPerNode(t *testing.T, m *manifest.Manifest) [][]perNode {
	t.Helper()
	tests := map[string]bool{
		"test.shop.assert_order_amounts_non_negative":              true,
		"test.shop.unique_customer_revenue_customer_id.3b4be2f107": true,
		"unit_test.shop.fct_orders.fct_orders_sums_payments":       true,
		"test.shop.unique_dim_customers_v2_customer_id.f52bb79f08": true,
	}
	var first []perNode
	found := 0
	for _, n := range ofType(t, m, manifest.Seed, manifest.Model, manifest.Snapshot, manifest.Test, manifest.UnitTest) {
		if n.ResourceType != manifest.Test && n.ResourceType != manifest.UnitTest || tests[n.UniqueID] {
			first = append(first, perNode{node: n})
			if tests[n.UniqueID] {
				found++
			}
		}
	}
	require.Equal(t, len(tests), found, "the tests are in the plan")
	return [][]perNode{first,
		{{node: m.Lookup("model.shop.fct_orders")}},
		{{node: m.Lookup("model.shop.customer_revenue"), vars: map[string]any{"broken_model": false}}}}
}

// runPerNode runs reqs through ex one node per request in build "b1", up
// to parallel at once, each node after the earlier requests of its
// parents (a repeated node after its first request), and returns the
// responses in request order.
func runPerNode(t *testing.T, ex executor.Executor, m *manifest.Manifest, reqs []perNode, parallel int) []*executor.Response {
	t.Helper()
	g, err := manifest.NewGraph(m)
	require.NoError(t, err)
	out := make([]*executor.Response, len(reqs))
	done := make([]chan struct{}, len(reqs))
	last := map[string]int{} // unique_id -> index of its latest request so far
	sem := make(chan struct{}, parallel)
	var wg sync.WaitGroup
	for i, r := range reqs {
		done[i] = make(chan struct{})
		var wait []chan struct{}
		for _, p := range append(g.Parents(r.node.UniqueID), r.node.UniqueID) {
			if j, ok := last[p]; ok {
				wait = append(wait, done[j])
			}
		}
		last[r.node.UniqueID] = i
		wg.Go(func() {
			defer close(done[i])
			for _, c := range wait {
				<-c
			}
			sem <- struct{}{}
			defer func() { <-sem }()
			resp, err := ex.Execute(t.Context(), executor.Request{Command: executor.CommandFor(r.node.ResourceType),
				Nodes: []*manifest.Node{r.node}, Vars: r.vars, Attempt: 1, BuildID: "b1"})
			if assert.NoError(t, err, r.node.UniqueID) {
				out[i] = resp
			}
		})
	}
	wg.Wait()
	for i, resp := range out {
		require.NotNil(t, resp, "request %d", i)
		require.Len(t, resp.Results, 1)
		require.Equal(t, reqs[i].node.UniqueID, resp.Results[0].UniqueID)
	}
	return out
}

// inSession reports whether resp's node ran in a build session: its
// invocation is a `dbt build` although the request's command is not.
func inSession(resp *executor.Response) bool {
	return resp.Invocation.Command != executor.Build && len(resp.Invocation.Args) > 0 && resp.Invocation.Args[0] == "build"
}

// newProbeWarm starts a Warm executor with threads session threads on a
// copy of the probe project with the environment variables env, in work;
// it is closed when t ends.
func newProbeWarm(t *testing.T, work string, threads int, env ...string) (*executor.Warm, *manifest.Manifest) {
	t.Helper()
	dir := copyProbe(t)
	w, err := executor.NewWarm(executor.WarmConfig{
		Options: executor.Options{Project: dbt.Project{DBT: dbttest.DBT(t), Dir: dir, Env: probeEnv(t, dir, env...)},
			WorkDir: work, Logger: testLogger(t), KillGrace: 10 * time.Second},
		SessionThreads: threads,
	})
	require.NoError(t, err)
	t.Cleanup(func() { require.NoError(t, w.Close()) })
	n, _ := w.MaxConcurrency()
	assert.Equal(t, threads, n, "the session's threads are the executor's concurrency")
	m, err := w.Manifest(t.Context())
	require.NoError(t, err)
	return w, m
}

// startSleepy runs the probe's sleepy model in build b1 on w in the
// background and returns once the model is running (it wrote started);
// wait waits for its response and when it came.
func startSleepy(t *testing.T, w *executor.Warm, m *manifest.Manifest, started string) (wait func() (*executor.Response, time.Time)) {
	t.Helper()
	var wg sync.WaitGroup
	var resp *executor.Response
	var ended time.Time
	wg.Go(func() {
		r, err := w.Execute(t.Context(), executor.Request{Command: executor.Run, Nodes: nodes(t, m, "model.probe.sleepy"), BuildID: "b1"})
		ended = time.Now()
		if assert.NoError(t, err) {
			resp = r
		}
	})
	require.Eventually(t, func() bool { _, err := os.Stat(started); return err == nil }, 60*time.Second, 20*time.Millisecond)
	return func() (*executor.Response, time.Time) {
		wg.Wait()
		require.NotNil(t, resp)
		return resp, ended
	}
}

// sessionBesideSleepy starts a one-worker Warm with two session threads
// on the probe project (env: the probe's settings beyond
// DBTORCH_PROBE_SLEEP=sleep), checks that it runs one worker process and
// starts the sleepy model in build b1; it returns the executor, its
// manifest, its work directory, the worker's process and sleepy's wait.
func sessionBesideSleepy(t *testing.T, sleep string, env ...string) (w *executor.Warm, m *manifest.Manifest, work string, pids []string, wait func() (*executor.Response, time.Time)) {
	t.Helper()
	started := filepath.Join(t.TempDir(), "started")
	work = t.TempDir()
	w, m = newProbeWarm(t, work, 2, append([]string{"DBTORCH_PROBE_SLEEP=" + sleep, "DBTORCH_PROBE_STARTED=" + started}, env...)...)
	pids = processesWith(t, work)
	require.Len(t, pids, 1, "one worker")
	return w, m, work, pids, startSleepy(t, w, m, started)
}

// TestWarmSessionOverlaps runs two nodes of one build at once on a
// one-worker Warm with two session threads: quick runs and finishes in
// the worker's build session while sleepy is still sleeping in it. With
// one invocation at a time per worker, quick would wait for sleepy.
func TestWarmSessionOverlaps(t *testing.T) {
	w, m, work, _, wait := sessionBesideSleepy(t, "6")
	quick, err := w.Execute(t.Context(), executor.Request{Command: executor.Run, Nodes: nodes(t, m, "model.probe.quick"), BuildID: "b1"})
	require.NoError(t, err)
	quickEnded := time.Now()
	sleepy, sleepyEnded := wait()
	assert.Equal(t, executor.Success, quick.Results[0].Status, quick.Results[0].Message)
	assert.Equal(t, executor.Success, sleepy.Results[0].Status, sleepy.Results[0].Message)
	assert.True(t, quickEnded.Before(sleepyEnded), "quick finished while sleepy ran (quick %v, sleepy %v)", quickEnded, sleepyEnded)
	assert.True(t, inSession(quick), "%v", quick.Invocation.Args)
	assert.True(t, inSession(sleepy), "%v", sleepy.Invocation.Args)
	assert.Equal(t, sleepy.Invocation.InvocationID, quick.Invocation.InvocationID, "one dbt build task")
	assert.Len(t, processesWith(t, work), 1, "in one process")
}

// TestWarmSessionCancel cancels one node of a build session while another
// runs beside it: the cancelled node (a long query; the worker cancels its
// connection) is reported Cancelled well before the kill grace, the other
// succeeds, and the same worker process runs the next node.
func TestWarmSessionCancel(t *testing.T) {
	slow := cancelBesideSleepy(t, executor.Run, "model.probe.slow")
	assert.Equal(t, executor.Cancelled, slow.Results[0].Status, slow.Results[0].Message)
	assert.Equal(t, executor.KindCancelled, slow.Results[0].Kind)
}

// cancelBesideSleepy runs a request of cmd over ids (Independent) in build b1 of a
// session whose other thread runs sleepy (the probe's slow model a long
// query), cancels it after 1.5 s and returns its response, checking that
// it was answered well before the kill grace, that sleepy succeeded and
// that the same worker process then runs quick in the session.
func cancelBesideSleepy(t *testing.T, cmd executor.Command, ids ...string) *executor.Response {
	t.Helper()
	w, m, work, pids, wait := sessionBesideSleepy(t, "4", "DBTORCH_PROBE_ROWS=100000000000000")
	ctx, cancel := context.WithCancel(t.Context())
	time.AfterFunc(1500*time.Millisecond, cancel)
	begin := time.Now()
	resp, err := w.Execute(ctx, executor.Request{Command: cmd, Nodes: nodes(t, m, ids...), BuildID: "b1", Independent: true})
	require.NoError(t, err)
	assert.Less(t, time.Since(begin), 9*time.Second, "answered before the kill grace (10 s)")
	require.Len(t, resp.Results, len(ids))
	sleepy, _ := wait()
	assert.Equal(t, executor.Success, sleepy.Results[0].Status, sleepy.Results[0].Message)
	assert.Equal(t, pids, processesWith(t, work), "the worker was not killed")

	quick, err := w.Execute(t.Context(), executor.Request{Command: executor.Run, Nodes: nodes(t, m, "model.probe.quick"), BuildID: "b1"})
	require.NoError(t, err)
	assert.Equal(t, executor.Success, quick.Results[0].Status, quick.Results[0].Message)
	assert.True(t, inSession(quick))
	return resp
}

// TestWarmSessionCrash kills the worker (crashy's SIGKILL) while another
// node sleeps in its build session: both nodes are reported with
// KindCrash (a retry runs them again), and a new worker runs the next
// node.
func TestWarmSessionCrash(t *testing.T) {
	w, m, work, pids, wait := sessionBesideSleepy(t, "60", "DBTORCH_PROBE_CRASH=1")
	crashy, err := w.Execute(t.Context(), executor.Request{Command: executor.Run, Nodes: nodes(t, m, "model.probe.crashy"), BuildID: "b1"})
	require.NoError(t, err)
	sleepy, _ := wait()
	for _, r := range []executor.Result{crashy.Results[0], sleepy.Results[0]} {
		assert.Equal(t, executor.Error, r.Status, r.UniqueID)
		assert.Equal(t, executor.KindCrash, r.Kind, "%s: %s", r.UniqueID, r.Message)
		assert.Contains(t, r.Message, "killed", r.UniqueID)
	}

	quick, err := w.Execute(t.Context(), executor.Request{Command: executor.Run, Nodes: nodes(t, m, "model.probe.quick"), BuildID: "b1"})
	require.NoError(t, err)
	assert.Equal(t, executor.Success, quick.Results[0].Status, quick.Results[0].Message)
	now := processesWith(t, work)
	require.Len(t, now, 1, "a replacement")
	assert.NotEqual(t, pids, now, "a new worker process")
}

// TestWarmSessionWave runs a wave (one Build request of two Independent
// nodes, as per-wave mode sends) in the build session of a one-worker Warm with
// two session threads while sleepy sleeps in it: the wave's nodes run
// beside sleepy in the same dbt build task and process, and the wave is
// answered, both results in one response, before sleepy ends.
func TestWarmSessionWave(t *testing.T) {
	w, m, work, _, wait := sessionBesideSleepy(t, "8")
	wave, err := w.Execute(t.Context(), executor.Request{Command: executor.Build, Nodes: nodes(t, m, "model.probe.quick", "model.probe.slow"),
		BuildID: "b1", Independent: true})
	require.NoError(t, err)
	waveEnded := time.Now()
	sleepy, sleepyEnded := wait()
	require.Len(t, wave.Results, 2)
	for _, r := range wave.Results {
		assert.Equal(t, executor.Success, r.Status, "%s: %s", r.UniqueID, r.Message)
	}
	assert.Equal(t, executor.Success, sleepy.Results[0].Status, sleepy.Results[0].Message)
	assert.True(t, waveEnded.Before(sleepyEnded), "the wave finished while sleepy ran (wave %v, sleepy %v)", waveEnded, sleepyEnded)
	assert.Equal(t, sleepy.Invocation.InvocationID, wave.Invocation.InvocationID, "one dbt build task")
	assert.Len(t, processesWith(t, work), 1, "in one process")
}

// TestWarmSessionWaveCancel cancels a wave of two nodes in a build
// session whose other thread runs sleepy: slow (a long query) runs and
// has its connection cancelled, quick (queued behind it) never starts;
// both are reported Cancelled well before the kill grace, and the same
// worker process runs the next node (cancelBesideSleepy).
func TestWarmSessionWaveCancel(t *testing.T) {
	wave := cancelBesideSleepy(t, executor.Build, "model.probe.slow", "model.probe.quick")
	for _, r := range wave.Results {
		assert.Equal(t, executor.Cancelled, r.Status, "%s: %s", r.UniqueID, r.Message)
		assert.Equal(t, executor.KindCancelled, r.Kind, r.UniqueID)
	}
}
