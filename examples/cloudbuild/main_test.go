package main

import (
	"bytes"
	"testing"

	"github.com/stretchr/testify/assert"
)

func TestDemo(t *testing.T) {
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
