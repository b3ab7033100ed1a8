// Package dbt describes the dbt project that every other dbtorch package
// works on: where dbt is, where the project and its profiles are, which
// target and vars it runs with and in which environment. Executors, the
// cache, the selector's dbt ls resolver and source freshness all embed one
// Project instead of repeating these fields, so a CLI or a service
// describes its project once.
package dbt

import (
	"bufio"
	"bytes"
	"errors"
	"fmt"
	"maps"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
)

// Project is a dbt project as dbt is run on it. The zero value is not
// useful: Dir is required by everything that starts dbt. A Project is a
// plain value; copying it is cheap, but Vars and Env are shared by copies
// and must not be modified while a copy is in use.
type Project struct {
	// DBT is the dbt executable. Empty: see FindDBT.
	DBT string
	// Dir is the project's directory, holding dbt_project.yml. Empty
	// means the current directory (dbt's own default).
	Dir string
	// ProfilesDir is passed as --profiles-dir when set. Empty: dbt's own
	// search ($DBT_PROFILES_DIR, the project dir, ~/.dbt); ProfilesPath
	// follows the same order.
	ProfilesDir string
	// Target is passed as --target when set; empty means the profile's
	// default target (see DefaultTarget).
	Target string
	// Vars are passed as --vars. Whoever adds vars for one build or one
	// invocation merges them over these with Vars.Merge.
	Vars Vars
	// Env is dbt's environment; nil means os.Environ().
	Env []string
}

// Environ returns the environment dbt runs in: Env, or os.Environ() when
// Env is nil. The slice returned is a copy.
func (p Project) Environ() []string {
	if p.Env == nil {
		return os.Environ()
	}
	return append([]string(nil), p.Env...)
}

// Getenv looks key up in the project's environment (Environ).
func (p Project) Getenv(key string) (string, bool) {
	if p.Env == nil {
		return os.LookupEnv(key)
	}
	for i := len(p.Env) - 1; i >= 0; i-- {
		if k, v, ok := strings.Cut(p.Env[i], "="); ok && k == key {
			return v, true
		}
	}
	return "", false
}

// AbsDir returns Dir made absolute ("" is the current directory).
func (p Project) AbsDir() (string, error) {
	dir := p.Dir
	if dir == "" {
		dir = "."
	}
	return filepath.Abs(dir)
}

// Check returns an error naming the problem when Dir holds no
// dbt_project.yml.
func (p Project) Check() error {
	dir, err := p.AbsDir()
	if err != nil {
		return fmt.Errorf("dbt project %q: %w", p.Dir, err)
	}
	if _, err := os.Stat(filepath.Join(dir, "dbt_project.yml")); err != nil {
		return fmt.Errorf("dbt project %q: no dbt_project.yml: %w", dir, ErrNoProject)
	}
	return nil
}

// ErrNoProject is wrapped by the errors of a Project whose directory holds
// no dbt_project.yml.
var ErrNoProject = errors.New("not a dbt project")

// ErrNoDBT is wrapped by FindDBT's and Interpreter's errors when no dbt
// executable (or no Python interpreter behind it) can be found.
var ErrNoDBT = errors.New("dbt executable not found")

// Executable returns the dbt executable of p by FindDBT's rule.
func (p Project) Executable() (string, error) {
	dir := p.Dir
	if dir == "" {
		dir = "."
	}
	return FindDBT(p.DBT, dir, p.Getenv)
}

