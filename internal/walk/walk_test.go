package walk_test

import (
	"testing"

	"github.com/google/go-cmp/cmp"
	"github.com/stretchr/testify/assert"

	"github.com/dbtorch/dbtorch/internal/walk"
)

// TestDepth walks a graph with a cycle and a shared successor depth
// first, visiting each element once; an element already seen stops the
// walk there; roots is left as it was.
func TestDepth(t *testing.T) {
	edges := map[string][]string{"a": {"b", "c"}, "b": {"d"}, "c": {"d", "a"}, "d": {"e"}, "x": {"y"}}
	var order []string
	walkFrom := func(roots []string, seen map[string]bool) {
		order = nil
		walk.Depth(roots, seen, func(e string, stack []string) []string {
			order = append(order, e)
			return append(stack, edges[e]...)
		})
	}

	seen := map[string]bool{}
	roots := []string{"x", "a"}
	walkFrom(roots, seen)
	assert.Empty(t, cmp.Diff([]string{"a", "c", "d", "e", "b", "x", "y"}, order))
	assert.Empty(t, cmp.Diff(map[string]bool{"a": true, "b": true, "c": true, "d": true, "e": true, "x": true, "y": true}, seen))
	assert.Equal(t, []string{"x", "a"}, roots)

	walkFrom([]string{"a"}, map[string]bool{"d": true})
	assert.Empty(t, cmp.Diff([]string{"a", "c", "b"}, order))

	walkFrom(nil, map[string]bool{})
	assert.Empty(t, order)
}
