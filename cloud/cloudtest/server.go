// Package cloudtest is a fake dbt Cloud Administrative API v2 server for
// tests, built on net/http/httptest.
//
// It behaves as the API does where dbtorch depends on it: the
// {"status","data","extra"} envelope; every path but an artifact's ends in
// "/" (others are redirected with 301, as Django's APPEND_SLASH does);
// job bodies missing a required key and triggers without a cause are
// rejected with 400; runs move through 1 queued → 2 starting → 3 running →
// 10 success, 20 error or 30 cancelled with time; each dbt step of a run has
// its own artifacts (run_results.json built from a scripted outcome per
// node, manifest.json when the server was given one); cancelling, deleting
// (soft: state 2) and pagination work. No dbt is needed.
//
// Faults are injected on demand with Inject: error statuses (429 with
// Retry-After, 500, HTML error pages), dropped connections, slow
// responses, and requests that take effect but whose response is lost.
//
// A Server is safe for concurrent use.
package cloudtest

import (
	"bufio"
	"bytes"
	"encoding/json"
	"fmt"
	"net/http"
	"net/http/httptest"
	"regexp"
	"slices"
	"sort"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/dbtorch/dbtorch/manifest"
)

// Route names one endpoint of the API, for Fault and Calls.
type Route string

// The endpoints the server implements.
const (
	AnyRoute      Route = ""
	CreateJob     Route = "create_job"
	ListJobs      Route = "list_jobs"
	GetJob        Route = "get_job"
	DeleteJob     Route = "delete_job"
	TriggerRun    Route = "trigger_run"
	ListRuns      Route = "list_runs"
	GetRun        Route = "get_run"
	CancelRun     Route = "cancel_run"
	ListArtifacts Route = "list_artifacts"
	RunArtifact   Route = "run_artifact"
	JobArtifact   Route = "job_artifact"
)

// NodeOutcome scripts what happens to one node when a run executes it.
type NodeOutcome struct {
	// Status is dbt's status word for the node: "success", "error",
	// "skipped" for models, seeds and snapshots; "pass", "fail", "warn",
	// "error" for tests. Empty means success (pass for tests).
	Status string
	// Message is the node's message; a sensible default when empty.
	Message string
	// Failures is a test's failure count.
	Failures int64
	// RowsAffected goes into adapter_response.
	RowsAffected int64
	// Missing leaves the node out of run_results.json.
	Missing bool
	// Crash makes the step die: the run errors and the step writes no
	// run_results.json at all.
	Crash bool
	// Hang keeps the run running until it is cancelled.
	Hang bool
	// Duration is added to the run's running time.
	Duration time.Duration
}

// Options configures a Server. Zero fields take the defaults given.
type Options struct {
	// AccountID, ProjectID and EnvironmentID are the only ones that exist
	// (1, 10, 20).
	AccountID     int64
	ProjectID     int64
	EnvironmentID int64
	// Token is the only token accepted ("fake-dbt-cloud-token").
	Token string
	// Manifest is served as each dbt step's manifest.json and resolves
	// the selectors of dbt commands to nodes: fqn:a.b.c, a unique_id,
	// path:<original_file_path>, or a bare name.
	Manifest []byte
	// Outcome scripts each node's result; attempt counts the runs of that
	// node on this server, from 1. Nil: everything succeeds.
	Outcome func(uniqueID string, attempt int) NodeOutcome
	// QueueTime, StartTime and RunTime are how long a run stays queued,
	// starting and running (5ms, 5ms, 20ms). CancelTime is how long a
	// cancelled run takes to reach status 30 (0).
	QueueTime  time.Duration
	StartTime  time.Duration
	RunTime    time.Duration
	CancelTime time.Duration
	// PageSize caps list pages below the API's 100, to exercise
	// pagination.
	PageSize int
}

// Fault is an injected failure. It applies to the next Times requests (1
// when zero) to Route (any when empty); faults are consumed in the order
// they were injected.
type Fault struct {
	Route Route
	// Status answers with this HTTP status without doing anything; Body
	// (an envelope naming the status when empty), ContentType and
	// RetryAfter (a Retry-After header) shape the answer.
	Status      int
	Body        string
	ContentType string
	RetryAfter  string
	// Drop closes the connection without doing anything or answering.
	Drop bool
	// LoseResponse does what was asked, then closes the connection
	// without answering.
	LoseResponse bool
	// Delay does what was asked, then waits this long (or until the client
	// goes away) before answering.
	Delay time.Duration
	Times int
}

// JobInfo is what the server holds about a job.
type JobInfo struct {
	ID           int64
	Name         string
	Description  string
	ExecuteSteps []string
	Deleted      bool
	// Body is the request body that created the job.
	Body map[string]any
}

// RunInfo is what the server holds about a run.
type RunInfo struct {
	ID     int64
	JobID  int64
	Cause  string
	Steps  []string
	Status int
	// Cancelled reports whether a cancel was requested.
	Cancelled bool
}

type fakeJob struct {
	JobInfo
	created time.Time
}

type stepResult struct {
	artifacts map[string][]byte
	failed    bool
}

type fakeRun struct {
	id, jobID int64
	cause     string
	trigger   map[string]any
	steps     []string // dbt commands
	created   time.Time
	runFor    time.Duration
	hang      bool
	failed    bool
	cancelAt  time.Time
	results   []stepResult // per dbt step
	logs      []string
}

