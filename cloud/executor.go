package cloud

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"regexp"
	"slices"
	"strings"
	"sync"
	"time"

	"github.com/dbtorch/dbtorch/dbt"
	"github.com/dbtorch/dbtorch/executor"
	"github.com/dbtorch/dbtorch/internal/dbtargv"
)

// Defaults of ExecutorConfig.
const (
	DefaultJobPrefix    = "dbtorch-"
	DefaultPollInterval = 5 * time.Second
	// DefaultCleanupTimeout is long enough to outlast a rate-limit
	// cooldown of several minutes, which dbt Cloud imposes without a
	// Retry-After header.
	DefaultCleanupTimeout = 10 * time.Minute
	DefaultArtifactWait   = 2 * time.Minute
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
	// CleanupTimeout is the budget of the clean-up after an invocation:
	// finding what an interrupted creation or trigger made, cancelling
	// runs and waiting until they have ended, deleting the job. The
	// clean-up runs on a context of its own, which the invocation's
	// context ending does not cancel, and retries through rate limits and
	// outages for as long as this budget allows (DefaultCleanupTimeout).
	// A job it still cannot delete is logged and reported by Close as a
	// *LeakError.
	CleanupTimeout time.Duration
	// ArtifactWait bounds how long after a run ends the executor waits for
	// its artifacts: dbt Cloud saves them a while after the run's status
	// turns terminal (artifacts_saved false, 404 meanwhile)
	// (DefaultArtifactWait).
	ArtifactWait time.Duration
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

	mu      sync.Mutex
	closed  bool
	running sync.WaitGroup // Execute and Manifest calls in progress
	envOK   bool           // the environment passed checkEnvironment
	envErr  *EnvironmentError
	leaked  map[int64]string // job id -> name, of jobs not deleted
	unknown map[string]bool  // names of jobs that may exist, id unknown
	leakErr error            // the last error of a failed clean-up
}

var (
	_ executor.Executor         = (*Executor)(nil)
	_ executor.ManifestProvider = (*Executor)(nil)
	_ executor.Preparer         = (*Executor)(nil)
	_ io.Closer                 = (*Executor)(nil)
)

// Prepare checks, with one request, that the token, account, project and
// environment are usable before a build: the environment must exist, be
// active, belong to ProjectID and be a deployment environment. A
// misconfigured executor then fails the build at once instead of failing
// every node; an environment unfit for jobs is an *EnvironmentError.
// Manifest and Execute make the same check (once) before creating any
// job, so that no job is ever created in such an environment.
func (e *Executor) Prepare(ctx context.Context) error {
	if err := e.enter(); err != nil {
		return err
	}
	defer e.running.Done()
	return e.checkEnvironment(ctx)
}

// checkEnvironment fetches the environment once and checks that jobs can
// run in it. A success and an *EnvironmentError are remembered; other
// failures (the request failed) are not.
func (e *Executor) checkEnvironment(ctx context.Context) error {
	e.mu.Lock()
	ok, bad := e.envOK, e.envErr
	e.mu.Unlock()
	switch {
	case ok:
		return nil
	case bad != nil:
		return bad
	}
	env, err := e.c.GetEnvironment(ctx, e.cfg.EnvironmentID)
	if err != nil {
		return fmt.Errorf("dbt cloud: checking environment %d: %w", e.cfg.EnvironmentID, err)
	}
	ee := &EnvironmentError{ID: env.ID, Name: env.Name, Type: env.Type}
	switch {
	case env.State == JobDeleted:
		ee.Reason = "it is deleted"
	case env.ProjectID != e.cfg.ProjectID:
		ee.Reason = fmt.Sprintf("it belongs to project %d, not %d", env.ProjectID, e.cfg.ProjectID)
	case env.Type != "deployment":
		ee.Reason = fmt.Sprintf("it is a %s environment; jobs need a deployment environment", orUnknown(env.Type))
	default:
		ee = nil
	}
	e.mu.Lock()
	defer e.mu.Unlock()
	if ee != nil {
		e.envErr = ee
		return ee
	}
	e.envOK = true
	return nil
}

