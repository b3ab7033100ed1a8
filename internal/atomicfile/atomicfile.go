// Package atomicfile writes files so that a reader sees the old contents
// or the new ones, never a partial file: the cache store, the artifact
// reporters and the CLI's results writer all write through it.
package atomicfile

import (
	"bytes"
	"fmt"
	"io/fs"
	"path/filepath"
	"strings"

	"github.com/spf13/afero"
)

// TempMarker is part of the name of every temp file Write creates
// (".<base>.tmp-<random>", in the target's directory), so that a cleaner
// can recognise a dead writer's leftovers.
const TempMarker = ".tmp-"

// Write writes data to name on fsys (nil: the operating system's file
// system) atomically: it creates missing parent directories (0o755),
// writes a temp file in name's directory, syncs it, gives it perm, renames
// it over name and then syncs the directory, so that on a local disk the
// new file survives a crash once Write returns. The directory sync is best
// effort (file systems that cannot sync a directory, and afero backends
// without directories, are not an error). On failure the temp file is
// removed and name is untouched; the error names the path.
func Write(fsys afero.Fs, name string, data []byte, perm fs.FileMode) (err error) {
	if fsys == nil {
		fsys = afero.NewOsFs()
	}
	dir, base := filepath.Split(name)
	if dir == "" {
		dir = "."
	}
	if err := fsys.MkdirAll(dir, 0o755); err != nil {
		return fmt.Errorf("write %s: %w", name, err)
	}
	f, err := afero.TempFile(fsys, dir, "."+strings.ReplaceAll(base, "*", "_")+TempMarker+"*")
	if err != nil {
		return fmt.Errorf("write %s: %w", name, err)
	}
	tmp := f.Name()
	defer func() {
		if err != nil {
			_ = fsys.Remove(tmp)
			err = fmt.Errorf("write %s: %w", name, err)
		}
	}()
	if _, err = bytes.NewReader(data).WriteTo(f); err != nil {
		_ = f.Close()
		return err
	}
	if err = f.Sync(); err != nil {
		_ = f.Close()
		return err
	}
	if err = f.Close(); err != nil {
		return err
	}
	if err = fsys.Chmod(tmp, perm); err != nil {
		return err
	}
	if err = fsys.Rename(tmp, name); err != nil {
		return err
	}
	syncDir(fsys, dir)
	return nil
}

// syncDir flushes the directory entry of a rename, where the file system
// can.
func syncDir(fsys afero.Fs, dir string) {
	d, err := fsys.Open(dir)
	if err != nil {
		return
	}
	_ = d.Sync()
	_ = d.Close()
}
