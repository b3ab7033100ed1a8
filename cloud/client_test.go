package cloud_test

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/dbtorch/dbtorch/cloud"
	"github.com/dbtorch/dbtorch/cloud/cloudtest"
	"github.com/dbtorch/dbtorch/executor"
)

func TestNewClientValidates(t *testing.T) {
	for _, tc := range []struct {
		name string
		cfg  cloud.ClientConfig
		want string
	}{
		{"no account", cloud.ClientConfig{Token: "x"}, "AccountID"},
		{"no token", cloud.ClientConfig{AccountID: 1}, "Token"},
		{"bad scheme", cloud.ClientConfig{AccountID: 1, Token: "x", Host: "ftp://h"}, "invalid Host"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			_, err := cloud.NewClient(tc.cfg)
			require.ErrorContains(t, err, tc.want)
		})
	}
}

func TestClientConfigHidesToken(t *testing.T) {
	cfg := cloud.ClientConfig{AccountID: 1, Token: "very-secret"}
	for _, s := range []string{fmt.Sprint(cfg), fmt.Sprintf("%+v", cfg), fmt.Sprintf("%#v", cfg), fmt.Sprintf("%v", &cfg)} {
		assert.NotContains(t, s, "very-secret")
	}
}

// TestErrorMessages checks the lenient parsing of error bodies.
func TestErrorMessages(t *testing.T) {
	for _, tc := range []struct {
		name, ctype, body string
		status            int
		want              string
	}{
		{"envelope", "application/json", `{"status":{"code":404,"is_success":false,"user_message":"Job not found.","developer_message":"no such pk"},"data":null}`, 404, "Job not found. (no such pk)"},
		{"field errors", "application/json", `{"status":{"code":400,"is_success":false,"user_message":"The request was invalid.","developer_message":""},"data":{"_diagnostic":"x","field_errors":{"name":[{"message":"This field is required.","code":"required"}]}}}`, 400, "The request was invalid.: name: This field is required."},
		{"plain field errors", "application/json", `{"status":{"code":400,"is_success":false,"user_message":"Invalid","developer_message":""},"data":{"cause":["This field is required."]}}`, 400, "Invalid: cause: This field is required."},
		{"detail", "application/json", `{"detail":"Invalid token."}`, 401, "Invalid token."},
		{"detail object", "application/json", `{"detail":{"code":"x"}}`, 403, `{"code":"x"}`},
		{"html title", "text/html", `<!DOCTYPE html><html><head><title>502 Bad Gateway</title></head><body><h1>Bad Gateway</h1></body></html>`, 502, "502 Bad Gateway"},
		{"html body", "text/html", `<html><body><p>Service   <b>down</b></p></body></html>`, 503, "Service down"},
		{"text", "text/plain", "upstream connect error", 500, "upstream connect error"},
		{"empty", "text/plain", "", 500, "500 Internal Server Error"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
				w.Header().Set("Content-Type", tc.ctype)
				w.WriteHeader(tc.status)
				fmt.Fprint(w, tc.body)
			}))
			defer srv.Close()
			c, err := cloud.NewClient(cloud.ClientConfig{Host: srv.URL, AccountID: 7, Token: "tok-12345678", RetryMax: -1})
			require.NoError(t, err)
			_, err = c.GetJob(t.Context(), 3)
			var ae *cloud.APIError
			require.ErrorAs(t, err, &ae)
			assert.Equal(t, tc.status, ae.StatusCode)
			assert.Contains(t, err.Error(), tc.want)
			assert.Contains(t, err.Error(), "GET /api/v2/accounts/7/jobs/3/")
			assert.Equal(t, tc.status == 404, cloud.IsNotFound(err))
		})
	}
}

