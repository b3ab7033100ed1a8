package cloud

import (
	"context"
	"fmt"
	"log/slog"
	"strings"
	"time"

	"github.com/dbtorch/dbtorch/internal/backoff"
)

// session creates a temporary job with one step, triggers it, polls the
// run until it ends and calls done with it (and the index of the step, 0
// when unknown), then cleans up (see cleanup) on a context of its own.
//
// When ctx ends first, the run is cancelled; if it had already ended in
// success, done is still called, with the clean-up's context, before the
// job is deleted, so that work that was done is reported as done. session
// then returns ctx's error.
func (e *Executor) session(ctx context.Context, name, desc, step, cause string, done func(context.Context, *Run, int) error) (err error) {
	st := &sessionState{name: name, cause: cause, step: step}
	defer func() {
		cctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), e.cfg.CleanupTimeout)
		defer cancel()
		var salvage func(context.Context, *Run) error
		if ctx.Err() != nil && !st.done {
			salvage = func(cctx context.Context, run *Run) error {
				return e.finish(cctx, run, step, done)
			}
		}
		e.cleanup(cctx, st, salvage)
	}()
	if err := e.checkEnvironment(ctx); err != nil {
		return err
	}
	st.job, st.create, st.createErr = e.c.createJob(ctx, Job{
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
	run, rec, err := e.c.triggerRun(ctx, job.ID, TriggerOptions{Cause: cause})
	st.trigger = rec
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
	e.log.LogAttrs(ctx, slog.LevelInfo, "dbt cloud run ended", slog.Int64("job_id", job.ID),
		slog.Int64("run_id", run.ID), slog.String("status", run.Status.String()))
	if err := e.finish(ctx, run, step, done); err != nil {
		return err
	}
	if ctx.Err() != nil {
		return ctx.Err()
	}
	st.done = true
	return nil
}

// finish reads the ended run with its steps and calls done with it.
func (e *Executor) finish(ctx context.Context, run *Run, step string, done func(context.Context, *Run, int) error) error {
	final, err := e.c.GetRun(ctx, run.ID, true)
	if err != nil {
		if ctx.Err() != nil {
			return ctx.Err()
		}
		return err
	}
	idx := 0
	if st := stepOf(final, step); st != nil {
		idx = st.Index
	}
	return done(ctx, final, idx)
}

// sessionState is what a session knows of what it created, for cleanup.
type sessionState struct {
	name, cause, step string
	// job is the created job; nil when creation failed (createErr).
	job       *Job
	create    sendRecord
	createErr error
	// run is the last state seen of the job's run; nil when the trigger
	// was not sent or failed (then trigger says whether it may exist).
	run     *Run
	trigger sendRecord
	// done reports that done was called and returned before ctx ended.
	done bool
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
	return backoff.Spread(e.cfg.PollInterval, 0.25)
}

// cleanup makes sure nothing of the session is left, within ctx (the
// clean-up budget):
//   - a creation whose outcome is unknown (its answer was lost, or the
//     session's context ended while it was in flight) is looked for by
//     the job's unique name until the commit window has passed;
//   - a trigger whose outcome is unknown is looked for by its cause the
//     same way, and a resent trigger's extra runs are cancelled;
//   - every run that has not ended is cancelled, and awaited;
//   - when the session's context ended after a successful run, salvage
//     reads its results before the job goes;
//   - the job is deleted (and any duplicate of its name a resent creation
//     made).
//
// Every step is retried through transient failures until ctx ends. What
// it cannot remove is recorded for Close (and logged).
func (e *Executor) cleanup(ctx context.Context, st *sessionState, salvage func(context.Context, *Run) error) {
	rm := e.remover()
	if st.job == nil {
		if !st.create.unsure {
			return // the job was certainly not created
		}
		job, err := await(ctx, e.c, st.create.last, func(ctx context.Context) (*Job, error) {
			return e.c.findJobIn(ctx, e.cfg.ProjectID, e.cfg.EnvironmentID, st.name)
		})
		switch {
		case err != nil:
			e.leak(0, st.name, fmt.Errorf("could not rule out that the job was created: %w", err))
			return
		case job == nil:
			return // the window passed without a trace: it was not created
		}
		st.job = job
	}
	jobID := st.job.ID
	run := st.run
	if run == nil && st.trigger.unsure {
		found, err := await(ctx, e.c, st.trigger.last, func(ctx context.Context) (*Run, error) {
			return e.c.findRun(ctx, jobID, st.cause)
		})
		if err != nil {
			e.leak(jobID, st.name, fmt.Errorf("could not rule out that a run was started: %w", err))
			return
		}
		run = found
	}
	var err error
	switch {
	case st.trigger.sends > 1 || (run == nil && st.trigger.unsure):
		err = rm.stopRuns(ctx, jobID)
	case run != nil && !run.Status.Terminal():
		run, err = rm.stopRun(ctx, run.ID)
	}
	if err != nil {
		e.leak(jobID, st.name, err)
		return
	}
	if salvage != nil && run != nil && run.Status == RunSuccess {
		if err := salvage(ctx, run); err != nil {
			e.log.LogAttrs(ctx, slog.LevelWarn, "dbt cloud: could not read the results of a run that succeeded",
				slog.Int64("run_id", run.ID), slog.String("error", err.Error()))
		}
	}
	if err := rm.deleteJob(ctx, jobID); err != nil {
		e.leak(jobID, st.name, err)
		return
	}
	if st.create.sends > 1 {
		e.removeDuplicates(ctx, st.name)
	}
}

// removeDuplicates deletes every job named name: the creation was sent
// more than once, and an earlier request may have landed after the
// commit window.
func (e *Executor) removeDuplicates(ctx context.Context, name string) {
	rm := e.remover()
	for {
		var job *Job
		err := e.c.persist(ctx, func(ctx context.Context) error {
			var err error
			job, err = e.c.FindJob(ctx, e.cfg.ProjectID, name)
			return err
		})
		if err != nil {
			e.leak(0, name, fmt.Errorf("could not check for a duplicate job: %w", err))
			return
		}
		if job == nil {
			return
		}
		if err := rm.remove(ctx, job.ID); err != nil {
			e.leak(job.ID, name, err)
			return
		}
	}
}

func (e *Executor) remover() remover {
	return remover{c: e.c, log: e.log, poll: min(e.cfg.PollInterval, time.Second)}
}

// artifact returns an artifact of a run that has ended, waiting up to
// ArtifactWait for dbt Cloud to save it: while the run says
// artifacts_saved false, and, for a run that succeeded (which always has
// its artifacts), while the artifact is 404. A run that did not succeed
// and has saved its artifacts without this one has none (404).
func (e *Executor) artifact(ctx context.Context, run *Run, path string, step int) ([]byte, error) {
	deadline := time.Now().Add(e.cfg.ArtifactWait)
	var lastErr error
	for {
		if run.ArtifactsSaved || run.Status != RunSuccess {
			data, err := e.c.RunArtifact(ctx, run.ID, path, step)
			switch {
			case err == nil:
				return data, nil
			case !IsNotFound(err) || (run.ArtifactsSaved && run.Status != RunSuccess):
				return nil, err
			}
			lastErr = err
		}
		if time.Now().After(deadline) {
			if lastErr == nil {
				lastErr = fmt.Errorf("dbt cloud: run %d: artifacts not saved %v after the run ended", run.ID, e.cfg.ArtifactWait)
			}
			return nil, lastErr
		}
		if !backoff.Sleep(ctx, e.pollWait()) {
			return nil, ctx.Err()
		}
		r, err := e.c.GetRun(ctx, run.ID, false)
		if err != nil {
			return nil, err
		}
		run = r
	}
}
