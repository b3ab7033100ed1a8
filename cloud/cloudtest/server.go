// Package cloudtest is a fake dbt Cloud Administrative API v2 server for
// tests, built on net/http/httptest.
//
// It behaves as the API does where dbtorch depends on it: the
// {"status","data","extra"} envelope; every path but an artifact's ends in
// "/" (others are redirected with 301, as Django's APPEND_SLASH does);
// job bodies missing a required key and triggers without a cause are
// rejected with 400; runs move through 1 queued → 2 starting → 3 running →
// 10 success, 20 error or 30 cancelled with time (a run longer than its
// job's execution.timeout_seconds ends in error); each dbt step of a run has
// its own artifacts (run_results.json built from a scripted outcome per
// node, manifest.json when the server was given one); cancelling, deleting
// (soft: state 2) and pagination work. No dbt is needed.
//
// Faults are injected on demand with Inject: error statuses (429 with
// Retry-After, 500, HTML error pages), dropped connections, slow
// responses, requests that take effect but whose response is lost,
// requests answered with an error (or a dropped connection) that the
// server commits seconds later anyway (Fault.CommitAfter, as a gateway's
// 502/504 in front of a slow backend), and rate-limit cooldowns during
// which every request is answered 429 without Retry-After
// (Fault.Cooldown). Options add behaviours that apply to every request:
// a processing delay (ProcessingDelay), artifacts that are saved only a
// while after a run ends (ArtifactDelay), and echoing the caller's token
// in error messages (EchoToken). Every duration is an option, so that
// tests scale minutes of real behaviour down to milliseconds.
//
// Several runs of one job may be active at once (trigger the job again
// before its run ends); the server records, for every deleted job, how
// many of its runs were still active when it was deleted.
//
// A Server is safe for concurrent use.
package cloudtest

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
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
	GetEnv        Route = "get_environment"
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
	// Hang keeps the run running until it is cancelled or reaches its
	// timeout.
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
	// ProcessingDelay is how long every request that changes something
	// (create, trigger, cancel, delete) takes on the server before it
	// takes effect; it takes effect even if the client has given up
	// meanwhile.
	ProcessingDelay time.Duration
	// ArtifactDelay is how long after a run ends its artifacts are saved:
	// until then the run says artifacts_saved false and every artifact is
	// 404.
	ArtifactDelay time.Duration
	// EchoToken makes the server repeat the caller's Authorization header
	// in error answers and in the status messages of runs that did not
	// succeed, as a misconfigured proxy or a verbose backend might.
	EchoToken bool
	// EnvironmentType is the type of the environment ("deployment" when
	// empty; "development" for a development environment, which cannot
	// run jobs). EnvironmentState is its state (1 when zero; 2 deleted).
	EnvironmentType  string
	EnvironmentState int
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
	// Stall waits this long before doing what was asked, and does it even
	// if the client has given up meanwhile: a request still in flight on
	// the server when the client looks for its effect.
	Stall time.Duration
	// CommitAfter, with Status or Drop, answers the error (or drops the
	// connection) at once and then does what was asked this long later
	// anyway: a gateway's 502/504 in front of a backend that finished the
	// work. Settle waits for such commits.
	CommitAfter time.Duration
	// Cooldown starts a rate-limit cooldown: this request and every
	// request for this long after it are answered 429 without a
	// Retry-After header (as dbt Cloud does after its account limit).
	Cooldown time.Duration
	Times    int
}