func orUnknown(s string) string {
	if s == "" {
		return "untyped"
	}
	return s
}

// enter registers a call in progress, or returns executor.ErrClosed.
func (e *Executor) enter() error {
	e.mu.Lock()
	defer e.mu.Unlock()
	if e.closed {
		return executor.ErrClosed
	}
	e.running.Add(1)
	return nil
}

// Close waits for the Execute and Manifest calls in progress, clean-ups
// included, and makes later calls fail with executor.ErrClosed. It
// returns a *LeakError naming every temporary job this executor created
// and could not delete within its clean-up budget (and the names of jobs
// whose creation it could not rule out), nil when nothing was left behind.
// Close may be called more than once; each call returns the same report.
func (e *Executor) Close() error {
	e.mu.Lock()
	e.closed = true
	e.mu.Unlock()
	e.running.Wait()
	return e.Leaked()
}

// Leaked returns what Close would: a *LeakError naming the temporary jobs
// this executor has so far failed to delete, or nil. It does not wait.
func (e *Executor) Leaked() error {
	e.mu.Lock()
	defer e.mu.Unlock()
	if len(e.leaked) == 0 && len(e.unknown) == 0 {
		return nil
	}
	le := &LeakError{Prefix: e.cfg.JobPrefix, Err: e.leakErr}
	for id := range e.leaked {
		le.JobIDs = append(le.JobIDs, id)
	}
	for name := range e.unknown {
		le.Names = append(le.Names, name)
	}
	slices.Sort(le.JobIDs)
	slices.Sort(le.Names)
	return le
}

// leak records a job the clean-up could not delete (id 0: a job of that
// name may exist).
func (e *Executor) leak(id int64, name string, err error) {
	e.mu.Lock()
	defer e.mu.Unlock()
	if id != 0 {
		e.leaked[id] = name
		delete(e.unknown, name)
	} else {
		e.unknown[name] = true
	}
	e.leakErr = err
	e.log.Error("dbt cloud: temporary job left behind; delete it or run the Janitor",
		slog.Int64("job_id", id), slog.String("name", name), slog.String("error", err.Error()))
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
	if cfg.ArtifactWait <= 0 {
		cfg.ArtifactWait = DefaultArtifactWait
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
	return &Executor{cfg: cfg, c: cfg.Client, log: log, leaked: map[int64]string{}, unknown: map[string]bool{}}, nil
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
// Execute fails without creating a job when the environment is unfit for
// jobs (*EnvironmentError) and after Close (executor.ErrClosed).
func (e *Executor) Execute(ctx context.Context, req executor.Request) (*executor.Response, error) {
	if err := e.enter(); err != nil {
		return nil, err
	}
	defer e.running.Done()
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
		Global:      dbtargv.Global{Vars: dbt.Vars(e.cfg.Vars).Merge(req.Vars)},
	})
	if err != nil {
		return nil, fmt.Errorf("dbt cloud: Execute: %w", err)
	}
	if err := e.checkEnvironment(ctx); err != nil {
		var ee *EnvironmentError
		if errors.As(err, &ee) {
			return nil, err
		}
		// The check itself failed: the invocation fails like any request.
		resp := &executor.Response{Invocation: executor.Invocation{Command: req.Command, Started: time.Now(), Ended: time.Now(), ExitCode: -1}}
		resp.Results = executor.Complete(req.Nodes, nil, ctx.Err(), &executor.Failure{Kind: errorKind(err), Message: err.Error()})
		return resp, nil
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
	if transient(err) {
		return executor.KindConnection
	}
	return executor.KindInternal
}

// collect reads a finished run's run_results.json: the results it
// reports, and the failure that every requested node it does not report
// gets (see executor.Complete). Both are nil when ctx ended first.
func (e *Executor) collect(ctx context.Context, run *Run, stepIndex int, inv *executor.Invocation) ([]executor.Result, *executor.Failure) {
	if run.Status != RunSuccess {
		inv.Stderr = run.StatusMessage
	}
	data, err := e.artifact(ctx, run, "run_results.json", stepIndex)
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
