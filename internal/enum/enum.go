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

// Parse returns the value named s, and whether there is one.
func (n Names[T]) Parse(s string) (T, bool) {
	i := slices.Index(n, s)
	if i < 0 {
		return 0, false
	}
	return T(i), true
}

// List returns the names as a sentence's list: "a, b or c".
func (n Names[T]) List() string {
	if len(n) < 2 {
		return strings.Join(n, "")
	}
	return strings.Join(n[:len(n)-1], ", ") + " or " + n[len(n)-1]
}
