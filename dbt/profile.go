package dbt

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"regexp"
	"sort"
	"strconv"
	"strings"

	"go.yaml.in/yaml/v3"
)

// Profile is the connection a Project's dbt runs with: the target of the
// project's profile, read from profiles.yml.
type Profile struct {
	// Name is the profile named by dbt_project.yml's `profile:`.
	Name string
	// Target is the target used: Project.Target, else $DBT_TARGET, else
	// the profile's `target:`, else "default" (dbt's own rule).
	Target string
	// Path is the profiles.yml that was read.
	Path string
	// Adapter is the target's `type` (duckdb, postgres, snowflake, ...).
	Adapter string
	// Fields are the target's fields. String values that are one
	// `{{ env_var('NAME') }}` or `{{ env_var('NAME', 'fallback') }}` call,
	// optionally piped through as_number, as_bool or as_text, are
	// resolved in the project's environment; other templates are kept as
	// written (see Unresolved).
	Fields map[string]any
	// Unresolved names the fields whose values hold a template Profile
	// could not render, sorted.
	Unresolved []string
}

// ProfileError is returned by Project.Profile when the profile cannot be
// read: no profiles.yml, no such profile, no such target, or a YAML error.
type ProfileError struct {
	Path    string // profiles.yml, when one was found
	Profile string
	Target  string
	Err     error // ErrNoProfile or ErrUnknownTarget, or a read/parse error
}

func (e *ProfileError) Error() string {
	var b strings.Builder
	b.WriteString("dbt profile")
	if e.Profile != "" {
		fmt.Fprintf(&b, " %q", e.Profile)
	}
	if e.Target != "" {
		fmt.Fprintf(&b, " target %q", e.Target)
	}
	if e.Path != "" {
		fmt.Fprintf(&b, " (%s)", e.Path)
	}
	b.WriteString(": ")
	b.WriteString(e.Err.Error())
	return b.String()
}

func (e *ProfileError) Unwrap() error { return e.Err }

var (
	// ErrNoProfile: no profiles.yml was found, or it has no such profile.
	ErrNoProfile = errors.New("profile not found")
	// ErrUnknownTarget: the profile has no output of the target's name.
	ErrUnknownTarget = errors.New("unknown target")
)

// ProfilesPath returns the profiles.yml dbt reads for p, in dbt's order:
// ProfilesDir, $DBT_PROFILES_DIR, the project directory (dbt is run from
// it), ~/.dbt. It fails wrapping ErrNoProfile when none exists; with
// ProfilesDir or $DBT_PROFILES_DIR set, only that directory is looked in,
// as dbt does.
func (p Project) ProfilesPath() (string, error) {
	var dirs []string
	if p.ProfilesDir != "" {
		dirs = []string{p.ProfilesDir}
	} else if d, ok := p.Getenv("DBT_PROFILES_DIR"); ok && d != "" {
		dirs = []string{d}
	} else {
		proj, err := p.AbsDir()
		if err == nil {
			dirs = append(dirs, proj)
		}
		if home, err := os.UserHomeDir(); err == nil {
			dirs = append(dirs, filepath.Join(home, ".dbt"))
		}
	}
	for _, d := range dirs {
		path := filepath.Join(d, "profiles.yml")
		if st, err := os.Stat(path); err == nil && !st.IsDir() {
			if abs, err := filepath.Abs(path); err == nil {
				path = abs
			}
			return path, nil
		}
	}
	return "", &ProfileError{Err: fmt.Errorf("%w: no profiles.yml in %s", ErrNoProfile, strings.Join(dirs, ", "))}
}

// ProfileName returns the `profile:` of the project's dbt_project.yml.
func (p Project) ProfileName() (string, error) {
	dir, err := p.AbsDir()
	if err != nil {
		return "", err
	}
	data, err := os.ReadFile(filepath.Join(dir, "dbt_project.yml"))
	if err != nil {
		return "", fmt.Errorf("dbt project %q: %w: %w", dir, ErrNoProject, err)
	}
	var doc struct {
		Profile any `yaml:"profile"`
	}
	if err := yaml.Unmarshal(data, &doc); err != nil {
		return "", fmt.Errorf("dbt project %q: dbt_project.yml: %w", dir, err)
	}
	name, _ := p.render(doc.Profile)
	s, _ := name.(string)
	if s == "" {
		return "", &ProfileError{Err: fmt.Errorf("%w: dbt_project.yml in %s names no profile", ErrNoProfile, dir)}
	}
	return s, nil
}