// Server is a fake dbt Cloud. Its URL is the host to give cloud.Client.
type Server struct {
	// URL is the server's base URL ("http://127.0.0.1:port").
	URL string

	opts  Options
	srv   *httptest.Server
	nodes *manifest.Manifest

	mu        sync.Mutex
	nextID    int64
	jobs      map[int64]*fakeJob
	runs      map[int64]*fakeRun
	faults    []*Fault
	calls     map[Route]int
	redirects int
	attempts  map[string]int
	created   int
}

// NewServer starts a fake dbt Cloud server. Close it when done. It returns
// an error when opts.Manifest does not parse.
func NewServer(opts Options) (*Server, error) {
	if opts.AccountID == 0 {
		opts.AccountID = 1
	}
	if opts.ProjectID == 0 {
		opts.ProjectID = 10
	}
	if opts.EnvironmentID == 0 {
		opts.EnvironmentID = 20
	}
	if opts.Token == "" {
		opts.Token = "fake-dbt-cloud-token"
	}
	if opts.QueueTime == 0 {
		opts.QueueTime = 5 * time.Millisecond
	}
	if opts.StartTime == 0 {
		opts.StartTime = 5 * time.Millisecond
	}
	if opts.RunTime == 0 {
		opts.RunTime = 20 * time.Millisecond
	}
	if opts.PageSize <= 0 || opts.PageSize > 100 {
		opts.PageSize = 100
	}
	s := &Server{
		opts:     opts,
		nextID:   1000,
		jobs:     map[int64]*fakeJob{},
		runs:     map[int64]*fakeRun{},
		calls:    map[Route]int{},
		attempts: map[string]int{},
	}
	if len(opts.Manifest) > 0 {
		m, err := manifest.Parse(opts.Manifest)
		if err != nil {
			return nil, fmt.Errorf("cloudtest: %w", err)
		}
		s.nodes = m
	}
	s.srv = httptest.NewServer(http.HandlerFunc(s.serve))
	s.URL = s.srv.URL
	return s, nil
}

// Close shuts the server down.
func (s *Server) Close() { s.srv.Close() }

// Token returns the token the server accepts.
func (s *Server) Token() string { return s.opts.Token }

// AccountID, ProjectID and EnvironmentID return the ids that exist.
func (s *Server) AccountID() int64     { return s.opts.AccountID }
func (s *Server) ProjectID() int64     { return s.opts.ProjectID }
func (s *Server) EnvironmentID() int64 { return s.opts.EnvironmentID }

// Inject queues a fault.
func (s *Server) Inject(f Fault) {
	if f.Times <= 0 {
		f.Times = 1
	}
	s.mu.Lock()
	s.faults = append(s.faults, &f)
	s.mu.Unlock()
}

// PendingFaults returns how many injected faults have not fired yet.
func (s *Server) PendingFaults() int {
	s.mu.Lock()
	defer s.mu.Unlock()
	n := 0
	for _, f := range s.faults {
		n += f.Times
	}
	return n
}

// Jobs returns the jobs that are not deleted, by id.
func (s *Server) Jobs() []JobInfo {
	s.mu.Lock()
	defer s.mu.Unlock()
	var out []JobInfo
	for _, j := range s.jobs {
		if !j.Deleted {
			out = append(out, j.JobInfo)
		}
	}
	sort.Slice(out, func(a, b int) bool { return out[a].ID < out[b].ID })
	return out
}

// JobsCreated returns how many jobs were ever created.
func (s *Server) JobsCreated() int {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.created
}

// Runs returns every run, by id, with its current status.
func (s *Server) Runs() []RunInfo {
	s.mu.Lock()
	defer s.mu.Unlock()
	now := time.Now()
	var out []RunInfo
	for _, r := range s.runs {
		out = append(out, RunInfo{ID: r.id, JobID: r.jobID, Cause: r.cause, Steps: slices.Clone(r.steps),
			Status: r.status(now, s.opts), Cancelled: !r.cancelAt.IsZero()})
	}
	sort.Slice(out, func(a, b int) bool { return out[a].ID < out[b].ID })
	return out
}

// ActiveRuns returns how many runs have not ended.
func (s *Server) ActiveRuns() int {
	n := 0
	for _, r := range s.Runs() {
		if r.Status < 10 {
			n++
		}
	}
	return n
}

// Calls returns how many requests reached the route (faulted ones
// included).
func (s *Server) Calls(r Route) int {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.calls[r]
}

// Redirects returns how many requests were redirected for lacking a
// trailing slash.
func (s *Server) Redirects() int {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.redirects
}

// Attempts returns how many times runs executed the node.
func (s *Server) Attempts(uniqueID string) int {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.attempts[uniqueID]
}

// status computes a run's status at now.
func (r *fakeRun) status(now time.Time, o Options) int {
	el := now.Sub(r.created)
	end := o.QueueTime + o.StartTime + o.RunTime + r.runFor
	if !r.cancelAt.IsZero() && (r.hang || r.cancelAt.Sub(r.created) < end) {
		if now.Sub(r.cancelAt) >= o.CancelTime {
			return 30
		}
	}
	switch {
	case el < o.QueueTime:
		return 1
	case el < o.QueueTime+o.StartTime:
		return 2
	case el < end || r.hang:
		return 3
	case r.failed:
		return 20
	}
	return 10
}

var (
	reAccount = regexp.MustCompile(`^/api/v2/accounts/(\d+)/(.*)$`)
	reJob     = regexp.MustCompile(`^jobs/(\d+)/$`)
	reTrigger = regexp.MustCompile(`^jobs/(\d+)/run/$`)
	reRun     = regexp.MustCompile(`^runs/(\d+)/$`)
	reCancel  = regexp.MustCompile(`^runs/(\d+)/cancel/$`)
	reRunArts = regexp.MustCompile(`^runs/(\d+)/artifacts/$`)
	reRunArt  = regexp.MustCompile(`^runs/(\d+)/artifacts/(.+)$`)
	reJobArt  = regexp.MustCompile(`^jobs/(\d+)/artifacts/(.+)$`)
)

