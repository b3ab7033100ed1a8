package orchestrator

import (
	"context"
	"strings"

	"github.com/dbtorch/dbtorch/manifest"
	"github.com/dbtorch/dbtorch/selector"
)

// NothingToDo is the warning of a build whose selection planned no node,
// in dbt's words.
const NothingToDo = "Nothing to do. Try checking your model configs and model specification args"

// selectionWarnings returns dbt's warnings about sel, as `dbt build`
// prints them: "The selection criterion 'X' does not match any enabled
// nodes" for every --select or --exclude argument piece (split on spaces,
// as dbt's parse_union does; a comma-joined intersection is one piece)
// that selects nothing on its own, before resource-type filters, and
// NothingToDo when the plan is empty. The pieces are evaluated by the
// native selector over g, whichever resolver chose the build's nodes; a
// piece it cannot evaluate gives no warning (the resolver already
// accepted or refused the selection).
func (o *Orchestrator) selectionWarnings(ctx context.Context, g *manifest.Graph, sel selector.Options, planned int) []string {
	var out []string
	if selectsAll(sel) {
		return nil
	}
	native := o.nativeFor(g)
	for _, arg := range append(append([]string(nil), sel.Select...), sel.Exclude...) {
		for _, piece := range strings.Split(arg, " ") {
			if piece == "" {
				continue
			}
			p := sel
			p.Select, p.Exclude, p.Selector = []string{piece}, nil, ""
			p.ResourceTypes, p.ExcludeResourceTypes, p.ExcludeEmpty = nil, nil, false
			ids, err := native.Resolve(ctx, p)
			if err == nil && len(ids) == 0 {
				out = append(out, "The selection criterion '"+piece+"' does not match any enabled nodes")
			}
		}
	}
	if planned == 0 {
		out = append(out, NothingToDo)
	}
	return out
}