func TestDefaultRetryPolicy(t *testing.T) {
	ctx := t.Context()
	done, cancel := context.WithCancel(ctx)
	cancel()
	resp := func(code int) *http.Response { return &http.Response{StatusCode: code, Header: http.Header{}} }
	for _, tc := range []struct {
		name  string
		ctx   context.Context
		resp  *http.Response
		err   error
		retry bool
	}{
		{"transport error", ctx, nil, errors.New("connection reset by peer"), true},
		{"bad scheme", ctx, nil, errors.New(`unsupported protocol scheme "ftp"`), false},
		{"429", ctx, resp(429), nil, true},
		{"500", ctx, resp(500), nil, true},
		{"502", ctx, resp(502), nil, true},
		{"501", ctx, resp(501), nil, false},
		{"400", ctx, resp(400), nil, false},
		{"404", ctx, resp(404), nil, false},
		{"ctx done", done, resp(500), nil, false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			retry, _ := cloud.DefaultRetryPolicy(tc.ctx, tc.resp, tc.err)
			assert.Equal(t, tc.retry, retry)
		})
	}
}

func TestDefaultBackoff(t *testing.T) {
	hdr := func(code int, ra string) *http.Response {
		h := http.Header{}
		if ra != "" {
			h.Set("Retry-After", ra)
		}
		return &http.Response{StatusCode: code, Header: h}
	}
	minW, maxW := 100*time.Millisecond, 2*time.Second
	t.Run("retry-after seconds", func(t *testing.T) {
		assert.Equal(t, 7*time.Second, cloud.DefaultBackoff(minW, maxW, 0, hdr(429, "7")))
		assert.Equal(t, 3*time.Second, cloud.DefaultBackoff(minW, maxW, 0, hdr(503, "3")))
	})
	t.Run("retry-after date", func(t *testing.T) {
		d := cloud.DefaultBackoff(minW, maxW, 0, hdr(429, time.Now().Add(10*time.Second).UTC().Format(http.TimeFormat)))
		assert.InDelta(t, float64(10*time.Second), float64(d), float64(1500*time.Millisecond))
	})
	t.Run("retry-after ignored on 500", func(t *testing.T) {
		assert.LessOrEqual(t, cloud.DefaultBackoff(minW, maxW, 0, hdr(500, "60")), minW)
	})
	t.Run("exponential with jitter", func(t *testing.T) {
		for attempt, want := range []time.Duration{100 * time.Millisecond, 200 * time.Millisecond, 400 * time.Millisecond, 800 * time.Millisecond, 1600 * time.Millisecond, maxW, maxW} {
			seen := map[time.Duration]bool{}
			for range 50 {
				d := cloud.DefaultBackoff(minW, maxW, attempt, nil)
				require.GreaterOrEqual(t, d, want/2, "attempt %d", attempt)
				require.LessOrEqual(t, d, want, "attempt %d", attempt)
				seen[d] = true
			}
			assert.Greater(t, len(seen), 5, "attempt %d: no jitter", attempt)
		}
	})
}

// TestIdempotentRetries: GETs and DELETEs ride out transport errors, 429
// and 5xx.
func TestIdempotentRetries(t *testing.T) {
	t.Parallel()
	for _, f := range []cloudtest.Fault{
		{Route: cloudtest.GetJob, Status: 500, Times: 3},
		{Route: cloudtest.GetJob, Status: 502, Body: "<html><title>Bad Gateway</title></html>"},
		{Route: cloudtest.GetJob, Status: 429, RetryAfter: "0", Times: 2},
		{Route: cloudtest.GetJob, Drop: true, Times: 2},
		{Route: cloudtest.GetJob, Delay: 500 * time.Millisecond},
		{Route: cloudtest.DeleteJob, Drop: true},
		{Route: cloudtest.DeleteJob, Status: 503},
	} {
		t.Run(fmt.Sprintf("%s %d drop=%v delay=%v", f.Route, f.Status, f.Drop, f.Delay), func(t *testing.T) {
			t.Parallel()
			e := newEnv(t, cloudtest.Options{})
			c := e.client(t, func(cfg *cloud.ClientConfig) { cfg.AttemptTimeout = 200 * time.Millisecond })
			ctx := ctxT(t)
			job, err := c.CreateJob(ctx, e.tempJob("dbtorch-retry"))
			require.NoError(t, err)
			e.srv.Inject(f)
			got, err := c.GetJob(ctx, job.ID)
			require.NoError(t, err)
			assert.Equal(t, "dbtorch-retry", got.Name)
			require.NoError(t, c.DeleteJob(ctx, job.ID))
			assert.Zero(t, e.srv.PendingFaults())
		})
	}
}

