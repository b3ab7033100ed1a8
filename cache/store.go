package cache

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io/fs"
	"log/slog"
	"path"
	"path/filepath"
	"strings"
	"time"

	"github.com/spf13/afero"

	"github.com/dbtorch/dbtorch/internal/atomicfile"
)

// EntryFormat marks a cache entry file written by this version of the
// package. Files with any other marker are foreign: a miss.
const EntryFormat = "dbtorch-cache-entry/1"

// Result is the summary of a node's successful build that an entry keeps,
// so that a cached node can be reported as it last ran.
type Result struct {
	// Status is dbt's status word for the run that made the entry
	// ("success", "pass", ...).
	Status       string        `json:"status"`
	RowsAffected *int64        `json:"rows_affected,omitempty"`
	Message      string        `json:"message,omitempty"`
	StartedAt    time.Time     `json:"started_at,omitzero"`
	CompletedAt  time.Time     `json:"completed_at,omitzero"`
	Execution    time.Duration `json:"execution_ns,omitempty"`
	// RelationName is where the node was built.
	RelationName string `json:"relation_name,omitempty"`
	// BuildID is the orchestrated build that made the entry.
	BuildID string `json:"build_id,omitempty"`
	// AdapterResponse is what dbt's adapter reported for that run (bytes
	// processed and billed, slot time, query ids; see package
	// orchestrator/cost), so that a hit can say what it saved.
	AdapterResponse map[string]any `json:"adapter_response,omitempty"`
}

// Entry is one stored cache entry: the latest successful build of a node.
type Entry struct {
	Format  string    `json:"format"`
	Key     string    `json:"key"`
	NodeID  string    `json:"node_id"`
	Result  Result    `json:"result"`
	Created time.Time `json:"created"`
	// Expires is when the entry stops being served because a source it
	// reads crosses its freshness threshold; zero means never. (The TTL
	// is applied when the entry is looked up, from Created.)
	Expires time.Time `json:"expires,omitzero"`
	// Inputs are the digests of the key's inputs (Keyer.Inputs), so that
	// a changed key can say what changed.
	Inputs map[string]string `json:"inputs,omitempty"`
}

// Expired reports whether the entry has expired at now.
func (e *Entry) Expired(now time.Time) bool {
	return !e.Expires.IsZero() && !now.Before(e.Expires)
}

// StoreOptions configures a Store.
type StoreOptions struct {
	// Logger receives a warning for every entry that cannot be read (a
	// miss); nil discards them.
	Logger *slog.Logger
	// Now is the clock used for expiry; nil means time.Now.
	Now func() time.Time
}

// Store keeps one entry per node in a directory of an afero.Fs: the local
// disk (afero.NewOsFs), memory (afero.NewMemMapFs) or any remote backend
// that supports rename.
//
// Writes are atomic: an entry is written to a temp file in the same
// directory, then renamed over the old one, so a reader sees the old entry
// or the new one, never a mix. Several Stores, in one process or several,
// may share a directory: the last writer of a node wins and nothing is
// corrupted. A Store is safe for concurrent use.
//
// Reads never fail a build: a missing, truncated, corrupt, foreign or
// mismatched entry is a miss, logged as a warning when it is not simply
// absent.
type Store struct {
	fs     afero.Fs
	obj    Objects // when set, entries are objects, not files of fs
	dir    string
	logger *slog.Logger
	now    func() time.Time
}

// Objects is an object store (S3, GCS, Azure Blob, ...) in which a Store
// keeps its entries instead of a file system; package cache/blobstore
// implements it on gocloud.dev/blob. Keys are slash-separated paths.
type Objects interface {
	// ReadObject returns the object's bytes, or an error wrapping
	// fs.ErrNotExist when there is none.
	ReadObject(ctx context.Context, key string) ([]byte, error)
	// WriteObject writes the whole object in one request: a reader sees
	// the old object or the new one, never a part of either. With
	// ifNotExist the write is conditional: it fails, with an error
	// wrapping fs.ErrExist, when the object exists.
	WriteObject(ctx context.Context, key string, data []byte, ifNotExist bool) error
	// DeleteObject removes the object; a missing one is not an error.
	DeleteObject(ctx context.Context, key string) error
	// ListObjects lists the objects directly under the "directory"
	// prefix: keys prefix/name with no further slash.
	ListObjects(ctx context.Context, prefix string) ([]ObjectInfo, error)
}

