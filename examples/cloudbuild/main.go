// Command cloudbuild runs a dbt project's build on dbt Cloud, node by node:
// every node (or wave) is a temporary dbt Cloud job, so a failed model is
// retried alone and everything downstream of a failure is skipped while
// independent branches go on.
//
// Against a real account (no dbt needed locally):
//
//	DBT_CLOUD_TOKEN=... cloudbuild -host https://cloud.getdbt.com -account 123 \
//	    -project 456 -environment 789 [-manifest-job 1011] [-mode per-node|per-wave] \
//	    [-concurrency 4] [-retries 2]
//
// With -janitor it deletes the temporary jobs that interrupted builds left
// behind (older than -janitor-age) and exits.
//
// Every temporary job is deleted by a clean-up with its own budget
// (-cleanup-budget, ten minutes by default), which outlasts an interrupted
// build and dbt Cloud's rate-limit cooldowns. A job it still cannot delete
// is named on stderr ("delete job(s) 123, 456"), and the exit code is 3.
//
// Without DBT_CLOUD_TOKEN it runs a demonstration against the fake server of
// package cloudtest, with time scaled down, in which one model always fails
// and one fails once. -demo picks what else the fake server does:
//
//	faults       late commits behind 502/504 answers and dropped connections,
//	             a processing delay, late artifacts, 5xx on polls, a short
//	             rate-limit cooldown, and the token echoed in every error
//	             message (the results are those of the plain demonstration)
//	cooldown     a rate-limit cooldown of 2s, without Retry-After, starts at
//	             the first job deletion (try -cleanup-budget 300ms)
//	development  the environment is a development environment
//
// Exit codes: 0 success, 1 failed nodes, 2 bad input or dbt Cloud errors
// (an environment unfit for jobs among them, refused before any job is
// created), 3 temporary jobs left behind, 130 interrupted.
package main

import (
	"context"
	_ "embed"
	"errors"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"os"
	"os/signal"
	"syscall"
	"text/tabwriter"
	"time"

	"github.com/dbtorch/dbtorch/cloud"
	"github.com/dbtorch/dbtorch/cloud/cloudtest"
	"github.com/dbtorch/dbtorch/orchestrator"
)

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	code := run(ctx, os.Args[1:], os.Getenv("DBT_CLOUD_TOKEN"), os.Stdout, os.Stderr)
	stop()
	os.Exit(code)
}

type options struct {
	host        string
	account     int64
	project     int64
	environment int64
	manifestJob int64
	prefix      string
	mode        string
	concurrency int
	retries     int
	poll        time.Duration
	janitor     bool
	janitorAge  time.Duration
	budget      time.Duration
	demo        string
	verbose     bool
}

