package selector

import (
	"errors"
	"fmt"
	"strconv"
	"strings"
)

// ErrUnsupportedVersion is wrapped by every *VersionError.
var ErrUnsupportedVersion = errors.New("not resolved natively on the manifest's dbt-core version")

// VersionError reports a selection Native does not resolve because the
// dbt-core version that wrote the manifest selects otherwise than Native
// knows how to reproduce (or was never compared with it): a state:
// criterion on a dbt-core 1.8 manifest, any selection on a manifest older
// than 1.8. Ask dbt instead (DBTLs or its Session): Native never returns
// a selection it cannot vouch for. It wraps ErrUnsupportedVersion.
type VersionError struct {
	// DBTVersion is the manifest's metadata.dbt_version.
	DBTVersion string
	// Criterion is the raw criterion refused, or "" for the whole selection.
	Criterion string
	Msg       string
}

func (e *VersionError) Error() string {
	if e.Criterion == "" {
		return fmt.Sprintf("selector: manifest of dbt-core %s: %s; resolve with dbt ls (DBTLs)", e.DBTVersion, e.Msg)
	}
	return fmt.Sprintf("selector: %s on a manifest of dbt-core %s: %s; resolve with dbt ls (DBTLs)", e.Criterion, e.DBTVersion, e.Msg)
}

func (e *VersionError) Unwrap() error { return ErrUnsupportedVersion }

// dialect holds the selection rules that differ between the dbt-core
// versions dbtorch supports, chosen from the manifest's
// metadata.dbt_version so that Native answers as the dbt that wrote the
// manifest would. The differential tests (make compat) run on each
// supported minor version.
type dialect struct {
	// version is the manifest's dbt_version, for errors.
	version string
	// unsupported: the manifest comes from a dbt-core older than 1.8,
	// whose selection rules were never checked: Resolve fails.
	unsupported bool
	// bareGlobLeaf: a wildcard fqn value without a dot ("stg_*") also
	// matches the node's own name (the fqn's last segment, the model name
	// for a versioned model), so it selects models in subdirectories.
	// dbt-core 1.11.16 and 1.12.6 added it (dbt-core#16348); before, such
	// a value matched the whole fqn after the package and selected only
	// nodes at the top of their resource directory.
	bareGlobLeaf bool
	// savedQueriesInAll: the methods that look at every node (tag, path,
	// file, package, resource_type, result, source_status) see saved
	// queries. dbt-core 1.8 leaves them out of its all_nodes.
	savedQueriesInAll bool
	// emptyKeepsGraphOps: a criterion's graph operators (+, N+, @) apply
	// under --indirect-selection empty. dbt-core 1.8 returns only the
	// nodes the criterion matches there.
	emptyKeepsGraphOps bool
	// testTypeAddsUnit: --resource-type test alone (the filter holding
	// test and nothing else) keeps unit tests too and leaves empty nodes
	// out: dbt-core 1.8's dbt ls selects with dbt test's selector then.
	testTypeAddsUnit bool
	// noState: state: is not evaluated natively (Resolve fails with a
	// *VersionError): dbt-core 1.8 compares contracts, removed nodes and
	// saved queries otherwise than the later versions Native follows.
	noState bool
}

// dialectFor returns the rules of the dbt that wrote a manifest with
// metadata.dbt_version version. A version that does not parse as
// MAJOR.MINOR.PATCH (none recorded, a build of dbt's Rust engine with
// another scheme) gets the newest rules.
func dialectFor(version string) dialect {
	v, ok := parseVersion(version)
	if !ok {
		return dialect{bareGlobLeaf: true, savedQueriesInAll: true, emptyKeepsGraphOps: true}
	}
	old := !v.atLeast(1, 9, 0)
	return dialect{
		version:            version,
		unsupported:        !v.atLeast(1, 8, 0),
		bareGlobLeaf:       v.atLeast(1, 12, 6) || (v.major == 1 && v.minor == 11 && v.patch >= 16) || v.major > 1,
		savedQueriesInAll:  !old,
		emptyKeepsGraphOps: !old,
		testTypeAddsUnit:   old,
		noState:            old,
	}
}

// check returns a *VersionError when Native cannot promise dbt's answer
// for a criterion with this method (raw: the whole criterion) on this
// dialect's version.
func (d dialect) check(method, raw string) error {
	if method == "state" && d.noState {
		return &VersionError{DBTVersion: d.version, Criterion: raw, Msg: "state: is evaluated natively from dbt-core 1.9 on"}
	}
	return nil
}

// version is a dbt release number; pre-release suffixes are ignored
// ("1.10.0b2" is 1.10.0).
type version struct{ major, minor, patch int }

func parseVersion(s string) (version, bool) {
	parts := strings.SplitN(strings.TrimPrefix(strings.TrimSpace(s), "v"), ".", 3)
	if len(parts) != 3 {
		return version{}, false
	}
	var n [3]int
	for i, p := range parts {
		end := 0
		for end < len(p) && p[end] >= '0' && p[end] <= '9' {
			end++
		}
		x, err := strconv.Atoi(p[:end])
		if err != nil {
			return version{}, false
		}
		n[i] = x
	}
	return version{n[0], n[1], n[2]}, true
}

func (v version) atLeast(major, minor, patch int) bool {
	if v.major != major {
		return v.major > major
	}
	if v.minor != minor {
		return v.minor > minor
	}
	return v.patch >= patch
}
