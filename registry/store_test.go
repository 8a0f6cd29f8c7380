package registry

import (
	"bytes"
	"context"
	"errors"
	"io"
	"os"
	"path/filepath"
	"strings"
	"testing"

	v1 "github.com/google/go-containerregistry/pkg/v1"
)

func TestOpenStoreLayout(t *testing.T) {
	root := t.TempDir()
	s, err := OpenStore(root)
	if err != nil {
		t.Fatal(err)
	}
	for _, d := range []string{"blobs/sha256", "blobs/tmp"} {
		if fi, err := os.Stat(filepath.Join(root, d)); err != nil || !fi.IsDir() {
			t.Errorf("%s not a directory: %v", d, err)
		}
	}
	if s.Root() != root {
		t.Errorf("Root() = %q, want %q", s.Root(), root)
	}
}

func TestWriteBlob(t *testing.T) {
	data := []byte("hello blob")
	good := sha(data)
	bad := sha([]byte("something else"))
	cancelled, cancel := context.WithCancel(context.Background())
	cancel()

	tests := []struct {
		name    string
		ctx     context.Context
		want    *v1.Hash
		wantErr string
	}{
		{name: "compute digest", ctx: context.Background()},
		{name: "matching digest", ctx: context.Background(), want: &good},
		{name: "mismatched digest", ctx: context.Background(), want: &bad, wantErr: "digest mismatch"},
		{name: "unsupported algorithm", ctx: context.Background(), want: &v1.Hash{Algorithm: "sha512", Hex: good.Hex}, wantErr: "unsupported digest"},
		{name: "cancelled", ctx: cancelled, wantErr: "context canceled"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			s := newStore(t)
			d, n, err := s.WriteBlob(tc.ctx, bytes.NewReader(data), tc.want)
			if left := tmpEntries(t, s); len(left) != 0 {
				t.Errorf("temp files left behind: %v", left)
			}
			if tc.wantErr != "" {
				if err == nil || !strings.Contains(err.Error(), tc.wantErr) {
					t.Fatalf("err = %v, want containing %q", err, tc.wantErr)
				}
				if s.HasBlob(good) || s.HasBlob(bad) {
					t.Error("blob stored despite error")
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if d != good || n != int64(len(data)) {
				t.Fatalf("got %s/%d, want %s/%d", d, n, good, len(data))
			}
			got, err := os.ReadFile(s.BlobPath(d))
			if err != nil || !bytes.Equal(got, data) {
				t.Fatalf("blob content %q, %v", got, err)
			}
		})
	}
}

// failReader fails the test if read: WriteBlob must not read a present blob.
type failReader struct{ t *testing.T }

func (f failReader) Read([]byte) (int, error) {
	f.t.Error("reader consumed although blob exists")
	return 0, io.EOF
}

func TestWriteBlobExistingSkipsRead(t *testing.T) {
	s := newStore(t)
	data := []byte("present")
	d, _, err := s.WriteBlob(context.Background(), bytes.NewReader(data), nil)
	if err != nil {
		t.Fatal(err)
	}
	got, n, err := s.WriteBlob(context.Background(), failReader{t}, &d)
	if err != nil || got != d || n != int64(len(data)) {
		t.Fatalf("got %s/%d/%v", got, n, err)
	}
}

func TestOpenBlob(t *testing.T) {
	s := newStore(t)
	data := []byte("open me")
	d, _, err := s.WriteBlob(context.Background(), bytes.NewReader(data), nil)
	if err != nil {
		t.Fatal(err)
	}
	rc, err := s.OpenBlob(d)
	if err != nil {
		t.Fatal(err)
	}
	got, _ := io.ReadAll(rc)
	rc.Close()
	if !bytes.Equal(got, data) {
		t.Errorf("OpenBlob content %q", got)
	}
	missing := sha([]byte("missing"))
	if s.HasBlob(missing) {
		t.Error("HasBlob(missing) = true")
	}
	if _, err := s.OpenBlob(missing); !errors.Is(err, ErrNotFound) {
		t.Errorf("OpenBlob(missing) err = %v, want ErrNotFound", err)
	}
	if _, err := s.OpenBlob(v1.Hash{}); err == nil {
		t.Error("OpenBlob(zero hash) succeeded")
	}
}