// ObjectInfo is one object ListObjects found.
type ObjectInfo struct {
	// Name is the key's last element.
	Name    string
	ModTime time.Time
}

// NewObjectStore returns a Store keeping its entries as objects of o
// under prefix ("" for the root): one object per entry, written in one
// conditional request (if none exists; an existing entry is replaced only
// by deleting it first, see Store.Put), so that concurrent writers never
// tear an entry nor overwrite one another's (the first writer of a key
// wins), and kept manifests written conditionally too (a manifest is named
// by its fingerprint: the first writer's stays).
func NewObjectStore(o Objects, prefix string, opts StoreOptions) *Store {
	s := NewStore(nil, strings.Trim(prefix, "/"), opts)
	s.obj = o
	return s
}

// read, write, remove and list are the Store's four operations on its
// file system or object store; join builds their paths.
func (s *Store) read(ctx context.Context, p string) ([]byte, error) {
	if s.obj != nil {
		return s.obj.ReadObject(ctx, p)
	}
	return afero.ReadFile(s.fs, p)
}

func (s *Store) write(ctx context.Context, p string, data []byte, ifNotExist bool) error {
	if s.obj != nil {
		return s.obj.WriteObject(ctx, p, data, ifNotExist)
	}
	return atomicfile.Write(s.fs, p, data, 0o644)
}

func (s *Store) remove(ctx context.Context, p string) error {
	var err error
	if s.obj != nil {
		err = s.obj.DeleteObject(ctx, p)
	} else {
		err = s.fs.Remove(p)
	}
	if errors.Is(err, fs.ErrNotExist) {
		return nil
	}
	return err
}

// list returns the files (not directories) directly under dir.
func (s *Store) list(ctx context.Context, dir string) ([]ObjectInfo, error) {
	if s.obj != nil {
		return s.obj.ListObjects(ctx, dir)
	}
	infos, err := afero.ReadDir(s.fs, dir)
	if err != nil {
		return nil, err
	}
	out := make([]ObjectInfo, 0, len(infos))
	for _, fi := range infos {
		if !fi.IsDir() {
			out = append(out, ObjectInfo{Name: fi.Name(), ModTime: fi.ModTime()})
		}
	}
	return out, nil
}

func (s *Store) join(elem ...string) string {
	if s.obj != nil {
		return path.Join(elem...)
	}
	return filepath.Join(elem...)
}

// NewStore returns a Store on dir in fsys. The directory is created on
// the first write.
func NewStore(fsys afero.Fs, dir string, opts StoreOptions) *Store {
	s := &Store{fs: fsys, dir: dir, logger: opts.Logger, now: opts.Now}
	if s.logger == nil {
		s.logger = slog.New(slog.DiscardHandler)
	}
	if s.now == nil {
		s.now = time.Now
	}
	return s
}

// Namespace returns a Store on the sub-directory ns of s's directory,
// with s's file system and options: a Session keeps the entries of one
// project, target and warehouse in their own namespace. ns must be one
// path element.
func (s *Store) Namespace(ns string) *Store {
	cp := *s
	cp.dir = s.join(s.dir, strings.TrimSuffix(fileName(ns), ".json"))
	return &cp
}

// Fs returns the store's file system (nil for an object store).
func (s *Store) Fs() afero.Fs { return s.fs }

// Dir returns the store's directory.
func (s *Store) Dir() string { return s.dir }

// Path returns the file (or object key) that holds id's entry: a
// readable name derived from the id, with a digest suffix when the id had
// to be altered.
func (s *Store) Path(id string) string {
	return s.join(s.dir, fileName(id))
}

