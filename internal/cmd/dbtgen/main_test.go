package main

import (
	"encoding/json"
	"io"
	"os"
	"path/filepath"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

func TestRunWritesProjectAndManifest(t *testing.T) {
	dir := t.TempDir()
	out, manifest := filepath.Join(dir, "proj"), filepath.Join(dir, "manifest.json")
	require.NoError(t, run([]string{"-models", "12", "-seed", "4", "-out", out, "-manifest", manifest}, io.Discard))

	assert.FileExists(t, filepath.Join(out, "dbt_project.yml"))
	data, err := os.ReadFile(manifest)
	require.NoError(t, err)
	var m struct {
		Nodes map[string]struct {
			ResourceType string `json:"resource_type"`
		} `json:"nodes"`
	}
	require.NoError(t, json.Unmarshal(data, &m))
	models := 0
	for _, n := range m.Nodes {
		if n.ResourceType == "model" {
			models++
		}
	}
	assert.Equal(t, 12, models)
}

func TestRunRejectsBadArguments(t *testing.T) {
	for _, args := range [][]string{
		{},
		{"-models", "10"},
		{"-out", t.TempDir(), "extra"},
		{"-models", "0", "-out", t.TempDir()},
		{"-nope"},
	} {
		assert.Error(t, run(args, io.Discard), "%q", args)
	}
}
