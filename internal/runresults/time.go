package runresults

import (
	"fmt"
	"strings"
	"time"
)

// TimeLayout is how dbt writes timestamps in its artifacts (UTC,
// microseconds).
const TimeLayout = "2006-01-02T15:04:05.000000Z"

// FormatTime formats t as dbt writes timestamps (TimeLayout, in UTC).
func FormatTime(t time.Time) string { return t.UTC().Format(TimeLayout) }

// OptTime is FormatTime for a nullable key: nil for the zero time.
func OptTime(t time.Time) *string {
	if t.IsZero() {
		return nil
	}
	s := FormatTime(t)
	return &s
}

// ParseTime accepts the timestamp layouts dbt writes: RFC 3339 with or
// without fraction and offset, space or T separated; no offset means UTC.
// The result is in UTC; "" is the zero time.
func ParseTime(s string) (time.Time, error) {
	s = strings.TrimSpace(s)
	if s == "" {
		return time.Time{}, nil
	}
	for _, layout := range []string{time.RFC3339Nano, "2006-01-02T15:04:05.999999999", "2006-01-02 15:04:05.999999999Z07:00", "2006-01-02 15:04:05.999999999"} {
		if t, err := time.Parse(layout, s); err == nil {
			return t.UTC(), nil
		}
	}
	return time.Time{}, fmt.Errorf("unrecognised timestamp %q", s)
}
