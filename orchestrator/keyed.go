package orchestrator

import (
	"cmp"
	"context"
	"fmt"
	"slices"
	"strings"

	"github.com/dbtorch/dbtorch/manifest"
)

// keyedLimits returns the limits of a NodeLimit with ForNode for nodes:
// one per distinct key, sorted by key, named "<name>[<key>]", each with
// the Limiter for its key and ForNode kept to mark it as per-key.
func keyedLimits(l NodeLimit, nodes []*manifest.Node) []NodeLimit {
	var out []NodeLimit
	for _, n := range nodes {
		if l.Applies != nil && !l.Applies(n) {
			continue
		}
		key, lim := l.ForNode(n)
		if lim == nil {
			continue
		}
		name := l.Name + "[" + key + "]"
		if !slices.ContainsFunc(out, func(o NodeLimit) bool { return o.Name == name }) {
			out = append(out, NodeLimit{Name: name, Limiter: lim, ForNode: l.ForNode})
		}
	}
	slices.SortFunc(out, func(a, b NodeLimit) int { return cmp.Compare(a.Name, b.Name) })
	return out
}

// RelationKey returns the name of the relation node n writes, as a lock
// key: its relation_name lower-cased, else database.schema.alias (name
// when there is no alias) lower-cased, and "" for nodes that write no
// relation (tests, ephemeral models, sources and the rest).
func RelationKey(n *manifest.Node) string {
	switch n.ResourceType {
	case manifest.Model, manifest.Seed, manifest.Snapshot:
	default:
		return ""
	}
	if n.IsEphemeral() {
		return ""
	}
	if n.RelationName != "" {
		return strings.ToLower(n.RelationName)
	}
	name := cmp.Or(n.Alias, n.Name)
	if name == "" {
		return ""
	}
	parts := slices.DeleteFunc([]string{n.Database, n.Schema, name}, func(s string) bool { return s == "" })
	return strings.ToLower(strings.Join(parts, "."))
}

// RelationLockName is the limit name under which a one-writer lock of
// the relation key is kept ("relation:" + key), in a Registry or a shared
// store.
func RelationLockName(key string) string { return "relation:" + key }

// RelationLocks returns a NodeLimit named "relation" that gives every
// node writing a relation (see RelationKey) the registry's one-slot
// limiter RelationLockName(key) while it runs: builds sharing the
// registry (several orchestrators in one process) never build the same
// relation at once; the later one waits, and the wait is its WaitTime.
// Put it first in Config.Limits, before the limits with several slots, so
// that a node waiting for a relation holds no warehouse slot.
func (r *Registry) RelationLocks() NodeLimit {
	return NodeLimit{Name: "relation", ForNode: func(n *manifest.Node) (string, Limiter) {
		key := RelationKey(n)
		if key == "" {
			return "", nil
		}
		name := RelationLockName(key)
		l, err := r.Limiter(name, 1)
		if err != nil {
			// The caller registered the name with another size: that
			// limiter is the relation's.
			r.mu.Lock()
			l = r.m[name].Limiter
			r.mu.Unlock()
		}
		return key, l
	}}
}

// MetaKey is the key of a node's config meta under which dbtorch reads
// its settings: config: {meta: {dbtorch: {limits: [NAME, ...]}}}.
const MetaKey = "dbtorch"

// DeclaredLimits returns the names of the limits node n declares in its
// config, as dbt users declare things (in a model's config block, its
// properties file, or for many nodes at once under +meta in
// dbt_project.yml):
//
//	config:
//	  meta:
//	    dbtorch:
//	      limits: [snowflake_wh]
//
// limits may also be one name. It returns nil when the node declares
// none, and an error naming the node when meta.dbtorch or its limits have
// another shape.
func DeclaredLimits(n *manifest.Node) ([]string, error) {
	meta, _ := n.Config.Get("meta").(map[string]any)
	raw, ok := meta[MetaKey]
	if !ok || raw == nil {
		return nil, nil
	}
	d, ok := raw.(map[string]any)
	if !ok {
		return nil, fmt.Errorf("orchestrator: %s: config.meta.%s must be a mapping, not %T", n.UniqueID, MetaKey, raw)
	}
	switch v := d["limits"].(type) {
	case nil:
		return nil, nil
	case string:
		return []string{v}, nil
	case []any:
		out := make([]string, 0, len(v))
		for _, e := range v {
			s, ok := e.(string)
			if !ok || s == "" {
				return nil, fmt.Errorf("orchestrator: %s: config.meta.%s.limits must list limit names, found %v", n.UniqueID, MetaKey, e)
			}
			out = append(out, s)
		}
		return out, nil
	default:
		return nil, fmt.Errorf("orchestrator: %s: config.meta.%s.limits must be a list of limit names, not %T", n.UniqueID, MetaKey, v)
	}
}

// DeclaredBy returns a NodeLimit.Applies function for the limit name: it
// applies to the nodes whose DeclaredLimits list name and to the nodes
// tagged name. A node whose meta.dbtorch is malformed declares nothing
// here; check the manifest with CheckDeclaredLimits first.
func DeclaredBy(name string) func(*manifest.Node) bool {
	return func(n *manifest.Node) bool {
		if slices.Contains(n.Tags, name) {
			return true
		}
		names, _ := DeclaredLimits(n)
		return slices.Contains(names, name)
	}
}

// CheckDeclaredLimits checks every node's declared limits: it returns an
// error naming the first malformed node (in unique_id order), and the
// limit names declared in meta that are not in known (sorted), each with
// the first node that declares it, for the caller to warn about.
func CheckDeclaredLimits(m *manifest.Manifest, known []string) (unknown map[string]string, err error) {
	ids := make([]string, 0, len(m.Nodes))
	for id := range m.Nodes {
		ids = append(ids, id)
	}
	slices.Sort(ids)
	for _, id := range ids {
		names, err := DeclaredLimits(m.Nodes[id])
		if err != nil {
			return nil, err
		}
		for _, name := range names {
			if !slices.Contains(known, name) {
				if unknown == nil {
					unknown = map[string]string{}
				}
				if _, seen := unknown[name]; !seen {
					unknown[name] = id
				}
			}
		}
	}
	return unknown, nil
}

// builtMeanwhile reports whether, now that node n holds its slots sl, the
// cache has an entry for key that was not there before: another build
// held a per-key lock of n (its relation) and built the same key while n
// waited. Only slots with a per-key limit are looked up again.
func (b *build) builtMeanwhile(ctx context.Context, n *manifest.Node, sl *slots, key string) bool {
	if b.cache == nil || key == "" || !slices.ContainsFunc(sl.ls, func(l NodeLimit) bool { return l.ForNode != nil }) {
		return false
	}
	hit, _, err := b.cache.Lookup(ctx, n, key)
	if err != nil {
		b.o.log.WarnContext(ctx, "cache lookup failed; running the node", "node", n.UniqueID, "error", err)
	}
	return hit
}