func TestRetriesGiveUp(t *testing.T) {
	e := newEnv(t, cloudtest.Options{})
	c := e.client(t, func(cfg *cloud.ClientConfig) { cfg.RetryMax = 2 })
	e.srv.Inject(cloudtest.Fault{Route: cloudtest.GetJob, Status: 500, Times: 10})
	_, err := c.GetJob(ctxT(t), 1)
	var ae *cloud.APIError
	require.ErrorAs(t, err, &ae)
	assert.Equal(t, 500, ae.StatusCode)
	assert.Equal(t, 3, e.srv.Calls(cloudtest.GetJob), "one attempt and two retries")
}

// TestCreateNotRetriedBlindly: whatever happens to a job creation or a
// trigger, exactly one job and one run exist afterwards.
func TestCreateNotRetriedBlindly(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct {
		name  string
		fault cloudtest.Fault
		// lookups says whether the client had to look the object up.
		lookups bool
	}{
		{"response lost", cloudtest.Fault{LoseResponse: true}, true},
		{"response lost twice", cloudtest.Fault{LoseResponse: true, Times: 2}, true},
		{"slow response beyond the attempt timeout", cloudtest.Fault{Delay: 2 * time.Second}, true},
		{"connection dropped before processing", cloudtest.Fault{Drop: true}, true},
		{"500 before processing", cloudtest.Fault{Status: 500}, true},
		{"429", cloudtest.Fault{Status: 429, RetryAfter: "0", Times: 2}, false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			e := newEnv(t, cloudtest.Options{RunTime: time.Millisecond})
			c := e.client(t, func(cfg *cloud.ClientConfig) { cfg.AttemptTimeout = 300 * time.Millisecond })
			ctx := ctxT(t)

			f := tc.fault
			f.Route = cloudtest.CreateJob
			e.srv.Inject(f)
			job, err := c.CreateJob(ctx, e.tempJob("dbtorch-once"))
			require.NoError(t, err)
			assert.Equal(t, 1, e.srv.JobsCreated(), "duplicate job")
			assert.Equal(t, tc.lookups, e.srv.Calls(cloudtest.ListJobs) > 0)

			f.Route = cloudtest.TriggerRun
			e.srv.Inject(f)
			run, err := c.TriggerRun(ctx, job.ID, cloud.TriggerOptions{Cause: "test trigger"})
			require.NoError(t, err)
			runs := e.srv.Runs()
			require.Len(t, runs, 1, "duplicate run")
			assert.Equal(t, runs[0].ID, run.ID)
			assert.Equal(t, tc.lookups, e.srv.Calls(cloudtest.ListRuns) > 0)

			for !run.Status.Terminal() {
				time.Sleep(5 * time.Millisecond)
				run, err = c.GetRun(ctx, run.ID, false)
				require.NoError(t, err)
			}
			require.NoError(t, c.DeleteJob(ctx, job.ID))
		})
	}
}

// TestCreateAmbiguous: when the look-ups after a lost response fail too,
// for the whole commit window, the error says the outcome is unknown.
func TestCreateAmbiguous(t *testing.T) {
	e := newEnv(t, cloudtest.Options{})
	c := e.client(t, func(cfg *cloud.ClientConfig) { cfg.RetryMax = 1; cfg.CommitWindow = 100 * time.Millisecond })
	ctx := ctxT(t)
	e.srv.Inject(cloudtest.Fault{Route: cloudtest.CreateJob, LoseResponse: true})
	e.srv.Inject(cloudtest.Fault{Route: cloudtest.ListJobs, Status: 500, Times: 1000})
	_, err := c.CreateJob(ctx, e.tempJob("dbtorch-ambiguous"))
	var amb *cloud.AmbiguousError
	require.ErrorAs(t, err, &amb)
	assert.Equal(t, 1, e.srv.JobsCreated())
	// Clean up the job that did get created.
	for _, j := range e.srv.Jobs() {
		require.NoError(t, c.DeleteJob(ctx, j.ID))
	}
}

