package cloud

import (
	"context"
	"fmt"

	"github.com/dbtorch/dbtorch/manifest"
)

// Manifest returns the project's manifest. With ManifestJobID set it is
// that job's latest manifest.json; otherwise a temporary job running
// ManifestStep ("dbt compile") produces it, and is deleted afterwards on
// every path, as Execute's jobs are.
//
// An environment unfit for jobs fails Manifest with an *EnvironmentError
// before any job is created.
func (e *Executor) Manifest(ctx context.Context) (*manifest.Manifest, error) {
	if err := e.enter(); err != nil {
		return nil, err
	}
	defer e.running.Done()
	if e.cfg.ManifestJobID != 0 {
		data, err := e.c.JobArtifact(ctx, e.cfg.ManifestJobID, "manifest.json")
		if err != nil {
			return nil, fmt.Errorf("dbt cloud: manifest of job %d: %w", e.cfg.ManifestJobID, err)
		}
		return parseManifest(data, fmt.Sprintf("job %d", e.cfg.ManifestJobID))
	}
	name := e.jobName("manifest")
	var data []byte
	err := e.session(ctx, name, "dbtorch: produce the manifest", e.cfg.ManifestStep,
		"dbtorch manifest ("+name+")", func(ctx context.Context, run *Run, step int) error {
			if run.Status != RunSuccess {
				msg := run.StatusMessage
				if msg == "" {
					msg = "no message"
				}
				return fmt.Errorf("dbt cloud: %q run %d ended %s: %s", e.cfg.ManifestStep, run.ID, run.Status, msg)
			}
			b, err := e.artifact(ctx, run, "manifest.json", step)
			if err != nil {
				return fmt.Errorf("dbt cloud: manifest.json of run %d: %w", run.ID, err)
			}
			data = b
			return nil
		})
	if err != nil {
		return nil, err
	}
	return parseManifest(data, "temporary job "+name)
}

func parseManifest(data []byte, from string) (*manifest.Manifest, error) {
	m, err := manifest.Parse(data)
	if err != nil {
		return nil, fmt.Errorf("dbt cloud: manifest from %s: %w", from, err)
	}
	return m, nil
}
