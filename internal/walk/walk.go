// Package walk holds the depth-first walk of the graphs dbtorch keeps
// outside the manifest's indexed DAG: the macros a node calls (cache) and
// a project's directory tree (selector path:).
package walk

import "slices"

// Depth visits, depth first, every element reachable from roots, each
// once. An element not yet in seen is marked there, then next appends
// its successors to the stack it is given and returns that stack (nil
// successors: the stack unchanged). An element already in seen when
// Depth starts is neither visited nor walked through, so seen may stop
// the walk as well as collect what it reached. roots is not modified.
func Depth[T comparable](roots []T, seen map[T]bool, next func(e T, stack []T) []T) {
	stack := slices.Clone(roots)
	for len(stack) > 0 {
		e := stack[len(stack)-1]
		stack = stack[:len(stack)-1]
		if seen[e] {
			continue
		}
		seen[e] = true
		stack = next(e, stack)
	}
}
