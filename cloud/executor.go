package cloud

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"log/slog"
	mrand "math/rand/v2"
	"net/http"
	"regexp"
	"strings"
	"time"

	"github.com/dbtorch/dbtorch/executor"
	"github.com/dbtorch/dbtorch/internal/backoff"
	"github.com/dbtorch/dbtorch/internal/dbtargv"
)

// Defaults of ExecutorConfig.
const (
	DefaultJobPrefix      = "dbtorch-"
	DefaultPollInterval   = 5 * time.Second
	DefaultCancelGrace    = 30 * time.Second
	DefaultCleanupTimeout = 2 * time.Minute
	DefaultManifestStep   = "dbt compile"
)

// ExecutorConfig configures an Executor. Client, ProjectID and
// EnvironmentID are required.
type ExecutorConfig struct {
	Client *Client
	// ProjectID and EnvironmentID say where the temporary jobs live and
	// run (a deployment environment with credentials).
	ProjectID     int64
	EnvironmentID int64
	// JobPrefix starts the name of every temporary job (DefaultJobPrefix
	// when empty), so that Janitor can find leftovers. Names are
	// JobPrefix + build id + "-" + a random suffix.
	JobPrefix string
	// TargetName is the jobs' settings.target_name ("default" when empty);
	// Threads their settings.threads (4 when zero).
	TargetName string
	Threads    int
	// JobTimeout is the jobs' execution timeout (none when zero).
	JobTimeout time.Duration
	// DBTVersion overrides the environment's dbt version when set.
	DBTVersion string
	// Vars are passed to every invocation as --vars, under the request's.
	Vars map[string]any
	// PollInterval is the mean wait between two polls of a run
	// (DefaultPollInterval when zero); each wait is jittered by ±25%.
	PollInterval time.Duration
	// CancelGrace is how long a cancelled run is given to reach a terminal
	// status before its job is deleted anyway (DefaultCancelGrace).
	CancelGrace time.Duration
	// CleanupTimeout bounds the clean-up after an invocation (cancelling
	// the run, deleting the job), which runs even when the invocation's
	// context has ended (DefaultCleanupTimeout).
	CleanupTimeout time.Duration
	// ManifestJobID, when set, makes Manifest read the latest
	// manifest.json of that job instead of running a temporary job.
	ManifestJobID int64
	// ManifestStep is the step of the temporary job Manifest runs
	// (DefaultManifestStep).
	ManifestStep string
	// Logger receives the executor's logs; nothing is logged when nil.
	Logger *slog.Logger
}

// Executor runs dbt invocations as temporary dbt Cloud jobs: one job per
// Execute call, deleted before Execute returns. It implements
// executor.Executor and executor.ManifestProvider and is safe for
// concurrent use; dbt Cloud runs the jobs in parallel up to the account's
// run slots.
type Executor struct {
	cfg ExecutorConfig
	c   *Client
	log *slog.Logger
}

var (
	_ executor.Executor         = (*Executor)(nil)
	_ executor.ManifestProvider = (*Executor)(nil)
	_ executor.Preparer         = (*Executor)(nil)
)

// Prepare checks, with one request, that the token, account, project and
// environment are usable before a build: the environment must exist,
// belong to ProjectID and be a deployment environment. A misconfigured
// executor then fails the build at once instead of failing every node.
func (e *Executor) Prepare(ctx context.Context) error {
	env, err := e.c.GetEnvironment(ctx, e.cfg.EnvironmentID)
	if err != nil {
		return fmt.Errorf("dbt cloud: checking environment %d: %w", e.cfg.EnvironmentID, err)
	}
	switch {
	case env.State == JobDeleted:
		return fmt.Errorf("dbt cloud: environment %d (%s) is deleted", env.ID, env.Name)
	case env.ProjectID != e.cfg.ProjectID:
		return fmt.Errorf("dbt cloud: environment %d (%s) belongs to project %d, not %d", env.ID, env.Name, env.ProjectID, e.cfg.ProjectID)
	case env.Type != "" && env.Type != "deployment":
		return fmt.Errorf("dbt cloud: environment %d (%s) is a %s environment; jobs need a deployment environment", env.ID, env.Name, env.Type)
	}
	return nil
}

