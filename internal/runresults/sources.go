package runresults

import (
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"strings"
	"time"
)

// Source freshness statuses, as dbt writes them in sources.json.
const (
	StatusPass         = "pass"
	StatusWarn         = "warn"
	StatusError        = "error"
	StatusRuntimeError = "runtime error"
)

// Sources is a decoded sources.json, the snapshot `dbt source freshness`
// writes.
type Sources struct {
	SchemaVersion string
	GeneratedAt   time.Time
	Results       []Source
}

// Source is one source's result in a sources.json.
type Source struct {
	UniqueID string
	// Status is pass, warn, error or runtime error (lower case).
	Status string
	// MaxLoadedAt is zero when dbt wrote none (a failed check).
	MaxLoadedAt time.Time
	// SnapshottedAt is the file's generated_at when dbt wrote none.
	SnapshottedAt time.Time
	// WarnAfter and ErrorAfter are the thresholds dbt applied; zero when
	// not set.
	WarnAfter  time.Duration
	ErrorAfter time.Duration
	// Error is dbt's message when the check itself failed (runtime error).
	Error string
}

// Stale reports whether the source failed its freshness check: status
// error or runtime error. A warning is not stale.
func (s Source) Stale() bool {
	return s.Status == StatusError || s.Status == StatusRuntimeError
}

// Expiry returns the time at which results built from the source stop
// being trustworthy: when its data crosses warn_after, or, if that is
// unset or already crossed, error_after, counted from max_loaded_at (that
// is, the time left at the snapshot, added to the snapshot). A source
// that has crossed both, or whose check failed, expires at the snapshot.
// ok is false when the source has no thresholds.
func (s Source) Expiry() (t time.Time, ok bool) {
	if s.Status == StatusRuntimeError || s.MaxLoadedAt.IsZero() {
		return s.SnapshottedAt, true
	}
	if s.WarnAfter <= 0 && s.ErrorAfter <= 0 {
		return time.Time{}, false
	}
	for _, d := range []time.Duration{s.WarnAfter, s.ErrorAfter} {
		if d > 0 {
			if e := s.MaxLoadedAt.Add(d); e.After(s.SnapshottedAt) {
				return e, true
			}
		}
	}
	return s.SnapshottedAt, true
}

// ParseSources decodes a sources.json (schema v3, and the v1/v2 layouts it
// extends). Results that describe a failed check carry only unique_id,
// status and error (or message). It fails naming the source on a missing
// unique_id, an unknown status, an unreadable timestamp or period, and on
// a document that is not a sources.json (no results, another schema).
func ParseSources(r io.Reader) (*Sources, error) {
	var raw struct {
		Metadata struct {
			SchemaVersion string `json:"dbt_schema_version"`
			GeneratedAt   string `json:"generated_at"`
		} `json:"metadata"`
		Results *[]struct {
			UniqueID      string `json:"unique_id"`
			Status        string `json:"status"`
			MaxLoadedAt   string `json:"max_loaded_at"`
			SnapshottedAt string `json:"snapshotted_at"`
			Error         string `json:"error"`
			Message       string `json:"message"`
			Criteria      struct {
				WarnAfter  *period `json:"warn_after"`
				ErrorAfter *period `json:"error_after"`
			} `json:"criteria"`
		} `json:"results"`
	}
	if err := json.NewDecoder(r).Decode(&raw); err != nil {
		return nil, fmt.Errorf("sources.json: %w", err)
	}
	if raw.Results == nil {
		return nil, errors.New("sources.json: no results (not a sources.json?)")
	}
	if v := raw.Metadata.SchemaVersion; v != "" && !strings.Contains(v, "/sources/") {
		return nil, fmt.Errorf("sources.json: schema %s is not a sources schema", v)
	}
	out := &Sources{SchemaVersion: raw.Metadata.SchemaVersion, Results: make([]Source, 0, len(*raw.Results))}
	out.GeneratedAt, _ = ParseTime(raw.Metadata.GeneratedAt)
	for i, res := range *raw.Results {
		if res.UniqueID == "" {
			return nil, fmt.Errorf("sources.json: result %d has no unique_id", i)
		}
		s := Source{UniqueID: res.UniqueID, Status: strings.ToLower(res.Status), Error: res.Error}
		if s.Error == "" && s.Status == StatusRuntimeError {
			s.Error = res.Message
		}
		var err error
		if s.MaxLoadedAt, err = ParseTime(res.MaxLoadedAt); err != nil {
			return nil, fmt.Errorf("sources.json: %s max_loaded_at: %w", res.UniqueID, err)
		}
		if s.SnapshottedAt, err = ParseTime(res.SnapshottedAt); err != nil {
			return nil, fmt.Errorf("sources.json: %s snapshotted_at: %w", res.UniqueID, err)
		}
		if s.SnapshottedAt.IsZero() {
			s.SnapshottedAt = out.GeneratedAt
		}
		if s.WarnAfter, err = res.Criteria.WarnAfter.duration(); err != nil {
			return nil, fmt.Errorf("sources.json: %s warn_after: %w", res.UniqueID, err)
		}
		if s.ErrorAfter, err = res.Criteria.ErrorAfter.duration(); err != nil {
			return nil, fmt.Errorf("sources.json: %s error_after: %w", res.UniqueID, err)
		}
		switch s.Status {
		case StatusPass, StatusWarn, StatusError, StatusRuntimeError:
		default:
			return nil, fmt.Errorf("sources.json: %s has unknown status %q", res.UniqueID, res.Status)
		}
		out.Results = append(out.Results, s)
	}
	return out, nil
}

// period is a freshness threshold as dbt writes it.
type period struct {
	Count  *float64 `json:"count"`
	Period string   `json:"period"`
}

func (p *period) duration() (time.Duration, error) {
	if p == nil || p.Count == nil || *p.Count <= 0 {
		return 0, nil
	}
	var unit time.Duration
	switch strings.ToLower(p.Period) {
	case "minute":
		unit = time.Minute
	case "hour":
		unit = time.Hour
	case "day":
		unit = 24 * time.Hour
	default:
		return 0, fmt.Errorf("unknown period %q", p.Period)
	}
	return time.Duration(*p.Count * float64(unit)), nil
}
