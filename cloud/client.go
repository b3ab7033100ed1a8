package cloud

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"net/url"
	"strings"
	"time"

	"github.com/dbtorch/dbtorch/internal/backoff"
)

// DefaultHost is dbt Cloud's multi-tenant US host.
const DefaultHost = "https://cloud.getdbt.com"

// Defaults used when the corresponding ClientConfig field is zero.
const (
	DefaultRetryMax       = 5
	DefaultRetryWaitMin   = 500 * time.Millisecond
	DefaultRetryWaitMax   = 30 * time.Second
	DefaultAttemptTimeout = 2 * time.Minute
	// DefaultRateLimit is dbt Cloud's documented account limit of 5,000
	// requests per minute, in requests per second, with some headroom.
	DefaultRateLimit = 4500.0 / 60
	DefaultBurst     = 20
	// DefaultCommitWindow is how long after an ambiguous answer to a
	// creation (a 5xx, a dropped connection, a timeout) the client goes on
	// looking for what it asked for before it concludes that the request
	// did not take effect: gateways answer 502/504 while the backend
	// finishes the work seconds later.
	DefaultCommitWindow = time.Minute
)

// ClientConfig configures a Client. Only AccountID and Token are required.
//
// Printing a ClientConfig with the fmt package or log/slog shows every field
// but the token.
type ClientConfig struct {
	// Host is the dbt Cloud base URL: DefaultHost when empty; regional and
	// account-prefixed hosts ("https://ab123.us1.dbt.com") work the same.
	// A host without a scheme gets https://.
	Host string
	// AccountID is the dbt Cloud account every request is made in.
	AccountID int64
	// Token is a service token or personal access token. It is sent as
	// "Authorization: Token <token>" and never logged or put in an error;
	// text the server sends back is redacted of it too (when it is at
	// least 6 characters long, as every real token is).
	Token string
	// HTTPClient sends the requests; http.DefaultClient when nil.
	HTTPClient *http.Client
	// Logger receives one debug line per request and a warning per retry;
	// nothing is logged when nil.
	Logger *slog.Logger
	// RetryPolicy decides whether a failed attempt is retried;
	// DefaultRetryPolicy when nil.
	RetryPolicy RetryPolicy
	// Backoff computes the wait before a retry; DefaultBackoff when nil.
	Backoff Backoff
	// RetryMax is how many times a request is retried after its first
	// attempt: DefaultRetryMax when zero, no retries when negative.
	RetryMax int
	// RetryWaitMin and RetryWaitMax bound Backoff's delays:
	// DefaultRetryWaitMin and DefaultRetryWaitMax when zero.
	RetryWaitMin time.Duration
	RetryWaitMax time.Duration
	// AttemptTimeout bounds one attempt of a request (connect, send, and
	// read the whole response): DefaultAttemptTimeout when zero.
	AttemptTimeout time.Duration
	// RateLimit is the most requests per second the client sends, shared
	// by all its goroutines: DefaultRateLimit when zero, no limit when
	// negative. Burst is the bucket size: DefaultBurst when zero.
	RateLimit float64
	Burst     int
	// UserAgent is sent as the User-Agent header; "dbtorch" when empty.
	UserAgent string
	// CommitWindow is how long after an ambiguous failure of a job
	// creation or a run trigger the client keeps looking for the job or
	// run before it sends the request again (DefaultCommitWindow when
	// zero). A request the server commits later than this is beyond what
	// the client can tell apart from one that failed.
	CommitWindow time.Duration
}

// String describes the configuration without its token.
func (c ClientConfig) String() string {
	tok := "unset"
	if c.Token != "" {
		tok = "[REDACTED]"
	}
	return fmt.Sprintf("cloud.ClientConfig{Host:%q AccountID:%d Token:%s}", c.Host, c.AccountID, tok)
}

// GoString is String, so that %#v does not print the token either.
func (c ClientConfig) GoString() string { return c.String() }

// LogValue describes the configuration to log/slog without its token.
func (c ClientConfig) LogValue() slog.Value {
	return slog.GroupValue(slog.String("host", c.Host), slog.Int64("account_id", c.AccountID))
}

// Client calls the dbt Cloud Administrative API v2 for one account. It is
// safe for concurrent use; all goroutines share its rate limiter.
type Client struct {
	base        *url.URL // {host}/api/v2/accounts/{id}/
	accountID   int64
	token       string
	http        *http.Client
	log         *slog.Logger
	policy      RetryPolicy
	backoff     Backoff
	retryMax    int
	waitMin     time.Duration
	waitMax     time.Duration
	attemptTime time.Duration
	limiter     *limiter
	userAgent   string
	window      time.Duration
}