func fileName(id string) string {
	var b strings.Builder
	changed := false
	for _, r := range id {
		switch {
		case r >= 'a' && r <= 'z', r >= 'A' && r <= 'Z', r >= '0' && r <= '9', r == '.', r == '-', r == '_':
			b.WriteRune(r)
		default:
			b.WriteByte('_')
			changed = true
		}
	}
	name := b.String()
	if len(name) > 150 {
		name = name[:150]
		changed = true
	}
	if strings.HasPrefix(name, ".") {
		name = "_" + name
		changed = true
	}
	if changed {
		sum := sha256.Sum256([]byte(id))
		name += "~" + hex.EncodeToString(sum[:6])
	}
	return name + ".json"
}

// Lookup returns id's entry if it holds key and has not expired. Any
// other outcome is a miss (nil, false); unreadable entries are logged.
func (s *Store) Lookup(ctx context.Context, id, key string) (*Entry, bool) {
	e, err := s.Get(ctx, id)
	if err != nil {
		if !errors.Is(err, fs.ErrNotExist) {
			s.logger.WarnContext(ctx, "cache: ignoring unreadable entry", "node", id, "path", s.Path(id), "err", err)
		}
		return nil, false
	}
	if e.Key != key {
		s.logger.DebugContext(ctx, "cache: key changed", "node", id)
		return nil, false
	}
	if e.Expired(s.now()) {
		s.logger.DebugContext(ctx, "cache: entry expired", "node", id, "expires", e.Expires)
		return nil, false
	}
	return e, true
}

// ErrBadEntry is wrapped by Get's error for an entry file that exists but
// is not a valid entry for the id: truncated, corrupt, foreign or written
// for another node.
var ErrBadEntry = errors.New("bad cache entry")

// Get reads id's entry whatever its key and expiry. A missing entry is an
// error wrapping fs.ErrNotExist; an invalid one wraps ErrBadEntry.
func (s *Store) Get(ctx context.Context, id string) (*Entry, error) {
	data, err := s.read(ctx, s.Path(id))
	if err != nil {
		return nil, fmt.Errorf("cache: read entry: %w", err)
	}
	dec := json.NewDecoder(bytes.NewReader(data))
	dec.DisallowUnknownFields()
	var e Entry
	if err := dec.Decode(&e); err != nil {
		return nil, fmt.Errorf("%w: %v", ErrBadEntry, err)
	}
	if dec.More() {
		return nil, fmt.Errorf("%w: trailing data", ErrBadEntry)
	}
	switch {
	case e.Format != EntryFormat:
		return nil, fmt.Errorf("%w: format %q, want %q", ErrBadEntry, e.Format, EntryFormat)
	case e.NodeID != id:
		return nil, fmt.Errorf("%w: entry is for node %q", ErrBadEntry, e.NodeID)
	case len(e.Key) != 64 || !isHex(e.Key):
		return nil, fmt.Errorf("%w: key %q is not a cache key", ErrBadEntry, e.Key)
	case e.Created.IsZero():
		return nil, fmt.Errorf("%w: no creation time", ErrBadEntry)
	}
	return &e, nil
}

func isHex(s string) bool {
	_, err := hex.DecodeString(s)
	return err == nil
}

// Put writes e atomically, replacing the node's previous entry. Format is
// filled in, and Created when zero. On a file system the entry is written
// to a temp file and renamed over the old one (the last writer wins); on
// an object store it is one conditional write (see SameEntryWindow): an
// entry of the same key made at about the same time, by a concurrent
// writer, stays and is a success.
func (s *Store) Put(ctx context.Context, e *Entry) error {
	if e.NodeID == "" || len(e.Key) != 64 || !isHex(e.Key) {
		return fmt.Errorf("cache: put: entry needs a node id and a 64-hex-digit key (got %q, %q)", e.NodeID, e.Key)
	}
	cp := *e
	cp.Format = EntryFormat
	if cp.Created.IsZero() {
		cp.Created = s.now()
	}
	data, err := json.MarshalIndent(&cp, "", "  ")
	if err != nil {
		return fmt.Errorf("cache: put %s: %w", e.NodeID, err)
	}
	data = append(data, '\n')
	if s.obj != nil {
		err = s.putObject(ctx, &cp, data)
	} else {
		err = s.write(ctx, s.Path(e.NodeID), data, false)
	}
	if err != nil {
		return fmt.Errorf("cache: put %s: %w", e.NodeID, err)
	}
	return nil
}