// Profile reads the project's profile and resolves its target (see
// Profile's fields). Errors are *ProfileError.
func (p Project) Profile() (*Profile, error) {
	name, err := p.ProfileName()
	if err != nil {
		return nil, err
	}
	path, err := p.ProfilesPath()
	if err != nil {
		var pe *ProfileError
		if errors.As(err, &pe) {
			pe.Profile = name
		}
		return nil, err
	}
	data, err := os.ReadFile(path)
	if err != nil {
		return nil, &ProfileError{Path: path, Profile: name, Err: err}
	}
	var doc map[string]struct {
		Target  any                       `yaml:"target"`
		Outputs map[string]map[string]any `yaml:"outputs"`
	}
	if err := yaml.Unmarshal(data, &doc); err != nil {
		return nil, &ProfileError{Path: path, Profile: name, Err: err}
	}
	prof, ok := doc[name]
	if !ok {
		return nil, &ProfileError{Path: path, Profile: name, Err: ErrNoProfile}
	}
	target := p.Target
	if target == "" {
		target, _ = p.Getenv("DBT_TARGET")
	}
	if target == "" {
		v, _ := p.render(prof.Target)
		target, _ = v.(string)
	}
	if target == "" {
		target = "default"
	}
	out, ok := prof.Outputs[target]
	if !ok {
		names := make([]string, 0, len(prof.Outputs))
		for n := range prof.Outputs {
			names = append(names, n)
		}
		sort.Strings(names)
		return nil, &ProfileError{Path: path, Profile: name, Target: target,
			Err: fmt.Errorf("%w (the profile has %s)", ErrUnknownTarget, strings.Join(names, ", "))}
	}
	pr := &Profile{Name: name, Target: target, Path: path, Fields: make(map[string]any, len(out))}
	for k, v := range out {
		r, ok := p.render(v)
		if !ok {
			pr.Unresolved = append(pr.Unresolved, k)
		}
		pr.Fields[k] = r
	}
	sort.Strings(pr.Unresolved)
	pr.Adapter, _ = pr.Fields["type"].(string)
	return pr, nil
}

// identityFields are the connection fields that say which warehouse and
// which place in it a target builds into, across dbt's adapters. Secrets
// (password, token, keys) are never among them.
var identityFields = []string{
	"host", "port", "database", "dbname", "schema", "path", "account", "project",
	"dataset", "catalog", "server", "http_path", "cluster", "location", "region",
	"method", "user", "username", "role", "extensions", "attach",
}

// Identity returns the fields that identify the warehouse and location the
// target writes to (adapter type, host, port, database, schema, path,
// account, ...), formatted as strings, never a secret. A DuckDB `path`
// relative to the project directory is made absolute against projectDir
// (dbt runs from the project directory) unless it is ":memory:" or a URL.
func (pr *Profile) Identity(projectDir string) map[string]string {
	id := map[string]string{"type": pr.Adapter}
	for _, k := range identityFields {
		v, ok := pr.Fields[k]
		if !ok || v == nil {
			continue
		}
		s := fmt.Sprint(v)
		if k == "path" && s != "" && s != ":memory:" && !strings.Contains(s, "://") && !filepath.IsAbs(s) && projectDir != "" {
			s = filepath.Join(projectDir, s)
		}
		id[k] = s
	}
	return id
}

// envVarRE matches one env_var call, with an optional fallback and an
// optional filter: {{ env_var('NAME', 'fallback') | as_number }}.
var envVarRE = regexp.MustCompile(`^\{\{-?\s*env_var\(\s*['"]([^'"]+)['"]\s*(?:,\s*(?:['"]([^'"]*)['"]|(-?[0-9.]+))\s*)?\)\s*(?:\|\s*(as_number|as_bool|as_text|int|string)\s*)?-?\}\}$`)

// render resolves v when it is a string holding one env_var call (see
// Profile.Fields); it reports false for a template it cannot render.
func (p Project) render(v any) (any, bool) {
	s, ok := v.(string)
	if !ok || !strings.Contains(s, "{{") {
		return v, true
	}
	m := envVarRE.FindStringSubmatch(strings.TrimSpace(s))
	if m == nil {
		return s, false
	}
	val, set := p.Getenv(m[1])
	if !set {
		switch {
		case m[2] != "" || strings.Contains(s, `''`) || strings.Contains(s, `""`):
			val = m[2]
		case m[3] != "":
			val = m[3]
		default:
			return s, false
		}
	}
	switch m[4] {
	case "as_number", "int":
		if n, err := strconv.ParseInt(val, 10, 64); err == nil {
			return n, true
		}
		if f, err := strconv.ParseFloat(val, 64); err == nil {
			return f, true
		}
		return val, false
	case "as_bool":
		if b, err := strconv.ParseBool(val); err == nil {
			return b, true
		}
		return val, false
	}
	return val, true
}