// NewClient returns a client for cfg. It makes no request.
func NewClient(cfg ClientConfig) (*Client, error) {
	if cfg.AccountID <= 0 {
		return nil, errors.New("dbt cloud: ClientConfig.AccountID is required")
	}
	if cfg.Token == "" {
		return nil, errors.New("dbt cloud: ClientConfig.Token is required")
	}
	host := strings.TrimSpace(cfg.Host)
	if host == "" {
		host = DefaultHost
	}
	if !strings.Contains(host, "://") {
		host = "https://" + host
	}
	u, err := url.Parse(strings.TrimRight(host, "/"))
	if err != nil || u.Host == "" || (u.Scheme != "https" && u.Scheme != "http") {
		return nil, fmt.Errorf("dbt cloud: invalid Host %q", cfg.Host)
	}
	u.Path = fmt.Sprintf("%s/api/v2/accounts/%d/", u.Path, cfg.AccountID)
	u.RawQuery, u.Fragment = "", ""
	c := &Client{
		base:        u,
		accountID:   cfg.AccountID,
		token:       cfg.Token,
		http:        cfg.HTTPClient,
		log:         cfg.Logger,
		policy:      cfg.RetryPolicy,
		backoff:     cfg.Backoff,
		retryMax:    cfg.RetryMax,
		waitMin:     cfg.RetryWaitMin,
		waitMax:     cfg.RetryWaitMax,
		attemptTime: cfg.AttemptTimeout,
		userAgent:   cfg.UserAgent,
		window:      cfg.CommitWindow,
	}
	if c.window <= 0 {
		c.window = DefaultCommitWindow
	}
	if c.http == nil {
		c.http = http.DefaultClient
	}
	if c.log == nil {
		c.log = slog.New(slog.DiscardHandler)
	}
	if c.policy == nil {
		c.policy = DefaultRetryPolicy
	}
	if c.backoff == nil {
		c.backoff = DefaultBackoff
	}
	switch {
	case c.retryMax == 0:
		c.retryMax = DefaultRetryMax
	case c.retryMax < 0:
		c.retryMax = 0
	}
	if c.waitMin <= 0 {
		c.waitMin = DefaultRetryWaitMin
	}
	if c.waitMax <= 0 {
		c.waitMax = DefaultRetryWaitMax
	}
	if c.waitMax < c.waitMin {
		c.waitMax = c.waitMin
	}
	if c.attemptTime <= 0 {
		c.attemptTime = DefaultAttemptTimeout
	}
	rate, burst := cfg.RateLimit, cfg.Burst
	if rate == 0 {
		rate = DefaultRateLimit
	}
	if burst == 0 {
		burst = DefaultBurst
	}
	c.limiter = newLimiter(rate, burst)
	if c.userAgent == "" {
		c.userAgent = "dbtorch"
	}
	return c, nil
}

// AccountID returns the account the client works in.
func (c *Client) AccountID() int64 { return c.accountID }

// LogValue describes the client to log/slog without its token.
func (c *Client) LogValue() slog.Value {
	return slog.GroupValue(slog.String("base", c.base.String()))
}

// Pagination is the extra.pagination block of a list response.
type Pagination struct {
	// Count is the number of items in this page; TotalCount the number of
	// items matching the filters.
	Count      int `json:"count"`
	TotalCount int `json:"total_count"`
}

type envelopeStatus struct {
	Code             int    `json:"code"`
	IsSuccess        *bool  `json:"is_success"`
	UserMessage      string `json:"user_message"`
	DeveloperMessage string `json:"developer_message"`
}

type envelope struct {
	Status *envelopeStatus `json:"status"`
	Data   json.RawMessage `json:"data"`
	Extra  *struct {
		Pagination Pagination `json:"pagination"`
	} `json:"extra"`
}

// call is one API request.
type call struct {
	method string
	path   string // relative to the account base; ends in "/" unless raw
	query  url.Values
	body   any
	// idempotent requests may be repeated after any failure the policy
	// retries; the others are repeated only after failures that certainly
	// did not take effect (429, transport errors before sending).
	idempotent bool
	// raw responses are files (artifacts), not envelopes.
	raw bool
}

type result struct {
	data  json.RawMessage
	page  Pagination
	raw   []byte
	code  int
	empty bool
}