// SameEntryWindow is how close in time two entries of one node under one
// key must have been made for an object store's Put to take the one it
// finds as its own: two writers that built the same key at about the same
// time (two machines of one CI run, say) stored the same result, and the
// first one's entry stays. An older entry under the same key is replaced,
// so that a node rebuilt after its entry expired gets a fresh one.
const SameEntryWindow = time.Minute

// putObject writes entry e (encoded as data) as one object with a
// conditional write (if none exists), so that no writer ever overwrites an
// object another one is writing or has just written. When an object is
// already there, it is e's twin (same key and status, made within
// SameEntryWindow: a success, the first writer's stays) or it is
// replaced: deleted, then written again conditionally. A second write
// that finds an object again lost to a concurrent writer, whose whole
// entry stays: also a success. A reader sees one writer's whole entry or
// none, never a torn one.
func (s *Store) putObject(ctx context.Context, e *Entry, data []byte) error {
	p := s.Path(e.NodeID)
	for attempt := 0; ; attempt++ {
		err := s.obj.WriteObject(ctx, p, data, true)
		if err == nil || !errors.Is(err, fs.ErrExist) {
			return err
		}
		if attempt > 0 {
			return nil // a concurrent writer's entry, written after our delete
		}
		old, gerr := s.Get(ctx, e.NodeID)
		switch {
		case gerr == nil && old.Key == e.Key && old.Result.Status == e.Result.Status && !old.Created.Before(e.Created.Add(-SameEntryWindow)):
			return nil
		case errors.Is(gerr, fs.ErrNotExist):
			continue // deleted meanwhile
		}
		if err := s.obj.DeleteObject(ctx, p); err != nil {
			return err
		}
	}
}

// Delete removes id's entry. Deleting a missing entry is not an error.
func (s *Store) Delete(ctx context.Context, id string) error {
	if err := s.remove(ctx, s.Path(id)); err != nil {
		return fmt.Errorf("cache: delete %s: %w", id, err)
	}
	return nil
}

// staleTempAge is how old a writer's leftover temp file must be before
// Prune removes it (a writer that is still going has just created it).
const staleTempAge = time.Hour

// Prune removes the entries that can no longer be served: expired ones,
// unreadable ones, those of nodes for which keep returns false (nil keep
// keeps every node), and temp files left behind by writers that died more
// than an hour ago. It returns how many files it removed. Prune is safe to
// run while other Stores write to the directory.
func (s *Store) Prune(ctx context.Context, keep func(id string) bool) (int, error) {
	infos, err := s.list(ctx, s.dir)
	if err != nil {
		if errors.Is(err, fs.ErrNotExist) {
			return 0, nil
		}
		return 0, fmt.Errorf("cache: prune: %w", err)
	}
	now := s.now()
	removed := 0
	var errs []error
	for _, fi := range infos {
		name := fi.Name
		p := s.join(s.dir, name)
		var drop bool
		switch {
		case strings.HasPrefix(name, "."):
			drop = strings.Contains(name, atomicfile.TempMarker) && now.Sub(fi.ModTime) > staleTempAge
		case strings.HasSuffix(name, ".json"):
			drop = s.prunable(ctx, p, name, now, keep)
		}
		if !drop {
			continue
		}
		if err := s.remove(ctx, p); err != nil {
			errs = append(errs, err)
			continue
		}
		removed++
	}
	if len(errs) > 0 {
		return removed, fmt.Errorf("cache: prune: %w", errors.Join(errs...))
	}
	return removed, nil
}

// prunable reports whether the entry file name should go.
func (s *Store) prunable(ctx context.Context, p, name string, now time.Time, keep func(string) bool) bool {
	data, err := s.read(ctx, p)
	if err != nil {
		return false
	}
	var e Entry
	if json.Unmarshal(data, &e) != nil || e.Format != EntryFormat || e.NodeID == "" || fileName(e.NodeID) != name {
		return true
	}
	if e.Expired(now) {
		return true
	}
	return keep != nil && !keep(e.NodeID)
}