func TestValidationErrors(t *testing.T) {
	e := newEnv(t, cloudtest.Options{})
	ctx := ctxT(t)
	t.Run("job for an unknown project", func(t *testing.T) {
		j := e.tempJob("dbtorch-bad")
		j.ProjectID = 999
		_, err := e.c.CreateJob(ctx, j)
		var ae *cloud.APIError
		require.ErrorAs(t, err, &ae)
		assert.Equal(t, 400, ae.StatusCode)
		assert.Contains(t, ae.Message, "project_id")
	})
	t.Run("step that is not dbt", func(t *testing.T) {
		j := e.tempJob("dbtorch-bad")
		j.ExecuteSteps = []string{"rm -rf /"}
		_, err := e.c.CreateJob(ctx, j)
		require.ErrorContains(t, err, "execute_steps")
	})
	t.Run("missing required keys", func(t *testing.T) {
		req, err := http.NewRequestWithContext(ctx, http.MethodPost,
			fmt.Sprintf("%s/api/v2/accounts/%d/jobs/", e.srv.URL, e.srv.AccountID()),
			strings.NewReader(`{"name":"x","project_id":10,"environment_id":20,"account_id":1,"settings":{"threads":1}}`))
		require.NoError(t, err)
		req.Header.Set("Authorization", "Token "+e.srv.Token())
		resp, err := http.DefaultClient.Do(req)
		require.NoError(t, err)
		resp.Body.Close()
		assert.Equal(t, 400, resp.StatusCode)
	})
	t.Run("trigger without cause", func(t *testing.T) {
		job, err := e.c.CreateJob(ctx, e.tempJob("dbtorch-nocause"))
		require.NoError(t, err)
		defer func() { require.NoError(t, e.c.DeleteJob(ctx, job.ID)) }()
		_, err = e.c.TriggerRun(ctx, job.ID, cloud.TriggerOptions{})
		require.ErrorContains(t, err, "cause")
		req, err := http.NewRequestWithContext(ctx, http.MethodPost,
			fmt.Sprintf("%s/api/v2/accounts/%d/jobs/%d/run/", e.srv.URL, e.srv.AccountID(), job.ID), strings.NewReader(`{}`))
		require.NoError(t, err)
		req.Header.Set("Authorization", "Bearer "+e.srv.Token())
		resp, err := http.DefaultClient.Do(req)
		require.NoError(t, err)
		resp.Body.Close()
		assert.Equal(t, 400, resp.StatusCode)
		assert.Empty(t, e.srv.Runs())
	})
	t.Run("wrong token", func(t *testing.T) {
		c := e.client(t, func(cfg *cloud.ClientConfig) { cfg.Token = "nope" })
		_, err := c.GetJob(ctx, 1)
		var ae *cloud.APIError
		require.ErrorAs(t, err, &ae)
		assert.Equal(t, 401, ae.StatusCode)
		assert.Contains(t, ae.Message, "Invalid token")
	})
}

func TestTrailingSlashRule(t *testing.T) {
	srv, err := cloudtest.NewServer(cloudtest.Options{})
	require.NoError(t, err)
	defer srv.Close()
	e := &env{srv: srv}
	noFollow := &http.Client{CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse }}
	req, err := http.NewRequest(http.MethodPost, fmt.Sprintf("%s/api/v2/accounts/%d/jobs", e.srv.URL, e.srv.AccountID()), strings.NewReader("{}"))
	require.NoError(t, err)
	req.Header.Set("Authorization", "Token "+e.srv.Token())
	resp, err := noFollow.Do(req)
	require.NoError(t, err)
	resp.Body.Close()
	assert.Equal(t, http.StatusMovedPermanently, resp.StatusCode)
	assert.True(t, strings.HasSuffix(resp.Header.Get("Location"), "/jobs/"))
	assert.Equal(t, 1, e.srv.Redirects())
	assert.Zero(t, e.srv.JobsCreated())
}

