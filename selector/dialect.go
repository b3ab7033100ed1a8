package selector

import (
	"strconv"
	"strings"
)

// dialect holds the selection rules that differ between the dbt-core
// versions dbtorch supports, chosen from the manifest's
// metadata.dbt_version so that Native answers as the dbt that wrote the
// manifest would. The differential tests (make compat) run on each
// supported minor version.
type dialect struct {
	// bareGlobLeaf: a wildcard fqn value without a dot ("stg_*") also
	// matches the node's own name (the fqn's last segment, the model name
	// for a versioned model), so it selects models in subdirectories.
	// dbt-core 1.11.16 and 1.12.6 added it (dbt-core#16348); before, such
	// a value matched the whole fqn after the package and selected only
	// nodes at the top of their resource directory.
	bareGlobLeaf bool
}

// dialectFor returns the rules of the dbt that wrote a manifest with
// metadata.dbt_version version. A version that does not parse as
// MAJOR.MINOR.PATCH (none recorded, a build of dbt's Rust engine with
// another scheme) gets the newest rules.
func dialectFor(version string) dialect {
	v, ok := parseVersion(version)
	if !ok {
		return dialect{bareGlobLeaf: true}
	}
	return dialect{
		bareGlobLeaf: v.atLeast(1, 12, 6) || (v.major == 1 && v.minor == 11 && v.patch >= 16) || v.major > 1,
	}
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
