package cloud

import (
	"context"
	"errors"
	"fmt"
	"iter"
	"net/http"
	"net/url"
	"strconv"
	"strings"
)

// maxPage is the largest page dbt Cloud serves.
const maxPage = 100

// CreateJob creates a job and returns it as the server stored it. Zero
// fields get defaults: AccountID is the client's, JobType "other", State
// JobActive.
//
// CreateJob is not repeated blindly: after a failure that may have
// succeeded (a 5xx, a dropped connection, a timeout) it looks, again and
// again for up to ClientConfig.CommitWindow, for an active job with
// exactly job.Name in the job's project and environment, and returns that
// job as soon as it appears; only when the window passes without one is
// the request sent again. Give every job a unique name to make this safe.
// If the look-ups fail until the window ends (or ctx ends first), the
// error is an *AmbiguousError: the job may exist. A creation the server
// commits later than the window creates a second job of that name;
// Executor removes such duplicates, and Janitor finds them later.
func (c *Client) CreateJob(ctx context.Context, job Job) (*Job, error) {
	j, _, err := c.createJob(ctx, job)
	return j, err
}

// createJob is CreateJob, also reporting what it sent.
func (c *Client) createJob(ctx context.Context, job Job) (*Job, sendRecord, error) {
	if job.ID != 0 {
		return nil, sendRecord{}, errors.New("dbt cloud: CreateJob: job already has an id")
	}
	if job.Name == "" {
		return nil, sendRecord{}, errors.New("dbt cloud: CreateJob: job has no name")
	}
	if job.AccountID == 0 {
		job.AccountID = c.accountID
	}
	if job.JobType == "" {
		job.JobType = "other"
	}
	if job.State == 0 {
		job.State = JobActive
	}
	if job.ExecuteSteps == nil {
		job.ExecuteSteps = []string{}
	}
	return create(ctx, c, "create job "+strconv.Quote(job.Name),
		call{method: http.MethodPost, path: "jobs/", body: job}, func(ctx context.Context) (*Job, error) {
			return c.findJobIn(ctx, job.ProjectID, job.EnvironmentID, job.Name)
		})
}

// findJobIn is FindJob, also requiring the environment when env is not
// zero.
func (c *Client) findJobIn(ctx context.Context, projectID, env int64, name string) (*Job, error) {
	found, err := c.FindJob(ctx, projectID, name)
	if err != nil || found == nil {
		return nil, err
	}
	if env != 0 && found.EnvironmentID != 0 && found.EnvironmentID != env {
		return nil, nil
	}
	return found, nil
}

// GetJob returns the job with the given id. A deleted job is returned with
// State JobDeleted, or as an *APIError with status 404.
func (c *Client) GetJob(ctx context.Context, id int64) (*Job, error) {
	var j Job
	if _, err := c.get(ctx, fmt.Sprintf("jobs/%d/", id), nil, &j); err != nil {
		return nil, err
	}
	return &j, nil
}

// DeleteJob deletes the job. A job that is already gone (404) is not an
// error.
func (c *Client) DeleteJob(ctx context.Context, id int64) error {
	_, err := c.do(ctx, call{method: http.MethodDelete, path: fmt.Sprintf("jobs/%d/", id), idempotent: true})
	if IsNotFound(err) {
		return nil
	}
	return err
}

// GetEnvironment returns the environment with the given id.
func (c *Client) GetEnvironment(ctx context.Context, id int64) (*Environment, error) {
	var env Environment
	if _, err := c.get(ctx, fmt.Sprintf("environments/%d/", id), nil, &env); err != nil {
		return nil, err
	}
	return &env, nil
}

// ListJobsOptions filters ListJobs and Jobs. Zero fields do not filter.
type ListJobsOptions struct {
	ProjectID     int64
	EnvironmentID int64
	// NameContains keeps jobs whose name contains it, ignoring case.
	NameContains string
	// OrderBy is a field name, "-" first for descending ("-id").
	OrderBy string
	// Limit is the page size (at most 100; 100 when zero) and Offset the
	// first item of the page.
	Limit  int
	Offset int
}

func (o ListJobsOptions) values() url.Values {
	q := listQuery(o.OrderBy, o.Limit, o.Offset)
	setID(q, "project_id", o.ProjectID)
	setID(q, "environment_id", o.EnvironmentID)
	if o.NameContains != "" {
		q.Set("name__icontains", o.NameContains)
	}
	return q
}

// listQuery returns the parameters every list endpoint takes: order_by
// when orderBy is set, limit (maxPage when out of 1..maxPage) and offset
// when positive.
func listQuery(orderBy string, limit, offset int) url.Values {
	q := url.Values{}
	if orderBy != "" {
		q.Set("order_by", orderBy)
	}
	if limit <= 0 || limit > maxPage {
		limit = maxPage
	}
	q.Set("limit", strconv.Itoa(limit))
	if offset > 0 {
		q.Set("offset", strconv.Itoa(offset))
	}
	return q
}

