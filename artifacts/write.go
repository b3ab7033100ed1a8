package artifacts

import (
	"errors"
	"fmt"

	"github.com/spf13/afero"

	"github.com/dbtorch/dbtorch/internal/atomicfile"
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

// writeAtomic writes data to path on fs atomically (missing parent
// directories created), so that readers see the old file or the new one,
// never a partial one.
func writeAtomic(fs afero.Fs, path string, data []byte) error {
	if err := atomicfile.Write(fs, path, data, 0o644); err != nil {
		return fmt.Errorf("artifacts: %w", err)
	}
	return nil
}
