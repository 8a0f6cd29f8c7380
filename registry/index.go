package registry

import (
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"syscall"

	"github.com/google/go-containerregistry/pkg/name"
	v1 "github.com/google/go-containerregistry/pkg/v1"
)

// indexFile is the on-disk form of ROOT/images.json.
type indexFile struct {
	Images map[string]v1.Hash `json:"images"`
	// Sources maps a blob digest to the repositories ("host[:port]/repo")
	// known to hold it, most recent first: those it was pulled from or
	// pushed to. Push asks a registry to mount a missing blob from one of
	// them (a cross-repository mount) instead of uploading it. Hints only:
	// a stale entry costs one mount request that the registry declines.
	Sources map[string][]string `json:"sources,omitempty"`
}

// maxSources bounds the repositories remembered per blob.
const maxSources = 4

// NormalizeRef returns the canonical form of an image reference as used as
// a key in the local image store, e.g. "busybox" ->
// "index.docker.io/library/busybox:latest".
func NormalizeRef(ref string) (string, error) {
	if strings.HasPrefix(ref, "sha256:") {
		return "", fmt.Errorf("normalising %q: a bare digest is not a reference", ref)
	}
	r, err := name.ParseReference(ref)
	if err != nil {
		return "", fmt.Errorf("normalising %q: %w", ref, err)
	}
	return r.Name(), nil
}

// Tag records that ref names img. img's manifest must be in the store.
func (s *Store) Tag(ref string, img *Image) error {
	return s.tag(ref, img, nil, nil)
}

// tag is Tag that also records src as a source of blobs (see indexFile).
func (s *Store) tag(ref string, img *Image, src *name.Repository, blobs []v1.Hash) error {
	key, err := NormalizeRef(ref)
	if err != nil {
		return fmt.Errorf("tagging: %w", err)
	}
	if !s.HasBlob(img.Digest) {
		return fmt.Errorf("tagging %s: manifest %s: %w", key, img.Digest, ErrNotFound)
	}
	// Make the blob renames durable before the index can point at them.
	if err := syncDir(s.blobDir); err != nil {
		return fmt.Errorf("tagging %s: %w", key, err)
	}
	return s.updateIndexFile(func(f *indexFile) error {
		f.Images[key] = img.Digest
		if src != nil {
			s.addSources(f, src, blobs)
		}
		return nil
	})
}

// addSources records that repo holds blobs, and forgets sources of blobs
// no longer in the store.
func (s *Store) addSources(f *indexFile, repo *name.Repository, blobs []v1.Hash) {
	if f.Sources == nil {
		f.Sources = map[string][]string{}
	}
	for k := range f.Sources {
		if h, err := v1.NewHash(k); err != nil || !s.HasBlob(h) {
			delete(f.Sources, k)
		}
	}
	r := repo.Name()
	for _, b := range blobs {
		k := b.String()
		list := append([]string{r}, slices.DeleteFunc(f.Sources[k], func(x string) bool { return x == r })...)
		f.Sources[k] = list[:min(len(list), maxSources)]
	}
}

// RecordSources notes that repo holds the blobs of img (config and
// layers), so that pushes to other repositories of its registry can mount
// them.
func (s *Store) RecordSources(repo name.Repository, img *Image) error {
	return s.updateIndexFile(func(f *indexFile) error {
		s.addSources(f, &repo, imageBlobs(img))
		return nil
	})
}

// imageBlobs lists the config and layer digests of img.
func imageBlobs(img *Image) []v1.Hash {
	out := []v1.Hash{img.ConfigDigest}
	for _, l := range img.Layers {
		out = append(out, l.Digest)
	}
	return out
}

// sources returns the repositories recorded for blob d, most recent first.
func (s *Store) sources(d v1.Hash) ([]string, error) {
	f, err := s.readIndexFile()
	if err != nil {
		return nil, err
	}
	return f.Sources[d.String()], nil
}

// Untag removes ref from the local image store; the blobs stay.
func (s *Store) Untag(ref string) error {
	key, err := NormalizeRef(ref)
	if err != nil {
		return fmt.Errorf("untagging: %w", err)
	}
	return s.updateIndex(func(m map[string]v1.Hash) error {
		if _, ok := m[key]; !ok {
			return fmt.Errorf("untagging %s: %w", key, ErrNotFound)
		}
		delete(m, key)
		return nil
	})
}

// List returns every tagged reference (normalised) and its manifest digest.
func (s *Store) List() (map[string]v1.Hash, error) {
	return s.readIndex()
}

