// Package enum names the values of dbtorch's small integer enums
// (manifest.TestStrategy, orchestrator.Mode, orchestrator.Priority) once:
// String and Parse both read the one list of names.
package enum

import (
	"fmt"
	"slices"
	"strings"
)

// Names are the names of an enum's values 0, 1, 2, ..., in order.
type Names[T ~int] []string

// String returns v's name, or "typ(v)" for a value without one.
func (n Names[T]) String(v T, typ string) string {
	if v >= 0 && int(v) < len(n) {
		return n[v]
	}
	return fmt.Sprintf("%s(%d)", typ, int(v))
}

// Parse returns the value named s, def when s is "", or an error
// "<unknown> "<s>" (want a, b or c)" (unknown: "unknown mode", say, with
// its package's prefix).
func (n Names[T]) Parse(s string, def T, unknown string) (T, error) {
	if s == "" {
		return def, nil
	}
	i := slices.Index(n, s)
	if i < 0 {
		return 0, fmt.Errorf("%s %q (want %s)", unknown, s, n.List())
	}
	return T(i), nil
}

// List returns the names as a sentence's list: "a, b or c".
func (n Names[T]) List() string {
	if len(n) < 2 {
		return strings.Join(n, "")
	}
	return strings.Join(n[:len(n)-1], ", ") + " or " + n[len(n)-1]
}
