package registry

import (
	"bytes"
	"context"
	"errors"
	"io"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
)

// TestCacheSourceAvailable checks that a cache whose manifest lists a blob
// it no longer holds reports that blob unavailable (and the others
// available), for both kinds of cache, asking the registry once per blob.
func TestCacheSourceAvailable(t *testing.T) {
	ctx := context.Background()
	s := newStore(t)
	var layers []Layer
	for _, body := range []string{"kept", "lost"} {
		tarball := makeTar(t, map[string]string{"f": body})
		l, err := s.WriteLayer(ctx, func(w io.Writer) error {
			_, err := io.Copy(w, bytes.NewReader(tarball))
			return err
		}, Gzip, 0)
		if err != nil {
			t.Fatal(err)
		}
		layers = append(layers, l)
	}
	img, err := s.WriteCacheImage(ctx, map[string]int{"version": 1}, layers)
	if err != nil {
		t.Fatal(err)
	}
	kept, lost := layers[0].Digest, layers[1].Digest

	var mu sync.Mutex
	heads := map[string]int{}
	tests := []struct {
		name string
		open func(t *testing.T) *CacheSource
	}{
		{"local layout", func(t *testing.T) *CacheSource {
			dir := filepath.Join(t.TempDir(), "cache")
			if err := WriteOCILayout(s.V1(img), dir, []string{"latest"}); err != nil {
				t.Fatal(err)
			}
			if err := os.Remove(filepath.Join(dir, "blobs", "sha256", lost.Hex)); err != nil {
				t.Fatal(err)
			}
			c, err := OpenLayoutCache(dir)
			if err != nil {
				t.Fatal(err)
			}
			return c
		}},
		{"registry", func(t *testing.T) *CacheSource {
			// The registry answers 404 for the lost blob, as one after a
			// garbage collection would.
			host := newRegistry(t, func(h http.Handler) http.Handler {
				return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
					if strings.HasSuffix(r.URL.Path, "/blobs/"+lost.String()) && r.Method != http.MethodPut {
						if r.Method == http.MethodHead {
							mu.Lock()
							heads[lost.String()]++
							mu.Unlock()
						}
						http.NotFound(w, r)
						return
					}
					h.ServeHTTP(w, r)
				})
			})
			ref := host + "/app/cache:latest"
			if err := Push(ctx, s.V1(img), ref, Options{}); err != nil {
				t.Fatal(err)
			}
			mu.Lock()
			clear(heads) // the push asks too
			mu.Unlock()
			c, err := OpenRegistryCache(ctx, ref, Options{})
			if err != nil {
				t.Fatal(err)
			}
			t.Cleanup(c.Close)
			return c
		}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			c := tc.open(t)
			fresh := newStore(t) // holds neither blob
			for range 2 {
				if err := c.Available(ctx, fresh, kept); err != nil {
					t.Errorf("the kept layer is reported unavailable: %v", err)
				}
				if err := c.Available(ctx, fresh, lost); err == nil || !strings.Contains(err.Error(), "does not have it") {
					t.Errorf("the lost layer: %v, want \"does not have it\"", err)
				}
			}
			if err := c.Fetch(ctx, fresh, kept); err != nil {
				t.Errorf("fetching the kept layer: %v", err)
			}
			var bue *BlobUnavailableError
			if err := c.Fetch(ctx, fresh, lost); !errors.As(err, &bue) || bue.Digest != lost {
				t.Errorf("fetching the lost layer: %v, want a BlobUnavailableError for it", err)
			}
		})
	}
	mu.Lock()
	defer mu.Unlock()
	if heads[lost.String()] != 1 {
		t.Errorf("the registry was asked %d times for the lost blob, want once", heads[lost.String()])
	}
}
