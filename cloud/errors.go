package cloud

import (
	"encoding/json"
	"errors"
	"fmt"
	"html"
	"net/http"
	"regexp"
	"sort"
	"strconv"
	"strings"
	"time"
	"unicode/utf8"
)

// maxErrorBody bounds how much of an error response an APIError keeps.
const maxErrorBody = 4 << 10

// APIError is a request that dbt Cloud answered with a non-2xx status (or a
// 2xx envelope whose status says it failed).
//
// Message is the most useful text the server gave: the envelope's
// user_message (joined with its field errors), a {"detail": ...} body, or
// the text of an HTML error page. Body is the raw response, truncated to a
// few KiB, with the client's token redacted.
type APIError struct {
	// Method and Path identify the request (Path without host or query).
	Method string
	Path   string
	// StatusCode is the HTTP status code.
	StatusCode int
	// Message is the server's explanation; DeveloperMessage the envelope's
	// developer_message, when it sent one.
	Message          string
	DeveloperMessage string
	// RetryAfter is the delay the server asked for in a Retry-After header,
	// zero when it sent none.
	RetryAfter time.Duration
	// Body is the raw response body (truncated, redacted).
	Body []byte
}

// Error describes the request, the status and the server's message.
func (e *APIError) Error() string {
	var b strings.Builder
	fmt.Fprintf(&b, "dbt cloud: %s %s: %d %s", e.Method, e.Path, e.StatusCode, http.StatusText(e.StatusCode))
	if e.Message != "" {
		b.WriteString(": ")
		b.WriteString(e.Message)
	}
	if e.DeveloperMessage != "" && e.DeveloperMessage != e.Message {
		b.WriteString(" (")
		b.WriteString(e.DeveloperMessage)
		b.WriteString(")")
	}
	return b.String()
}

// IsNotFound reports whether err is, or wraps, an *APIError with status
// 404.
func IsNotFound(err error) bool {
	var ae *APIError
	return errors.As(err, &ae) && ae.StatusCode == http.StatusNotFound
}

// AmbiguousError reports that a request which creates something failed in
// a way that may have succeeded on the server, and that looking it up
// afterwards failed too: the job or run may exist. Err is the last error.
type AmbiguousError struct {
	Op  string
	Err error
}

// Error says that the outcome is unknown, and why.
func (e *AmbiguousError) Error() string {
	return fmt.Sprintf("dbt cloud: %s: outcome unknown (it may have succeeded): %v", e.Op, e.Err)
}

// Unwrap returns the underlying error.
func (e *AmbiguousError) Unwrap() error { return e.Err }

// redactedError wraps a transport error so that its text never carries the
// token (a proxy or a URL could echo it).
type redactedError struct {
	msg string
	err error
}

func (e *redactedError) Error() string { return e.msg }
func (e *redactedError) Unwrap() error { return e.err }

var (
	htmlTitle = regexp.MustCompile(`(?is)<title[^>]*>(.*?)</title>`)
	htmlH1    = regexp.MustCompile(`(?is)<h1[^>]*>(.*?)</h1>`)
	htmlTag   = regexp.MustCompile(`(?s)<[^>]*>`)
	htmlDrop  = regexp.MustCompile(`(?is)<(script|style|head)[^>]*>.*?</(script|style|head)>`)
	spaces    = regexp.MustCompile(`\s+`)
)

// parseErrorBody extracts a message from an error response, leniently.
func parseErrorBody(body []byte) (msg, dev string) {
	trimmed := strings.TrimSpace(string(body))
	if trimmed == "" {
		return "", ""
	}
	if strings.HasPrefix(trimmed, "{") || strings.HasPrefix(trimmed, "[") {
		var v any
		if json.Unmarshal([]byte(trimmed), &v) == nil {
			if m, d, ok := messageFromJSON(v); ok {
				return m, d
			}
		}
	}
	if strings.HasPrefix(trimmed, "<") {
		if m := htmlText(trimmed); m != "" {
			return m, ""
		}
	}
	return shorten(spaces.ReplaceAllString(trimmed, " "), 300), ""
}

func messageFromJSON(v any) (msg, dev string, ok bool) {
	obj, isObj := v.(map[string]any)
	if !isObj {
		return shorten(compactJSON(v), 300), "", true
	}
	if st, isMap := obj["status"].(map[string]any); isMap {
		msg, _ = st["user_message"].(string)
		dev, _ = st["developer_message"].(string)
		if fe := fieldErrors(obj["data"]); fe != "" {
			if msg != "" {
				msg += ": "
			}
			msg += fe
		}
		if msg != "" || dev != "" {
			return msg, dev, true
		}
	}
	for _, k := range []string{"detail", "message", "error", "errors"} {
		if d, found := obj[k]; found && d != nil {
			if s, isStr := d.(string); isStr {
				return s, "", true
			}
			return shorten(compactJSON(d), 300), "", true
		}
	}
	return shorten(compactJSON(obj), 300), "", true
}