func (s *Server) serve(w http.ResponseWriter, r *http.Request) {
	m := reAccount.FindStringSubmatch(r.URL.Path)
	if m == nil {
		writeHTML(w, http.StatusNotFound, "Not Found", "The requested resource was not found on this server.")
		return
	}
	rest := m[2]
	route, ids, artifact := s.route(r.Method, rest)
	if route == AnyRoute && !strings.HasSuffix(rest, "/") && !artifact {
		s.mu.Lock()
		s.redirects++
		s.mu.Unlock()
		u := *r.URL
		u.Path += "/"
		http.Redirect(w, r, u.String(), http.StatusMovedPermanently)
		return
	}
	s.mu.Lock()
	s.calls[route]++
	fault := s.takeFault(route)
	s.mu.Unlock()

	if !s.authorized(r) {
		writeJSON(w, http.StatusUnauthorized, map[string]any{"detail": "Invalid token."})
		return
	}
	if acct, _ := strconv.ParseInt(m[1], 10, 64); acct != s.opts.AccountID {
		writeEnvelope(w, http.StatusForbidden, nil, nil, "You do not have permission to access this account.")
		return
	}
	if fault != nil && (fault.Status != 0 || fault.Drop) {
		if fault.Drop {
			hijackClose(w)
			return
		}
		if fault.RetryAfter != "" {
			w.Header().Set("Retry-After", fault.RetryAfter)
		}
		if fault.Body == "" {
			writeEnvelope(w, fault.Status, nil, nil, http.StatusText(fault.Status))
			return
		}
		ct := fault.ContentType
		if ct == "" {
			ct = "text/html; charset=utf-8"
		}
		w.Header().Set("Content-Type", ct)
		w.WriteHeader(fault.Status)
		_, _ = w.Write([]byte(fault.Body))
		return
	}

	rec := httptest.NewRecorder()
	s.handle(rec, r, route, ids)

	if fault != nil && fault.LoseResponse {
		hijackClose(w)
		return
	}
	if fault != nil && fault.Delay > 0 {
		t := time.NewTimer(fault.Delay)
		select {
		case <-t.C:
		case <-r.Context().Done():
			t.Stop()
			return
		}
	}
	for k, v := range rec.Header() {
		w.Header()[k] = v
	}
	w.WriteHeader(rec.Code)
	_, _ = w.Write(rec.Body.Bytes())
}

func (s *Server) takeFault(route Route) *Fault {
	for i, f := range s.faults {
		if f.Route == AnyRoute || f.Route == route {
			f.Times--
			if f.Times <= 0 {
				s.faults = slices.Delete(s.faults, i, i+1)
			}
			return f
		}
	}
	return nil
}

func (s *Server) authorized(r *http.Request) bool {
	h := r.Header.Get("Authorization")
	for _, p := range []string{"Token ", "Bearer "} {
		if strings.HasPrefix(h, p) && strings.TrimPrefix(h, p) == s.opts.Token {
			return true
		}
	}
	return false
}

func hijackClose(w http.ResponseWriter) {
	hj, ok := w.(http.Hijacker)
	if !ok {
		panic("cloudtest: response writer cannot be hijacked")
	}
	conn, _, err := hj.Hijack()
	if err == nil {
		_ = conn.Close()
	}
}

// route classifies a request; ids are the numbers in the path; artifact
// reports an artifact path (which has no trailing slash).
func (s *Server) route(method, rest string) (Route, []int64, bool) {
	num := func(m []string) []int64 {
		var out []int64
		for _, x := range m[1:] {
			if n, err := strconv.ParseInt(x, 10, 64); err == nil {
				out = append(out, n)
			}
		}
		return out
	}
	switch {
	case rest == "jobs/" && method == http.MethodPost:
		return CreateJob, nil, false
	case rest == "jobs/" && method == http.MethodGet:
		return ListJobs, nil, false
	case rest == "runs/" && method == http.MethodGet:
		return ListRuns, nil, false
	}
	if m := reTrigger.FindStringSubmatch(rest); m != nil && method == http.MethodPost {
		return TriggerRun, num(m), false
	}
	if m := reJob.FindStringSubmatch(rest); m != nil {
		switch method {
		case http.MethodGet:
			return GetJob, num(m), false
		case http.MethodDelete:
			return DeleteJob, num(m), false
		}
	}
	if m := reCancel.FindStringSubmatch(rest); m != nil && method == http.MethodPost {
		return CancelRun, num(m), false
	}
	if m := reRun.FindStringSubmatch(rest); m != nil && method == http.MethodGet {
		return GetRun, num(m), false
	}
	if m := reRunArts.FindStringSubmatch(rest); m != nil && method == http.MethodGet {
		return ListArtifacts, num(m), false
	}
	if m := reRunArt.FindStringSubmatch(rest); m != nil && method == http.MethodGet {
		return RunArtifact, num(m[:2]), true
	}
	if m := reJobArt.FindStringSubmatch(rest); m != nil && method == http.MethodGet {
		return JobArtifact, num(m[:2]), true
	}
	return AnyRoute, nil, reRunArt.MatchString(rest) || reJobArt.MatchString(rest)
}