func run(ctx context.Context, args []string, token string, stdout, stderr io.Writer) int {
	fs := flag.NewFlagSet("cloudbuild", flag.ContinueOnError)
	fs.SetOutput(stderr)
	var o options
	fs.StringVar(&o.host, "host", cloud.DefaultHost, "dbt Cloud host")
	fs.Int64Var(&o.account, "account", 0, "dbt Cloud account id")
	fs.Int64Var(&o.project, "project", 0, "dbt Cloud project id")
	fs.Int64Var(&o.environment, "environment", 0, "deployment environment the temporary jobs run in")
	fs.Int64Var(&o.manifestJob, "manifest-job", 0, "job whose latest manifest.json to use (default: a temporary `dbt compile` job)")
	fs.StringVar(&o.prefix, "job-prefix", cloud.DefaultJobPrefix, "name prefix of the temporary jobs")
	fs.StringVar(&o.mode, "mode", "per-node", "per-node or per-wave")
	fs.IntVar(&o.concurrency, "concurrency", 4, "jobs running at once (per-node mode)")
	fs.IntVar(&o.retries, "retries", 2, "retries of a failed node")
	fs.DurationVar(&o.poll, "poll", cloud.DefaultPollInterval, "mean interval between polls of a run")
	fs.BoolVar(&o.janitor, "janitor", false, "delete leftover temporary jobs and exit")
	fs.DurationVar(&o.janitorAge, "janitor-age", 6*time.Hour, "with -janitor: spare jobs younger than this")
	fs.DurationVar(&o.budget, "cleanup-budget", cloud.DefaultCleanupTimeout, "how long the clean-up of a temporary job may retry")
	fs.StringVar(&o.demo, "demo", "", "without DBT_CLOUD_TOKEN: faults, cooldown or development (see the package doc)")
	fs.BoolVar(&o.verbose, "v", false, "log dbt Cloud requests")
	if err := fs.Parse(args); err != nil {
		return 2
	}
	level := slog.LevelInfo
	if o.verbose {
		level = slog.LevelDebug
	}
	logger := slog.New(slog.NewTextHandler(stderr, &slog.HandlerOptions{Level: level}))

	cfg := cloud.ClientConfig{Host: o.host, AccountID: o.account, Logger: logger}
	if token == "" {
		fmt.Fprintln(stderr, "DBT_CLOUD_TOKEN is not set: running the demonstration against a fake dbt Cloud")
		srv, err := demoServer(o.demo)
		if err != nil {
			fmt.Fprintln(stderr, "cloudbuild:", err)
			return 2
		}
		defer func() {
			fmt.Fprintf(stdout, "jobs left on the fake server: %d\n", len(srv.Jobs()))
			srv.Close()
		}()
		cfg.Host, cfg.AccountID, o.project, o.environment = srv.URL, srv.AccountID(), srv.ProjectID(), srv.EnvironmentID()
		o.poll = 20 * time.Millisecond
		token = srv.Token()
		// The fake's time is scaled down; so are the client's waits.
		cfg.RetryWaitMin, cfg.RetryWaitMax, cfg.CommitWindow = 10*time.Millisecond, 200*time.Millisecond, 2*time.Second
	}
	cfg.Token = token
	client, err := cloud.NewClient(cfg)
	if err != nil {
		fmt.Fprintln(stderr, "cloudbuild:", err)
		return 2
	}
	if o.janitor {
		j := &cloud.Janitor{Client: client, Prefix: o.prefix, ProjectID: o.project, OlderThan: o.janitorAge, Logger: logger}
		deleted, err := j.Sweep(ctx)
		fmt.Fprintf(stdout, "deleted %d leftover job(s)\n", len(deleted))
		if err != nil {
			fmt.Fprintln(stderr, "cloudbuild:", err)
			return 2
		}
		return 0
	}
	return build(ctx, o, client, logger, stdout, stderr)
}

