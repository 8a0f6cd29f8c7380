package copier

import (
	"archive/tar"
	"bufio"
	"compress/bzip2"
	"compress/gzip"
	"context"
	"fmt"
	"io"
	"os"
	"strings"

	"github.com/klauspost/compress/zstd"
	"github.com/strata-build/strata/snapshot"
	"github.com/ulikunitz/xz"
	"golang.org/x/sys/unix"
)

// Magic numbers of the compressions ADD understands (as BuildKit's
// DecompressStream does); anything else is read as a plain tar.
const (
	magicGzip  = "\x1f\x8b\x08"
	magicBzip2 = "BZh"
	magicXz    = "\xfd7zXZ\x00"
	magicZstd  = "\x28\xb5\x2f\xfd"
)

// decompress wraps r (buffered) with the decompressor its first bytes call
// for. close releases decompressor resources.
func decompress(r io.Reader) (out io.Reader, close func(), err error) {
	br := bufio.NewReaderSize(r, 64<<10)
	peek, _ := br.Peek(8) // short files are simply not compressed
	head := string(peek)
	switch {
	case strings.HasPrefix(head, magicGzip):
		zr, err := gzip.NewReader(br)
		if err != nil {
			return nil, nil, err
		}
		return zr, func() { zr.Close() }, nil
	case strings.HasPrefix(head, magicBzip2):
		return bzip2.NewReader(br), func() {}, nil
	case strings.HasPrefix(head, magicXz):
		xr, err := xz.NewReader(br)
		if err != nil {
			return nil, nil, err
		}
		return xr, func() {}, nil
	case strings.HasPrefix(head, magicZstd):
		zr, err := zstd.NewReader(br, zstd.WithDecoderConcurrency(1))
		if err != nil {
			return nil, nil, err
		}
		return zr, zr.Close, nil
	}
	return br, func() {}, nil
}

// openArchive opens the regular file abs and returns its decompressed
// stream when it is a tar archive (possibly compressed); ok is false for
// any other content, which ADD then copies as is.
func openArchive(abs string) (r io.Reader, close func(), ok bool, err error) {
	f, err := os.OpenFile(abs, os.O_RDONLY|unix.O_NOFOLLOW|unix.O_CLOEXEC, 0)
	if err != nil {
		return nil, nil, false, fmt.Errorf("opening %s: %w", abs, err)
	}
	probe, closeProbe, err := decompress(f)
	if err == nil {
		// Like BuildKit: an archive is whatever yields one tar header.
		_, err = tar.NewReader(probe).Next()
		closeProbe()
	}
	if err != nil {
		f.Close()
		return nil, nil, false, nil
	}
	if _, err := f.Seek(0, io.SeekStart); err != nil {
		f.Close()
		return nil, nil, false, fmt.Errorf("reading %s: %w", abs, err)
	}
	dr, closeDr, err := decompress(f)
	if err != nil {
		f.Close()
		return nil, nil, false, fmt.Errorf("reading %s: %w", abs, err)
	}
	return dr, func() { closeDr(); f.Close() }, true, nil
}

// extract unpacks the archive stream r into dst (created like COPY's
// parent directories). Entries keep their own owners unless --chown.
func (w *writer) extract(ctx context.Context, r io.Reader, dst string) error {
	if err := w.mkdirAll(dst); err != nil {
		return err
	}
	// Entries may land over files already copied and recorded.
	w.forgetUnder(dst)
	opts := snapshot.ApplyOptions{Mode: snapshot.ApplyPlain}
	if w.chown != nil {
		opts.Owner = &snapshot.Owner{UID: int(w.chown.uid), GID: int(w.chown.gid)}
	}
	return snapshot.Apply(ctx, dst, r, opts)
}