// minRedact is the shortest token redacted from text: shorter strings
// would be replaced everywhere they happen to occur. Real tokens are far
// longer.
const minRedact = 6

func (c *Client) redact(s string) string {
	if len(c.token) < minRedact {
		return s
	}
	return strings.ReplaceAll(s, c.token, "[REDACTED]")
}

// redactBytes removes the token from a response body, also where JSON
// escaping changed how it is spelled, so that nothing decoded from an
// answer (a run's status message, a step's logs, an artifact) carries it.
func (c *Client) redactBytes(b []byte) []byte {
	if len(c.token) < minRedact {
		return b
	}
	b = bytes.ReplaceAll(b, []byte(c.token), []byte("[REDACTED]"))
	if esc, err := json.Marshal(c.token); err == nil && string(esc[1:len(esc)-1]) != c.token {
		b = bytes.ReplaceAll(b, esc[1:len(esc)-1], []byte("[REDACTED]"))
	}
	return b
}

func (c *Client) urlFor(cl call) string {
	u := *c.base
	u.Path += strings.TrimPrefix(cl.path, "/")
	if len(cl.query) > 0 {
		u.RawQuery = cl.query.Encode()
	}
	return u.String()
}

// send makes one attempt. err is an *APIError when the server answered
// with a failure, a transport error otherwise; resp is set whenever the
// server answered (its body already read and closed).
func (c *Client) send(ctx context.Context, cl call) (*result, *http.Response, error) {
	if err := c.limiter.Wait(ctx); err != nil {
		return nil, nil, err
	}
	actx, cancel := context.WithTimeout(ctx, c.attemptTime)
	defer cancel()
	var body io.Reader
	if cl.body != nil {
		b, err := json.Marshal(cl.body)
		if err != nil {
			return nil, nil, fmt.Errorf("dbt cloud: encoding %s %s: %w", cl.method, cl.path, err)
		}
		body = bytes.NewReader(b)
	}
	req, err := http.NewRequestWithContext(actx, cl.method, c.urlFor(cl), body)
	if err != nil {
		return nil, nil, fmt.Errorf("dbt cloud: %s %s: %w", cl.method, cl.path, err)
	}
	req.Header.Set("Authorization", "Token "+c.token)
	req.Header.Set("Accept", "application/json")
	req.Header.Set("User-Agent", c.userAgent)
	if body != nil {
		req.Header.Set("Content-Type", "application/json")
	}
	start := time.Now()
	resp, err := c.http.Do(req)
	if err != nil {
		return nil, nil, c.transportError(cl, err)
	}
	defer resp.Body.Close()
	ok := resp.StatusCode >= 200 && resp.StatusCode < 300
	var r io.Reader = resp.Body
	if !ok {
		r = io.LimitReader(resp.Body, 1<<20)
	}
	data, err := io.ReadAll(r)
	data = c.redactBytes(data)
	c.log.LogAttrs(ctx, slog.LevelDebug, "dbt cloud request",
		slog.String("method", cl.method), slog.String("path", req.URL.Path),
		slog.Int("status", resp.StatusCode), slog.Duration("took", time.Since(start)))
	if err != nil {
		return nil, resp, c.transportError(cl, err)
	}
	if resp.StatusCode == http.StatusTooManyRequests {
		if d, ok := backoff.RetryAfter(resp, time.Now()); ok {
			c.limiter.PauseUntil(time.Now().Add(d))
		}
	}
	if !ok {
		return nil, resp, c.apiError(cl, resp, data)
	}
	if cl.raw {
		return &result{raw: data, code: resp.StatusCode}, resp, nil
	}
	res := &result{code: resp.StatusCode}
	if len(bytes.TrimSpace(data)) == 0 {
		res.empty = true
		return res, resp, nil
	}
	var env envelope
	if err := json.Unmarshal(data, &env); err != nil {
		ae := c.apiError(cl, resp, nil)
		ae.Message = "response is not a JSON envelope: " + c.redact(err.Error())
		ae.Body = c.redactBody(data)
		return nil, resp, ae
	}
	if env.Status != nil && env.Status.IsSuccess != nil && !*env.Status.IsSuccess {
		ae := c.apiError(cl, resp, data)
		if env.Status.Code >= 400 {
			ae.StatusCode = env.Status.Code
		}
		return nil, resp, ae
	}
	res.data = env.Data
	if env.Extra != nil {
		res.page = env.Extra.Pagination
	}
	return res, resp, nil
}

func (c *Client) redactBody(b []byte) []byte {
	if len(b) > maxErrorBody {
		b = b[:maxErrorBody]
	}
	return []byte(c.redact(string(b)))
}