func (s *Server) handle(w http.ResponseWriter, r *http.Request, route Route, ids []int64) {
	switch route {
	case CreateJob:
		s.createJob(w, r)
	case ListJobs:
		s.listJobs(w, r)
	case GetJob:
		s.getJob(w, ids[0])
	case DeleteJob:
		s.deleteJob(w, ids[0])
	case TriggerRun:
		s.trigger(w, r, ids[0])
	case ListRuns:
		s.listRuns(w, r)
	case GetRun:
		s.getRun(w, r, ids[0])
	case CancelRun:
		s.cancel(w, ids[0])
	case ListArtifacts:
		s.listArtifacts(w, ids[0])
	case RunArtifact:
		s.runArtifact(w, r, ids[0])
	case JobArtifact:
		s.jobArtifact(w, r, ids[0])
	default:
		if strings.HasSuffix(r.URL.Path, "/") {
			writeEnvelope(w, http.StatusMethodNotAllowed, nil, nil, fmt.Sprintf("Method %q not allowed.", r.Method))
			return
		}
		writeHTML(w, http.StatusNotFound, "Not Found", "The requested resource was not found on this server.")
	}
}

// ---- responses ----

func writeJSON(w http.ResponseWriter, code int, v any) {
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(code)
	_ = json.NewEncoder(w).Encode(v)
}

func writeEnvelope(w http.ResponseWriter, code int, data any, extra map[string]any, msg string) {
	ok := code < 400
	if msg == "" {
		msg = "Success!"
	}
	body := map[string]any{
		"status": map[string]any{"code": code, "is_success": ok, "user_message": msg, "developer_message": ""},
		"data":   data,
	}
	if extra != nil {
		body["extra"] = extra
	}
	writeJSON(w, code, body)
}

func writeHTML(w http.ResponseWriter, code int, title, text string) {
	w.Header().Set("Content-Type", "text/html; charset=utf-8")
	w.WriteHeader(code)
	fmt.Fprintf(w, "<!doctype html><html><head><title>%s</title></head><body><h1>%s</h1><p>%s</p></body></html>", title, title, text)
}

func badRequest(w http.ResponseWriter, fields map[string]string) {
	fe := map[string]any{}
	for k, v := range fields {
		fe[k] = []map[string]string{{"message": v, "code": "invalid"}}
	}
	writeJSON(w, http.StatusBadRequest, map[string]any{
		"status": map[string]any{"code": 400, "is_success": false,
			"user_message":      "The request was invalid. Please double check the provided data and try again.",
			"developer_message": ""},
		"data": map[string]any{"_diagnostic": "Invalid request parameters", "field_errors": fe},
	})
}

func notFound(w http.ResponseWriter, what string) {
	writeEnvelope(w, http.StatusNotFound, nil, nil, what+" not found.")
}

func ts(t time.Time) any {
	if t.IsZero() {
		return nil
	}
	return t.UTC().Format("2006-01-02 15:04:05.000000+00:00")
}

// ---- jobs ----

var requiredJobKeys = []string{"account_id", "environment_id", "errors_on_lint_failure", "execution",
	"generate_docs", "lifecycle_webhooks", "name", "project_id", "run_compare_changes",
	"run_generate_sources", "run_lint", "settings", "state", "triggers"}

func (s *Server) createJob(w http.ResponseWriter, r *http.Request) {
	var body map[string]any
	if err := json.NewDecoder(r.Body).Decode(&body); err != nil {
		writeEnvelope(w, http.StatusBadRequest, nil, nil, "JSON parse error - "+err.Error())
		return
	}
	bad := map[string]string{}
	for _, k := range requiredJobKeys {
		if _, ok := body[k]; !ok {
			bad[k] = "This field is required."
		}
	}
	sub := func(key string, keys ...string) {
		m, ok := body[key].(map[string]any)
		if _, present := body[key]; present && !ok {
			bad[key] = "Expected an object."
			return
		}
		for _, k := range keys {
			if _, ok := m[k]; m != nil && !ok {
				bad[key+"."+k] = "This field is required."
			}
		}
	}
	sub("settings", "threads", "target_name")
	sub("execution", "timeout_seconds")
	sub("triggers", "github_webhook", "schedule")
	name, _ := body["name"].(string)
	if _, ok := body["name"]; ok && (name == "" || len(name) > 255) {
		bad["name"] = "Ensure this field has between 1 and 255 characters."
	}
	if d, ok := body["description"].(string); ok && len(d) > 255 {
		bad["description"] = "Ensure this field has no more than 255 characters."
	}
	num := func(k string) int64 { f, _ := body[k].(float64); return int64(f) }
	if _, ok := body["account_id"]; ok && num("account_id") != s.opts.AccountID {
		bad["account_id"] = "Invalid account."
	}
	if _, ok := body["project_id"]; ok && num("project_id") != s.opts.ProjectID {
		bad["project_id"] = "Invalid pk - object does not exist."
	}
	if _, ok := body["environment_id"]; ok && num("environment_id") != s.opts.EnvironmentID {
		bad["environment_id"] = "Invalid pk - object does not exist."
	}
	var steps []string
	if raw, ok := body["execute_steps"].([]any); ok {
		for _, x := range raw {
			st, _ := x.(string)
			if !strings.HasPrefix(strings.TrimSpace(st), "dbt ") {
				bad["execute_steps"] = "Each step must be a dbt command."
			}
			steps = append(steps, st)
		}
	}
	if len(bad) > 0 {
		badRequest(w, bad)
		return
	}
	desc, _ := body["description"].(string)
	s.mu.Lock()
	s.nextID++
	j := &fakeJob{JobInfo: JobInfo{ID: s.nextID, Name: name, Description: desc, ExecuteSteps: steps, Body: body}, created: time.Now()}
	s.jobs[j.ID] = j
	s.created++
	out := s.jobJSON(j)
	s.mu.Unlock()
	writeEnvelope(w, http.StatusCreated, out, nil, "")
}

