package cloud

import (
	"bytes"
	"encoding/json"
	"fmt"
	"strconv"
	"strings"
	"time"
)

// Timestamp is a time as dbt Cloud writes it ("2024-05-01 12:00:00.123456+00:00"
// or RFC 3339). The zero Timestamp is JSON null.
type Timestamp struct{ time.Time }

var timestampLayouts = []string{
	time.RFC3339Nano,
	"2006-01-02 15:04:05.999999999Z07:00",
	"2006-01-02 15:04:05.999999999",
	"2006-01-02T15:04:05.999999999",
}

// UnmarshalJSON accepts null, an empty string, and the layouts above.
func (t *Timestamp) UnmarshalJSON(b []byte) error {
	if bytes.Equal(b, []byte("null")) {
		t.Time = time.Time{}
		return nil
	}
	var s string
	if err := json.Unmarshal(b, &s); err != nil {
		return fmt.Errorf("timestamp: %w", err)
	}
	if s == "" {
		t.Time = time.Time{}
		return nil
	}
	for _, l := range timestampLayouts {
		if v, err := time.Parse(l, s); err == nil {
			t.Time = v
			return nil
		}
	}
	return fmt.Errorf("timestamp: unrecognised time %q", s)
}

// MarshalJSON writes RFC 3339, or null for the zero time.
func (t Timestamp) MarshalJSON() ([]byte, error) {
	if t.IsZero() {
		return []byte("null"), nil
	}
	return json.Marshal(t.Format(time.RFC3339Nano))
}

// JobSettings are a job's dbt settings.
type JobSettings struct {
	Threads    int    `json:"threads"`
	TargetName string `json:"target_name"`
}

// JobExecution holds a job's execution limits; zero means no timeout.
type JobExecution struct {
	TimeoutSeconds int `json:"timeout_seconds"`
}

// JobTriggers says what starts a job besides the API. dbtorch's temporary
// jobs have all of them off.
type JobTriggers struct {
	GithubWebhook      bool `json:"github_webhook"`
	Schedule           bool `json:"schedule"`
	GitProviderWebhook bool `json:"git_provider_webhook"`
	OnMerge            bool `json:"on_merge"`
}

// Job states.
const (
	JobActive  = 1
	JobDeleted = 2
)

// Job is a dbt Cloud job definition. The zero values of the boolean fields
// are what dbtorch's temporary jobs want, and every field the API requires
// is always sent.
type Job struct {
	ID            int64  `json:"id,omitempty"`
	AccountID     int64  `json:"account_id"`
	ProjectID     int64  `json:"project_id"`
	EnvironmentID int64  `json:"environment_id"`
	Name          string `json:"name"`
	// Description is at most 255 characters.
	Description string `json:"description,omitempty"`
	// DBTVersion overrides the environment's dbt version when set.
	DBTVersion   string   `json:"dbt_version,omitempty"`
	ExecuteSteps []string `json:"execute_steps"`
	// JobType is "other" when empty.
	JobType string `json:"job_type"`
	// State is JobActive (the default) or JobDeleted.
	State               int          `json:"state"`
	Settings            JobSettings  `json:"settings"`
	Execution           JobExecution `json:"execution"`
	Triggers            JobTriggers  `json:"triggers"`
	GenerateDocs        bool         `json:"generate_docs"`
	RunGenerateSources  bool         `json:"run_generate_sources"`
	RunLint             bool         `json:"run_lint"`
	ErrorsOnLintFailure bool         `json:"errors_on_lint_failure"`
	RunCompareChanges   bool         `json:"run_compare_changes"`
	LifecycleWebhooks   bool         `json:"lifecycle_webhooks"`
	// CreatedAt and UpdatedAt are set by the server.
	CreatedAt Timestamp `json:"created_at,omitzero"`
	UpdatedAt Timestamp `json:"updated_at,omitzero"`
}

// RunStatus is the status of a run.
type RunStatus int

// Run statuses. Success, Error and Cancelled are terminal.
const (
	RunQueued    RunStatus = 1
	RunStarting  RunStatus = 2
	RunRunning   RunStatus = 3
	RunSuccess   RunStatus = 10
	RunError     RunStatus = 20
	RunCancelled RunStatus = 30
)