func (c *Client) apiError(cl call, resp *http.Response, body []byte) *APIError {
	msg, dev := parseErrorBody(body)
	ae := &APIError{
		Method:           cl.method,
		Path:             c.base.Path + strings.TrimPrefix(cl.path, "/"),
		StatusCode:       resp.StatusCode,
		Message:          c.redact(msg),
		DeveloperMessage: c.redact(dev),
		Body:             c.redactBody(body),
	}
	if d, ok := backoff.RetryAfter(resp, time.Now()); ok {
		ae.RetryAfter = d
	}
	return ae
}

func (c *Client) transportError(cl call, err error) error {
	return &redactedError{
		msg: c.redact(fmt.Sprintf("dbt cloud: %s %s: %v", cl.method, c.base.Path+strings.TrimPrefix(cl.path, "/"), err)),
		err: err,
	}
}

// mayHaveApplied reports whether a failed attempt of a non-idempotent
// request may nevertheless have taken effect on the server.
func mayHaveApplied(resp *http.Response, err error) bool {
	if resp == nil {
		return true // transport error: the request may have been processed
	}
	var ae *APIError
	if errors.As(err, &ae) {
		return ae.StatusCode >= 500
	}
	return true // the response body was lost
}

// ask consults the retry policy: with the response when the server
// answered, with the error when it did not (or its answer was lost).
func (c *Client) ask(ctx context.Context, resp *http.Response, err error) (bool, error) {
	var ae *APIError
	if errors.As(err, &ae) {
		return c.policy(ctx, resp, nil)
	}
	return c.policy(ctx, nil, err)
}

// do performs cl, retrying according to the policy when cl is idempotent,
// or when the failure certainly did not take effect.
func (c *Client) do(ctx context.Context, cl call) (*result, error) {
	for attempt := 0; ; attempt++ {
		res, resp, err := c.send(ctx, cl)
		if err == nil {
			return res, nil
		}
		if ctx.Err() != nil {
			return nil, c.ctxError(ctx, cl, err)
		}
		retry, perr := c.ask(ctx, resp, err)
		if perr != nil {
			return nil, perr
		}
		if !retry || attempt >= c.retryMax || (!cl.idempotent && mayHaveApplied(resp, err)) {
			return nil, err
		}
		if err := c.wait(ctx, cl, attempt, resp, err); err != nil {
			return nil, err
		}
	}
}

func (c *Client) ctxError(ctx context.Context, cl call, err error) error {
	if errors.Is(err, ctx.Err()) {
		return err
	}
	return fmt.Errorf("dbt cloud: %s %s: %w (after: %v)", cl.method, cl.path, ctx.Err(), err)
}

func (c *Client) wait(ctx context.Context, cl call, attempt int, resp *http.Response, cause error) error {
	d := c.backoff(c.waitMin, c.waitMax, attempt, resp)
	c.log.LogAttrs(ctx, slog.LevelWarn, "dbt cloud request failed; retrying",
		slog.String("method", cl.method), slog.String("path", cl.path),
		slog.Int("attempt", attempt+1), slog.Duration("wait", d), slog.String("error", c.redact(cause.Error())))
	if !backoff.Sleep(ctx, d) {
		return c.ctxError(ctx, cl, cause)
	}
	return nil
}

// sendRecord is what create tells its caller about the requests it sent,
// for a clean-up that must find what they made.
type sendRecord struct {
	// sends counts the requests sent.
	sends int
	// last is when the last one ended (answered, failed or abandoned).
	last time.Time
	// unsure reports that the last one may have taken effect although
	// create returned an error: its answer was ambiguous and the look-up
	// neither found its effect nor lasted the commit window (ctx ended,
	// or the look-ups failed).
	unsure bool
}

