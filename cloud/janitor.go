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
// left behind: active jobs whose name starts with Prefix. Running runs of
// those jobs are cancelled first.
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
	cutoff := time.Now().Add(-j.OlderThan)
	// Collect first: deleting while paging would shift the pages.
	var found []Job
	for job, err := range j.Client.Jobs(ctx, ListJobsOptions{ProjectID: j.ProjectID, NameContains: j.Prefix, OrderBy: "id"}) {
		if err != nil {
			return nil, fmt.Errorf("dbt cloud: janitor: listing jobs: %w", err)
		}
		if !strings.HasPrefix(job.Name, j.Prefix) || job.State == JobDeleted {
			continue
		}
		if j.OlderThan > 0 && !job.CreatedAt.IsZero() && job.CreatedAt.After(cutoff) {
			continue
		}
		found = append(found, job)
	}
	if j.DryRun {
		return found, nil
	}
	var errs []error
	var deleted []Job
	for _, job := range found {
		if run, err := j.Client.LatestRun(ctx, job.ID); err == nil && run != nil && !run.Status.Terminal() {
			if _, err := j.Client.CancelRun(ctx, run.ID); err != nil {
				errs = append(errs, fmt.Errorf("cancelling run %d of job %d: %w", run.ID, job.ID, err))
			}
		}
		if err := j.Client.DeleteJob(ctx, job.ID); err != nil {
			errs = append(errs, fmt.Errorf("deleting job %d (%s): %w", job.ID, job.Name, err))
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
