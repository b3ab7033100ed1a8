package cloud_test

import (
	"testing"
	"time"

	"github.com/dbtorch/dbtorch/cloud"
	"github.com/dbtorch/dbtorch/cloud/cloudtest"
	"github.com/dbtorch/dbtorch/executor"
	"github.com/dbtorch/dbtorch/manifest"
)

// BenchmarkExecuteRequests measures what one invocation costs in API
// requests — the budget that dbt Cloud's 5,000 requests per minute per
// account divides — split into the fixed requests (create, trigger, final
// run with steps, run_results.json, delete) and the polls, for a run of
// 100ms polled every 10ms (the same ratio as a 50s run polled every 5s).
func BenchmarkExecuteRequests(b *testing.B) {
	srv, err := cloudtest.NewServer(cloudtest.Options{Manifest: manifestJSON(b, project), RunTime: 100 * time.Millisecond})
	if err != nil {
		b.Fatal(err)
	}
	defer srv.Close()
	c, err := cloud.NewClient(cloud.ClientConfig{Host: srv.URL, AccountID: srv.AccountID(), Token: srv.Token(), RateLimit: -1})
	if err != nil {
		b.Fatal(err)
	}
	x, err := cloud.NewExecutor(cloud.ExecutorConfig{Client: c, ProjectID: srv.ProjectID(), EnvironmentID: srv.EnvironmentID(),
		PollInterval: 10 * time.Millisecond})
	if err != nil {
		b.Fatal(err)
	}
	m, err := x.Manifest(b.Context())
	if err != nil {
		b.Fatal(err)
	}
	node := m.Lookup(idOf("stg_a"))
	routes := []cloudtest.Route{cloudtest.CreateJob, cloudtest.ListJobs, cloudtest.GetJob, cloudtest.DeleteJob,
		cloudtest.TriggerRun, cloudtest.ListRuns, cloudtest.GetRun, cloudtest.CancelRun, cloudtest.ListArtifacts,
		cloudtest.RunArtifact, cloudtest.JobArtifact}
	total := func() int {
		n := 0
		for _, r := range routes {
			n += srv.Calls(r)
		}
		return n
	}
	before, polls0 := total(), srv.Calls(cloudtest.GetRun)
	start := time.Now()
	for i := 0; b.Loop(); i++ {
		resp, err := x.Execute(b.Context(), executor.Request{Command: executor.Run, Nodes: []*manifest.Node{node}, BuildID: "bench", Attempt: i + 1})
		if err != nil || resp.Results[0].Status != executor.Success {
			b.Fatal(err, resp)
		}
	}
	b.StopTimer()
	n := float64(b.N)
	reqs := float64(total()-before) / n
	polls := float64(srv.Calls(cloudtest.GetRun)-polls0)/n - 1 // one GetRun is the final read with steps
	b.ReportMetric(reqs, "requests/op")
	b.ReportMetric(reqs-polls, "fixed-requests/op")
	b.ReportMetric(polls, "polls/op")
	b.ReportMetric(time.Since(start).Seconds()/n/0.1, "wall/run-time")
	perMin := time.Minute.Seconds() / cloud.DefaultPollInterval.Seconds()
	b.Logf("%.1f requests per invocation (%.0f fixed + %.1f polls); at the default %v poll interval a running invocation costs %.0f requests/min, so dbt Cloud's 5,000/min sustains ~%.0f concurrent runs",
		reqs, reqs-polls, polls, cloud.DefaultPollInterval, perMin, 5000/perMin)
	if len(srv.Jobs()) != 0 {
		b.Fatal("jobs left behind")
	}
}
