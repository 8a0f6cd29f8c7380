package registry

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"strings"
	"testing"

	"github.com/google/go-containerregistry/pkg/v1/types"
)

func TestWriteLayerRoundTrip(t *testing.T) {
	files := map[string]string{
		"etc/hostname": "strata\n",
		"bin/tool":     strings.Repeat("binary-ish content ", 50000),
		"empty":        "",
	}
	tests := []struct {
		c      Compression
		level  int
		mt     types.MediaType
		magic  []byte
		noData bool
	}{
		{c: "", mt: types.OCILayer, magic: gzipMagic},
		{c: Gzip, level: 1, mt: types.OCILayer, magic: gzipMagic},
		{c: Gzip, level: 9, mt: types.OCILayer, magic: gzipMagic},
		{c: Zstd, mt: types.OCILayerZStd, magic: zstdMagic},
		{c: Zstd, level: 19, mt: types.OCILayerZStd, magic: zstdMagic},
		{c: Gzip, mt: types.OCILayer, magic: gzipMagic, noData: true},
		{c: Zstd, mt: types.OCILayerZStd, magic: zstdMagic, noData: true},
	}
	for _, tc := range tests {
		t.Run(fmt.Sprintf("%s-%d-empty=%v", tc.c, tc.level, tc.noData), func(t *testing.T) {
			s := newStore(t)
			tarball := makeTar(t, files)
			if tc.noData {
				tarball = nil
			}
			l, err := s.WriteLayer(context.Background(), func(w io.Writer) error {
				_, err := io.Copy(w, bytes.NewReader(tarball))
				return err
			}, tc.c, tc.level)
			if err != nil {
				t.Fatal(err)
			}
			if l.DiffID != sha(tarball) {
				t.Errorf("DiffID = %s, want sha256 of tar %s", l.DiffID, sha(tarball))
			}
			blob, err := os.ReadFile(s.BlobPath(l.Digest))
			if err != nil {
				t.Fatal(err)
			}
			if l.Digest != sha(blob) || l.Size != int64(len(blob)) {
				t.Errorf("Digest/Size = %s/%d, blob is %s/%d", l.Digest, l.Size, sha(blob), len(blob))
			}
			if l.MediaType != tc.mt {
				t.Errorf("MediaType = %s, want %s", l.MediaType, tc.mt)
			}
			if !bytes.HasPrefix(blob, tc.magic) {
				t.Errorf("blob starts %x, want magic %x", blob[:min(4, len(blob))], tc.magic)
			}
			if !tc.noData && len(blob) >= len(tarball) {
				t.Errorf("blob (%d bytes) not smaller than tar (%d)", len(blob), len(tarball))
			}
			rc, err := s.OpenLayer(context.Background(), l)
			if err != nil {
				t.Fatal(err)
			}
			got, err := io.ReadAll(rc)
			if cerr := rc.Close(); err == nil {
				err = cerr
			}
			if err != nil {
				t.Fatal(err)
			}
			if !bytes.Equal(got, tarball) {
				t.Errorf("OpenLayer gave %d bytes differing from the %d-byte tar", len(got), len(tarball))
			}
			if left := tmpEntries(t, s); len(left) != 0 {
				t.Errorf("temp files left: %v", left)
			}
		})
	}
}

func TestOpenLayerUncompressed(t *testing.T) {
	s := newStore(t)
	tarball := makeTar(t, map[string]string{"a": "plain"})
	d, n, err := s.WriteBlob(context.Background(), bytes.NewReader(tarball), nil)
	if err != nil {
		t.Fatal(err)
	}
	rc, err := s.OpenLayer(context.Background(), Layer{Digest: d, DiffID: d, Size: n, MediaType: types.OCIUncompressedLayer})
	if err != nil {
		t.Fatal(err)
	}
	defer rc.Close()
	got, err := io.ReadAll(rc)
	if err != nil || !bytes.Equal(got, tarball) {
		t.Fatalf("uncompressed layer read back wrong (%d bytes, %v)", len(got), err)
	}
}

func TestWriteLayerFailures(t *testing.T) {
	boom := errors.New("boom")
	cancelled, cancel := context.WithCancel(context.Background())
	cancel()
	tests := []struct {
		name    string
		ctx     context.Context
		c       Compression
		level   int
		write   func(io.Writer) error
		wantErr string
	}{
		{"producer fails", context.Background(), Gzip, 0, func(w io.Writer) error {
			w.Write([]byte("partial"))
			return boom
		}, "boom"},
		{"unknown compression", context.Background(), "lz4", 0, func(io.Writer) error { return nil }, "unknown compression"},
		{"bad gzip level", context.Background(), Gzip, 42, func(io.Writer) error { return nil }, "invalid compression level"},
		{"cancelled", cancelled, Zstd, 0, func(w io.Writer) error {
			_, err := w.Write([]byte("data"))
			return err
		}, "context canceled"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			s := newStore(t)
			_, err := s.WriteLayer(tc.ctx, tc.write, tc.c, tc.level)
			if err == nil || !strings.Contains(err.Error(), tc.wantErr) {
				t.Fatalf("err = %v, want containing %q", err, tc.wantErr)
			}
			if left := tmpEntries(t, s); len(left) != 0 {
				t.Errorf("temp files left: %v", left)
			}
			ents, _ := os.ReadDir(s.blobDir)
			if len(ents) != 0 {
				t.Errorf("%d blobs stored after failure", len(ents))
			}
		})
	}
}

func BenchmarkWriteLayer(b *testing.B) {
	// ~64 MiB of compressible, not trivially repetitive text.
	const size = 64 << 20
	chunk := make([]byte, 0, 1<<20)
	for i := 0; len(chunk) < cap(chunk)-64; i++ {
		chunk = fmt.Appendf(chunk, "line %d of some build output %x\n", i, i*7919)
	}
	for _, c := range []Compression{Gzip, Zstd} {
		b.Run(string(c), func(b *testing.B) {
			s := newStore(b)
			b.SetBytes(size)
			for b.Loop() {
				l, err := s.WriteLayer(context.Background(), func(w io.Writer) error {
					for n := 0; n < size; n += len(chunk) {
						if _, err := w.Write(chunk[:min(len(chunk), size-n)]); err != nil {
							return err
						}
					}
					return nil
				}, c, 0)
				if err != nil {
					b.Fatal(err)
				}
				os.Remove(s.BlobPath(l.Digest))
			}
		})
	}
}