// NewExecutor returns an Executor for cfg. It makes no request.
func NewExecutor(cfg ExecutorConfig) (*Executor, error) {
	if cfg.Client == nil {
		return nil, errors.New("dbt cloud: ExecutorConfig.Client is required")
	}
	if cfg.ProjectID <= 0 || cfg.EnvironmentID <= 0 {
		return nil, errors.New("dbt cloud: ExecutorConfig.ProjectID and EnvironmentID are required")
	}
	if cfg.JobPrefix == "" {
		cfg.JobPrefix = DefaultJobPrefix
	}
	if cfg.TargetName == "" {
		cfg.TargetName = "default"
	}
	if cfg.Threads <= 0 {
		cfg.Threads = 4
	}
	if cfg.PollInterval <= 0 {
		cfg.PollInterval = DefaultPollInterval
	}
	if cfg.CancelGrace <= 0 {
		cfg.CancelGrace = DefaultCancelGrace
	}
	if cfg.CleanupTimeout <= 0 {
		cfg.CleanupTimeout = DefaultCleanupTimeout
	}
	if cfg.ManifestStep == "" {
		cfg.ManifestStep = DefaultManifestStep
	}
	log := cfg.Logger
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	return &Executor{cfg: cfg, c: cfg.Client, log: log}, nil
}

var unsafeName = regexp.MustCompile(`[^A-Za-z0-9_.-]+`)

// jobName returns a fresh, unique temporary job name for the build.
func (e *Executor) jobName(buildID string) string {
	b := make([]byte, 6)
	_, _ = rand.Read(b)
	id := unsafeName.ReplaceAllString(buildID, "_")
	if id == "" {
		id = "adhoc"
	}
	if len(id) > 64 {
		id = id[:64]
	}
	return e.cfg.JobPrefix + id + "-" + hex.EncodeToString(b)
}

// Execute runs req as one temporary dbt Cloud job. See the package
// documentation of executor for the contract: one result per requested
// node, in order, whenever the error is nil.
//
// Failures of dbt Cloud itself do not make Execute fail: they become error
// results for every node, of KindConnection when they may be transient
// (network, 429, 5xx) and KindInternal otherwise (a rejected request). A
// run that ends without run_results.json gives error results of KindCrash.
func (e *Executor) Execute(ctx context.Context, req executor.Request) (*executor.Response, error) {
	if len(req.Nodes) == 0 {
		return nil, errors.New("dbt cloud: Execute: request has no nodes")
	}
	for _, n := range req.Nodes {
		if n == nil {
			return nil, errors.New("dbt cloud: Execute: request has a nil node")
		}
	}
	args, err := dbtargv.Build(dbtargv.Options{
		Command:     string(req.Command),
		Nodes:       req.Nodes,
		FullRefresh: req.FullRefresh,
		Vars:        dbtargv.MergeVars(e.cfg.Vars, req.Vars),
	})
	if err != nil {
		return nil, fmt.Errorf("dbt cloud: Execute: %w", err)
	}
	step := "dbt " + dbtargv.ShellJoin(args)
	name := e.jobName(req.BuildID)
	resp := &executor.Response{Invocation: executor.Invocation{
		Command:  req.Command,
		Args:     append([]string{"dbt"}, args...),
		Started:  time.Now(),
		ExitCode: -1,
	}}
	ids := make([]string, len(req.Nodes))
	for i, n := range req.Nodes {
		ids[i] = n.UniqueID
	}
	desc := shorten(fmt.Sprintf("dbtorch build %s attempt %d: %s %s", req.BuildID, req.Attempt, req.Command, strings.Join(ids, " ")), 250)
	cause := shorten(fmt.Sprintf("dbtorch build %s attempt %d (%s): %s %d node(s)", req.BuildID, req.Attempt, name, req.Command, len(ids)), 250)

	var reported []executor.Result
	var fail *executor.Failure
	err = e.session(ctx, name, desc, step, cause, func(ctx context.Context, run *Run, stepIndex int) error {
		resp.Invocation.Ended = time.Now()
		reported, fail = e.collect(ctx, run, stepIndex, &resp.Invocation)
		return nil
	})
	resp.Invocation.Ended = time.Now()
	if reported == nil && fail == nil && ctx.Err() == nil {
		if err == nil {
			err = errors.New("dbt cloud: the run gave no results")
		}
		resp.Invocation.Stderr = err.Error()
		fail = &executor.Failure{Kind: errorKind(err), Message: "dbt Cloud request failed: " + err.Error()}
	}
	resp.Results = executor.Complete(req.Nodes, reported, ctx.Err(), fail)
	return resp, nil
}

// errorKind classifies a failure of the dbt Cloud API.
func errorKind(err error) executor.Kind {
	var ae *APIError
	if errors.As(err, &ae) && ae.StatusCode < 500 && ae.StatusCode != http.StatusTooManyRequests {
		var amb *AmbiguousError
		if !errors.As(err, &amb) {
			return executor.KindInternal
		}
	}
	return executor.KindConnection
}