// setID sets the filter key to id when id is not zero.
func setID(q url.Values, key string, id int64) {
	if id != 0 {
		q.Set(key, strconv.FormatInt(id, 10))
	}
}

// ListJobs returns one page of the account's active jobs.
func (c *Client) ListJobs(ctx context.Context, opts ListJobsOptions) ([]Job, Pagination, error) {
	return list[Job](ctx, c, "jobs/", opts.values())
}

// Jobs iterates over every active job matching opts, page by page,
// starting at opts.Offset. It stops at the first error, which it yields.
func (c *Client) Jobs(ctx context.Context, opts ListJobsOptions) iter.Seq2[Job, error] {
	return paginate(ctx, opts, opts.Offset, c.ListJobs)
}

func (o ListJobsOptions) at(offset int) ListJobsOptions { o.Offset = offset; return o }

// list decodes one page of a list endpoint.
func list[T any](ctx context.Context, c *Client, path string, q url.Values) ([]T, Pagination, error) {
	var items []T
	page, err := c.get(ctx, path, q, &items)
	return items, page, err
}

// pageable are the options of a list endpoint: at returns them asking
// for the page that starts at offset.
type pageable[O any] interface {
	at(offset int) O
}

// paginate iterates over every item list returns for opts, page after
// page from offset, until a page is empty or the total count
// is reached; it stops at the first error, which it yields.
func paginate[T any, O pageable[O]](ctx context.Context, opts O, offset int, list func(context.Context, O) ([]T, Pagination, error)) iter.Seq2[T, error] {
	return func(yield func(T, error) bool) {
		for {
			items, p, err := list(ctx, opts.at(offset))
			if err != nil {
				var zero T
				yield(zero, err)
				return
			}
			for _, it := range items {
				if !yield(it, nil) {
					return
				}
			}
			offset += len(items)
			if len(items) == 0 || offset >= p.TotalCount {
				return
			}
		}
	}
}

// FindJob returns the active job named exactly name in the project (any
// project when projectID is zero), or nil when there is none. When several
// match, the one with the lowest id is returned.
func (c *Client) FindJob(ctx context.Context, projectID int64, name string) (*Job, error) {
	var found *Job
	for j, err := range c.Jobs(ctx, ListJobsOptions{ProjectID: projectID, NameContains: name, OrderBy: "id"}) {
		if err != nil {
			return nil, err
		}
		if j.Name == name && j.State != JobDeleted && (found == nil || j.ID < found.ID) {
			found = &j
		}
	}
	return found, nil
}

// TriggerOptions is the body of a run trigger. Cause is required (at most
// 255 characters); the rest override the job's settings for this run.
type TriggerOptions struct {
	Cause                  string   `json:"cause"`
	GitBranch              string   `json:"git_branch,omitempty"`
	GitSHA                 string   `json:"git_sha,omitempty"`
	SchemaOverride         string   `json:"schema_override,omitempty"`
	DBTVersionOverride     string   `json:"dbt_version_override,omitempty"`
	ThreadsOverride        int      `json:"threads_override,omitempty"`
	TargetNameOverride     string   `json:"target_name_override,omitempty"`
	TimeoutSecondsOverride int      `json:"timeout_seconds_override,omitempty"`
	StepsOverride          []string `json:"steps_override,omitempty"`
}

// TriggerRun starts a run of the job and returns it (queued).
//
// TriggerRun is not repeated blindly: after a failure that may have
// succeeded it looks through the job's most recent runs, again and again
// for up to ClientConfig.CommitWindow, for one whose trigger cause is
// exactly opts.Cause, and returns it as soon as it appears; only when the
// window passes without one is the trigger sent again. Give every trigger
// of a job a distinct cause to make this safe. If the look-ups fail until
// the window ends (or ctx ends first), the error is an *AmbiguousError:
// the run may exist.
func (c *Client) TriggerRun(ctx context.Context, jobID int64, opts TriggerOptions) (*Run, error) {
	r, _, err := c.triggerRun(ctx, jobID, opts)
	return r, err
}

// triggerRun is TriggerRun, also reporting what it sent.
func (c *Client) triggerRun(ctx context.Context, jobID int64, opts TriggerOptions) (*Run, sendRecord, error) {
	if strings.TrimSpace(opts.Cause) == "" {
		return nil, sendRecord{}, errors.New("dbt cloud: TriggerRun: a cause is required")
	}
	if len(opts.Cause) > 255 {
		return nil, sendRecord{}, errors.New("dbt cloud: TriggerRun: the cause is longer than 255 characters")
	}
	return create(ctx, c, fmt.Sprintf("trigger job %d", jobID),
		call{method: http.MethodPost, path: fmt.Sprintf("jobs/%d/run/", jobID), body: opts}, func(ctx context.Context) (*Run, error) {
			return c.findRun(ctx, jobID, opts.Cause)
		})
}