func build(ctx context.Context, o options, client *cloud.Client, logger *slog.Logger, stdout, stderr io.Writer) (code int) {
	mode, err := orchestrator.ParseMode(o.mode)
	if err != nil {
		fmt.Fprintln(stderr, "cloudbuild:", err)
		return 2
	}
	exec, err := cloud.NewExecutor(cloud.ExecutorConfig{
		Client:         client,
		ProjectID:      o.project,
		EnvironmentID:  o.environment,
		JobPrefix:      o.prefix,
		ManifestJobID:  o.manifestJob,
		PollInterval:   o.poll,
		CleanupTimeout: o.budget,
		Logger:         logger,
	})
	if err != nil {
		fmt.Fprintln(stderr, "cloudbuild:", err)
		return 2
	}
	orch, err := orchestrator.New(orchestrator.Config{
		Executor:    exec, // also provides the manifest
		Mode:        mode,
		Concurrency: o.concurrency,
		Retry:       orchestrator.RetryConfig{Retries: o.retries, Delay: time.Second, Jitter: 0.2},
		Logger:      logger,
	})
	if err != nil {
		fmt.Fprintln(stderr, "cloudbuild:", err)
		return 2
	}
	run, err := orch.RunBuild(ctx, orchestrator.BuildOptions{})
	// Close waits for the clean-ups and names the jobs they left.
	if leak := exec.Close(); leak != nil {
		defer fmt.Fprintln(stderr, "cloudbuild:", leak)
		code = 3
	}
	if ee := (*cloud.EnvironmentError)(nil); errors.As(err, &ee) {
		fmt.Fprintln(stderr, "cloudbuild:", ee)
		return max(code, 2)
	}
	if run == nil {
		fmt.Fprintln(stderr, "cloudbuild:", err)
		return max(code, 2)
	}
	tw := tabwriter.NewWriter(stdout, 0, 4, 2, ' ', 0)
	fmt.Fprintln(tw, "NODE\tSTATUS\tATTEMPTS\tDETAIL")
	for _, r := range run.Results {
		detail := r.Message
		switch {
		case r.Err != nil:
			detail = fmt.Sprintf("%s: %s", r.Err.Kind, firstLine(r.Err.Message))
		case len(r.FailedUpstream) > 0:
			detail = fmt.Sprintf("%s: %v", r.SkipReason, r.FailedUpstream)
		}
		fmt.Fprintf(tw, "%s\t%s\t%d\t%s\n", r.UniqueID, r.Status, len(r.Attempts), detail)
	}
	_ = tw.Flush()
	var be *orchestrator.BuildError
	switch {
	case errors.As(err, &be):
		fmt.Fprintln(stdout, be)
		return max(code, 1)
	case errors.Is(err, context.Canceled):
		fmt.Fprintln(stderr, "cloudbuild: interrupted")
		return max(code, 130)
	case err != nil:
		fmt.Fprintln(stderr, "cloudbuild:", err)
		return max(code, 2)
	}
	return code
}

func firstLine(s string) string {
	for i, c := range s {
		if c == '\n' {
			return s[:i]
		}
	}
	return s
}

// demoManifest is a small project: two branches over one seed.
//
//go:embed demo_manifest.json
var demoManifest []byte

// demoServer is a fake dbt Cloud where stg_payments always fails and
// stg_orders fails on its first attempt; demo adds faults (see the
// package doc).
func demoServer(demo string) (*cloudtest.Server, error) {
	opts := cloudtest.Options{
		Manifest: demoManifest,
		RunTime:  200 * time.Millisecond,
		Outcome: func(id string, attempt int) cloudtest.NodeOutcome {
			switch {
			case id == "model.shop.stg_payments":
				return cloudtest.NodeOutcome{Status: "error", Message: "Database Error in model stg_payments\n  column \"amount\" does not exist"}
			case id == "model.shop.stg_orders" && attempt == 1:
				return cloudtest.NodeOutcome{Status: "error", Message: "Database Error in model stg_orders\n  could not serialize access due to concurrent update"}
			}
			return cloudtest.NodeOutcome{RowsAffected: 100}
		},
	}
	var faults []cloudtest.Fault
	switch demo {
	case "":
	case "faults":
		opts.ProcessingDelay, opts.ArtifactDelay, opts.EchoToken = 20*time.Millisecond, 150*time.Millisecond, true
		late := 300 * time.Millisecond
		faults = []cloudtest.Fault{
			{Route: cloudtest.CreateJob, Status: 502, CommitAfter: late},
			{Route: cloudtest.TriggerRun, Status: 504, CommitAfter: late},
			{Route: cloudtest.CreateJob, Drop: true, CommitAfter: late},
			{Route: cloudtest.TriggerRun, Drop: true, CommitAfter: late},
			{Route: cloudtest.GetRun, Status: 500, Times: 3},
			{Route: cloudtest.DeleteJob, Cooldown: 500 * time.Millisecond},
		}
	case "cooldown":
		faults = []cloudtest.Fault{{Route: cloudtest.DeleteJob, Cooldown: 2 * time.Second}}
	case "development":
		opts.EnvironmentType = "development"
	default:
		return nil, fmt.Errorf("unknown -demo %q (want faults, cooldown or development)", demo)
	}
	srv, err := cloudtest.NewServer(opts)
	if err != nil {
		return nil, err
	}
	for _, f := range faults {
		srv.Inject(f)
	}
	return srv, nil
}