// create performs a non-idempotent POST that creates a T. After a
// failure that may have taken effect it looks for the object with lookup
// (see await) and returns it if found; only when the commit window passes
// without a trace is the request sent again, if the policy allows.
func create[T any](ctx context.Context, c *Client, op string, cl call, lookup func(context.Context) (*T, error)) (*T, sendRecord, error) {
	cl.idempotent = false
	var rec sendRecord
	for attempt := 0; ; attempt++ {
		res, resp, err := c.send(ctx, cl)
		rec.sends++
		rec.last = time.Now()
		if err == nil {
			var out T
			if err := decodeData(res.data, &out); err != nil {
				return nil, rec, fmt.Errorf("dbt cloud: %s: %w", op, err)
			}
			return &out, rec, nil
		}
		ambiguous := mayHaveApplied(resp, err)
		if ctx.Err() != nil {
			if ambiguous {
				rec.unsure = true
				return nil, rec, &AmbiguousError{Op: op, Err: c.ctxError(ctx, cl, err)}
			}
			return nil, rec, c.ctxError(ctx, cl, err)
		}
		retry, perr := c.ask(ctx, resp, err)
		if ambiguous {
			c.log.LogAttrs(ctx, slog.LevelWarn, "dbt cloud: creation failed ambiguously; looking for its effect",
				slog.String("op", op), slog.Duration("window", c.window), slog.String("error", c.redact(err.Error())))
			found, lerr := await(ctx, c, rec.last, lookup)
			if found != nil {
				c.log.LogAttrs(ctx, slog.LevelInfo, "dbt cloud: request had succeeded despite the error",
					slog.String("op", op), slog.String("error", c.redact(err.Error())))
				return found, rec, nil
			}
			if lerr != nil {
				rec.unsure = true
				return nil, rec, &AmbiguousError{Op: op, Err: errors.Join(err, lerr)}
			}
		}
		if perr != nil {
			return nil, rec, perr
		}
		if !retry || attempt >= c.retryMax {
			return nil, rec, err
		}
		if !ambiguous {
			if err := c.wait(ctx, cl, attempt, resp, err); err != nil {
				return nil, rec, err
			}
		}
	}
}

// await looks for the effect of a request that ended ambiguously at
// since, with lookup, until it finds it or the commit window from since
// has passed (one look-up is made at or after the window's end). It
// returns (nil, nil) when a look-up at the window's end found nothing,
// and an error when ctx ended first or the last look-up failed: then the
// outcome is unknown.
func await[T any](ctx context.Context, c *Client, since time.Time, lookup func(context.Context) (*T, error)) (*T, error) {
	deadline := since.Add(c.window)
	for i := 0; ; i++ {
		found, err := lookup(ctx)
		if found != nil {
			return found, nil
		}
		if ctx.Err() != nil {
			return nil, ctx.Err()
		}
		left := time.Until(deadline)
		if left <= 0 {
			return nil, err
		}
		if !backoff.Sleep(ctx, min(c.backoff(c.waitMin, c.waitMax, i, nil), left)) {
			return nil, ctx.Err()
		}
	}
}

// transient reports whether err may go away when the request is repeated:
// a transport error, a 429 or a 5xx, or an ambiguous creation.
func transient(err error) bool {
	var ae *APIError
	if errors.As(err, &ae) && ae.StatusCode < 500 && ae.StatusCode != http.StatusTooManyRequests {
		var amb *AmbiguousError
		return errors.As(err, &amb)
	}
	return true
}

// persist calls op, which must be safe to repeat, until it succeeds,
// fails in a way repeating cannot mend, or ctx ends, waiting a backoff
// between calls. Clean-up uses it to outlast rate-limit cooldowns and
// outages longer than one request's retries.
//
// When ctx ends during a call, the error also gives the failure of the
// call before, which says why the budget ran out (a cooldown's 429).
func (c *Client) persist(ctx context.Context, op func(context.Context) error) error {
	var last error
	for attempt := 0; ; attempt++ {
		err := op(ctx)
		switch {
		case err == nil:
			return nil
		case ctx.Err() != nil && last != nil:
			return fmt.Errorf("%w (gave up when the time ran out; the call before failed: %v)", err, last)
		case ctx.Err() != nil || !transient(err):
			return err
		}
		last = err
		if !backoff.Sleep(ctx, c.backoff(c.waitMin, c.waitMax, attempt, nil)) {
			return err
		}
	}
}

// get decodes the data of a GET into out.
func (c *Client) get(ctx context.Context, path string, q url.Values, out any) (Pagination, error) {
	res, err := c.do(ctx, call{method: http.MethodGet, path: path, query: q, idempotent: true})
	if err != nil {
		return Pagination{}, err
	}
	if out != nil {
		if err := decodeData(res.data, out); err != nil {
			return Pagination{}, fmt.Errorf("dbt cloud: GET %s: %w", path, err)
		}
	}
	return res.page, nil
}

func decodeData(data json.RawMessage, out any) error {
	if len(data) == 0 || string(data) == "null" {
		return errors.New("response has no data")
	}
	if err := json.Unmarshal(data, out); err != nil {
		return fmt.Errorf("decoding data: %w", err)
	}
	return nil
}