func TestPagination(t *testing.T) {
	e := newEnv(t, cloudtest.Options{PageSize: 3})
	ctx := ctxT(t)
	for i := range 8 {
		_, err := e.c.CreateJob(ctx, e.tempJob(fmt.Sprintf("dbtorch-page-%d", i)))
		require.NoError(t, err)
	}
	jobs, page, err := e.c.ListJobs(ctx, cloud.ListJobsOptions{})
	require.NoError(t, err)
	assert.Len(t, jobs, 3)
	assert.Equal(t, cloud.Pagination{Count: 3, TotalCount: 8}, page)
	var names []string
	for j, err := range e.c.Jobs(ctx, cloud.ListJobsOptions{NameContains: "PAGE", OrderBy: "-id"}) {
		require.NoError(t, err)
		names = append(names, j.Name)
	}
	require.Len(t, names, 8)
	assert.Equal(t, "dbtorch-page-7", names[0])
	assert.Equal(t, "dbtorch-page-0", names[7])
	deleted, err := (&cloud.Janitor{Client: e.c, Prefix: "dbtorch-page-"}).Sweep(ctx)
	require.NoError(t, err)
	assert.Len(t, deleted, 8)
}

// TestRunLifecycle follows a run through the fake's status progression
// and reads its steps and per-step artifacts.
func TestRunLifecycle(t *testing.T) {
	e := newEnv(t, cloudtest.Options{QueueTime: 80 * time.Millisecond, StartTime: 80 * time.Millisecond, RunTime: 80 * time.Millisecond})
	ctx := ctxT(t)
	j := e.tempJob("dbtorch-lifecycle")
	j.ExecuteSteps = []string{"dbt seed --select fqn:shop.raw", "dbt run --select fqn:shop.stg_a,resource_type:model,package:shop"}
	job, err := e.c.CreateJob(ctx, j)
	require.NoError(t, err)
	defer func() { require.NoError(t, e.c.DeleteJob(ctx, job.ID)) }()
	run, err := e.c.TriggerRun(ctx, job.ID, cloud.TriggerOptions{Cause: "lifecycle"})
	require.NoError(t, err)
	require.Equal(t, "lifecycle", run.Trigger.Cause)
	seen := []cloud.RunStatus{run.Status}
	for !run.Status.Terminal() {
		time.Sleep(3 * time.Millisecond)
		run, err = e.c.GetRun(ctx, run.ID, false)
		require.NoError(t, err)
		if seen[len(seen)-1] != run.Status {
			seen = append(seen, run.Status)
		}
	}
	assert.Equal(t, []cloud.RunStatus{cloud.RunQueued, cloud.RunStarting, cloud.RunRunning, cloud.RunSuccess}, seen)

	run, err = e.c.GetRun(ctx, run.ID, true)
	require.NoError(t, err)
	require.Len(t, run.RunSteps, 5)
	assert.Equal(t, 4, run.StepFor("dbt seed --select fqn:shop.raw").Index)
	assert.Equal(t, 5, run.StepFor("dbt run").Index)

	seed, err := e.c.RunArtifact(ctx, run.ID, "run_results.json", 4)
	require.NoError(t, err)
	assert.Contains(t, string(seed), `"seed.shop.raw"`)
	last, err := e.c.RunArtifact(ctx, run.ID, "run_results.json", 0)
	require.NoError(t, err)
	assert.Contains(t, string(last), `"model.shop.stg_a"`)
	assert.NotContains(t, string(last), `"seed.shop.raw"`)
	_, err = e.c.RunArtifact(ctx, run.ID, "run_results.json", 2)
	assert.True(t, cloud.IsNotFound(err), "set-up steps have no artifacts: %v", err)
	paths, err := e.c.ListRunArtifacts(ctx, run.ID)
	require.NoError(t, err)
	assert.Equal(t, []string{"manifest.json", "run_results.json"}, paths)
	m, err := e.c.JobArtifact(ctx, job.ID, "manifest.json")
	require.NoError(t, err)
	assert.Contains(t, string(m), "model.shop.stg_a")
	latest, err := e.c.LatestRun(ctx, job.ID)
	require.NoError(t, err)
	assert.Equal(t, run.ID, latest.ID)
}

