// Package registry holds strata's local content-addressed blob store, the
// local image store (ref -> manifest digest), and everything that talks to
// remote registries or writes image archives. It is built on
// go-containerregistry.
package registry

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"hash"
	"io"
	"os"
	"path/filepath"

	v1 "github.com/google/go-containerregistry/pkg/v1"

	"github.com/strata-build/strata/snapshot"
)

// ErrNotFound reports that a blob, image or tag is not in the local store.
var ErrNotFound = errors.New("not found")

// Store is the on-disk blob and image store rooted at ROOT (see
// docs/design.md). It is safe for concurrent use by several goroutines and
// processes: blobs are written via temp file + rename and the image index is
// updated under an flock.
type Store struct {
	root     string
	blobDir  string // ROOT/blobs/sha256
	tmpDir   string // ROOT/blobs/tmp
	index    string // ROOT/images.json
	lockFile string // ROOT/images.json.lock
	diffDir  string // ROOT/diffs: lazy layers (see diffs.go)
	snaps    *snapshot.Store
}

// OpenStore opens (creating if needed) the store at root.
func OpenStore(root string) (*Store, error) {
	abs, err := filepath.Abs(root)
	if err != nil {
		return nil, fmt.Errorf("resolving store root %s: %w", root, err)
	}
	s := &Store{
		root:     abs,
		blobDir:  filepath.Join(abs, "blobs", "sha256"),
		tmpDir:   filepath.Join(abs, "blobs", "tmp"),
		index:    filepath.Join(abs, "images.json"),
		lockFile: filepath.Join(abs, "images.json.lock"),
		diffDir:  filepath.Join(abs, "diffs"),
	}
	snaps, err := snapshot.Open(filepath.Join(abs, "snapshots"))
	if err != nil {
		return nil, err
	}
	s.snaps = snaps
	for _, d := range []string{s.blobDir, s.tmpDir, s.diffDir} {
		if err := os.MkdirAll(d, 0o755); err != nil {
			return nil, fmt.Errorf("creating store directory: %w", err)
		}
	}
	return s, nil
}

// Root returns the store's root directory.
func (s *Store) Root() string { return s.root }

func validHash(d v1.Hash) bool {
	if d.Algorithm != "sha256" || len(d.Hex) != 64 {
		return false
	}
	_, err := hex.DecodeString(d.Hex)
	return err == nil
}

// BlobPath returns where the blob d lives (or would live) on disk.
func (s *Store) BlobPath(d v1.Hash) string {
	return filepath.Join(s.root, "blobs", d.Algorithm, d.Hex)
}

// HasBlob reports whether the blob d is present: as a file, or as a lazy
// layer whose snapshot is whole.
func (s *Store) HasBlob(d v1.Hash) bool {
	if s.hasBlobFile(d) {
		return true
	}
	_, _, ok := s.lazy(d)
	return ok
}

// hasBlobFile reports whether d is present as a file.
func (s *Store) hasBlobFile(d v1.Hash) bool {
	if !validHash(d) {
		return false
	}
	fi, err := os.Stat(s.BlobPath(d))
	return err == nil && fi.Mode().IsRegular()
}

// OpenBlob opens the blob d for reading.
func (s *Store) OpenBlob(d v1.Hash) (io.ReadCloser, error) {
	if !validHash(d) {
		return nil, fmt.Errorf("opening blob %q: invalid digest", d.String())
	}
	f, err := os.Open(s.BlobPath(d))
	if err != nil {
		if errors.Is(err, os.ErrNotExist) {
			if rc, ok := s.openLazy(d); ok {
				return rc, nil
			}
			return nil, fmt.Errorf("opening blob %s: %w", d, ErrNotFound)
		}
		return nil, fmt.Errorf("opening blob %s: %w", d, err)
	}
	return f, nil
}

func (s *Store) readBlob(d v1.Hash) ([]byte, error) {
	rc, err := s.OpenBlob(d)
	if err != nil {
		return nil, err
	}
	defer rc.Close()
	b, err := io.ReadAll(rc)
	if err != nil {
		return nil, fmt.Errorf("reading blob %s: %w", d, err)
	}
	return b, nil
}