// findRun returns the most recent of the job's last 20 runs whose
// trigger cause is cause, or nil.
func (c *Client) findRun(ctx context.Context, jobID int64, cause string) (*Run, error) {
	runs, _, err := c.ListRuns(ctx, ListRunsOptions{JobID: jobID, OrderBy: "-id", Limit: 20, IncludeTrigger: true})
	if err != nil {
		return nil, err
	}
	for i := range runs {
		if runs[i].Trigger != nil && runs[i].Trigger.Cause == cause {
			return &runs[i], nil
		}
	}
	return nil, nil
}

// GetRun returns the run with its trigger, and with its steps when steps
// is true (include_related=["trigger","run_steps"], the list form dbt's
// documentation uses).
func (c *Client) GetRun(ctx context.Context, id int64, steps bool) (*Run, error) {
	q := url.Values{}
	if steps {
		q.Set("include_related", `["trigger","run_steps"]`)
	} else {
		q.Set("include_related", `["trigger"]`)
	}
	var r Run
	if _, err := c.get(ctx, fmt.Sprintf("runs/%d/", id), q, &r); err != nil {
		return nil, err
	}
	return &r, nil
}

// CancelRun asks dbt Cloud to cancel the run and returns it. Cancelling a
// run that has ended is harmless; the run may take a while to reach
// RunCancelled.
func (c *Client) CancelRun(ctx context.Context, id int64) (*Run, error) {
	res, err := c.do(ctx, call{method: http.MethodPost, path: fmt.Sprintf("runs/%d/cancel/", id), idempotent: true})
	if err != nil {
		return nil, err
	}
	var r Run
	if err := decodeData(res.data, &r); err != nil {
		return nil, fmt.Errorf("dbt cloud: cancel run %d: %w", id, err)
	}
	return &r, nil
}

// ListRunsOptions filters ListRuns. Zero fields do not filter.
type ListRunsOptions struct {
	JobID     int64
	ProjectID int64
	// OrderBy is "id", "created_at" or "finished_at", "-" first for
	// descending.
	OrderBy        string
	Limit, Offset  int
	IncludeTrigger bool
}

// ListRuns returns one page of runs.
func (c *Client) ListRuns(ctx context.Context, opts ListRunsOptions) ([]Run, Pagination, error) {
	return list[Run](ctx, c, "runs/", opts.values())
}

func (o ListRunsOptions) values() url.Values {
	q := listQuery(o.OrderBy, o.Limit, o.Offset)
	setID(q, "job_definition_id", o.JobID)
	setID(q, "project_id", o.ProjectID)
	if o.IncludeTrigger {
		q.Set("include_related", `["trigger"]`)
	}
	return q
}

func (o ListRunsOptions) at(offset int) ListRunsOptions { o.Offset = offset; return o }

// Runs iterates over every run matching opts, page by page, starting at
// opts.Offset. It stops at the first error, which it yields.
func (c *Client) Runs(ctx context.Context, opts ListRunsOptions) iter.Seq2[Run, error] {
	return paginate(ctx, opts, opts.Offset, c.ListRuns)
}

// LatestRun returns the job's most recent run, or nil when it has none.
func (c *Client) LatestRun(ctx context.Context, jobID int64) (*Run, error) {
	runs, _, err := c.ListRuns(ctx, ListRunsOptions{JobID: jobID, OrderBy: "-id", Limit: 1, IncludeTrigger: true})
	if err != nil || len(runs) == 0 {
		return nil, err
	}
	return &runs[0], nil
}

// ListRunArtifacts returns the paths of the artifacts a run saved.
func (c *Client) ListRunArtifacts(ctx context.Context, runID int64) ([]string, error) {
	var paths []string
	if _, err := c.get(ctx, fmt.Sprintf("runs/%d/artifacts/", runID), nil, &paths); err != nil {
		return nil, err
	}
	return paths, nil
}

// RunArtifact returns the raw content of an artifact of the run, such as
// "run_results.json" or "manifest.json", written by the given step (index
// from 1; the run's last step when step is zero). A missing artifact is an
// *APIError with status 404 (see IsNotFound).
func (c *Client) RunArtifact(ctx context.Context, runID int64, path string, step int) ([]byte, error) {
	q := url.Values{}
	if step > 0 {
		q.Set("step", strconv.Itoa(step))
	}
	return c.artifact(ctx, fmt.Sprintf("runs/%d/artifacts/%s", runID, escapePath(path)), q)
}

// JobArtifact returns the raw content of the job's latest artifact at path
// (the artifact of its most recent run that has one).
func (c *Client) JobArtifact(ctx context.Context, jobID int64, path string) ([]byte, error) {
	return c.artifact(ctx, fmt.Sprintf("jobs/%d/artifacts/%s", jobID, escapePath(path)), nil)
}

func (c *Client) artifact(ctx context.Context, path string, q url.Values) ([]byte, error) {
	res, err := c.do(ctx, call{method: http.MethodGet, path: path, query: q, idempotent: true, raw: true})
	if err != nil {
		return nil, err
	}
	return res.raw, nil
}

func escapePath(p string) string {
	parts := strings.Split(strings.TrimPrefix(p, "/"), "/")
	for i, s := range parts {
		parts[i] = url.PathEscape(s)
	}
	return strings.Join(parts, "/")
}
