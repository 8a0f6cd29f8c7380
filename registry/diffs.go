package registry

// Lazy layers. A layer a build makes stays in its snapshot rather than
// being written out as a blob: the store records the layer's diffID and
// size under ROOT/diffs/HEX.json and serves its uncompressed tar by diffing
// the snapshot again when asked (Diff of a committed snapshot is
// deterministic, and every read is checked against the diffID). Layers are
// compressed only when an image leaves the store (push, OCI layout, docker
// archive, cache export); the compressed blobs are remembered in the
// record. Local manifests list such layers uncompressed (digest == diffID),
// so a local image's digest differs from its pushed digest, as with docker.

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"hash"
	"io"
	"os"
	"path/filepath"
	"strconv"
	"time"

	v1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/google/go-containerregistry/pkg/v1/types"

	"github.com/strata-build/strata/snapshot"
)

// diffRecord is the on-disk form of ROOT/diffs/HEX.json.
type diffRecord struct {
	// Snapshot is the key of the committed snapshot the layer is read from.
	Snapshot string `json:"snapshot"`
	// Size is the length of the uncompressed tar.
	Size int64 `json:"size"`
	// Epoch is the SOURCE_DATE_EPOCH (unix seconds) the tar was made with.
	Epoch *int64 `json:"epoch,omitempty"`
	// Compressed holds the blobs made from the layer, by compressionKey.
	Compressed map[string]compressedBlob `json:"compressed,omitempty"`
}

type compressedBlob struct {
	Digest    v1.Hash         `json:"digest"`
	Size      int64           `json:"size"`
	MediaType types.MediaType `json:"mediaType"`
}

func (s *Store) diffPath(d v1.Hash) string {
	return filepath.Join(s.diffDir, d.Hex+".json")
}

// readDiff returns the record of the lazy layer d, if there is one.
func (s *Store) readDiff(d v1.Hash) (diffRecord, bool) {
	if !validHash(d) {
		return diffRecord{}, false
	}
	b, err := os.ReadFile(s.diffPath(d))
	if err != nil {
		return diffRecord{}, false
	}
	var r diffRecord
	if json.Unmarshal(b, &r) != nil || r.Snapshot == "" {
		return diffRecord{}, false // torn or foreign: never trusted
	}
	return r, true
}

// lazy returns the record of d and its snapshot when both are whole.
func (s *Store) lazy(d v1.Hash) (diffRecord, snapshot.Snapshot, bool) {
	r, ok := s.readDiff(d)
	if !ok {
		return diffRecord{}, snapshot.Snapshot{}, false
	}
	snap, ok := s.snaps.Get(r.Snapshot)
	if !ok {
		return diffRecord{}, snapshot.Snapshot{}, false
	}
	return r, snap, true
}

// writeDiff stores r for d (temp file, fsync, rename).
func (s *Store) writeDiff(d v1.Hash, r diffRecord) error {
	b, err := json.Marshal(r)
	if err != nil {
		return err
	}
	if err := writeFileAtomic(s.diffPath(d), b); err != nil {
		return fmt.Errorf("writing layer record: %w", err)
	}
	return nil
}

func diffOptions(epoch *int64) snapshot.DiffOptions {
	if epoch == nil {
		return snapshot.DiffOptions{}
	}
	t := time.Unix(*epoch, 0).UTC()
	return snapshot.DiffOptions{Epoch: &t}
}

// RecordDiff makes the committed snapshot snap a layer of the store without
// writing a blob: its tar is hashed (never stored) and the layer is served
// from the snapshot from then on. epoch clamps mtimes as in
// snapshot.DiffOptions. The layer returned is uncompressed, digest ==
// diffID.
func (s *Store) RecordDiff(ctx context.Context, snap snapshot.Snapshot, epoch *time.Time) (Layer, error) {
	var ep *int64
	if epoch != nil {
		e := epoch.Unix()
		ep = &e
	}
	h := sha256.New()
	cw := &countWriter{w: h}
	if _, err := snapshot.Diff(ctx, snap.Dir, ctxWriter{ctx: ctx, w: cw}, diffOptions(ep)); err != nil {
		return Layer{}, fmt.Errorf("hashing layer: %w", err)
	}
	d := v1.Hash{Algorithm: "sha256", Hex: hex.EncodeToString(h.Sum(nil))}
	l := Layer{Digest: d, DiffID: d, Size: cw.n, MediaType: types.OCIUncompressedLayer}
	if old, _, ok := s.lazy(d); ok && old.Size == cw.n {
		return l, nil // another snapshot with the same content already serves it
	}
	if err := s.writeDiff(d, diffRecord{Snapshot: snap.Key, Size: cw.n, Epoch: ep}); err != nil {
		return Layer{}, err
	}
	return l, nil
}

// SnapshotOf returns a committed snapshot holding the layer diffID: the
// unpacked layer (keyed by diffID) or the snapshot a lazy layer is read
// from. Callers that need a layer's files use it before unpacking a tar.
func (s *Store) SnapshotOf(diffID v1.Hash) (snapshot.Snapshot, bool) {
	if snap, ok := s.snaps.Get(diffID.Hex); ok {
		return snap, true
	}
	if _, snap, ok := s.lazy(diffID); ok {
		return snap, true
	}
	return snapshot.Snapshot{}, false
}