// WriteBlob stores the content of r and returns its digest and size. The
// content is hashed while it is written to a temp file, which is fsynced and
// renamed into place only if the digest matches want (when want is not nil);
// on any failure nothing is left behind. If want names a blob that is already
// present, r is not read at all.
func (s *Store) WriteBlob(ctx context.Context, r io.Reader, want *v1.Hash) (v1.Hash, int64, error) {
	if want != nil {
		if !validHash(*want) {
			return v1.Hash{}, 0, fmt.Errorf("writing blob: unsupported digest %q", want.String())
		}
		if fi, err := os.Stat(s.BlobPath(*want)); err == nil && fi.Mode().IsRegular() {
			return *want, fi.Size(), nil
		}
	}
	bw, err := s.newBlobWriter()
	if err != nil {
		return v1.Hash{}, 0, err
	}
	defer bw.abort()
	buf := make([]byte, 256<<10)
	if _, err := io.CopyBuffer(bw, ctxReader{ctx: ctx, r: r}, buf); err != nil {
		return v1.Hash{}, 0, fmt.Errorf("writing blob: %w", err)
	}
	return bw.commit(want)
}

func (s *Store) writeBlobBytes(ctx context.Context, b []byte) (v1.Hash, int64, error) {
	return s.WriteBlob(ctx, bytes.NewReader(b), nil)
}

// blobWriter writes a temp file in blobs/tmp while hashing it; commit
// verifies and renames it into blobs/sha256.
type blobWriter struct {
	s    *Store
	f    *os.File
	h    hash.Hash
	n    int64
	done bool
}

func (s *Store) newBlobWriter() (*blobWriter, error) {
	f, err := os.CreateTemp(s.tmpDir, "blob-*")
	if err != nil {
		return nil, fmt.Errorf("creating temp blob: %w", err)
	}
	return &blobWriter{s: s, f: f, h: sha256.New()}, nil
}

func (b *blobWriter) Write(p []byte) (int, error) {
	n, err := b.f.Write(p)
	b.h.Write(p[:n])
	b.n += int64(n)
	return n, err
}

// abort removes the temp file unless commit succeeded; safe to call twice.
func (b *blobWriter) abort() {
	if b.done {
		return
	}
	b.done = true
	b.f.Close()
	os.Remove(b.f.Name())
}

func (b *blobWriter) commit(want *v1.Hash) (v1.Hash, int64, error) {
	got := v1.Hash{Algorithm: "sha256", Hex: hex.EncodeToString(b.h.Sum(nil))}
	if want != nil && *want != got {
		b.abort()
		return v1.Hash{}, 0, fmt.Errorf("verifying blob: digest mismatch: want %s, got %s", want, got)
	}
	if err := b.f.Sync(); err != nil {
		b.abort()
		return v1.Hash{}, 0, fmt.Errorf("syncing blob %s: %w", got, err)
	}
	if err := b.f.Close(); err != nil {
		b.abort()
		return v1.Hash{}, 0, fmt.Errorf("closing blob %s: %w", got, err)
	}
	if err := os.Chmod(b.f.Name(), 0o644); err != nil {
		b.abort()
		return v1.Hash{}, 0, fmt.Errorf("chmod blob %s: %w", got, err)
	}
	if err := os.Rename(b.f.Name(), b.s.BlobPath(got)); err != nil {
		b.abort()
		return v1.Hash{}, 0, fmt.Errorf("storing blob %s: %w", got, err)
	}
	b.done = true
	return got, b.n, nil
}

// ctxReader stops a copy once ctx is cancelled.
type ctxReader struct {
	ctx context.Context
	r   io.Reader
}

func (c ctxReader) Read(p []byte) (int, error) {
	if err := c.ctx.Err(); err != nil {
		return 0, err
	}
	return c.r.Read(p)
}

// ctxWriter stops a producer once ctx is cancelled.
type ctxWriter struct {
	ctx context.Context
	w   io.Writer
}

func (c ctxWriter) Write(p []byte) (int, error) {
	if err := c.ctx.Err(); err != nil {
		return 0, err
	}
	return c.w.Write(p)
}