func TestCancelRun(t *testing.T) {
	e := newEnv(t, cloudtest.Options{RunTime: time.Hour})
	ctx := ctxT(t)
	job, err := e.c.CreateJob(ctx, e.tempJob("dbtorch-cancel"))
	require.NoError(t, err)
	run, err := e.c.TriggerRun(ctx, job.ID, cloud.TriggerOptions{Cause: "to cancel"})
	require.NoError(t, err)
	_, err = e.c.CancelRun(ctx, run.ID)
	require.NoError(t, err)
	run, err = e.c.GetRun(ctx, run.ID, false)
	require.NoError(t, err)
	assert.Equal(t, cloud.RunCancelled, run.Status)
	_, err = e.c.RunArtifact(ctx, run.ID, "run_results.json", 0)
	assert.True(t, cloud.IsNotFound(err))
	require.NoError(t, e.c.DeleteJob(ctx, job.ID))
	require.NoError(t, e.c.DeleteJob(ctx, job.ID), "deleting a deleted job is not an error")
	_, err = e.c.GetJob(ctx, job.ID)
	assert.True(t, cloud.IsNotFound(err))
}

// TestRateLimit: one bucket per client, shared by its goroutines.
func TestRateLimit(t *testing.T) {
	t.Parallel()
	e := newEnv(t, cloudtest.Options{})
	c := e.client(t, func(cfg *cloud.ClientConfig) { cfg.RateLimit = 50; cfg.Burst = 1 })
	ctx := ctxT(t)
	var fails atomic.Int32
	start := time.Now()
	done := make(chan struct{})
	for range 4 {
		go func() {
			defer func() { done <- struct{}{} }()
			for range 5 {
				if _, _, err := c.ListJobs(ctx, cloud.ListJobsOptions{}); err != nil {
					fails.Add(1)
				}
			}
		}()
	}
	for range 4 {
		<-done
	}
	// 20 requests at 50/s with a burst of 1: at least 19 intervals of 20ms.
	assert.GreaterOrEqual(t, time.Since(start), 370*time.Millisecond)
	assert.Zero(t, fails.Load())
}

// Test429PausesTheClient: a 429 with Retry-After holds every request of the
// client, not just the one that got it.
func Test429PausesTheClient(t *testing.T) {
	t.Parallel()
	e := newEnv(t, cloudtest.Options{})
	ctx := ctxT(t)
	e.srv.Inject(cloudtest.Fault{Route: cloudtest.ListJobs, Status: 429, RetryAfter: "1"})
	start := time.Now()
	_, _, err := e.c.ListJobs(ctx, cloud.ListJobsOptions{})
	require.NoError(t, err)
	assert.GreaterOrEqual(t, time.Since(start), 900*time.Millisecond, "Retry-After not honoured")
	assert.Equal(t, 2, e.srv.Calls(cloudtest.ListJobs))
}

