package registry

import (
	"bufio"
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"os"
	"runtime"

	v1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/google/go-containerregistry/pkg/v1/types"
	"github.com/klauspost/compress/zstd"
	"github.com/klauspost/pgzip"
)

// Compression selects how WriteLayer compresses a layer.
type Compression string

// Supported layer compressions.
const (
	Gzip Compression = "gzip" // the default
	Zstd Compression = "zstd"
)

// Layer describes a layer blob in the store.
type Layer struct {
	Digest    v1.Hash // sha256 of the blob (compressed)
	DiffID    v1.Hash // sha256 of the uncompressed tar
	Size      int64   // blob size
	MediaType types.MediaType
}

var (
	gzipMagic = []byte{0x1f, 0x8b}
	zstdMagic = []byte{0x28, 0xb5, 0x2f, 0xfd}
)

// WriteLayer stores a layer whose uncompressed tar is produced by write. The
// tar is hashed (diffID) while being compressed and the compressed stream is
// hashed (digest) while going to a temp blob, so the layer never sits in
// memory. level 0 means the compressor's default.
func (s *Store) WriteLayer(ctx context.Context, write func(w io.Writer) error, c Compression, level int) (Layer, error) {
	return s.writeLayer(ctx, write, c, level, nil)
}

// errDiffIDMismatch reports a layer tar whose digest is not the one expected.
var errDiffIDMismatch = errors.New("layer tar does not match its diffID")

// writeLayer is WriteLayer that, when wantDiffID is set, stores nothing
// unless the tar's digest is wantDiffID.
func (s *Store) writeLayer(ctx context.Context, write func(w io.Writer) error, c Compression, level int, wantDiffID *v1.Hash) (Layer, error) {
	bw, err := s.newBlobWriter()
	if err != nil {
		return Layer{}, err
	}
	defer bw.abort()

	var (
		comp io.WriteCloser
		mt   types.MediaType
	)
	switch c {
	case "", Gzip:
		if level == 0 {
			level = pgzip.DefaultCompression
		}
		zw, err := pgzip.NewWriterLevel(bw, level)
		if err != nil {
			return Layer{}, fmt.Errorf("creating gzip writer: %w", err)
		}
		// 1 MiB blocks, one per CPU: enough to keep every core busy without
		// buffering much of the layer.
		if err := zw.SetConcurrency(1<<20, max(2, runtime.GOMAXPROCS(0))); err != nil {
			return Layer{}, fmt.Errorf("configuring gzip writer: %w", err)
		}
		comp, mt = zw, types.OCILayer
	case Zstd:
		opts := []zstd.EOption{zstd.WithEncoderConcurrency(runtime.GOMAXPROCS(0))}
		if level != 0 {
			opts = append(opts, zstd.WithEncoderLevel(zstd.EncoderLevelFromZstd(level)))
		}
		zw, err := zstd.NewWriter(bw, opts...)
		if err != nil {
			return Layer{}, fmt.Errorf("creating zstd writer: %w", err)
		}
		comp, mt = zw, types.OCILayerZStd
	default:
		return Layer{}, fmt.Errorf("writing layer: unknown compression %q", c)
	}

	diff := sha256.New()
	if err := write(ctxWriter{ctx: ctx, w: io.MultiWriter(diff, comp)}); err != nil {
		comp.Close()
		return Layer{}, fmt.Errorf("writing layer tar: %w", err)
	}
	if err := comp.Close(); err != nil {
		return Layer{}, fmt.Errorf("finishing %s stream: %w", c, err)
	}
	if err := ctx.Err(); err != nil {
		return Layer{}, fmt.Errorf("writing layer: %w", err)
	}
	diffID := v1.Hash{Algorithm: "sha256", Hex: hex.EncodeToString(diff.Sum(nil))}
	if wantDiffID != nil && *wantDiffID != diffID {
		return Layer{}, fmt.Errorf("%w: got %s, want %s", errDiffIDMismatch, diffID, wantDiffID)
	}
	d, n, err := bw.commit(nil)
	if err != nil {
		return Layer{}, err
	}
	return Layer{
		Digest:    d,
		DiffID:    diffID,
		Size:      n,
		MediaType: mt,
	}, nil
}

// OpenLayer returns the uncompressed tar stream of l. The compression is
// sniffed from the blob's magic bytes rather than trusted from the media
// type, so gzip, zstd and uncompressed blobs all work.
func (s *Store) OpenLayer(ctx context.Context, l Layer) (io.ReadCloser, error) {
	if err := ctx.Err(); err != nil {
		return nil, fmt.Errorf("opening layer %s: %w", l.Digest, err)
	}
	rc, err := s.OpenBlob(l.Digest)
	if err != nil {
		return nil, fmt.Errorf("opening layer: %w", err)
	}
	br := bufio.NewReaderSize(rc, 64<<10)
	magic, _ := br.Peek(len(zstdMagic)) // short blobs just fall through to "uncompressed"
	switch {
	case bytes.HasPrefix(magic, gzipMagic):
		zr, err := pgzip.NewReader(br)
		if err != nil {
			rc.Close()
			return nil, fmt.Errorf("opening gzip layer %s: %w", l.Digest, err)
		}
		return &layerReader{ctx: ctx, r: zr, closers: []func() error{zr.Close, rc.Close}}, nil
	case bytes.HasPrefix(magic, zstdMagic):
		zr, err := zstd.NewReader(br)
		if err != nil {
			rc.Close()
			return nil, fmt.Errorf("opening zstd layer %s: %w", l.Digest, err)
		}
		closeZstd := func() error { zr.Close(); return nil }
		return &layerReader{ctx: ctx, r: zr, closers: []func() error{closeZstd, rc.Close}}, nil
	default:
		return &layerReader{ctx: ctx, r: br, closers: []func() error{rc.Close}}, nil
	}
}

// sniffLayerType guesses an OCI media type for a blob from its magic bytes.
func (s *Store) sniffLayerType(d v1.Hash) (types.MediaType, error) {
	rc, err := s.OpenBlob(d)
	if err != nil {
		return "", err
	}
	defer rc.Close()
	magic := make([]byte, len(zstdMagic))
	n, _ := io.ReadFull(rc, magic)
	switch magic = magic[:n]; {
	case bytes.HasPrefix(magic, gzipMagic):
		return types.OCILayer, nil
	case bytes.HasPrefix(magic, zstdMagic):
		return types.OCILayerZStd, nil
	}
	return types.OCIUncompressedLayer, nil
}

type layerReader struct {
	ctx     context.Context
	r       io.Reader
	closers []func() error
}

func (l *layerReader) Read(p []byte) (int, error) {
	if err := l.ctx.Err(); err != nil {
		return 0, err
	}
	return l.r.Read(p)
}

func (l *layerReader) Close() error {
	var first error
	for _, c := range l.closers {
		if err := c(); err != nil && first == nil {
			first = err
		}
	}
	l.closers = nil
	return first
}

// statBlob returns the size of a present blob (or lazy layer).
func (s *Store) statBlob(d v1.Hash) (int64, error) {
	fi, err := os.Stat(s.BlobPath(d))
	if err != nil {
		if r, _, ok := s.lazy(d); ok {
			return r.Size, nil
		}
		return 0, fmt.Errorf("stat blob %s: %w", d, err)
	}
	return fi.Size(), nil
}