// collect reads a finished run's run_results.json: the results it
// reports, and the failure that every requested node it does not report
// gets (see executor.Complete). Both are nil when ctx ended first.
func (e *Executor) collect(ctx context.Context, run *Run, stepIndex int, inv *executor.Invocation) ([]executor.Result, *executor.Failure) {
	if run.Status != RunSuccess {
		inv.Stderr = run.StatusMessage
	}
	data, err := e.c.RunArtifact(ctx, run.ID, "run_results.json", stepIndex)
	if err != nil {
		if ctx.Err() != nil {
			return nil, nil
		}
		if IsNotFound(err) {
			kind := executor.KindCrash
			switch msg := strings.ToLower(run.StatusMessage); {
			case run.Status == RunCancelled:
				kind = executor.KindCancelled
			case strings.Contains(msg, "timed out") || strings.Contains(msg, "timeout"):
				kind = executor.KindTimeout
			}
			msg := fmt.Sprintf("dbt Cloud run %d ended %s without run_results.json", run.ID, run.Status)
			if run.StatusMessage != "" {
				msg += ": " + run.StatusMessage
			}
			return nil, &executor.Failure{Kind: kind, Message: msg}
		}
		return nil, &executor.Failure{Kind: errorKind(err),
			Message: fmt.Sprintf("dbt Cloud run %d ended %s; reading run_results.json failed: %v", run.ID, run.Status, err)}
	}
	rr, invocationID, err := executor.ParseRunResults(data)
	if err != nil {
		return nil, &executor.Failure{Kind: executor.KindCrash,
			Message: fmt.Sprintf("dbt Cloud run %d: unreadable run_results.json: %v", run.ID, err)}
	}
	inv.InvocationID = invocationID
	msg := fmt.Sprintf("dbt Cloud run %d (%s) did not report this node", run.ID, run.Status)
	if run.StatusMessage != "" {
		msg += ": " + run.StatusMessage
	}
	return rr, &executor.Failure{Kind: executor.KindCrash, Message: msg}
}

// session creates a temporary job with one step, triggers it, polls the
// run until it ends and calls done with it (and the index of the step, 0
// when unknown), then deletes the job — on every path, with a context of
// its own. When ctx ends first, the run is cancelled and given
// CancelGrace to stop before the job is deleted; session then returns
// ctx's error.
func (e *Executor) session(ctx context.Context, name, desc, step, cause string, done func(context.Context, *Run, int) error) (err error) {
	st := &sessionState{name: name}
	defer e.cleanup(ctx, st)
	st.job, st.createResent, st.createErr = e.c.createJob(ctx, Job{
		ProjectID:     e.cfg.ProjectID,
		EnvironmentID: e.cfg.EnvironmentID,
		Name:          name,
		Description:   desc,
		DBTVersion:    e.cfg.DBTVersion,
		ExecuteSteps:  []string{step},
		Settings:      JobSettings{Threads: e.cfg.Threads, TargetName: e.cfg.TargetName},
		Execution:     JobExecution{TimeoutSeconds: int(e.cfg.JobTimeout / time.Second)},
	})
	if st.createErr != nil {
		st.job = nil
		return st.createErr
	}
	job := st.job
	e.log.LogAttrs(ctx, slog.LevelDebug, "dbt cloud job created", slog.Int64("job_id", job.ID), slog.String("name", name))
	st.triggered = true
	run, resent, err := e.c.triggerRun(ctx, job.ID, TriggerOptions{Cause: cause})
	st.triggerResent = resent
	if err != nil {
		return err
	}
	st.run = run
	e.log.LogAttrs(ctx, slog.LevelInfo, "dbt cloud run started", slog.Int64("job_id", job.ID),
		slog.Int64("run_id", run.ID), slog.String("step", step), slog.String("href", run.Href))
	for !run.Status.Terminal() {
		if !backoff.Sleep(ctx, e.pollWait()) {
			return ctx.Err()
		}
		r, err := e.c.GetRun(ctx, run.ID, false)
		if err != nil {
			if ctx.Err() != nil {
				return ctx.Err()
			}
			return err
		}
		run = r
		st.run = r
	}
	final, err := e.c.GetRun(ctx, run.ID, true)
	if err != nil {
		if ctx.Err() != nil {
			return ctx.Err()
		}
		return err
	}
	run = final
	e.log.LogAttrs(ctx, slog.LevelInfo, "dbt cloud run ended", slog.Int64("job_id", job.ID),
		slog.Int64("run_id", run.ID), slog.String("status", run.Status.String()))
	idx := 0
	if st := stepOf(run, step); st != nil {
		idx = st.Index
	}
	return done(ctx, run, idx)
}

// sessionState is what a session knows of what it created, for cleanup.
type sessionState struct {
	name string
	// job is the created job; nil when creation failed (createErr).
	job          *Job
	createErr    error
	createResent bool
	// run is the last state seen of the job's run; nil when the trigger
	// was not sent or failed.
	run           *Run
	triggered     bool
	triggerResent bool
}