// openLazy streams the tar of the lazy layer d from its snapshot. The
// stream is hashed as it is read; a tar that no longer matches the diffID
// (the snapshot was damaged) ends in an error instead of EOF.
func (s *Store) openLazy(d v1.Hash) (io.ReadCloser, bool) {
	r, snap, ok := s.lazy(d)
	if !ok {
		return nil, false
	}
	ctx, cancel := context.WithCancel(context.Background())
	pr, pw := io.Pipe()
	go func() {
		_, err := snapshot.Diff(ctx, snap.Dir, pw, diffOptions(r.Epoch))
		pw.CloseWithError(err)
	}()
	return &verifyingReader{r: pr, h: sha256.New(), want: d, size: r.Size, close: func() error {
		cancel()
		return pr.Close()
	}}, true
}

type verifyingReader struct {
	r     io.Reader
	h     hash.Hash
	n     int64
	want  v1.Hash
	size  int64
	close func() error
}

func (v *verifyingReader) Read(p []byte) (int, error) {
	n, err := v.r.Read(p)
	v.h.Write(p[:n])
	v.n += int64(n)
	if errors.Is(err, io.EOF) {
		if got := hex.EncodeToString(v.h.Sum(nil)); got != v.want.Hex || v.n != v.size {
			return n, fmt.Errorf("layer %s: its snapshot no longer matches (got sha256:%s, %d bytes)", v.want, got, v.n)
		}
	}
	return n, err
}

func (v *verifyingReader) Close() error { return v.close() }

type countWriter struct {
	w io.Writer
	n int64
}

func (c *countWriter) Write(p []byte) (int, error) {
	n, err := c.w.Write(p)
	c.n += int64(n)
	return n, err
}

func compressionKey(c Compression, level int) string {
	if c == "" {
		c = Gzip
	}
	return string(c) + "-" + strconv.Itoa(level)
}

// CompressLayers returns layers with every lazy layer replaced by a
// compressed blob (made now, or remembered from an earlier push or export).
// Layers already held as blobs are returned as they are.
func (s *Store) CompressLayers(ctx context.Context, layers []Layer, c Compression, level int) ([]Layer, error) {
	out := make([]Layer, len(layers))
	for i, l := range layers {
		cl, err := s.compressLayer(ctx, l, c, level)
		if err != nil {
			return nil, err
		}
		out[i] = cl
	}
	return out, nil
}

func (s *Store) compressLayer(ctx context.Context, l Layer, c Compression, level int) (Layer, error) {
	if s.hasBlobFile(l.Digest) {
		return l, nil
	}
	r, ok := s.readDiff(l.Digest)
	if !ok {
		return Layer{}, fmt.Errorf("layer %s: %w", l.Digest, ErrNotFound)
	}
	key := compressionKey(c, level)
	if b, ok := r.Compressed[key]; ok && s.hasBlobFile(b.Digest) {
		return Layer{Digest: b.Digest, DiffID: l.DiffID, Size: b.Size, MediaType: b.MediaType}, nil
	}
	r, snap, ok := s.lazy(l.Digest)
	if !ok {
		return Layer{}, fmt.Errorf("layer %s: its snapshot is gone: %w", l.Digest, ErrNotFound)
	}
	// Diffed straight into the compressor; the diffID check happens
	// before the blob is stored.
	cl, err := s.writeLayer(ctx, func(w io.Writer) error {
		_, err := snapshot.Diff(ctx, snap.Dir, w, diffOptions(r.Epoch))
		return err
	}, c, level, &l.DiffID)
	if errors.Is(err, errDiffIDMismatch) {
		return Layer{}, fmt.Errorf("layer %s: its snapshot no longer matches (%v)", l.Digest, err)
	}
	if err != nil {
		return Layer{}, fmt.Errorf("compressing layer %s: %w", l.Digest, err)
	}
	// Remember the blob for the next push. Another process may have
	// updated the record meanwhile; losing its entry only costs a
	// compression later.
	if cur, ok := s.readDiff(l.Digest); ok {
		if cur.Compressed == nil {
			cur.Compressed = map[string]compressedBlob{}
		}
		cur.Compressed[key] = compressedBlob{Digest: cl.Digest, Size: cl.Size, MediaType: cl.MediaType}
		if err := s.writeDiff(l.Digest, cur); err != nil {
			return Layer{}, err
		}
	}
	return cl, nil
}

// Compressed returns img as it should leave the store: the same config with
// every lazy layer compressed. An image without lazy layers is returned
// unchanged; otherwise a new manifest is written (not tagged).
func (s *Store) Compressed(ctx context.Context, img *Image, c Compression, level int) (*Image, error) {
	layers, err := s.CompressLayers(ctx, img.Layers, c, level)
	if err != nil {
		return nil, err
	}
	changed := false
	for i := range layers {
		if layers[i].Digest != img.Layers[i].Digest {
			changed = true
		}
	}
	if !changed {
		return img, nil
	}
	m := *img.Manifest
	m.Layers = make([]v1.Descriptor, len(layers))
	oci := m.MediaType == types.OCIManifestSchema1
	for i, l := range layers {
		m.Layers[i] = v1.Descriptor{MediaType: manifestLayerType(l.MediaType, oci), Size: l.Size, Digest: l.Digest}
	}
	raw, err := json.Marshal(m)
	if err != nil {
		return nil, fmt.Errorf("encoding image manifest: %w", err)
	}
	d, _, err := s.writeBlobBytes(ctx, raw)
	if err != nil {
		return nil, fmt.Errorf("writing image manifest: %w", err)
	}
	return s.Image(d)
}
