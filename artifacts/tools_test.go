package artifacts_test

import (
	"encoding/json"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"testing"

	"github.com/stretchr/testify/require"

	"github.com/dbtorch/dbtorch/internal/dbttest"
)

// External validators. `make artifacts-deps` installs them; the tests
// install them too when missing, and fail (never skip) when CI=true.

var installMu sync.Mutex

// missingTool fails the test under CI=true and skips it otherwise.
func missingTool(t testing.TB, format string, args ...any) {
	t.Helper()
	if os.Getenv("CI") == "true" {
		t.Fatalf(format+" (required when CI=true; run `make artifacts-deps`)", args...)
	}
	t.Skipf(format+" (run `make artifacts-deps`)", args...)
}

// mermaidTool returns the directory holding parse.mjs with its
// node_modules installed.
func mermaidTool(t testing.TB) string {
	t.Helper()
	installMu.Lock()
	defer installMu.Unlock()
	dir := filepath.Join(dbttest.RepoRoot(t), "testdata", "artifacts", "mermaid")
	if _, err := exec.LookPath("node"); err != nil {
		missingTool(t, "node not found")
	}
	if _, err := os.Stat(filepath.Join(dir, "node_modules", "mermaid", "package.json")); err != nil {
		cmd := exec.CommandContext(t.Context(), "npm", "ci", "--no-audit", "--no-fund", "--loglevel=error")
		cmd.Dir = dir
		if out, err := cmd.CombinedOutput(); err != nil {
			missingTool(t, "npm ci in %s: %v\n%s", dir, err, out)
		}
	}
	return dir
}

// parseMermaid parses each chart with the npm package mermaid and returns
// the parse error of each (empty when it parsed as a flowchart, or as a
// gantt chart whose every task has valid dates and renders as a bar).
func parseMermaid(t testing.TB, charts ...string) []string {
	t.Helper()
	dir := mermaidTool(t)
	tmp := t.TempDir()
	var files []string
	for i, c := range charts {
		f := filepath.Join(tmp, "chart"+string(rune('a'+i))+".mmd")
		require.NoError(t, os.WriteFile(f, []byte(c), 0o644))
		files = append(files, f)
	}
	cmd := exec.CommandContext(t.Context(), "node", append([]string{"parse.mjs"}, files...)...)
	cmd.Dir = dir
	out, err := cmd.Output()
	if _, ok := err.(*exec.ExitError); err != nil && !ok {
		t.Fatalf("node parse.mjs: %v", err)
	}
	errs := make([]string, len(charts))
	lines := strings.Split(strings.TrimSpace(string(out)), "\n")
	require.Len(t, lines, len(charts), "parse.mjs output:\n%s", out)
	for i, line := range lines {
		var r struct {
			OK    bool   `json:"ok"`
			Type  string `json:"type"`
			Error string `json:"error"`
		}
		require.NoError(t, json.Unmarshal([]byte(line), &r), line)
		if !r.OK {
			errs[i] = r.Error
		} else if r.Type != "flowchart-v2" && r.Type != "gantt" {
			errs[i] = "parsed as " + r.Type + ", not a flowchart or a gantt chart"
		}
	}
	return errs
}

// xmllint returns the path of xmllint, installing Debian's libxml2-utils
// when it is missing and the test runs as root.
func xmllint(t testing.TB) string {
	t.Helper()
	installMu.Lock()
	defer installMu.Unlock()
	if p, err := exec.LookPath("xmllint"); err == nil {
		return p
	}
	if os.Geteuid() == 0 {
		for _, args := range [][]string{{"update", "-qq"}, {"install", "-y", "-qq", "libxml2-utils"}} {
			cmd := exec.CommandContext(t.Context(), "apt-get", args...)
			cmd.Env = append(os.Environ(), "DEBIAN_FRONTEND=noninteractive")
			if out, err := cmd.CombinedOutput(); err != nil {
				t.Logf("apt-get %s: %v\n%s", strings.Join(args, " "), err, out)
			}
		}
	}
	p, err := exec.LookPath("xmllint")
	if err != nil {
		missingTool(t, "xmllint not found (Debian package libxml2-utils)")
	}
	return p
}

// validateXML validates the XML file against the XSD with xmllint and
// returns xmllint's complaint, or "" when the file is valid.
func validateXML(t testing.TB, xsd, file string) string {
	t.Helper()
	cmd := exec.CommandContext(t.Context(), xmllint(t), "--noout", "--schema", xsd, file)
	out, err := cmd.CombinedOutput()
	if err != nil {
		if _, ok := err.(*exec.ExitError); !ok {
			t.Fatalf("xmllint: %v", err)
		}
		return string(out)
	}
	return ""
}
