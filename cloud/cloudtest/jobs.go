package cloudtest

import (
	"encoding/json"
	"net/http"
	"net/url"
	"sort"
	"strconv"
	"strings"
	"time"
)

var requiredJobKeys = []string{"account_id", "environment_id", "errors_on_lint_failure", "execution",
	"generate_docs", "lifecycle_webhooks", "name", "project_id", "run_compare_changes",
	"run_generate_sources", "run_lint", "settings", "state", "triggers"}

func (s *Server) createJob(w http.ResponseWriter, r *http.Request, _ int64) {
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
	// openapi-v2.yaml documents 200 for a creation.
	writeEnvelope(w, http.StatusOK, out, nil, "")
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

func (s *Server) listJobs(w http.ResponseWriter, r *http.Request, _ int64) {
	list(s, w, r, s.jobs, func(q url.Values, j *fakeJob) bool {
		// state: "active" or 1 (the default), "deleted" or 2, "all".
		switch q.Get("state") {
		case "all":
		case "deleted", "2":
			if !j.Deleted {
				return false
			}
		default:
			if j.Deleted {
				return false
			}
		}
		if v := q.Get("project_id"); v != "" && v != strconv.FormatInt(s.opts.ProjectID, 10) {
			return false
		}
		if v := q.Get("environment_id"); v != "" && v != strconv.FormatInt(s.opts.EnvironmentID, 10) {
			return false
		}
		v := q.Get("name__icontains")
		return v == "" || strings.Contains(strings.ToLower(j.Name), strings.ToLower(v))
	}, func(j *fakeJob) int64 { return j.ID }, s.jobJSON)
}

// list answers a list request over all: the items keep accepts for the
// query, in the order and page the query asks for (order_by, limit,
// offset), each rendered with render, in an envelope with the
// pagination extra. keep and render are called with s.mu held.
func list[T, R any](s *Server, w http.ResponseWriter, r *http.Request, all map[int64]T,
	keep func(url.Values, T) bool, id func(T) int64, render func(T) R) {
	q := r.URL.Query()
	limit, offset, ok := s.page(w, q)
	if !ok {
		return
	}
	s.mu.Lock()
	var sel []T
	for _, v := range all {
		if keep(q, v) {
			sel = append(sel, v)
		}
	}
	sel, total := pageOf(sel, id, q.Get("order_by"), offset, limit)
	data := make([]R, 0, len(sel))
	for _, v := range sel {
		data = append(data, render(v))
	}
	s.mu.Unlock()
	writeEnvelope(w, http.StatusOK, data, extra(q, len(data), total), "")
}

// found calls f on what get returns, both with s.mu held, and reports
// true; when get returns nil it answers 404 "<what> not found." instead
// and reports false.
func found[T any](s *Server, w http.ResponseWriter, what string, get func() *T, f func(*T)) bool {
	s.mu.Lock()
	v := get()
	if v != nil {
		f(v)
	}
	s.mu.Unlock()
	if v == nil {
		notFound(w, what)
	}
	return v != nil
}

// liveJob returns a getter, for found, of the job id unless it is
// deleted.
func (s *Server) liveJob(id int64) func() *fakeJob {
	return func() *fakeJob {
		if j := s.jobs[id]; j != nil && !j.Deleted {
			return j
		}
		return nil
	}
}

// runOf returns a getter, for found, of the run id.
func (s *Server) runOf(id int64) func() *fakeRun {
	return func() *fakeRun { return s.runs[id] }
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

// pageOf sorts sel by id (descending when orderBy starts with "-", as
// the API's order_by=-id) and returns the page at offset of at most limit
// items, with the number of items before paging.
func pageOf[T any](sel []T, id func(T) int64, orderBy string, offset, limit int) ([]T, int) {
	desc := strings.HasPrefix(orderBy, "-")
	sort.Slice(sel, func(a, b int) bool {
		if desc {
			return id(sel[a]) > id(sel[b])
		}
		return id(sel[a]) < id(sel[b])
	})
	if offset >= len(sel) {
		return nil, len(sel)
	}
	return sel[offset:min(len(sel), offset+limit)], len(sel)
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

func (s *Server) getJob(w http.ResponseWriter, _ *http.Request, id int64) {
	var out any
	if found(s, w, "Job", s.liveJob(id), func(j *fakeJob) { out = s.jobJSON(j) }) {
		writeEnvelope(w, http.StatusOK, out, nil, "")
	}
}

func (s *Server) deleteJob(w http.ResponseWriter, _ *http.Request, id int64) {
	deleted := found(s, w, "Job", s.liveJob(id), func(j *fakeJob) {
		j.Deleted = true
		now := time.Now()
		for _, run := range s.runs {
			if run.jobID == id && run.status(now, s.opts) < 10 {
				j.ActiveRunsAtDelete++
			}
		}
	})
	if deleted {
		// openapi-v2.yaml documents 204 and no body for a deletion.
		w.WriteHeader(http.StatusNoContent)
	}
}

// getEnvironment serves the one environment that exists: a production
// deployment environment of the project (Options.EnvironmentType and
// EnvironmentState change it).
func (s *Server) getEnvironment(w http.ResponseWriter, _ *http.Request, id int64) {
	if id != s.opts.EnvironmentID {
		notFound(w, "Environment")
		return
	}
	env := map[string]any{
		"id": id, "account_id": s.opts.AccountID, "project_id": s.opts.ProjectID,
		"name": "Production", "type": s.opts.EnvironmentType, "deployment_type": "production",
		"dbt_version": "latest", "state": s.opts.EnvironmentState, "credentials_id": 30,
	}
	if s.opts.EnvironmentType == "development" {
		env["name"], env["deployment_type"], env["credentials_id"] = "Development", nil, nil
	}
	writeEnvelope(w, http.StatusOK, env, nil, "")
}
