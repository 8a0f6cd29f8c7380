package registry

import (
	"archive/tar"
	"bytes"
	"crypto/sha256"
	"encoding/hex"
	"io"
	"log"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"testing"

	ggcrregistry "github.com/google/go-containerregistry/pkg/registry"
	v1 "github.com/google/go-containerregistry/pkg/v1"
)

func newStore(t testing.TB) *Store {
	t.Helper()
	s, err := OpenStore(t.TempDir())
	if err != nil {
		t.Fatalf("OpenStore: %v", err)
	}
	return s
}

func sha(b []byte) v1.Hash {
	sum := sha256.Sum256(b)
	return v1.Hash{Algorithm: "sha256", Hex: hex.EncodeToString(sum[:])}
}

// makeTar builds an uncompressed tar holding the given files (name -> body).
func makeTar(t testing.TB, files map[string]string) []byte {
	t.Helper()
	var buf bytes.Buffer
	tw := tar.NewWriter(&buf)
	names := make([]string, 0, len(files))
	for n := range files {
		names = append(names, n)
	}
	slices.Sort(names)
	for _, n := range names {
		body := files[n]
		if err := tw.WriteHeader(&tar.Header{Name: n, Mode: 0o644, Size: int64(len(body)), Typeflag: tar.TypeReg}); err != nil {
			t.Fatal(err)
		}
		if _, err := tw.Write([]byte(body)); err != nil {
			t.Fatal(err)
		}
	}
	if err := tw.Close(); err != nil {
		t.Fatal(err)
	}
	return buf.Bytes()
}

// tmpEntries lists what is left in blobs/tmp.
func tmpEntries(t testing.TB, s *Store) []string {
	t.Helper()
	ents, err := os.ReadDir(filepath.Join(s.Root(), "blobs", "tmp"))
	if err != nil {
		t.Fatal(err)
	}
	var names []string
	for _, e := range ents {
		names = append(names, e.Name())
	}
	return names
}

// requestCounter counts requests to an in-process registry by kind.
type requestCounter struct {
	mu        sync.Mutex
	uploads   int // POST/PUT/PATCH on /v2/*/blobs/uploads
	blobGets  int // GET /v2/*/blobs/sha256:...
	manifests int // any request on /v2/*/manifests/*
}

func (c *requestCounter) wrap(h http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		c.mu.Lock()
		p := r.URL.Path
		switch {
		case strings.Contains(p, "/blobs/uploads") &&
			(r.Method == http.MethodPost || r.Method == http.MethodPut || r.Method == http.MethodPatch):
			c.uploads++
		case strings.Contains(p, "/blobs/sha256:") && r.Method == http.MethodGet:
			c.blobGets++
		case strings.Contains(p, "/manifests/"):
			c.manifests++
		}
		c.mu.Unlock()
		h.ServeHTTP(w, r)
	})
}

func (c *requestCounter) snapshot() (uploads, blobGets int) {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.uploads, c.blobGets
}

// newRegistry starts an in-process registry, optionally wrapped, and returns
// its host:port (127.0.0.1, so plain HTTP).
func newRegistry(t testing.TB, wrap func(http.Handler) http.Handler) string {
	t.Helper()
	quiet := log.New(io.Discard, "", 0)
	var h http.Handler = ggcrregistry.New(ggcrregistry.Logger(quiet))
	if wrap != nil {
		h = wrap(h)
	}
	srv := httptest.NewUnstartedServer(h)
	// ggcr probes https first on loopback; keep the handshake noise quiet.
	srv.Config.ErrorLog = quiet
	srv.Start()
	t.Cleanup(srv.Close)
	return strings.TrimPrefix(srv.URL, "http://")
}
