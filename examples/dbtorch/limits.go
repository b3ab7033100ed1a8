package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"maps"
	"slices"
	"strconv"
	"strings"

	"github.com/dbtorch/dbtorch/manifest"
	"github.com/dbtorch/dbtorch/orchestrator"
	"github.com/dbtorch/dbtorch/orchestrator/pglimit"
)

// limitFlags are build's concurrency limits: --limit NAME=N (repeatable)
// bounds the nodes that declare the limit NAME (config.meta.dbtorch.limits
// or the tag NAME) to N at once; --limit-store postgres://... keeps the
// limits in PostgreSQL, shared with every build using the same store, and
// adds one-writer-per-relation locks across those builds.
type limitFlags struct {
	sizes sizesFlag
	store storeFlag
}

func addLimitFlags(fs *flag.FlagSet) *limitFlags {
	f := &limitFlags{sizes: sizesFlag{}}
	fs.Var(f.sizes, "limit", "`NAME=N`: at most N nodes declaring the limit NAME (config meta dbtorch.limits, or tag NAME) run at once (repeatable)")
	fs.Var(&f.store, "limit-store", "`postgres://...` URL: keep --limit slots in PostgreSQL, shared by every build using it, and let one build at a time write a relation")
	return f
}

// sizesFlag is --limit NAME=N, repeatable; a name given twice is an error.
type sizesFlag map[string]int

func (s sizesFlag) String() string {
	var parts []string
	for _, name := range s.names() {
		parts = append(parts, name+"="+strconv.Itoa(s[name]))
	}
	return strings.Join(parts, ",")
}

func (s sizesFlag) Set(v string) error {
	name, n, ok := strings.Cut(v, "=")
	name = strings.TrimSpace(name)
	if !ok || name == "" {
		return fmt.Errorf("want NAME=N, not %q", v)
	}
	size, err := strconv.Atoi(strings.TrimSpace(n))
	if err != nil || size < 1 {
		return fmt.Errorf("limit %q: want a positive number of slots, not %q", name, n)
	}
	if _, dup := s[name]; dup {
		return fmt.Errorf("limit %q given twice", name)
	}
	s[name] = size
	return nil
}

func (s sizesFlag) names() []string { return slices.Sorted(maps.Keys(s)) }

// storeFlag is --limit-store: a postgres:// or postgresql:// URL.
type storeFlag string

func (s *storeFlag) String() string { return string(*s) }

func (s *storeFlag) Set(v string) error {
	if !strings.HasPrefix(v, "postgres://") && !strings.HasPrefix(v, "postgresql://") {
		return fmt.Errorf("want a postgres:// URL, not %q", v)
	}
	*s = storeFlag(v)
	return nil
}

// apply adds the limits to cfg: the relation locks first (with a store),
// then the named limits in name order, so that every build sharing a
// store takes them in one order. It checks the manifest's declarations
// (a malformed meta.dbtorch is a usageError naming the node) and warns
// about limits declared but not given and given but not declared. The
// returned function closes the store; call it after the build.
func (f *limitFlags) apply(ctx context.Context, cfg *orchestrator.Config, m *manifest.Manifest, logger *slog.Logger) (func(), error) {
	unknown, err := orchestrator.CheckDeclaredLimits(m, f.sizes.names())
	if err != nil {
		return nil, usageError{err}
	}
	for _, name := range slices.Sorted(maps.Keys(unknown)) {
		logger.Warn("a node declares a limit no --limit gives; it is not limited", "limit", name, "node", unknown[name])
	}
	for _, name := range f.sizes.names() {
		if !slices.ContainsFunc(slices.Collect(maps.Values(m.Nodes)), orchestrator.DeclaredBy(name)) {
			logger.Warn("--limit applies to no node (declare it under config.meta.dbtorch.limits, or tag the nodes)", "limit", name)
		}
	}
	closeStore := func() {}
	var store *pglimit.Store
	if f.store != "" {
		store, err = pglimit.Open(ctx, string(f.store), pglimit.Options{Logger: logger})
		if err != nil {
			return nil, fmt.Errorf("--limit-store: %w", err)
		}
		closeStore = func() {
			if err := store.Close(); err != nil {
				logger.Warn("--limit-store: closing", "error", err)
			}
		}
		cfg.Limits = append(cfg.Limits, store.RelationLocks())
	}
	reg := &orchestrator.Registry{}
	for _, name := range f.sizes.names() {
		var l orchestrator.NodeLimit
		if store != nil {
			l, err = store.NodeLimit(name, f.sizes[name], orchestrator.DeclaredBy(name))
		} else {
			l, err = reg.NodeLimit(name, f.sizes[name], orchestrator.DeclaredBy(name))
		}
		if err != nil {
			closeStore()
			return nil, err
		}
		cfg.Limits = append(cfg.Limits, l)
	}
	return closeStore, nil
}

// limitExit reports an error of apply: bad input exits 2, the rest 1.
func limitExit(stderr io.Writer, err error) int {
	if ue := (usageError{}); errors.As(err, &ue) {
		return badInput(stderr, "build", err)
	}
	fmt.Fprintf(stderr, "dbtorch build: %v\n", err)
	return 1
}
