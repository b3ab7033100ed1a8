package cloudtest

import (
	"bufio"
	"bytes"
	"encoding/json"
	"fmt"
	"net/http"
	"net/url"
	"slices"
	"sort"
	"strconv"
	"strings"
	"time"

	"github.com/dbtorch/dbtorch/manifest"
)

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
	var out any
	if found(s, w, "Job", s.liveJob(jobID), func(j *fakeJob) {
		steps := j.ExecuteSteps
		if raw, ok := body["steps_override"].([]any); ok && len(raw) > 0 {
			steps = nil
			for _, x := range raw {
				st, _ := x.(string)
				steps = append(steps, st)
			}
		}
		s.nextID++
		run := &fakeRun{id: s.nextID, jobID: jobID, cause: cause, trigger: body, steps: steps, created: time.Now(),
			auth: r.Header.Get("Authorization")}
		s.execute(run)
		s.applyTimeout(run, timeoutOf(j.Body, body))
		s.runs[run.id] = run
		out = s.runJSON(run, time.Now(), true, false)
	}) {
		writeEnvelope(w, http.StatusOK, out, nil, "")
	}
}

// timeoutOf returns a run's timeout: the trigger's
// timeout_seconds_override, else the job's execution.timeout_seconds.
func timeoutOf(job, trigger map[string]any) time.Duration {
	if v, ok := trigger["timeout_seconds_override"].(float64); ok && v > 0 {
		return time.Duration(v) * time.Second
	}
	if ex, ok := job["execution"].(map[string]any); ok {
		if v, ok := ex["timeout_seconds"].(float64); ok && v > 0 {
			return time.Duration(v) * time.Second
		}
	}
	return 0
}

// applyTimeout makes a run that would run longer than timeout end in
// error when it expires, without artifacts from the step it was in.
// Called with s.mu held.
func (s *Server) applyTimeout(run *fakeRun, timeout time.Duration) {
	if timeout <= 0 || (!run.hang && s.opts.RunTime+run.runFor <= timeout) {
		return
	}
	run.hang = false
	run.runFor = timeout - s.opts.RunTime
	run.failed = true
	for i := range run.results {
		run.results[i] = stepResult{failed: true}
	}
	run.logs = append(run.logs, fmt.Sprintf("This run timed out after running for %d seconds", int(timeout.Seconds())))
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
		"artifacts_saved": s.artifactsSaved(run, now),
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
		out["status_message"] = msg + s.echoRun(run)
	}
	if st == 30 {
		out["status_message"] = "Cancelled by user via API" + s.echoRun(run)
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
		names = append(names, "Invoke dbt with `"+strings.TrimSpace(st)+"`")
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

func (s *Server) listRuns(w http.ResponseWriter, r *http.Request, _ int64) {
	now := time.Now()
	inc := r.URL.Query().Get("include_related")
	list(s, w, r, s.runs, func(q url.Values, run *fakeRun) bool {
		v := q.Get("job_definition_id")
		return v == "" || v == strconv.FormatInt(run.jobID, 10)
	}, func(r *fakeRun) int64 { return r.id }, func(run *fakeRun) map[string]any {
		return s.runJSON(run, now, strings.Contains(inc, "trigger"), strings.Contains(inc, "run_steps"))
	})
}

func (s *Server) getRun(w http.ResponseWriter, r *http.Request, id int64) {
	inc := r.URL.Query().Get("include_related")
	var out any
	if found(s, w, "Run", s.runOf(id), func(run *fakeRun) {
		out = s.runJSON(run, time.Now(), strings.Contains(inc, "trigger"), strings.Contains(inc, "run_steps"))
	}) {
		writeEnvelope(w, http.StatusOK, out, nil, "")
	}
}

func (s *Server) cancel(w http.ResponseWriter, _ *http.Request, id int64) {
	now := time.Now()
	var out any
	if found(s, w, "Run", s.runOf(id), func(run *fakeRun) {
		if run.status(now, s.opts) < 10 && run.cancelAt.IsZero() {
			run.cancelAt = now
		}
		out = s.runJSON(run, now, true, false)
	}) {
		writeEnvelope(w, http.StatusOK, out, nil, "")
	}
}

// echoRun is the text EchoToken adds to a run's status message.
func (s *Server) echoRun(run *fakeRun) string {
	if !s.opts.EchoToken {
		return ""
	}
	return " (triggered with Authorization: " + run.auth + ")"
}

// artifactsSaved reports whether the run has ended at least
// ArtifactDelay ago. Called with s.mu held.
func (s *Server) artifactsSaved(run *fakeRun, now time.Time) bool {
	if run.status(now, s.opts) < 10 {
		return false
	}
	if s.opts.ArtifactDelay <= 0 {
		return true
	}
	// The run ended at the latest ArtifactDelay ago if it had already
	// ended then.
	return run.status(now.Add(-s.opts.ArtifactDelay), s.opts) >= 10
}

// artifactsOf returns the artifacts of a step (1-based; 0: last step) of a
// finished run whose artifacts are saved, or nil.
func (s *Server) artifactsOf(run *fakeRun, step int, now time.Time) map[string][]byte {
	st := run.status(now, s.opts)
	if st < 10 || st == 30 || !s.artifactsSaved(run, now) {
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

func (s *Server) listArtifacts(w http.ResponseWriter, _ *http.Request, id int64) {
	paths := []string{}
	if found(s, w, "Run", s.runOf(id), func(run *fakeRun) {
		for p := range s.artifactsOf(run, 0, time.Now()) {
			paths = append(paths, p)
		}
	}) {
		sort.Strings(paths)
		writeEnvelope(w, http.StatusOK, paths, nil, "")
	}
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
	writeArtifact(w, body)
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
	writeArtifact(w, body)
}

// writeArtifact writes an artifact's JSON, or dbt Cloud's 404 when there
// is none (nil).
func writeArtifact(w http.ResponseWriter, body []byte) {
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