// FindDBT is dbtorch's one rule for locating dbt: path when set; else
// $DBTORCH_DBT (looked up with getenv, os.LookupEnv when nil); else the
// first .venv/bin/dbt in projectDir or a directory above it; else "dbt" on
// $PATH. A name without a slash is looked up on $PATH. The path returned
// is absolute but not resolved through symlinks (a pipx install is a
// symlink into the tool's own virtualenv; see Interpreter).
func FindDBT(path, projectDir string, getenv func(string) (string, bool)) (string, error) {
	if getenv == nil {
		getenv = os.LookupEnv
	}
	if path == "" {
		path, _ = getenv("DBTORCH_DBT")
	}
	if path == "" && projectDir != "" {
		if abs, err := filepath.Abs(projectDir); err == nil {
			for dir := abs; ; dir = filepath.Dir(dir) {
				p := filepath.Join(dir, ".venv", "bin", "dbt")
				if st, err := os.Stat(p); err == nil && !st.IsDir() {
					path = p
					break
				}
				if filepath.Dir(dir) == dir {
					break
				}
			}
		}
	}
	if path == "" {
		path = "dbt"
	}
	found, err := exec.LookPath(path)
	if err != nil {
		return "", fmt.Errorf("%w: %q: %w", ErrNoDBT, path, err)
	}
	if abs, err := filepath.Abs(found); err == nil {
		found = abs
	}
	return found, nil
}

// Interpreter returns the Python interpreter that runs the dbt script at
// dbtPath and so can import dbt: the interpreter named by the script's
// shebang line, found through symlinks (a dbt installed by pipx, or
// reached through a symlink on $PATH, runs its own virtualenv's Python,
// not one next to the symlink). "#!/usr/bin/env python3" is resolved on
// $PATH. When the script has no Python shebang (a compiled launcher),
// Interpreter falls back to a python next to the resolved script. It fails
// wrapping ErrNoDBT when neither exists.
func Interpreter(dbtPath string) (string, error) {
	real, err := filepath.EvalSymlinks(dbtPath)
	if err != nil {
		return "", fmt.Errorf("%w: %q: %w", ErrNoDBT, dbtPath, err)
	}
	if py, ok := shebangPython(real); ok {
		return py, nil
	}
	for _, dir := range []string{filepath.Dir(real), filepath.Dir(dbtPath)} {
		for _, name := range []string{"python", "python3"} {
			p := filepath.Join(dir, name)
			if st, err := os.Stat(p); err == nil && !st.IsDir() {
				return p, nil
			}
		}
	}
	return "", fmt.Errorf("%w: no Python interpreter for %q (no shebang, no python beside it)", ErrNoDBT, dbtPath)
}

// shebangPython reads the interpreter from the first line of the script
// at path, when it names a Python.
func shebangPython(path string) (string, bool) {
	f, err := os.Open(path)
	if err != nil {
		return "", false
	}
	defer f.Close()
	line, err := bufio.NewReader(f).ReadSlice('\n')
	if err != nil && len(line) == 0 {
		return "", false
	}
	if !bytes.HasPrefix(line, []byte("#!")) {
		return "", false
	}
	fields := strings.Fields(string(line[2:]))
	if len(fields) == 0 {
		return "", false
	}
	interp := fields[0]
	if filepath.Base(interp) == "env" {
		// #!/usr/bin/env [-S] python3 [args]
		rest := fields[1:]
		for len(rest) > 0 && strings.HasPrefix(rest[0], "-") {
			rest = rest[1:]
		}
		if len(rest) == 0 {
			return "", false
		}
		p, err := exec.LookPath(rest[0])
		if err != nil {
			return "", false
		}
		interp = p
	}
	if !strings.Contains(filepath.Base(interp), "python") {
		return "", false
	}
	if _, err := os.Stat(interp); err != nil {
		return "", false
	}
	return interp, true
}

// Vars are dbt's project vars, as passed with --vars. nil and empty mean
// none.
type Vars map[string]any

// Merge returns v with over's keys set over it, as a new map; nil when
// both are empty. Neither argument is modified.
func (v Vars) Merge(over Vars) Vars {
	if len(v) == 0 && len(over) == 0 {
		return nil
	}
	out := make(Vars, len(v)+len(over))
	maps.Copy(out, v)
	maps.Copy(out, over)
	return out
}
