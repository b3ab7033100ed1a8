package main

import (
	"bytes"
	"strings"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

func TestDemo(t *testing.T) {
	t.Parallel()
	var out, errb bytes.Buffer
	code := run(t.Context(), []string{"-retries", "1"}, "", &out, &errb)
	assert.Equal(t, 1, code, errb.String())
	s := out.String()
	assert.Regexp(t, `model.shop.stg_orders\s+success\s+2`, s)
	assert.Regexp(t, `model.shop.stg_payments\s+error\s+2`, s)
	assert.Regexp(t, `model.shop.payments\s+skipped\s+0\s+upstream failed`, s)
	assert.Contains(t, s, "jobs left on the fake server: 0")
}

func TestJanitorAndBadInput(t *testing.T) {
	var out, errb bytes.Buffer
	assert.Equal(t, 0, run(t.Context(), []string{"-janitor"}, "", &out, &errb), errb.String())
	assert.Contains(t, out.String(), "deleted 0 leftover job(s)")
	assert.Equal(t, 2, run(t.Context(), []string{"-mode", "sideways"}, "", &out, &errb))
	assert.Equal(t, 2, run(t.Context(), []string{"-account", "0"}, "tok", &out, &errb), "no account")
}

// TestDemoFaults: under the worst fault mix, with the token echoed in
// every error message, the build gives the plain demonstration's results,
// leaves no job, and prints no token.
func TestDemoFaults(t *testing.T) {
	t.Parallel()
	var out, errb bytes.Buffer
	code := run(t.Context(), []string{"-retries", "1", "-demo", "faults", "-v"}, "", &out, &errb)
	assert.Equal(t, 1, code, errb.String())
	s := out.String()
	assert.Regexp(t, `model.shop.stg_orders\s+success\s+2`, s)
	assert.Regexp(t, `model.shop.stg_payments\s+error\s+2`, s)
	assert.Contains(t, s, "jobs left on the fake server: 0")
	all := s + errb.String()
	assert.NotContains(t, all, "fake-dbt-cloud-token")
	assert.Contains(t, all, "[REDACTED]", "the fake did not echo the token: the test proves nothing")
}

// TestDemoLeak: a cooldown longer than the clean-up budget leaves a job;
// the exit code is 3 and stderr names the job to delete.
func TestDemoLeak(t *testing.T) {
	t.Parallel()
	var out, errb bytes.Buffer
	code := run(t.Context(), []string{"-retries", "0", "-demo", "cooldown", "-cleanup-budget", "300ms"}, "", &out, &errb)
	assert.Equal(t, 3, code, errb.String())
	assert.Regexp(t, `cloudbuild: dbt cloud: temporary jobs left behind: delete job\(s\) \d+`, errb.String())
	assert.Regexp(t, `jobs left on the fake server: [1-9]`, out.String())
}

// TestDemoDevelopmentEnvironment: a development environment is refused
// before any job is created, in one line, with exit code 2.
func TestDemoDevelopmentEnvironment(t *testing.T) {
	t.Parallel()
	var out, errb bytes.Buffer
	code := run(t.Context(), []string{"-demo", "development"}, "", &out, &errb)
	assert.Equal(t, 2, code, errb.String())
	lines := strings.Split(strings.TrimSpace(errb.String()), "\n")
	require.Len(t, lines, 2, errb.String()) // the demonstration's notice, and the error
	assert.Equal(t, "cloudbuild: dbt cloud: environment 20 (Development) cannot run jobs: it is a development environment; jobs need a deployment environment", lines[1])
	assert.Contains(t, out.String(), "jobs left on the fake server: 0")
}