// Terminal reports whether a run with this status has ended.
func (s RunStatus) Terminal() bool {
	return s == RunSuccess || s == RunError || s == RunCancelled
}

// String returns the status in lower case ("queued", ..., "cancelled").
func (s RunStatus) String() string {
	switch s {
	case RunQueued:
		return "queued"
	case RunStarting:
		return "starting"
	case RunRunning:
		return "running"
	case RunSuccess:
		return "success"
	case RunError:
		return "error"
	case RunCancelled:
		return "cancelled"
	}
	return "status(" + strconv.Itoa(int(s)) + ")"
}

// RunTrigger is what started a run.
type RunTrigger struct {
	ID              int64    `json:"id,omitempty"`
	Cause           string   `json:"cause"`
	JobDefinitionID int64    `json:"job_definition_id,omitempty"`
	StepsOverride   []string `json:"steps_override,omitempty"`
}

// RunStep is one step of a run ("Clone git repository", "Invoke dbt
// deps", "Invoke dbt run --select ..."). Index counts from 1 and is the
// step number of the artifact endpoints.
type RunStep struct {
	ID         int64     `json:"id,omitempty"`
	RunID      int64     `json:"run_id"`
	Index      int       `json:"index"`
	Status     RunStatus `json:"status"`
	Name       string    `json:"name"`
	Logs       string    `json:"logs,omitempty"`
	StartedAt  Timestamp `json:"started_at,omitzero"`
	FinishedAt Timestamp `json:"finished_at,omitzero"`
}

// Run is one execution of a job.
type Run struct {
	ID              int64     `json:"id"`
	TriggerID       int64     `json:"trigger_id,omitempty"`
	AccountID       int64     `json:"account_id"`
	ProjectID       int64     `json:"project_id,omitempty"`
	EnvironmentID   int64     `json:"environment_id,omitempty"`
	JobDefinitionID int64     `json:"job_definition_id"`
	Status          RunStatus `json:"status"`
	StatusMessage   string    `json:"status_message,omitempty"`
	StatusHumanized string    `json:"status_humanized,omitempty"`
	DBTVersion      string    `json:"dbt_version,omitempty"`
	GitBranch       string    `json:"git_branch,omitempty"`
	GitSHA          string    `json:"git_sha,omitempty"`
	Href            string    `json:"href,omitempty"`
	ArtifactsSaved  bool      `json:"artifacts_saved"`
	InProgress      bool      `json:"in_progress"`
	IsComplete      bool      `json:"is_complete"`
	IsSuccess       bool      `json:"is_success"`
	IsError         bool      `json:"is_error"`
	IsCancelled     bool      `json:"is_cancelled"`
	CreatedAt       Timestamp `json:"created_at,omitzero"`
	UpdatedAt       Timestamp `json:"updated_at,omitzero"`
	StartedAt       Timestamp `json:"started_at,omitzero"`
	FinishedAt      Timestamp `json:"finished_at,omitzero"`
	// Trigger is set when the request included it (always for GetRun and
	// TriggerRun).
	Trigger *RunTrigger `json:"trigger,omitempty"`
	// RunSteps is set when the request included them.
	RunSteps []RunStep `json:"run_steps,omitempty"`
}

// StepFor returns the step that ran the dbt command cmd (a step's name
// contains the command), or nil.
func (r *Run) StepFor(cmd string) *RunStep {
	cmd = strings.TrimSpace(cmd)
	for i := len(r.RunSteps) - 1; i >= 0; i-- {
		if strings.Contains(r.RunSteps[i].Name, cmd) {
			return &r.RunSteps[i]
		}
	}
	return nil
}

// Environment is a dbt Cloud environment. Temporary jobs need one of Type
// "deployment".
type Environment struct {
	ID        int64  `json:"id"`
	AccountID int64  `json:"account_id"`
	ProjectID int64  `json:"project_id"`
	Name      string `json:"name"`
	// Type is "deployment" or "development"; DeploymentType "production",
	// "staging" or empty.
	Type           string `json:"type"`
	DeploymentType string `json:"deployment_type,omitempty"`
	DBTVersion     string `json:"dbt_version,omitempty"`
	State          int    `json:"state"`
}
