package registry

import (
	"bytes"
	"context"
	"errors"
	"io"
	"os"
	"path/filepath"
	"runtime"
	"strings"
	"testing"
	"time"

	v1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/google/go-containerregistry/pkg/v1/types"

	"github.com/strata-build/strata/snapshot"
)

// commitSnapshot makes a committed snapshot under the store's root holding
// files (name -> body), as a build step would.
func commitSnapshot(t *testing.T, s *Store, key string, files map[string]string) snapshot.Snapshot {
	t.Helper()
	ctx := context.Background()
	a, err := s.snaps.Prepare(ctx)
	if err != nil {
		t.Fatal(err)
	}
	for name, body := range files {
		p := filepath.Join(a.Dir, name)
		if err := os.MkdirAll(filepath.Dir(p), 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(p, []byte(body), 0o644); err != nil {
			t.Fatal(err)
		}
		mt := time.Unix(1_700_000_000, 0)
		if err := os.Chtimes(p, mt, mt); err != nil {
			t.Fatal(err)
		}
	}
	snap, err := s.snaps.Commit(ctx, a, key)
	if err != nil {
		t.Fatal(err)
	}
	return snap
}

func diffBytes(t *testing.T, dir string, o snapshot.DiffOptions) []byte {
	t.Helper()
	var buf bytes.Buffer
	if _, err := snapshot.Diff(context.Background(), dir, &buf, o); err != nil {
		t.Fatal(err)
	}
	return buf.Bytes()
}

func TestRecordDiffServesTheSnapshot(t *testing.T) {
	ctx := context.Background()
	s := newStore(t)
	snap := commitSnapshot(t, s, strings.Repeat("a", 64), map[string]string{"app/x": "hello", "app/y": strings.Repeat("z", 100_000)})
	want := diffBytes(t, snap.Dir, snapshot.DiffOptions{})

	l, err := s.RecordDiff(ctx, snap, nil)
	if err != nil {
		t.Fatal(err)
	}
	if l.Digest != sha(want) || l.DiffID != l.Digest || l.Size != int64(len(want)) || l.MediaType != types.OCIUncompressedLayer {
		t.Fatalf("layer = %+v, want digest %s size %d uncompressed", l, sha(want), len(want))
	}
	if s.hasBlobFile(l.Digest) {
		t.Fatal("a lazy layer must not be written as a blob")
	}
	if !s.HasBlob(l.Digest) {
		t.Fatal("HasBlob = false for a lazy layer")
	}
	if n, err := s.statBlob(l.Digest); err != nil || n != l.Size {
		t.Fatalf("statBlob = %d, %v", n, err)
	}
	rc, err := s.OpenBlob(l.Digest)
	if err != nil {
		t.Fatal(err)
	}
	got, err := io.ReadAll(rc)
	rc.Close()
	if err != nil || !bytes.Equal(got, want) {
		t.Fatalf("OpenBlob served %d bytes (err %v), want the snapshot's diff (%d bytes)", len(got), err, len(want))
	}
	if sn, ok := s.SnapshotOf(l.DiffID); !ok || sn.Key != snap.Key {
		t.Fatalf("SnapshotOf = %v, %v; want %s", sn, ok, snap.Key)
	}

	// The epoch makes another layer, recorded separately.
	ep := time.Unix(1_000_000_000, 0)
	le, err := s.RecordDiff(ctx, snap, &ep)
	if err != nil {
		t.Fatal(err)
	}
	if le.Digest == l.Digest || le.Digest != sha(diffBytes(t, snap.Dir, snapshot.DiffOptions{Epoch: &ep})) {
		t.Fatalf("epoch layer %s: want the clamped diff, not %s", le.Digest, l.Digest)
	}
	rc, err = s.OpenBlob(le.Digest)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := io.Copy(io.Discard, rc); err != nil {
		t.Fatalf("reading the epoch layer: %v", err)
	}
	rc.Close()
}

func TestCompressedImage(t *testing.T) {
	ctx := context.Background()
	for _, c := range []Compression{Gzip, Zstd} {
		t.Run(string(c), func(t *testing.T) {
			s := newStore(t)
			base := writeTestLayers(t, s, 1, Gzip)[0]
			snap := commitSnapshot(t, s, strings.Repeat("b", 64), map[string]string{"f": "content"})
			lazy, err := s.RecordDiff(ctx, snap, nil)
			if err != nil {
				t.Fatal(err)
			}
			img, err := s.WriteImage(ctx, testConfig(), []Layer{base, lazy}, true)
			if err != nil {
				t.Fatal(err)
			}
			if img.Manifest.Layers[1].Digest != lazy.DiffID || img.Manifest.Layers[1].MediaType != types.OCIUncompressedLayer {
				t.Fatalf("local manifest layer = %+v, want the uncompressed lazy layer", img.Manifest.Layers[1])
			}
			out, err := s.Compressed(ctx, img, c, 0)
			if err != nil {
				t.Fatal(err)
			}
			if out.Digest == img.Digest {
				t.Fatal("Compressed returned the local manifest")
			}
			if out.ConfigDigest != img.ConfigDigest {
				t.Fatalf("config changed: %s != %s", out.ConfigDigest, img.ConfigDigest)
			}
			if out.Layers[0] != img.Layers[0] {
				t.Fatalf("a blob layer was changed: %+v", out.Layers[0])
			}
			cl := out.Layers[1]
			wantMT := types.OCILayer
			if c == Zstd {
				wantMT = types.OCILayerZStd
			}
			if cl.MediaType != wantMT || cl.DiffID != lazy.DiffID || !s.hasBlobFile(cl.Digest) {
				t.Fatalf("compressed layer = %+v, want %s with diffID %s held as a blob", cl, wantMT, lazy.DiffID)
			}
			rc, err := s.OpenLayer(ctx, cl)
			if err != nil {
				t.Fatal(err)
			}
			got, _ := io.ReadAll(rc)
			rc.Close()
			if sha(got) != lazy.DiffID {
				t.Fatal("the compressed blob does not decompress to the layer")
			}
			// A second push reuses the blob made by the first.
			fi, _ := os.Stat(s.BlobPath(cl.Digest))
			again, err := s.Compressed(ctx, img, c, 0)
			if err != nil {
				t.Fatal(err)
			}
			fi2, _ := os.Stat(s.BlobPath(cl.Digest))
			if again.Digest != out.Digest || !os.SameFile(fi, fi2) {
				t.Fatal("the second Compressed made a new blob")
			}
			// An image with no lazy layer is returned as it is.
			plain, err := s.WriteImage(ctx, testConfig(), []Layer{base}, true)
			if err != nil {
				t.Fatal(err)
			}
			if same, err := s.Compressed(ctx, plain, c, 0); err != nil || same.Digest != plain.Digest {
				t.Fatalf("Compressed(no lazy layers) = %v, %v", same, err)
			}
		})
	}
}

func TestLazyLayerDamagedOrGone(t *testing.T) {
	ctx := context.Background()
	s := newStore(t)
	snap := commitSnapshot(t, s, strings.Repeat("c", 64), map[string]string{"f": "original"})
	l, err := s.RecordDiff(ctx, snap, nil)
	if err != nil {
		t.Fatal(err)
	}
	// Same size, other bytes: only the digest check can notice.
	if err := os.WriteFile(filepath.Join(snap.Dir, "f"), []byte("ORIGINAL"), 0o644); err != nil {
		t.Fatal(err)
	}
	mt := time.Unix(1_700_000_000, 0)
	os.Chtimes(filepath.Join(snap.Dir, "f"), mt, mt)
	rc, err := s.OpenBlob(l.Digest)
	if err != nil {
		t.Fatal(err)
	}
	_, err = io.ReadAll(rc)
	rc.Close()
	if err == nil || !strings.Contains(err.Error(), "no longer matches") {
		t.Fatalf("reading a damaged lazy layer: err = %v, want a mismatch", err)
	}
	img, err := s.WriteImage(ctx, testConfig(), []Layer{l}, true)
	if err != nil {
		t.Fatal(err)
	}
	blobsBefore, _ := os.ReadDir(s.blobDir)
	if _, err := s.Compressed(ctx, img, Gzip, 0); err == nil || !strings.Contains(err.Error(), "no longer matches") {
		t.Fatalf("Compressed of a damaged layer: err = %v, want a mismatch", err)
	}
	if blobsAfter, _ := os.ReadDir(s.blobDir); len(blobsAfter) != len(blobsBefore) {
		t.Fatalf("a failed compression stored a blob (%d blobs, had %d)", len(blobsAfter), len(blobsBefore))
	}
	if tmps, _ := os.ReadDir(s.tmpDir); len(tmps) != 0 {
		t.Fatalf("a failed compression left %d temp files", len(tmps))
	}

	// The snapshot removed: the layer is gone, not served empty.
	if err := os.RemoveAll(filepath.Dir(snap.Dir)); err != nil {
		t.Fatal(err)
	}
	if s.HasBlob(l.Digest) {
		t.Fatal("HasBlob = true after the snapshot went")
	}
	if _, err := s.OpenBlob(l.Digest); !errors.Is(err, ErrNotFound) {
		t.Fatalf("OpenBlob = %v, want ErrNotFound", err)
	}
	if _, err := s.Compressed(ctx, img, Gzip, 0); !errors.Is(err, ErrNotFound) {
		t.Fatalf("Compressed = %v, want ErrNotFound", err)
	}
	if _, ok := s.SnapshotOf(l.DiffID); ok {
		t.Fatal("SnapshotOf found a removed snapshot")
	}
	// A torn record is never trusted.
	if err := os.WriteFile(s.diffPath(v1.Hash{Algorithm: "sha256", Hex: strings.Repeat("d", 64)}), []byte("{"), 0o644); err != nil {
		t.Fatal(err)
	}
	if s.HasBlob(v1.Hash{Algorithm: "sha256", Hex: strings.Repeat("d", 64)}) {
		t.Fatal("a torn record counts as a blob")
	}
}

func TestOpenLazyClosedEarly(t *testing.T) {
	ctx := context.Background()
	s := newStore(t)
	snap := commitSnapshot(t, s, strings.Repeat("e", 64), map[string]string{"big": strings.Repeat("x", 4<<20)})
	l, err := s.RecordDiff(ctx, snap, nil)
	if err != nil {
		t.Fatal(err)
	}
	before := runtime.NumGoroutine()
	for range 20 {
		rc, err := s.OpenBlob(l.Digest)
		if err != nil {
			t.Fatal(err)
		}
		buf := make([]byte, 1024)
		if _, err := io.ReadFull(rc, buf); err != nil {
			t.Fatal(err)
		}
		// Closing mid-stream must stop the differ's goroutine.
		if err := rc.Close(); err != nil {
			t.Fatal(err)
		}
	}
	deadline := time.Now().Add(5 * time.Second)
	for runtime.NumGoroutine() > before {
		if time.Now().After(deadline) {
			t.Fatalf("%d goroutines left running after closing 20 streams early (had %d)", runtime.NumGoroutine(), before)
		}
		time.Sleep(10 * time.Millisecond)
	}
}