func (s *Server) jobJSON(j *fakeJob) map[string]any {
	out := map[string]any{}
	for k, v := range j.Body {
		out[k] = v
	}
	state := 1
	if j.Deleted {
		state = 2
	}
	out["id"] = j.ID
	out["state"] = state
	out["created_at"] = ts(j.created)
	out["updated_at"] = ts(j.created)
	return out
}

func (s *Server) listJobs(w http.ResponseWriter, r *http.Request) {
	q := r.URL.Query()
	limit, offset, ok := s.page(w, q)
	if !ok {
		return
	}
	s.mu.Lock()
	var sel []*fakeJob
	for _, j := range s.jobs {
		if j.Deleted && q.Get("state") != "all" && q.Get("state") != "deleted" && q.Get("state") != "2" {
			continue
		}
		if v := q.Get("project_id"); v != "" && v != strconv.FormatInt(s.opts.ProjectID, 10) {
			continue
		}
		if v := q.Get("environment_id"); v != "" && v != strconv.FormatInt(s.opts.EnvironmentID, 10) {
			continue
		}
		if v := q.Get("name__icontains"); v != "" && !strings.Contains(strings.ToLower(j.Name), strings.ToLower(v)) {
			continue
		}
		sel = append(sel, j)
	}
	desc := strings.HasPrefix(q.Get("order_by"), "-")
	sort.Slice(sel, func(a, b int) bool {
		if desc {
			return sel[a].ID > sel[b].ID
		}
		return sel[a].ID < sel[b].ID
	})
	total := len(sel)
	sel = window(sel, offset, limit)
	data := make([]any, 0, len(sel))
	for _, j := range sel {
		data = append(data, s.jobJSON(j))
	}
	s.mu.Unlock()
	writeEnvelope(w, http.StatusOK, data, extra(q, len(data), total), "")
}

func (s *Server) page(w http.ResponseWriter, q map[string][]string) (limit, offset int, ok bool) {
	get := func(k string) string {
		if v := q[k]; len(v) > 0 {
			return v[0]
		}
		return ""
	}
	limit, offset = 100, 0
	if v := get("limit"); v != "" {
		n, err := strconv.Atoi(v)
		if err != nil || n < 1 || n > 100 {
			badRequest(w, map[string]string{"limit": "Ensure this value is between 1 and 100."})
			return 0, 0, false
		}
		limit = n
	}
	if v := get("offset"); v != "" {
		n, err := strconv.Atoi(v)
		if err != nil || n < 0 {
			badRequest(w, map[string]string{"offset": "A valid integer is required."})
			return 0, 0, false
		}
		offset = n
	}
	return min(limit, s.opts.PageSize), offset, true
}

func window[T any](s []T, offset, limit int) []T {
	if offset >= len(s) {
		return nil
	}
	return s[offset:min(len(s), offset+limit)]
}

func extra(q map[string][]string, count, total int) map[string]any {
	filters := map[string]any{}
	for k, v := range q {
		if k != "limit" && k != "offset" && k != "order_by" && len(v) > 0 {
			filters[k] = v[0]
		}
	}
	order := "id"
	if v := q["order_by"]; len(v) > 0 {
		order = v[0]
	}
	return map[string]any{"filters": filters, "order_by": order,
		"pagination": map[string]any{"count": count, "total_count": total}}
}

func (s *Server) getJob(w http.ResponseWriter, id int64) {
	s.mu.Lock()
	j := s.jobs[id]
	if j == nil || j.Deleted {
		s.mu.Unlock()
		notFound(w, "Job")
		return
	}
	out := s.jobJSON(j)
	s.mu.Unlock()
	writeEnvelope(w, http.StatusOK, out, nil, "")
}

func (s *Server) deleteJob(w http.ResponseWriter, id int64) {
	s.mu.Lock()
	j := s.jobs[id]
	if j == nil || j.Deleted {
		s.mu.Unlock()
		notFound(w, "Job")
		return
	}
	j.Deleted = true
	out := s.jobJSON(j)
	s.mu.Unlock()
	writeEnvelope(w, http.StatusOK, out, nil, "")
}

// ---- runs ----

