package selector

import (
	"errors"
	"fmt"
	"strings"
)

// SyntaxError reports a selection expression that does not parse: an
// unknown method, an "@" prefix combined with a "+" suffix, a malformed
// criterion or YAML selector definition.
type SyntaxError struct {
	// Expr is the whole argument the error was found in (one Select or
	// Exclude element, or the YAML selector's name).
	Expr string
	// Token is the offending part of Expr: a criterion or a method name.
	Token string
	// Pos is Token's byte offset in Expr, or -1 when unknown.
	Pos int
	// Msg says what is wrong.
	Msg string
}

func (e *SyntaxError) Error() string {
	if e.Pos >= 0 {
		return fmt.Sprintf("selector: %s: %q at byte %d of %q", e.Msg, e.Token, e.Pos, e.Expr)
	}
	return fmt.Sprintf("selector: %s: %q in %q", e.Msg, e.Token, e.Expr)
}

// ValueError reports a value that a method rejects, such as
// resource_type:bogus, state:changed, version:newest or a source value with
// more than three parts. dbt rejects the same values.
type ValueError struct {
	// Criterion is the raw criterion, e.g. "state:changed".
	Criterion string
	Method    string
	Value     string
	Msg       string
}

func (e *ValueError) Error() string {
	return fmt.Sprintf("selector: %s: %s", e.Criterion, e.Msg)
}

// UnknownSelectorError reports a --selector name the manifest does not define.
type UnknownSelectorError struct {
	Name  string
	Known []string // sorted
}

func (e *UnknownSelectorError) Error() string {
	return fmt.Sprintf("selector: no YAML selector named %q (known: %s)", e.Name, strings.Join(e.Known, ", "))
}

// ContractError reports a breaking change to the enforced contract of a
// versioned model found while evaluating state:modified; dbt fails the
// selection with the same error.
type ContractError struct {
	UniqueID string
	Changes  []string
}

func (e *ContractError) Error() string {
	return fmt.Sprintf("selector: breaking change to the contract of versioned model %s: %s", e.UniqueID, strings.Join(e.Changes, "; "))
}

// Sentinel errors wrapped when a state-based method lacks its input.
var (
	// ErrNoState: a state: criterion without a comparison manifest
	// (Options.State or Options.StatePath).
	ErrNoState = errors.New("state: selection needs a comparison manifest (--state)")
	// ErrNoRunResults: a result: criterion without run results.
	ErrNoRunResults = errors.New("result: selection needs run_results.json (--state)")
	// ErrNoSources: a source_status: criterion without both sources.json files.
	ErrNoSources = errors.New("source_status: selection needs previous and current sources.json")
)