// fieldErrors renders a validation error's per-field messages, in both
// shapes dbt Cloud uses: {"field_errors": {"name": [...]}} and a plain
// {"name": ["This field is required."]}.
func fieldErrors(data any) string {
	m, ok := data.(map[string]any)
	if !ok {
		return ""
	}
	if fe, ok := m["field_errors"].(map[string]any); ok {
		m = fe
	}
	var parts []string
	for k, v := range m {
		var msgs []string
		switch x := v.(type) {
		case []any:
			for _, e := range x {
				switch y := e.(type) {
				case string:
					msgs = append(msgs, y)
				case map[string]any:
					if s, ok := y["message"].(string); ok {
						msgs = append(msgs, s)
					}
				}
			}
		case string:
			if k == "_diagnostic" {
				continue
			}
			msgs = append(msgs, x)
		}
		if len(msgs) > 0 {
			parts = append(parts, k+": "+strings.Join(msgs, " "))
		}
	}
	sort.Strings(parts)
	return strings.Join(parts, "; ")
}

func compactJSON(v any) string {
	b, err := json.Marshal(v)
	if err != nil {
		return fmt.Sprint(v)
	}
	return string(b)
}

func htmlText(s string) string {
	for _, re := range []*regexp.Regexp{htmlTitle, htmlH1} {
		if m := re.FindStringSubmatch(s); m != nil {
			t := strings.TrimSpace(spaces.ReplaceAllString(html.UnescapeString(htmlTag.ReplaceAllString(m[1], "")), " "))
			if t != "" {
				return shorten(t, 300)
			}
		}
	}
	t := htmlDrop.ReplaceAllString(s, " ")
	t = strings.TrimSpace(spaces.ReplaceAllString(html.UnescapeString(htmlTag.ReplaceAllString(t, " ")), " "))
	return shorten(t, 300)
}

// shorten cuts s to at most n bytes (on a rune boundary) plus an
// ellipsis.
func shorten(s string, n int) string {
	if len(s) <= n {
		return s
	}
	for n > 0 && !utf8.RuneStart(s[n]) {
		n--
	}
	return s[:n] + "…"
}

// LeakError reports temporary jobs an Executor created and could not
// delete within its clean-up budget (ExecutorConfig.CleanupTimeout): they
// are still in dbt Cloud, and may still hold runs. Delete them, or run a
// Janitor with Prefix. Executor.Close returns it; callers can map it to
// an exit status of their own.
type LeakError struct {
	// JobIDs are the jobs left behind, ascending.
	JobIDs []int64
	// Names are jobs whose creation could not be ruled out (their id is
	// unknown): a job of that name may exist.
	Names []string
	// Prefix is the executor's JobPrefix, for the Janitor.
	Prefix string
	// Err is the last error of the clean-ups that failed.
	Err error
}

// Error names the jobs to delete.
func (e *LeakError) Error() string {
	var b strings.Builder
	b.WriteString("dbt cloud: temporary jobs left behind")
	if len(e.JobIDs) > 0 {
		ids := make([]string, len(e.JobIDs))
		for i, id := range e.JobIDs {
			ids[i] = strconv.FormatInt(id, 10)
		}
		fmt.Fprintf(&b, ": delete job(s) %s", strings.Join(ids, ", "))
	}
	if len(e.Names) > 0 {
		fmt.Fprintf(&b, "; job(s) named %s may exist", strings.Join(e.Names, ", "))
	}
	fmt.Fprintf(&b, " (or run the Janitor with prefix %q)", e.Prefix)
	if e.Err != nil {
		fmt.Fprintf(&b, ": %v", e.Err)
	}
	return b.String()
}

// Unwrap returns the last clean-up error.
func (e *LeakError) Unwrap() error { return e.Err }

// EnvironmentError reports a dbt Cloud environment that cannot run
// dbtorch's jobs: a development environment, a deleted one, or one of
// another project. No job is created in it.
type EnvironmentError struct {
	// ID, Name and Type describe the environment as dbt Cloud returned it.
	ID   int64
	Name string
	Type string
	// Reason says why it is unfit.
	Reason string
}

// Error names the environment and the reason.
func (e *EnvironmentError) Error() string {
	return fmt.Sprintf("dbt cloud: environment %d (%s) cannot run jobs: %s", e.ID, e.Name, e.Reason)
}
