package cache

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"path/filepath"
	"slices"
	"strings"

	"github.com/spf13/afero"

	"github.com/dbtorch/dbtorch/dbt"
)

// FingerprintOptions says what a project fingerprint covers.
type FingerprintOptions struct {
	// Project is the dbt project. Of it, the fingerprint covers:
	//   - Dir (required): every file dbt may parse under it (.sql, .py,
	//     .yml, .yaml, .csv, .md; installed packages included, by
	//     following symbolic links), by path and contents; target/, logs/
	//     and hidden directories are left out.
	//   - ProfilesDir's profiles.yml, when ProfilesDir is set and is not
	//     Dir (empty: only the one in Dir, as part of Dir's files).
	//   - Vars and Target, the build's --vars and --target.
	//   - Env, in which the environment variables the hashed files name
	//     with env_var('NAME') are resolved (nil: the process's).
	dbt.Project
	// Fs is where the project is read; nil means the operating system's.
	Fs afero.Fs
	// Extra strings are hashed as given (for instance the dbt executable's
	// version).
	Extra []string
}

// maxFingerprintDepth bounds directory nesting, so that a symbolic link
// cycle cannot make the walk endless.
const maxFingerprintDepth = 32

// Fingerprint hashes the inputs of `dbt parse`: when two fingerprints are
// equal, parsing the project gives the same manifest, so a manifest kept
// from an earlier build (Store.PutManifest) can be used instead of parsing
// again. It returns 64 hex digits.
func Fingerprint(opts FingerprintOptions) (string, error) {
	fsys := opts.Fs
	if fsys == nil {
		fsys = afero.NewOsFs()
	}
	h := sha256.New()
	field(h, "format", "dbtorch-project-fingerprint/1")
	var envs []string
	hashFile := func(label, path string) error {
		f, err := fsys.Open(path)
		if err != nil {
			return err
		}
		defer f.Close()
		data, err := io.ReadAll(f)
		if err != nil {
			return fmt.Errorf("read %s: %w", path, err)
		}
		field(h, "file", label)
		field(h, "contents", string(data))
		envs = append(envs, scanRefs(string(data)).envs...)
		return nil
	}
	var walk func(dir, rel string, depth int) error
	walk = func(dir, rel string, depth int) error {
		if depth > maxFingerprintDepth {
			return fmt.Errorf("%s: directories nested deeper than %d (a symbolic link cycle?)", dir, maxFingerprintDepth)
		}
		entries, err := afero.ReadDir(fsys, dir)
		if err != nil {
			return err
		}
		slices.SortFunc(entries, func(a, b fs.FileInfo) int { return strings.Compare(a.Name(), b.Name()) })
		for _, e := range entries {
			name := e.Name()
			path := filepath.Join(dir, name)
			r := name
			if rel != "" {
				r = rel + "/" + name
			}
			if e.Mode()&fs.ModeSymlink != 0 {
				st, err := fsys.Stat(path)
				if err != nil {
					continue // a dangling link is nothing dbt can read
				}
				e = st
			}
			if e.IsDir() {
				if strings.HasPrefix(name, ".") || (depth == 0 && (name == "target" || name == "logs")) {
					continue
				}
				if err := walk(path, r, depth+1); err != nil {
					return err
				}
				continue
			}
			switch strings.ToLower(filepath.Ext(name)) {
			case ".sql", ".py", ".yml", ".yaml", ".csv", ".md":
				if err := hashFile(r, path); err != nil {
					return err
				}
			}
		}
		return nil
	}
	if opts.Dir == "" {
		return "", errors.New("cache: fingerprint: no project dir")
	}
	if err := walk(opts.Dir, "", 0); err != nil {
		return "", fmt.Errorf("cache: fingerprint: %w", err)
	}
	if profiles := opts.ProfilesDir; profiles != "" && profiles != opts.Dir {
		if err := hashFile("<profiles>/profiles.yml", filepath.Join(profiles, "profiles.yml")); err != nil && !errors.Is(err, fs.ErrNotExist) {
			return "", fmt.Errorf("cache: fingerprint: %w", err)
		}
	}
	vars, err := canonicalJSON(map[string]any(opts.Vars))
	if err != nil {
		return "", fmt.Errorf("cache: fingerprint: vars: %w", err)
	}
	field(h, "vars", string(vars))
	field(h, "target", opts.Target)
	for _, x := range opts.Extra {
		field(h, "extra", x)
	}
	slices.Sort(envs)
	for _, name := range slices.Compact(envs) {
		if v, ok := opts.Getenv(name); ok {
			field(h, "env", name+"="+v)
		} else {
			field(h, "env_unset", name)
		}
	}
	return hex.EncodeToString(h.Sum(nil)), nil
}

// manifestDir is the store's subdirectory for kept manifests.
const manifestDir = "manifests"

// PutManifest keeps the manifest.json bytes parsed from a project with
// the given fingerprint, replacing any manifest kept before. Writes are
// atomic; on an object store the write is conditional (a manifest already
// kept under the fingerprint, by a concurrent writer, stays).
func (s *Store) PutManifest(ctx context.Context, fingerprint string, data []byte) error {
	if len(fingerprint) != 64 || !isHex(fingerprint) {
		return fmt.Errorf("cache: put manifest: %q is not a fingerprint", fingerprint)
	}
	dir := s.join(s.dir, manifestDir)
	name := s.join(dir, fingerprint+".json")
	if err := s.write(ctx, name, data, s.obj != nil); err != nil && !errors.Is(err, fs.ErrExist) {
		return fmt.Errorf("cache: put manifest: %w", err)
	}
	entries, _ := s.list(ctx, dir)
	for _, e := range entries {
		if e.Name != fingerprint+".json" && !strings.HasPrefix(e.Name, ".") {
			_ = s.remove(ctx, s.join(dir, e.Name))
		}
	}
	return nil
}

// Manifest returns the manifest.json bytes kept for fingerprint, if any.
func (s *Store) Manifest(ctx context.Context, fingerprint string) ([]byte, bool) {
	if len(fingerprint) != 64 || !isHex(fingerprint) {
		return nil, false
	}
	data, err := s.read(ctx, s.join(s.dir, manifestDir, fingerprint+".json"))
	if err != nil {
		if !errors.Is(err, fs.ErrNotExist) {
			s.logger.WarnContext(ctx, "cache: ignoring unreadable manifest", "err", err)
		}
		return nil, false
	}
	return data, true
}
