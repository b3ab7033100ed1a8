package artifacts

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"

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

// writeReport is the Report of a reporter that writes one file: it fails
// when path is empty (naming the reporter's Path) or ctx is done, renders
// the file into memory, and writes it atomically to path on fs (nil: the
// operating system's).
func writeReport(ctx context.Context, fs afero.Fs, path, reporter string, render func(io.Writer) error) error {
	if path == "" {
		return fmt.Errorf("artifacts: %s.Path is empty", reporter)
	}
	if err := ctx.Err(); err != nil {
		return err
	}
	var buf bytes.Buffer
	if err := render(&buf); err != nil {
		return err
	}
	return writeAtomic(fsOrOS(fs), path, buf.Bytes())
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
