package cloud

import (
	"context"
	"fmt"
	"log/slog"
	"time"

	"github.com/dbtorch/dbtorch/internal/backoff"
)

// remover stops the runs of a job and deletes it, retrying through
// transient failures (rate-limit cooldowns, outages) until its context
// ends. The executor's clean-up and the Janitor share it.
type remover struct {
	c   *Client
	log *slog.Logger
	// poll is the wait between two checks of a cancelled run.
	poll time.Duration
}

// remove cancels every run of the job that has not ended, waits until
// they all have, and deletes the job.
func (r remover) remove(ctx context.Context, jobID int64) error {
	if err := r.stopRuns(ctx, jobID); err != nil {
		return err
	}
	return r.deleteJob(ctx, jobID)
}

// stopRuns cancels every run of the job that has not ended (all pages of
// them) and waits until each has.
func (r remover) stopRuns(ctx context.Context, jobID int64) error {
	var active []int64
	err := r.c.persist(ctx, func(ctx context.Context) error {
		active = active[:0]
		for run, err := range r.c.Runs(ctx, ListRunsOptions{JobID: jobID, OrderBy: "id"}) {
			if err != nil {
				return err
			}
			if !run.Status.Terminal() {
				active = append(active, run.ID)
			}
		}
		return nil
	})
	if err != nil {
		return fmt.Errorf("dbt cloud: listing the runs of job %d: %w", jobID, err)
	}
	for _, id := range active {
		if _, err := r.stopRun(ctx, id); err != nil {
			return err
		}
	}
	return nil
}

// stopRun cancels the run and waits until it has ended; it returns the
// run as it ended (a run that had already succeeded stays a success).
func (r remover) stopRun(ctx context.Context, id int64) (*Run, error) {
	var run *Run
	err := r.c.persist(ctx, func(ctx context.Context) error {
		var err error
		run, err = r.c.CancelRun(ctx, id)
		return err
	})
	if err != nil {
		return nil, fmt.Errorf("dbt cloud: cancelling run %d: %w", id, err)
	}
	r.log.LogAttrs(ctx, slog.LevelInfo, "dbt cloud run cancelled", slog.Int64("run_id", id), slog.Int64("job_id", run.JobDefinitionID))
	for !run.Status.Terminal() {
		if !backoff.Sleep(ctx, r.poll) {
			return nil, fmt.Errorf("dbt cloud: run %d has not ended since it was cancelled: %w", id, ctx.Err())
		}
		err := r.c.persist(ctx, func(ctx context.Context) error {
			var err error
			run, err = r.c.GetRun(ctx, id, false)
			return err
		})
		if err != nil {
			return nil, fmt.Errorf("dbt cloud: checking cancelled run %d: %w", id, err)
		}
	}
	return run, nil
}

// deleteJob deletes the job (already gone is fine).
func (r remover) deleteJob(ctx context.Context, id int64) error {
	if err := r.c.persist(ctx, func(ctx context.Context) error { return r.c.DeleteJob(ctx, id) }); err != nil {
		return fmt.Errorf("dbt cloud: deleting job %d: %w", id, err)
	}
	r.log.LogAttrs(ctx, slog.LevelDebug, "dbt cloud job deleted", slog.Int64("job_id", id))
	return nil
}
