package artifacts

import (
	"bytes"
	"errors"
	"fmt"
	"path/filepath"

	"github.com/spf13/afero"
)

// ErrForeignFile is returned (wrapped) by RunResults when the target path
// already holds a run_results.json that dbtorch did not write — typically
// dbt's own target/run_results.json — and Overwrite is not set.
var ErrForeignFile = errors.New("artifacts: refusing to overwrite a file dbtorch did not write")

// fsOrOS returns fs, or the operating system's file system when fs is nil.
func fsOrOS(fs afero.Fs) afero.Fs {
	if fs == nil {
		return afero.NewOsFs()
	}
	return fs
}

// writeAtomic writes data to path on fs through a temporary file in the same
// directory and a rename, so that readers see the old file or the new one,
// never a partial one. Missing parent directories are created.
func writeAtomic(fs afero.Fs, path string, data []byte) (err error) {
	dir := filepath.Dir(path)
	if err := fs.MkdirAll(dir, 0o755); err != nil {
		return fmt.Errorf("artifacts: create directory for %s: %w", path, err)
	}
	f, err := afero.TempFile(fs, dir, "."+filepath.Base(path)+".*.tmp")
	if err != nil {
		return fmt.Errorf("artifacts: write %s: %w", path, err)
	}
	tmp := f.Name()
	defer func() {
		if err != nil {
			_ = fs.Remove(tmp)
		}
	}()
	if _, err := bytes.NewReader(data).WriteTo(f); err != nil {
		_ = f.Close()
		return fmt.Errorf("artifacts: write %s: %w", path, err)
	}
	if err := f.Sync(); err != nil {
		_ = f.Close()
		return fmt.Errorf("artifacts: write %s: %w", path, err)
	}
	if err := f.Close(); err != nil {
		return fmt.Errorf("artifacts: write %s: %w", path, err)
	}
	if err := fs.Chmod(tmp, 0o644); err != nil {
		return fmt.Errorf("artifacts: write %s: %w", path, err)
	}
	if err := fs.Rename(tmp, path); err != nil {
		return fmt.Errorf("artifacts: write %s: %w", path, err)
	}
	return nil
}
