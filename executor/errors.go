package executor

import (
	"errors"
	"fmt"
)

// ErrClosed is returned by Execute and Prepare after Close.
var ErrClosed = errors.New("executor: closed")

// ConfigError reports an invalid executor configuration or request, such
// as an extra argument that would break orchestration. Use errors.As to
// get it.
type ConfigError struct {
	// Field names the offending field ("ExtraArgs", "ProjectDir",
	// "Request.Nodes", ...).
	Field string
	// Value is the offending value, if any.
	Value string
	// Reason says what is wrong.
	Reason string
}

// Error returns "executor: <field>: <value>: <reason>".
func (e *ConfigError) Error() string {
	if e.Value != "" {
		return fmt.Sprintf("executor: %s: %q: %s", e.Field, e.Value, e.Reason)
	}
	return fmt.Sprintf("executor: %s: %s", e.Field, e.Reason)
}