func (s *Server) trigger(w http.ResponseWriter, r *http.Request, jobID int64) {
	var body map[string]any
	if err := json.NewDecoder(r.Body).Decode(&body); err != nil {
		writeEnvelope(w, http.StatusBadRequest, nil, nil, "JSON parse error - "+err.Error())
		return
	}
	cause, _ := body["cause"].(string)
	if strings.TrimSpace(cause) == "" {
		badRequest(w, map[string]string{"cause": "This field is required."})
		return
	}
	if len(cause) > 255 {
		badRequest(w, map[string]string{"cause": "Ensure this field has no more than 255 characters."})
		return
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	j := s.jobs[jobID]
	if j == nil || j.Deleted {
		notFound(w, "Job")
		return
	}
	steps := j.ExecuteSteps
	if raw, ok := body["steps_override"].([]any); ok && len(raw) > 0 {
		steps = nil
		for _, x := range raw {
			st, _ := x.(string)
			steps = append(steps, st)
		}
	}
	s.nextID++
	run := &fakeRun{id: s.nextID, jobID: jobID, cause: cause, trigger: body, steps: steps, created: time.Now()}
	s.execute(run)
	s.runs[run.id] = run
	writeEnvelope(w, http.StatusOK, s.runJSON(run, time.Now(), true, false), nil, "")
}

// execute decides, at trigger time, what each dbt step of the run does.
// Called with s.mu held.
func (s *Server) execute(run *fakeRun) {
	for _, step := range run.steps {
		if run.failed {
			run.results = append(run.results, stepResult{failed: true})
			continue
		}
		res, dur, hang := s.executeStep(run, step)
		run.runFor += dur
		run.hang = run.hang || hang
		run.failed = res.failed
		run.results = append(run.results, res)
	}
}

var nodeCommands = map[string]bool{"run": true, "seed": true, "snapshot": true, "test": true, "build": true}

func (s *Server) executeStep(run *fakeRun, step string) (stepResult, time.Duration, bool) {
	args := shellSplit(step)
	res := stepResult{artifacts: map[string][]byte{}}
	if len(args) < 2 || args[0] != "dbt" {
		res.failed = true
		run.logs = append(run.logs, "not a dbt command: "+step)
		return res, 0, false
	}
	cmd := args[1]
	if len(s.opts.Manifest) > 0 {
		res.artifacts["manifest.json"] = s.opts.Manifest
	}
	if !nodeCommands[cmd] {
		return res, 0, false
	}
	var selectors []string
	for i := 2; i < len(args); i++ {
		if args[i] == "--select" || args[i] == "-s" || args[i] == "--models" || args[i] == "-m" {
			for i+1 < len(args) && !strings.HasPrefix(args[i+1], "-") {
				i++
				selectors = append(selectors, args[i])
			}
		}
	}
	ids := s.resolve(selectors)
	outcomes := map[string]NodeOutcome{}
	status := map[string]string{}
	var dur time.Duration
	hang := false
	// Process in dependency order within the invocation: a node whose
	// upstream in this invocation failed or was skipped is skipped, as dbt
	// does.
	pending := slices.Clone(ids)
	for len(pending) > 0 {
		progressed := false
		for i := 0; i < len(pending); i++ {
			id := pending[i]
			ready, skip := true, false
			for _, up := range s.upstream(id) {
				if !slices.Contains(ids, up) {
					continue
				}
				st, done := status[up]
				if !done {
					ready = false
					break
				}
				if st == "error" || st == "fail" || st == "skipped" {
					skip = true
				}
			}
			if !ready {
				continue
			}
			pending = slices.Delete(pending, i, i+1)
			i--
			progressed = true
			if skip {
				status[id] = "skipped"
				outcomes[id] = NodeOutcome{Status: "skipped", Message: "SKIP"}
				continue
			}
			s.attempts[id]++
			var o NodeOutcome
			if s.opts.Outcome != nil {
				o = s.opts.Outcome(id, s.attempts[id])
			}
			if o.Status == "" {
				o.Status = "success"
				if s.isTest(id) {
					o.Status = "pass"
				}
			}
			dur += o.Duration
			hang = hang || o.Hang
			if o.Crash {
				res.failed = true
				delete(res.artifacts, "run_results.json")
				run.logs = append(run.logs, "dbt exited unexpectedly while running "+id)
				return res, dur, hang
			}
			status[id] = o.Status
			outcomes[id] = o
		}
		if !progressed { // a cycle: should not happen
			break
		}
	}
	var results []any
	now := time.Now().UTC()
	failed := false
	for _, id := range ids {
		o := outcomes[id]
		if o.Missing {
			continue
		}
		if o.Status == "error" || o.Status == "fail" {
			failed = true
		}
		results = append(results, runResult(id, o, now, s.isTest(id)))
	}
	rr := map[string]any{
		"metadata": map[string]any{
			"dbt_schema_version": "https://schemas.getdbt.com/dbt/run-results/v6.json",
			"dbt_version":        "1.11.16",
			"generated_at":       now.Format(time.RFC3339Nano),
			"invocation_id":      fmt.Sprintf("00000000-0000-4000-8000-%012d", run.id),
			"env":                map[string]any{},
		},
		"results":      orEmpty(results),
		"elapsed_time": 0.5,
		"args":         map[string]any{"which": cmd, "select": selectors},
	}
	b, _ := json.Marshal(rr)
	res.artifacts["run_results.json"] = b
	res.failed = failed
	return res, dur, hang
}

func orEmpty(s []any) []any {
	if s == nil {
		return []any{}
	}
	return s
}

func runResult(id string, o NodeOutcome, now time.Time, test bool) map[string]any {
	msg := o.Message
	if msg == "" {
		switch o.Status {
		case "success":
			msg = "OK"
		case "pass":
			msg = "PASS"
		case "fail":
			msg = fmt.Sprintf("Got %d results, configured to fail if != 0", o.Failures)
		case "error":
			msg = "Database Error in " + id + "\n  scripted failure"
		case "skipped":
			msg = "SKIP"
		}
	}
	var failures any
	if test {
		failures = o.Failures
	}
	timing := []any{}
	if o.Status != "skipped" {
		timing = []any{
			map[string]any{"name": "compile", "started_at": now.Format(time.RFC3339Nano), "completed_at": now.Format(time.RFC3339Nano)},
			map[string]any{"name": "execute", "started_at": now.Format(time.RFC3339Nano), "completed_at": now.Format(time.RFC3339Nano)},
		}
	}
	return map[string]any{
		"unique_id":        id,
		"status":           o.Status,
		"message":          msg,
		"failures":         failures,
		"thread_id":        "Thread-1 (worker)",
		"execution_time":   0.01,
		"timing":           timing,
		"adapter_response": map[string]any{"_message": "OK", "code": "OK", "rows_affected": o.RowsAffected},
		"compiled":         true,
		"compiled_code":    "select 1",
		"relation_name":    nil,
	}
}

func (s *Server) isTest(id string) bool {
	return strings.HasPrefix(id, "test.") || strings.HasPrefix(id, "unit_test.")
}

func (s *Server) upstream(id string) []string {
	if s.nodes == nil {
		return nil
	}
	if n := s.nodes.Lookup(id); n != nil {
		return n.DependsOn.Nodes
	}
	return nil
}

// resolve maps dbt selectors to unique_ids, keeping order and dropping
// duplicates and unknowns.
func (s *Server) resolve(selectors []string) []string {
	var out []string
	add := func(id string) {
		if !slices.Contains(out, id) {
			out = append(out, id)
		}
	}
	for _, sel := range selectors {
		for _, part := range strings.Split(sel, " ") {
			if part == "" {
				continue
			}
			if s.nodes == nil {
				add(part)
				continue
			}
			var hits []string
			s.nodes.All(func(n *manifest.Node) bool {
				if matchSelector(n, part) {
					hits = append(hits, n.UniqueID)
				}
				return true
			})
			sort.Strings(hits)
			for _, h := range hits {
				add(h)
			}
		}
	}
	return out
}

// matchSelector matches one selector argument: a comma-separated
// intersection of fqn:, resource_type:, package:, path:, unit_test:
// criteria, unique_ids and bare names.
func matchSelector(n *manifest.Node, sel string) bool {
	for _, crit := range strings.Split(sel, ",") {
		if !matchCriterion(n, crit) {
			return false
		}
	}
	return true
}

func matchCriterion(n *manifest.Node, sel string) bool {
	method, value, found := strings.Cut(sel, ":")
	if !found {
		return sel == n.UniqueID || (n.Name == sel && n.ResourceType != manifest.Source)
	}
	switch method {
	case "fqn":
		return strings.Join(n.FQN, ".") == value
	case "resource_type":
		return string(n.ResourceType) == value
	case "package":
		return n.PackageName == value
	case "path":
		return n.OriginalFilePath == value
	case "unit_test":
		return n.ResourceType == manifest.UnitTest && (n.Name == value || n.PackageName+"."+n.Name == value)
	}
	return false
}

func (s *Server) runJSON(run *fakeRun, now time.Time, trigger, steps bool) map[string]any {
	st := run.status(now, s.opts)
	humanized := map[int]string{1: "Queued", 2: "Starting", 3: "Running", 10: "Success", 20: "Error", 30: "Cancelled"}[st]
	out := map[string]any{
		"id": run.id, "trigger_id": run.id, "account_id": s.opts.AccountID,
		"project_id": s.opts.ProjectID, "environment_id": s.opts.EnvironmentID,
		"job_definition_id": run.jobID, "job_id": run.jobID,
		"status": st, "status_humanized": humanized,
		"status_message":  nil,
		"dbt_version":     "1.11.16",
		"git_branch":      "main",
		"git_sha":         "0123456789abcdef",
		"in_progress":     st < 10,
		"is_complete":     st >= 10,
		"is_success":      st == 10,
		"is_error":        st == 20,
		"is_cancelled":    st == 30,
		"artifacts_saved": st >= 10,
		"created_at":      ts(run.created),
		"updated_at":      ts(now),
		"started_at":      nil,
		"finished_at":     nil,
		"href":            fmt.Sprintf("%s/deploy/%d/projects/%d/runs/%d/", s.URL, s.opts.AccountID, s.opts.ProjectID, run.id),
	}
	if st >= 2 {
		out["started_at"] = ts(run.created.Add(s.opts.QueueTime))
	}
	if st >= 10 {
		out["finished_at"] = ts(now)
	}
	if st == 20 {
		msg := "Job run failed"
		if len(run.logs) > 0 {
			msg = strings.Join(run.logs, "\n")
		}
		out["status_message"] = msg
	}
	if st == 30 {
		out["status_message"] = "Cancelled by user via API"
	}
	if trigger {
		t := map[string]any{"id": run.id, "job_definition_id": run.jobID}
		for k, v := range run.trigger {
			t[k] = v
		}
		out["trigger"] = t
	}
	if steps {
		out["run_steps"] = s.stepsJSON(run, st)
	}
	return out
}

// allSteps returns the run's step names: three set-up steps, then one per
// dbt command.
func allSteps(run *fakeRun) []string {
	names := []string{"Clone git repository", "Create profile from connection Fake", "Invoke dbt deps"}
	for _, st := range run.steps {
		names = append(names, "Invoke "+strings.TrimSpace(st))
	}
	return names
}

const setupSteps = 3

func (s *Server) stepsJSON(run *fakeRun, st int) []any {
	var out []any
	for i, name := range allSteps(run) {
		status := 10
		switch {
		case st < 3:
			status = 1
		case st == 3:
			if i >= setupSteps {
				status = 3
			}
		case i >= setupSteps:
			res := run.results[i-setupSteps]
			switch {
			case st == 30:
				status = 30
			case res.failed:
				status = 20
			}
		}
		out = append(out, map[string]any{
			"id": run.id*100 + int64(i+1), "run_id": run.id, "account_id": s.opts.AccountID,
			"index": i + 1, "status": status, "name": name, "logs": "",
		})
	}
	return out
}

func (s *Server) listRuns(w http.ResponseWriter, r *http.Request) {
	q := r.URL.Query()
	limit, offset, ok := s.page(w, q)
	if !ok {
		return
	}
	now := time.Now()
	s.mu.Lock()
	var sel []*fakeRun
	for _, run := range s.runs {
		if v := q.Get("job_definition_id"); v != "" && v != strconv.FormatInt(run.jobID, 10) {
			continue
		}
		sel = append(sel, run)
	}
	desc := strings.HasPrefix(q.Get("order_by"), "-")
	sort.Slice(sel, func(a, b int) bool {
		if desc {
			return sel[a].id > sel[b].id
		}
		return sel[a].id < sel[b].id
	})
	total := len(sel)
	sel = window(sel, offset, limit)
	inc := q.Get("include_related")
	data := make([]any, 0, len(sel))
	for _, run := range sel {
		data = append(data, s.runJSON(run, now, strings.Contains(inc, "trigger"), strings.Contains(inc, "run_steps")))
	}
	s.mu.Unlock()
	writeEnvelope(w, http.StatusOK, data, extra(q, len(data), total), "")
}

func (s *Server) getRun(w http.ResponseWriter, r *http.Request, id int64) {
	inc := r.URL.Query().Get("include_related")
	s.mu.Lock()
	run := s.runs[id]
	if run == nil {
		s.mu.Unlock()
		notFound(w, "Run")
		return
	}
	out := s.runJSON(run, time.Now(), strings.Contains(inc, "trigger"), strings.Contains(inc, "run_steps"))
	s.mu.Unlock()
	writeEnvelope(w, http.StatusOK, out, nil, "")
}

func (s *Server) cancel(w http.ResponseWriter, id int64) {
	now := time.Now()
	s.mu.Lock()
	run := s.runs[id]
	if run == nil {
		s.mu.Unlock()
		notFound(w, "Run")
		return
	}
	if run.status(now, s.opts) < 10 && run.cancelAt.IsZero() {
		run.cancelAt = now
	}
	out := s.runJSON(run, now, true, false)
	s.mu.Unlock()
	writeEnvelope(w, http.StatusOK, out, nil, "")
}

// artifactsOf returns the artifacts of a step (1-based; 0: last step) of a
// finished run, or nil.
func (s *Server) artifactsOf(run *fakeRun, step int, now time.Time) map[string][]byte {
	st := run.status(now, s.opts)
	if st < 10 || st == 30 {
		return nil
	}
	n := setupSteps + len(run.steps)
	if step == 0 {
		step = n
	}
	if step <= setupSteps || step > n {
		return nil
	}
	return run.results[step-setupSteps-1].artifacts
}

func (s *Server) listArtifacts(w http.ResponseWriter, id int64) {
	s.mu.Lock()
	run := s.runs[id]
	if run == nil {
		s.mu.Unlock()
		notFound(w, "Run")
		return
	}
	var paths []string
	for p := range s.artifactsOf(run, 0, time.Now()) {
		paths = append(paths, p)
	}
	s.mu.Unlock()
	sort.Strings(paths)
	if paths == nil {
		paths = []string{}
	}
	writeEnvelope(w, http.StatusOK, paths, nil, "")
}

func artifactPath(r *http.Request) string {
	_, p, _ := strings.Cut(r.URL.Path, "/artifacts/")
	return p
}

func (s *Server) runArtifact(w http.ResponseWriter, r *http.Request, id int64) {
	step := 0
	if v := r.URL.Query().Get("step"); v != "" {
		n, err := strconv.Atoi(v)
		if err != nil || n < 1 {
			badRequest(w, map[string]string{"step": "A valid integer is required."})
			return
		}
		step = n
	}
	s.mu.Lock()
	run := s.runs[id]
	var body []byte
	if run != nil {
		body = s.artifactsOf(run, step, time.Now())[artifactPath(r)]
	}
	s.mu.Unlock()
	if body == nil {
		notFound(w, "Artifact")
		return
	}
	w.Header().Set("Content-Type", "application/json")
	_, _ = w.Write(body)
}

func (s *Server) jobArtifact(w http.ResponseWriter, r *http.Request, jobID int64) {
	now := time.Now()
	s.mu.Lock()
	var body []byte
	var best int64
	for _, run := range s.runs {
		if run.jobID != jobID || run.id < best {
			continue
		}
		if b := s.artifactsOf(run, 0, now)[artifactPath(r)]; b != nil {
			body, best = b, run.id
		}
	}
	s.mu.Unlock()
	if body == nil {
		notFound(w, "Artifact")
		return
	}
	w.Header().Set("Content-Type", "application/json")
	_, _ = w.Write(body)
}

// shellSplit splits a command line as a POSIX shell would (quotes and
// backslashes; no expansion).
func shellSplit(s string) []string {
	var out []string
	var cur bytes.Buffer
	inWord := false
	sc := bufio.NewReader(strings.NewReader(s))
	var quote rune
	for {
		c, _, err := sc.ReadRune()
		if err != nil {
			break
		}
		switch {
		case quote == '\'':
			if c == '\'' {
				quote = 0
			} else {
				cur.WriteRune(c)
			}
		case quote == '"':
			switch c {
			case '"':
				quote = 0
			case '\\':
				n, _, err := sc.ReadRune()
				if err == nil {
					if n != '"' && n != '\\' && n != '$' && n != '`' {
						cur.WriteRune('\\')
					}
					cur.WriteRune(n)
				}
			default:
				cur.WriteRune(c)
			}
		case c == '\'' || c == '"':
			quote = c
			inWord = true
		case c == '\\':
			if n, _, err := sc.ReadRune(); err == nil {
				cur.WriteRune(n)
				inWord = true
			}
		case c == ' ' || c == '\t' || c == '\n':
			if inWord {
				out = append(out, cur.String())
				cur.Reset()
				inWord = false
			}
		default:
			cur.WriteRune(c)
			inWord = true
		}
	}
	if inWord {
		out = append(out, cur.String())
	}
	return out
}