// stepOf finds the run's step for the dbt command line step: the step
// whose name contains it, else the last step naming the same dbt
// sub-command.
func stepOf(run *Run, step string) *RunStep {
	if st := run.StepFor(step); st != nil {
		return st
	}
	f := strings.Fields(step)
	if len(f) >= 2 {
		return run.StepFor(f[0] + " " + f[1])
	}
	return nil
}

func (e *Executor) pollWait() time.Duration {
	d := e.cfg.PollInterval
	return d*3/4 + time.Duration(mrand.Int64N(int64(d/2)+1))
}

// cleanup makes sure nothing of the session is left: every run it started
// is ended and every job it created is deleted, including duplicates that
// a resent request may have made. It uses its own context, so that it also
// runs after the session's context has ended. What it cannot remove, it
// logs at error level (Janitor removes it later).
func (e *Executor) cleanup(parent context.Context, st *sessionState) {
	ctx, cancel := context.WithTimeout(context.WithoutCancel(parent), e.cfg.CleanupTimeout)
	defer cancel()
	log := e.log.With(slog.String("job_name", st.name))
	job := st.job
	if job == nil {
		var ae *APIError
		if st.createErr == nil || (errors.As(st.createErr, &ae) && ae.StatusCode < 500 && ae.StatusCode != http.StatusTooManyRequests) {
			return // the job was certainly not created
		}
	} else {
		// Runs of the job: the one followed, or every run when the trigger
		// failed or was resent (they are all this session's).
		if st.run == nil && st.triggered || st.triggerResent {
			e.stopAllRuns(ctx, log, job.ID)
		} else if st.run != nil && !st.run.Status.Terminal() {
			e.stopRun(ctx, log, st.run)
		}
		if !e.deleteJob(ctx, log, job.ID) {
			return
		}
		if !st.createResent {
			return
		}
	}
	// The creation may have succeeded (or succeeded twice): delete every
	// job of this session's unique name.
	for range 5 {
		found, err := e.c.FindJob(ctx, e.cfg.ProjectID, st.name)
		if err != nil {
			log.LogAttrs(ctx, slog.LevelError, "dbt cloud: could not check for a leftover job; run the Janitor",
				slog.String("error", err.Error()))
			return
		}
		if found == nil {
			return
		}
		e.stopAllRuns(ctx, log, found.ID)
		if !e.deleteJob(ctx, log, found.ID) {
			return
		}
	}
}

func (e *Executor) deleteJob(ctx context.Context, log *slog.Logger, id int64) bool {
	if err := e.c.DeleteJob(ctx, id); err != nil {
		log.LogAttrs(ctx, slog.LevelError, "dbt cloud: could not delete temporary job; run the Janitor",
			slog.Int64("job_id", id), slog.String("error", err.Error()))
		return false
	}
	log.LogAttrs(ctx, slog.LevelDebug, "dbt cloud job deleted", slog.Int64("job_id", id))
	return true
}

// stopAllRuns cancels every unfinished run of the job.
func (e *Executor) stopAllRuns(ctx context.Context, log *slog.Logger, jobID int64) {
	runs, _, err := e.c.ListRuns(ctx, ListRunsOptions{JobID: jobID, OrderBy: "-id"})
	if err != nil {
		log.LogAttrs(ctx, slog.LevelWarn, "dbt cloud: could not list the job's runs", slog.Int64("job_id", jobID),
			slog.String("error", err.Error()))
		return
	}
	for i := range runs {
		if !runs[i].Status.Terminal() {
			e.stopRun(ctx, log, &runs[i])
		}
	}
}

// stopRun cancels a run and waits up to CancelGrace for it to end.
func (e *Executor) stopRun(ctx context.Context, log *slog.Logger, run *Run) {
	log = log.With(slog.Int64("run_id", run.ID))
	r, err := e.c.CancelRun(ctx, run.ID)
	if err != nil {
		log.LogAttrs(ctx, slog.LevelWarn, "dbt cloud: cancelling the run failed", slog.String("error", err.Error()))
		return
	}
	log.LogAttrs(ctx, slog.LevelInfo, "dbt cloud run cancelled")
	gctx, cancel := context.WithTimeout(ctx, e.cfg.CancelGrace)
	defer cancel()
	wait := min(e.cfg.PollInterval, time.Second)
	for !r.Status.Terminal() {
		if !backoff.Sleep(gctx, wait) {
			log.LogAttrs(ctx, slog.LevelWarn, "dbt cloud run did not stop within the grace period")
			return
		}
		if r, err = e.c.GetRun(gctx, run.ID, false); err != nil {
			return
		}
	}
}