// JobInfo is what the server holds about a job.
type JobInfo struct {
	ID           int64
	Name         string
	Description  string
	ExecuteSteps []string
	Deleted      bool
	// ActiveRunsAtDelete is how many of the job's runs had not ended when
	// it was deleted.
	ActiveRunsAtDelete int
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
	// JobDeleted reports whether the run's job is deleted.
	JobDeleted bool
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
	auth      string // the trigger's Authorization header, for EchoToken
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
	cooldown  time.Time // requests are answered 429 until then
	late      int       // commits still to land
	landed    int       // late commits that landed
	lateDone  *sync.Cond
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
	s.lateDone = sync.NewCond(&s.mu)
	if opts.EnvironmentType == "" {
		s.opts.EnvironmentType = "deployment"
	}
	if opts.EnvironmentState == 0 {
		s.opts.EnvironmentState = 1
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

// Settle waits until every late commit (Fault.CommitAfter) has landed,
// and returns how many have landed since the server started.
func (s *Server) Settle() int {
	s.mu.Lock()
	defer s.mu.Unlock()
	for s.late > 0 {
		s.lateDone.Wait()
	}
	return s.landed
}

// Token returns the token the server accepts.
func (s *Server) Token() string { return s.opts.Token }

// AccountID returns the id of the only account.
func (s *Server) AccountID() int64 { return s.opts.AccountID }

// ProjectID returns the id of the only project.
func (s *Server) ProjectID() int64 { return s.opts.ProjectID }

// EnvironmentID returns the id of the only environment, a deployment
// environment of the project.
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
	return s.jobInfos(func(j *fakeJob) bool { return !j.Deleted })
}

// AllJobs returns every job ever created, deleted ones included, by id.
func (s *Server) AllJobs() []JobInfo {
	return s.jobInfos(func(*fakeJob) bool { return true })
}

// jobInfos returns the jobs keep accepts, by id.
func (s *Server) jobInfos(keep func(*fakeJob) bool) []JobInfo {
	s.mu.Lock()
	defer s.mu.Unlock()
	var out []JobInfo
	for _, j := range s.jobs {
		if keep(j) {
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
			Status: r.status(now, s.opts), Cancelled: !r.cancelAt.IsZero(), JobDeleted: s.jobs[r.jobID] == nil || s.jobs[r.jobID].Deleted})
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

var reAccount = regexp.MustCompile(`^/api/v2/accounts/(\d+)/(.*)$`)

// endpoint is one route of the API: its method, its path after the
// account's base (the id, when there is one, is the first group; an
// artifact's path, after it, has no trailing slash) and its handler.
type endpoint struct {
	route    Route
	method   string
	path     *regexp.Regexp
	artifact bool
	handle   func(s *Server, w http.ResponseWriter, r *http.Request, id int64)
}

// endpoints are the routes the server implements.
var endpoints = []endpoint{
	{CreateJob, http.MethodPost, regexp.MustCompile(`^jobs/$`), false, (*Server).createJob},
	{ListJobs, http.MethodGet, regexp.MustCompile(`^jobs/$`), false, (*Server).listJobs},
	{ListRuns, http.MethodGet, regexp.MustCompile(`^runs/$`), false, (*Server).listRuns},
	{TriggerRun, http.MethodPost, regexp.MustCompile(`^jobs/(\d+)/run/$`), false, (*Server).trigger},
	{GetJob, http.MethodGet, regexp.MustCompile(`^jobs/(\d+)/$`), false, (*Server).getJob},
	{DeleteJob, http.MethodDelete, regexp.MustCompile(`^jobs/(\d+)/$`), false, (*Server).deleteJob},
	{GetEnv, http.MethodGet, regexp.MustCompile(`^environments/(\d+)/$`), false, (*Server).getEnvironment},
	{CancelRun, http.MethodPost, regexp.MustCompile(`^runs/(\d+)/cancel/$`), false, (*Server).cancel},
	{GetRun, http.MethodGet, regexp.MustCompile(`^runs/(\d+)/$`), false, (*Server).getRun},
	{ListArtifacts, http.MethodGet, regexp.MustCompile(`^runs/(\d+)/artifacts/$`), false, (*Server).listArtifacts},
	{RunArtifact, http.MethodGet, regexp.MustCompile(`^runs/(\d+)/artifacts/(.+)$`), true, (*Server).runArtifact},
	{JobArtifact, http.MethodGet, regexp.MustCompile(`^jobs/(\d+)/artifacts/(.+)$`), true, (*Server).jobArtifact},
}

func (s *Server) serve(w http.ResponseWriter, r *http.Request) {
	m := reAccount.FindStringSubmatch(r.URL.Path)
	if m == nil {
		writeHTML(w, http.StatusNotFound, "Not Found", "The requested resource was not found on this server.")
		return
	}
	rest := m[2]
	route, id, artifact := s.route(r.Method, rest)
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
	now := time.Now()
	if fault != nil && fault.Cooldown > 0 {
		s.cooldown = now.Add(fault.Cooldown)
	}
	cooling := now.Before(s.cooldown)
	s.mu.Unlock()

	if !s.authorized(r) {
		writeJSON(w, http.StatusUnauthorized, map[string]any{"detail": "Invalid token." + s.echo(r)})
		return
	}
	if acct, _ := strconv.ParseInt(m[1], 10, 64); acct != s.opts.AccountID {
		writeEnvelope(w, http.StatusForbidden, nil, nil, "You do not have permission to access this account.")
		return
	}
	if cooling {
		writeEnvelope(w, http.StatusTooManyRequests, nil, nil, "Too many requests. Please try again later."+s.echo(r))
		return
	}
	if fault != nil && (fault.Status != 0 || fault.Drop) {
		if fault.CommitAfter > 0 {
			s.commitLater(r, route, id, fault.CommitAfter)
		}
		if fault.Drop {
			hijackClose(w)
			return
		}
		if fault.RetryAfter != "" {
			w.Header().Set("Retry-After", fault.RetryAfter)
		}
		if fault.Body == "" {
			writeEnvelope(w, fault.Status, nil, nil, http.StatusText(fault.Status)+s.echo(r))
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

	stall := time.Duration(0)
	if fault != nil {
		stall = fault.Stall
	}
	if writes(route) {
		stall += s.opts.ProcessingDelay
	}
	if stall > 0 {
		body, _ := io.ReadAll(r.Body) // before the client may hang up
		r.Body = io.NopCloser(bytes.NewReader(body))
		time.Sleep(stall)
	}
	rec := httptest.NewRecorder()
	s.handle(rec, r, route, id)

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

// writes reports whether a route changes what the server holds.
func writes(r Route) bool {
	return r == CreateJob || r == DeleteJob || r == TriggerRun || r == CancelRun
}

// echo is the text EchoToken adds to error messages.
func (s *Server) echo(r *http.Request) string {
	if !s.opts.EchoToken {
		return ""
	}
	return " (request had Authorization: " + r.Header.Get("Authorization") + ")"
}

// commitLater does what r asks d from now, whatever happens to the
// connection it came on.
func (s *Server) commitLater(r *http.Request, route Route, id int64, d time.Duration) {
	body, _ := io.ReadAll(r.Body)
	late := r.Clone(context.Background())
	s.mu.Lock()
	s.late++
	s.mu.Unlock()
	time.AfterFunc(d, func() {
		late.Body = io.NopCloser(bytes.NewReader(body))
		s.handle(httptest.NewRecorder(), late, route, id)
		s.mu.Lock()
		s.late--
		s.landed++
		s.lateDone.Broadcast()
		s.mu.Unlock()
	})
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

// route classifies a request; id is the number in the path (0 when
// none); artifact reports an artifact path (which has no trailing slash),
// also for a method the artifact's route does not take.
func (s *Server) route(method, rest string) (Route, int64, bool) {
	artifact := false
	for _, e := range endpoints {
		m := e.path.FindStringSubmatch(rest)
		if m == nil {
			continue
		}
		artifact = artifact || e.artifact
		if e.method != method {
			continue
		}
		var id int64
		if len(m) > 1 {
			id, _ = strconv.ParseInt(m[1], 10, 64)
		}
		return e.route, id, e.artifact
	}
	return AnyRoute, 0, artifact
}

func (s *Server) handle(w http.ResponseWriter, r *http.Request, route Route, id int64) {
	for _, e := range endpoints {
		if e.route == route {
			e.handle(s, w, r, id)
			return
		}
	}
	if strings.HasSuffix(r.URL.Path, "/") {
		writeEnvelope(w, http.StatusMethodNotAllowed, nil, nil, fmt.Sprintf("Method %q not allowed.", r.Method))
		return
	}
	writeHTML(w, http.StatusNotFound, "Not Found", "The requested resource was not found on this server.")
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
