package cloud

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"strings"
	"time"
)

// Janitor finds and deletes temporary jobs that an interrupted process
// left behind: active jobs whose name starts with Prefix. Every run of
// such a job that has not ended (there may be several) is cancelled, and
// the job is deleted only once they all have ended, so that no run of a
// deleted job goes on.
type Janitor struct {
	Client *Client
	// Prefix selects the jobs (required; use the executors' JobPrefix).
	Prefix string
	// ProjectID restricts the sweep to one project when non-zero.
	ProjectID int64
	// OlderThan spares jobs created less than this long ago, so that a
	// sweep does not delete the jobs of builds still running. Zero deletes
	// every matching job.
	OlderThan time.Duration
	// DryRun lists the jobs without deleting anything.
	DryRun bool
	// Timeout bounds the listing of the jobs, and the removal of each job
	// (cancelling its runs, waiting for them to end, deleting it), each
	// retried through rate limits and outages meanwhile:
	// DefaultCleanupTimeout when zero.
	Timeout time.Duration
	// PollInterval is the wait between two checks of a cancelled run (one
	// second when zero).
	PollInterval time.Duration
	// Logger receives one line per deleted job; nothing when nil.
	Logger *slog.Logger
}

// Sweep deletes the leftover jobs and returns them (the ones it would
// delete, with DryRun). It goes on after a failed deletion and returns
// the errors joined.
func (j *Janitor) Sweep(ctx context.Context) ([]Job, error) {
	if j.Client == nil {
		return nil, errors.New("dbt cloud: Janitor.Client is required")
	}
	if strings.TrimSpace(j.Prefix) == "" {
		return nil, errors.New("dbt cloud: Janitor.Prefix is required (an empty prefix would match every job)")
	}
	log := j.Logger
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	timeout := j.Timeout
	if timeout <= 0 {
		timeout = DefaultCleanupTimeout
	}
	cutoff := time.Now().Add(-j.OlderThan)
	// Collect first: deleting while paging would shift the pages.
	var found []Job
	lctx, cancel := context.WithTimeout(ctx, timeout)
	err := j.Client.persist(lctx, func(ctx context.Context) error {
		found = found[:0]
		for job, err := range j.Client.Jobs(ctx, ListJobsOptions{ProjectID: j.ProjectID, NameContains: j.Prefix, OrderBy: "id"}) {
			if err != nil {
				return err
			}
			if !strings.HasPrefix(job.Name, j.Prefix) || job.State == JobDeleted {
				continue
			}
			if j.OlderThan > 0 && !job.CreatedAt.IsZero() && job.CreatedAt.After(cutoff) {
				continue
			}
			found = append(found, job)
		}
		return nil
	})
	cancel()
	if err != nil {
		return nil, fmt.Errorf("dbt cloud: janitor: listing jobs: %w", err)
	}
	if j.DryRun {
		return found, nil
	}
	poll := j.PollInterval
	if poll <= 0 {
		poll = time.Second
	}
	rm := remover{c: j.Client, log: log, poll: poll}
	var errs []error
	var deleted []Job
	for _, job := range found {
		jctx, cancel := context.WithTimeout(ctx, timeout)
		err := rm.remove(jctx, job.ID)
		cancel()
		if err != nil {
			errs = append(errs, fmt.Errorf("job %d (%s): %w", job.ID, job.Name, err))
			continue
		}
		log.LogAttrs(ctx, slog.LevelInfo, "dbt cloud janitor: deleted leftover job",
			slog.Int64("job_id", job.ID), slog.String("name", job.Name))
		deleted = append(deleted, job)
	}
	if len(errs) > 0 {
		return deleted, fmt.Errorf("dbt cloud: janitor: %w", errors.Join(errs...))
	}
	return deleted, nil
}
