package orchestrator

import (
	"context"

	"github.com/dbtorch/dbtorch/manifest"
	"github.com/dbtorch/dbtorch/selector"
)

// Resolver turns a build's selection (BuildOptions.Selection) into the
// unique_ids it selects, tests included by indirect selection, as `dbt ls`
// would. It is selector.Resolver: selector.Native (the default, over the
// build's graph), selector.DBTLs or a selector.Session for dbt's own
// answer, or any type with that method. Ids of non-executable nodes in the
// answer are ignored, and so are nodes whose code is empty
// (manifest.Node.IsEmpty), as dbt build leaves them out.
type Resolver = selector.Resolver

// selectsAll reports whether sel selects by default (every node), so that
// no resolver needs asking.
func selectsAll(sel selector.Options) bool {
	return len(sel.Select) == 0 && len(sel.Exclude) == 0 && sel.Selector == "" &&
		len(sel.ResourceTypes) == 0 && len(sel.ExcludeResourceTypes) == 0
}

// resolve returns the ids sel selects with the configured resolver, or the
// native selector over g, without the empty nodes dbt build leaves out; the
// result is never nil (nil would plan every node). The native selector is
// built per graph (and kept while builds resolve over the same graph), so
// its caches (config values, --state files) serve every build.
func (o *Orchestrator) resolve(ctx context.Context, g *manifest.Graph, sel selector.Options) ([]string, error) {
	r := o.cfg.Resolver
	if r == nil {
		r = o.nativeFor(g)
	}
	sel.ExcludeEmpty = false // applied below, for every resolver
	ids, err := r.Resolve(ctx, sel)
	if err != nil {
		return nil, err
	}
	out := make([]string, 0, len(ids))
	for _, id := range ids {
		if n := g.Node(id); n == nil || !n.IsEmpty() {
			out = append(out, id)
		}
	}
	return out, nil
}

// nativeFor returns the native selector over g, kept while builds use g.
func (o *Orchestrator) nativeFor(g *manifest.Graph) *selector.Native {
	o.mu.Lock()
	defer o.mu.Unlock()
	if o.native == nil || o.nativeG != g {
		o.native, o.nativeG = selector.NewNative(g), g
	}
	return o.native
}
