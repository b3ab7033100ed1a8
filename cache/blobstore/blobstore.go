// Package blobstore keeps a cache.Store on object storage through
// gocloud.dev/blob: S3 and S3-compatible servers, Google Cloud Storage,
// Azure Blob Storage, or a directory (file://), so that machines whose disk
// is new every run (containers, CI runners) share one cache.
//
// Each entry is one object written in one conditional request (if none
// exists: If-None-Match: * on S3; an older entry is deleted first), so
// concurrent writers never tear an entry nor overwrite one another's, and
// a reader sees a whole entry or none (see cache.Store.Put); kept
// manifests are written conditionally too. Open takes
// gocloud's URL syntax with the store's prefix as the URL's path:
//
//	s3://bucket/dbtorch?endpoint=http://127.0.0.1:8333&region=us-east-1&use_path_style=true
//	gs://bucket/dbtorch
//	azblob://container/dbtorch
//	file:///var/cache/dbtorch
package blobstore

import (
	"context"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"net/url"
	"strings"

	"gocloud.dev/blob"
	_ "gocloud.dev/blob/azureblob" // azblob://
	_ "gocloud.dev/blob/fileblob"  // file://
	_ "gocloud.dev/blob/gcsblob"   // gs://
	_ "gocloud.dev/blob/s3blob"    // s3://
	"gocloud.dev/gcerrors"

	"github.com/dbtorch/dbtorch/cache"
)

// Objects is a gocloud.dev/blob bucket as cache.Objects.
type Objects struct {
	b *blob.Bucket
}

var _ cache.Objects = (*Objects)(nil)

// New returns the objects of b. The caller keeps b and closes it.
func New(b *blob.Bucket) *Objects { return &Objects{b: b} }

// ReadObject implements cache.Objects.
func (o *Objects) ReadObject(ctx context.Context, key string) ([]byte, error) {
	data, err := o.b.ReadAll(ctx, key)
	if err != nil {
		return nil, wrap("read", key, err)
	}
	return data, nil
}

// WriteObject implements cache.Objects: one upload of data, conditional
// (If-None-Match: * on S3) with ifNotExist.
func (o *Objects) WriteObject(ctx context.Context, key string, data []byte, ifNotExist bool) error {
	opts := &blob.WriterOptions{ContentType: "application/json", IfNotExist: ifNotExist}
	if err := o.b.WriteAll(ctx, key, data, opts); err != nil {
		return wrap("write", key, err)
	}
	return nil
}

// DeleteObject implements cache.Objects.
func (o *Objects) DeleteObject(ctx context.Context, key string) error {
	if err := o.b.Delete(ctx, key); err != nil && gcerrors.Code(err) != gcerrors.NotFound {
		return wrap("delete", key, err)
	}
	return nil
}

// ListObjects implements cache.Objects.
func (o *Objects) ListObjects(ctx context.Context, prefix string) ([]cache.ObjectInfo, error) {
	if prefix != "" && !strings.HasSuffix(prefix, "/") {
		prefix += "/"
	}
	it := o.b.List(&blob.ListOptions{Prefix: prefix, Delimiter: "/"})
	var out []cache.ObjectInfo
	for {
		obj, err := it.Next(ctx)
		if errors.Is(err, io.EOF) {
			return out, nil
		}
		if err != nil {
			return nil, wrap("list", prefix, err)
		}
		if obj.IsDir {
			continue
		}
		out = append(out, cache.ObjectInfo{Name: strings.TrimPrefix(obj.Key, prefix), ModTime: obj.ModTime})
	}
}

// wrap names the operation and the key, and maps gocloud's codes to the
// fs errors cache.Objects promises.
func wrap(op, key string, err error) error {
	switch gcerrors.Code(err) {
	case gcerrors.NotFound:
		return fmt.Errorf("blobstore: %s %s: %w (%v)", op, key, fs.ErrNotExist, err)
	case gcerrors.FailedPrecondition:
		return fmt.Errorf("blobstore: %s %s: %w (%v)", op, key, fs.ErrExist, err)
	}
	return fmt.Errorf("blobstore: %s %s: %w", op, key, err)
}

// IsURL reports whether s names an object store (it has a scheme) rather
// than a directory.
func IsURL(s string) bool {
	u, err := url.Parse(s)
	return err == nil && len(u.Scheme) > 1 && u.Host != "" || strings.HasPrefix(s, "file://")
}

// Open opens the store a URL names: scheme://bucket/prefix?options, in
// gocloud.dev/blob's syntax for the scheme (s3, gs, azblob, file), the
// path being the store's prefix in the bucket. Close the returned closer
// when done with the store.
func Open(ctx context.Context, rawURL string, opts cache.StoreOptions) (*cache.Store, io.Closer, error) {
	u, err := url.Parse(rawURL)
	if err != nil {
		return nil, nil, fmt.Errorf("blobstore: %w", err)
	}
	prefix := ""
	if u.Scheme != "file" {
		prefix = strings.Trim(u.Path, "/")
		u.Path = ""
	}
	b, err := blob.OpenBucket(ctx, u.String())
	if err != nil {
		return nil, nil, fmt.Errorf("blobstore: open %s://%s: %w", u.Scheme, u.Host, err)
	}
	return cache.NewObjectStore(New(b), prefix, opts), b, nil
}