// TestTokenNeverLeaks: even a server that echoes the token in its error
// pages does not get it into an error string or a log line.
func TestTokenNeverLeaks(t *testing.T) {
	e := newEnv(t, cloudtest.Options{})
	tok := e.srv.Token()
	c := e.client(t, func(cfg *cloud.ClientConfig) { cfg.RetryMax = 1 })
	ctx := ctxT(t)
	echo := "<html><title>Forbidden: Token " + tok + "</title></html>"
	var errs []error
	e.srv.Inject(cloudtest.Fault{Route: cloudtest.GetJob, Status: 403, Body: echo})
	_, err := c.GetJob(ctx, 1)
	errs = append(errs, err)
	e.srv.Inject(cloudtest.Fault{Route: cloudtest.GetJob, Status: 500, Body: `{"detail":"bad token ` + tok + `"}`, ContentType: "application/json", Times: 2})
	_, err = c.GetJob(ctx, 1)
	errs = append(errs, err)
	e.srv.Inject(cloudtest.Fault{Route: cloudtest.ListJobs, Drop: true, Times: 5})
	_, _, err = c.ListJobs(ctx, cloud.ListJobsOptions{})
	errs = append(errs, err)
	bad := e.client(t, func(cfg *cloud.ClientConfig) { cfg.Token = tok + "-wrong" })
	_, err = bad.GetJob(ctx, 1)
	errs = append(errs, err)

	x := e.executor(t, func(cfg *cloud.ExecutorConfig) { cfg.Client = c })
	e.srv.Inject(cloudtest.Fault{Route: cloudtest.CreateJob, Status: 400, Body: echo})
	resp, err := x.Execute(ctx, executor.Request{Command: executor.Run, Nodes: e.nodes(t, "stg_a"), BuildID: "b", Attempt: 1})
	require.NoError(t, err)

	for _, err := range errs {
		require.Error(t, err)
		assert.NotContains(t, err.Error(), tok)
		assert.NotContains(t, fmt.Sprintf("%+v %#v", err, err), tok)
		var ae *cloud.APIError
		if errors.As(err, &ae) {
			assert.NotContains(t, string(ae.Body), tok)
		}
	}
	assert.Contains(t, errs[0].Error(), "Forbidden: Token [REDACTED]")
	assert.NotContains(t, resp.Results[0].Message, tok)
	assert.NotContains(t, resp.Invocation.Stderr, tok)
	assert.Contains(t, e.logs.String(), "dbt cloud request", "nothing was logged")
	// newEnv's clean-up checks the logs.
}

// TestDeleteAnswers: DELETE answered 204 without a body, 200 with an
// envelope, or 404 (already gone) all succeed.
func TestDeleteAnswers(t *testing.T) {
	for _, tc := range []struct {
		status int
		body   string
		ok     bool
	}{
		{204, "", true},
		{200, `{"status":{"code":200,"is_success":true,"user_message":"Success!","developer_message":""},"data":{"id":3,"state":2}}`, true},
		{404, `{"status":{"code":404,"is_success":false,"user_message":"Job not found.","developer_message":""},"data":null}`, true},
		{403, `{"detail":"You do not have permission to perform this action."}`, false},
		{200, `{"status":{"code":403,"is_success":false,"user_message":"Nope.","developer_message":""},"data":null}`, false},
	} {
		t.Run(fmt.Sprint(tc.status), func(t *testing.T) {
			var method, path string
			srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
				method, path = r.Method, r.URL.Path
				w.WriteHeader(tc.status)
				fmt.Fprint(w, tc.body)
			}))
			defer srv.Close()
			c, err := cloud.NewClient(cloud.ClientConfig{Host: srv.URL, AccountID: 7, Token: "tok-12345678", RetryMax: -1})
			require.NoError(t, err)
			err = c.DeleteJob(t.Context(), 3)
			assert.Equal(t, tc.ok, err == nil, "%v", err)
			assert.Equal(t, http.MethodDelete, method)
			assert.Equal(t, "/api/v2/accounts/7/jobs/3/", path)
		})
	}
}

func TestTimestamp(t *testing.T) {
	want := time.Date(2024, 5, 1, 12, 30, 45, 123456000, time.UTC)
	for _, in := range []string{`"2024-05-01 12:30:45.123456+00:00"`, `"2024-05-01T12:30:45.123456Z"`, `"2024-05-01 12:30:45.123456"`} {
		var ts cloud.Timestamp
		require.NoError(t, ts.UnmarshalJSON([]byte(in)), in)
		assert.True(t, want.Equal(ts.Time), "%s: %v", in, ts.Time)
	}
	for _, in := range []string{`null`, `""`} {
		var ts cloud.Timestamp
		require.NoError(t, ts.UnmarshalJSON([]byte(in)))
		assert.True(t, ts.IsZero())
	}
	var ts cloud.Timestamp
	require.Error(t, ts.UnmarshalJSON([]byte(`"yesterday"`)))
	b, err := cloud.Timestamp{Time: want}.MarshalJSON()
	require.NoError(t, err)
	assert.Equal(t, `"2024-05-01T12:30:45.123456Z"`, string(b))
}