// Lookup finds an image in the local store by reference (normalised), by a
// bare "sha256:..." manifest digest, or by ref@digest when that manifest blob
// is present. found is false, with a nil error, when nothing matches.
func (s *Store) Lookup(ref string) (*Image, bool, error) {
	if strings.HasPrefix(ref, "sha256:") {
		d, err := v1.NewHash(ref)
		if err != nil {
			return nil, false, fmt.Errorf("looking up %q: %w", ref, err)
		}
		return s.lookupDigest(d)
	}
	r, err := name.ParseReference(ref)
	if err != nil {
		return nil, false, fmt.Errorf("looking up %q: %w", ref, err)
	}
	idx, err := s.readIndex()
	if err != nil {
		return nil, false, err
	}
	if d, ok := idx[r.Name()]; ok {
		img, err := s.Image(d)
		if err != nil {
			return nil, false, fmt.Errorf("looking up %s: %w", r.Name(), err)
		}
		return img, true, nil
	}
	if dr, ok := r.(name.Digest); ok {
		d, err := v1.NewHash(dr.DigestStr())
		if err != nil {
			return nil, false, fmt.Errorf("looking up %q: %w", ref, err)
		}
		return s.lookupDigest(d)
	}
	return nil, false, nil
}

func (s *Store) lookupDigest(d v1.Hash) (*Image, bool, error) {
	if !s.HasBlob(d) {
		return nil, false, nil
	}
	img, err := s.Image(d)
	if err != nil {
		return nil, false, err
	}
	return img, true, nil
}

func (s *Store) readIndex() (map[string]v1.Hash, error) {
	f, err := s.readIndexFile()
	if err != nil {
		return nil, err
	}
	return f.Images, nil
}

func (s *Store) readIndexFile() (*indexFile, error) {
	f := &indexFile{}
	b, err := os.ReadFile(s.index)
	switch {
	case errors.Is(err, os.ErrNotExist):
	case err != nil:
		return nil, fmt.Errorf("reading image index: %w", err)
	default:
		if err := json.Unmarshal(b, f); err != nil {
			return nil, fmt.Errorf("parsing image index %s: %w", s.index, err)
		}
	}
	if f.Images == nil {
		f.Images = map[string]v1.Hash{}
	}
	return f, nil
}

// updateIndex applies fn to the tags of the index under an exclusive flock.
func (s *Store) updateIndex(fn func(map[string]v1.Hash) error) error {
	return s.updateIndexFile(func(f *indexFile) error { return fn(f.Images) })
}

// updateIndexFile applies fn to the index under an exclusive flock. The
// lock is on a separate file because images.json itself is replaced by
// rename.
func (s *Store) updateIndexFile(fn func(*indexFile) error) error {
	lf, err := os.OpenFile(s.lockFile, os.O_CREATE|os.O_RDWR, 0o644)
	if err != nil {
		return fmt.Errorf("opening image index lock: %w", err)
	}
	defer lf.Close()
	for {
		err = syscall.Flock(int(lf.Fd()), syscall.LOCK_EX)
		if !errors.Is(err, syscall.EINTR) {
			break
		}
	}
	if err != nil {
		return fmt.Errorf("locking image index: %w", err)
	}
	// Closing lf releases the lock.

	f, err := s.readIndexFile()
	if err != nil {
		return err
	}
	if err := fn(f); err != nil {
		return err
	}
	b, err := json.MarshalIndent(f, "", "  ")
	if err != nil {
		return fmt.Errorf("encoding image index: %w", err)
	}
	return writeFileAtomic(s.index, append(b, '\n'))
}

// writeFileAtomic writes path via a synced temp file in the same directory.
func writeFileAtomic(path string, data []byte) error {
	return writeAtomic(path, func(w io.Writer) error {
		_, err := w.Write(data)
		return err
	})
}

// writeAtomic writes path with write() into a synced temp file in the same
// directory, renamed into place, so readers never see a partial file.
func writeAtomic(path string, write func(io.Writer) error) error {
	return writeAtomicMode(path, 0o644, write)
}

// writeAtomicMode is writeAtomic giving the file mode perm.
func writeAtomicMode(path string, perm os.FileMode, write func(io.Writer) error) error {
	dir, base := filepath.Dir(path), filepath.Base(path)
	f, err := os.CreateTemp(dir, "."+base+".tmp-*")
	if err != nil {
		return fmt.Errorf("writing %s: %w", path, err)
	}
	tmp := f.Name()
	err = write(f)
	if err == nil {
		err = f.Sync()
	}
	if cerr := f.Close(); err == nil {
		err = cerr
	}
	if err == nil {
		err = os.Chmod(tmp, perm)
	}
	if err == nil {
		err = os.Rename(tmp, path)
	}
	if err != nil {
		os.Remove(tmp)
		return fmt.Errorf("writing %s: %w", path, err)
	}
	return syncDir(dir)
}

func syncDir(dir string) error {
	d, err := os.Open(dir)
	if err != nil {
		return fmt.Errorf("syncing %s: %w", dir, err)
	}
	defer d.Close()
	if err := d.Sync(); err != nil {
		return fmt.Errorf("syncing %s: %w", dir, err)
	}
	return nil
}
