package registry

import (
	"context"
	"encoding/base64"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/google/go-containerregistry/pkg/authn"
	"github.com/google/go-containerregistry/pkg/name"
	v1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/google/go-containerregistry/pkg/v1/empty"
	"github.com/google/go-containerregistry/pkg/v1/mutate"
	"github.com/google/go-containerregistry/pkg/v1/random"
	"github.com/google/go-containerregistry/pkg/v1/remote"
	"github.com/google/go-containerregistry/pkg/v1/validate"
)

// anon keeps tests independent of the machine's docker config.
var anon = Options{Keychain: authn.NewMultiKeychain()}

func pushRandom(t *testing.T, ref string, layers int64) v1.Image {
	t.Helper()
	img, err := random.Image(2048, layers)
	if err != nil {
		t.Fatal(err)
	}
	if err := Push(context.Background(), img, ref, anon); err != nil {
		t.Fatal(err)
	}
	return img
}

func mustDigest(t *testing.T, img v1.Image) v1.Hash {
	t.Helper()
	d, err := img.Digest()
	if err != nil {
		t.Fatal(err)
	}
	return d
}

func TestPullByTagAndDigest(t *testing.T) {
	host := newRegistry(t, nil)
	src := pushRandom(t, host+"/app:v1", 3)
	want := mustDigest(t, src)

	for _, ref := range []string{host + "/app:v1", host + "/app@" + want.String()} {
		t.Run(ref, func(t *testing.T) {
			s := newStore(t)
			img, err := s.Pull(context.Background(), ref, anon)
			if err != nil {
				t.Fatal(err)
			}
			// Docker schema2 manifest kept byte for byte: same digest.
			if img.Digest != want {
				t.Errorf("digest %s, want registry's %s", img.Digest, want)
			}
			if len(img.Layers) != 3 {
				t.Fatalf("%d layers", len(img.Layers))
			}
			for _, l := range img.Layers {
				if !s.HasBlob(l.Digest) {
					t.Errorf("layer %s not stored", l.Digest)
				}
			}
			if err := validate.Image(s.V1(img)); err != nil {
				t.Fatalf("validate: %v", err)
			}
			got, ok, err := s.Lookup(ref)
			if err != nil || !ok || got.Digest != want {
				t.Errorf("Lookup after pull: %v %v %v", got, ok, err)
			}
			if left := tmpEntries(t, s); len(left) != 0 {
				t.Errorf("temp files left: %v", left)
			}
		})
	}
}

func TestPullSkipsPresentBlobs(t *testing.T) {
	var c requestCounter
	host := newRegistry(t, c.wrap)
	pushRandom(t, host+"/app:v1", 2)
	s := newStore(t)
	if _, err := s.Pull(context.Background(), host+"/app:v1", anon); err != nil {
		t.Fatal(err)
	}
	_, first := c.snapshot()
	if first < 3 { // config + 2 layers
		t.Fatalf("first pull fetched %d blobs", first)
	}
	if _, err := s.Pull(context.Background(), host+"/app:v1", anon); err != nil {
		t.Fatal(err)
	}
	if _, second := c.snapshot(); second != first {
		t.Errorf("second pull fetched %d blobs again", second-first)
	}
}

// corruptBlob serves wrong bytes (same length) for one blob digest.
func corruptBlob(digest v1.Hash) func(http.Handler) http.Handler {
	return func(h http.Handler) http.Handler {
		return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			if r.Method != http.MethodGet || !strings.HasSuffix(r.URL.Path, "/blobs/"+digest.String()) {
				h.ServeHTTP(w, r)
				return
			}
			rec := httptest.NewRecorder()
			h.ServeHTTP(rec, r)
			body := rec.Body.Bytes()
			if len(body) > 0 {
				body[len(body)/2] ^= 0xff
			}
			for k, v := range rec.Header() {
				w.Header()[k] = v
			}
			w.WriteHeader(rec.Code)
			w.Write(body)
		})
	}
}

func TestPullCorruptBlobFails(t *testing.T) {
	img, err := random.Image(4096, 3)
	if err != nil {
		t.Fatal(err)
	}
	ls, err := img.Layers()
	if err != nil {
		t.Fatal(err)
	}
	bad, err := ls[1].Digest()
	if err != nil {
		t.Fatal(err)
	}
	host := newRegistry(t, corruptBlob(bad))
	ref := host + "/app:v1"
	if err := Push(context.Background(), img, ref, anon); err != nil {
		t.Fatal(err)
	}
	s := newStore(t)
	_, err = s.Pull(context.Background(), ref, anon)
	if err == nil || !strings.Contains(err.Error(), bad.String()) {
		t.Fatalf("Pull of a corrupted blob: err = %v, want a failure naming %s", err, bad)
	}
	if s.HasBlob(bad) {
		t.Error("corrupted blob was stored")
	}
	if s.HasBlob(mustDigest(t, img)) {
		t.Error("manifest stored although a layer failed")
	}
	if left := tmpEntries(t, s); len(left) != 0 {
		t.Errorf("temp files left: %v", left)
	}
	if _, ok, _ := s.Lookup(ref); ok {
		t.Error("failed pull left a tag")
	}
}

func TestPullIndexPicksPlatform(t *testing.T) {
	host := newRegistry(t, nil)
	amd, _ := random.Image(1024, 1)
	arm, _ := random.Image(1024, 2)
	idx := mutate.AppendManifests(empty.Index,
		mutate.IndexAddendum{Add: arm, Descriptor: v1.Descriptor{Platform: &v1.Platform{OS: "linux", Architecture: "arm64", Variant: "v8"}}},
		mutate.IndexAddendum{Add: amd, Descriptor: v1.Descriptor{Platform: &v1.Platform{OS: "linux", Architecture: "amd64"}}},
	)
	ref := host + "/multi:latest"
	r, _ := name.ParseReference(ref)
	if err := remote.WriteIndex(r, idx, remote.WithAuthFromKeychain(anon.Keychain)); err != nil {
		t.Fatal(err)
	}
	idxDigest, _ := idx.Digest()

	tests := []struct {
		ref, platform string
		want          v1.Hash
	}{
		{ref, "", mustDigest(t, amd)},
		{ref, "linux/arm64/v8", mustDigest(t, arm)},
		{host + "/multi@" + idxDigest.String(), "", mustDigest(t, amd)},
	}
	for _, tc := range tests {
		t.Run(tc.ref+"/"+tc.platform, func(t *testing.T) {
			s := newStore(t)
			o := anon
			o.Platform = tc.platform
			img, err := s.Pull(context.Background(), tc.ref, o)
			if err != nil {
				t.Fatal(err)
			}
			if img.Digest != tc.want {
				t.Errorf("pulled %s, want %s", img.Digest, tc.want)
			}
			// The ref (even an index digest) resolves locally afterwards.
			got, ok, err := s.Lookup(tc.ref)
			if err != nil || !ok || got.Digest != tc.want {
				t.Errorf("Lookup(%s) = %v, %v, %v", tc.ref, got, ok, err)
			}
		})
	}

	o := anon
	o.Platform = "linux/s390x"
	if _, err := newStore(t).Pull(context.Background(), ref, o); err == nil {
		t.Error("pull of a platform absent from the index succeeded")
	}
}

func TestResolve(t *testing.T) {
	var c requestCounter
	host := newRegistry(t, c.wrap)
	pushRandom(t, host+"/app:v1", 1)
	s := newStore(t)
	a, err := s.Resolve(context.Background(), host+"/app:v1", anon)
	if err != nil {
		t.Fatal(err)
	}
	c.mu.Lock()
	before := c.manifests
	c.mu.Unlock()
	b, err := s.Resolve(context.Background(), host+"/app:v1", anon)
	if err != nil {
		t.Fatal(err)
	}
	c.mu.Lock()
	after := c.manifests
	c.mu.Unlock()
	if a.Digest != b.Digest || after != before {
		t.Errorf("second Resolve went to the registry (%d manifest requests)", after-before)
	}
}

func TestPushUploadsOnlyMissingBlobs(t *testing.T) {
	var c requestCounter
	host := newRegistry(t, c.wrap)
	s := newStore(t)
	img, err := s.WriteImage(context.Background(), testConfig(), writeTestLayers(t, s, 3, Gzip), true)
	if err != nil {
		t.Fatal(err)
	}
	ctx := context.Background()
	if err := Push(ctx, s.V1(img), host+"/built:v1", anon); err != nil {
		t.Fatal(err)
	}
	first, _ := c.snapshot()
	if first == 0 {
		t.Fatal("first push uploaded nothing")
	}
	for _, ref := range []string{host + "/built:v1", host + "/built:v2"} {
		if err := Push(ctx, s.V1(img), ref, anon); err != nil {
			t.Fatal(err)
		}
	}
	if again, _ := c.snapshot(); again != first {
		t.Errorf("re-push made %d upload requests, want 0", again-first)
	}
	// What was pushed is what we built.
	fresh := newStore(t)
	pulled, err := fresh.Pull(ctx, host+"/built:v2", anon)
	if err != nil {
		t.Fatal(err)
	}
	if pulled.Digest != img.Digest {
		t.Errorf("pulled %s, pushed %s", pulled.Digest, img.Digest)
	}
}

func TestDockerConfigCredentials(t *testing.T) {
	const user, pass = "strata", "s3cret"
	auth := func(h http.Handler) http.Handler {
		return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			if u, p, ok := r.BasicAuth(); !ok || u != user || p != pass {
				w.Header().Set("WWW-Authenticate", `Basic realm="test"`)
				http.Error(w, "unauthorized", http.StatusUnauthorized)
				return
			}
			h.ServeHTTP(w, r)
		})
	}
	host := newRegistry(t, auth)
	img, _ := random.Image(512, 1)

	t.Setenv("DOCKER_CONFIG", t.TempDir())
	if err := Push(context.Background(), img, host+"/private:v1", Options{}); err == nil {
		t.Fatal("push without credentials succeeded")
	}

	dir := t.TempDir()
	cfg := `{"auths":{"` + host + `":{"auth":"` + base64.StdEncoding.EncodeToString([]byte(user+":"+pass)) + `"}}}`
	if err := os.WriteFile(filepath.Join(dir, "config.json"), []byte(cfg), 0o600); err != nil {
		t.Fatal(err)
	}
	t.Setenv("DOCKER_CONFIG", dir)
	if err := Push(context.Background(), img, host+"/private:v1", Options{}); err != nil {
		t.Fatalf("push with docker config credentials: %v", err)
	}
	if _, err := newStore(t).Pull(context.Background(), host+"/private:v1", Options{}); err != nil {
		t.Fatalf("pull with docker config credentials: %v", err)
	}
}

func TestPullCancelled(t *testing.T) {
	host := newRegistry(t, nil)
	pushRandom(t, host+"/app:v1", 1)
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	s := newStore(t)
	if _, err := s.Pull(ctx, host+"/app:v1", anon); err == nil {
		t.Fatal("Pull with a cancelled context succeeded")
	}
	if left := tmpEntries(t, s); len(left) != 0 {
		t.Errorf("temp files left: %v", left)
	}
}

func TestOptionsParseRef(t *testing.T) {
	tests := []struct {
		ref      string
		insecure []string
		scheme   string
	}{
		{"myreg.example:5000/app", nil, "https"},
		{"myreg.example:5000/app", []string{"myreg.example:5000"}, "http"},
		{"myreg.example:5000/app", []string{"other:5000"}, "https"},
		{"localhost:5000/app", nil, "http"},
		{"127.0.0.1:5000/app", nil, "http"},
		{"busybox", nil, "https"},
	}
	for _, tc := range tests {
		r, err := Options{Insecure: tc.insecure}.parseRef(tc.ref)
		if err != nil {
			t.Fatal(err)
		}
		if got := r.Context().Scheme(); got != tc.scheme {
			t.Errorf("%s insecure=%v: scheme %s, want %s", tc.ref, tc.insecure, got, tc.scheme)
		}
	}
	if _, _, err := (Options{Platform: "not a/platform/at/all/x"}).remoteOptions(context.Background()); err == nil {
		t.Error("bad platform accepted")
	}
}

func TestPullFromMirror(t *testing.T) {
	var c requestCounter
	host := newRegistry(t, c.wrap)
	img := pushRandom(t, host+"/library/busybox:latest", 2)
	want, err := img.Digest()
	if err != nil {
		t.Fatal(err)
	}
	tests := []struct{ ref, key string }{
		{"busybox", "docker.io"},
		{"docker.io/library/busybox:latest", "docker.io"},
		{"index.docker.io/library/busybox", "index.docker.io"},
		{"busybox@" + want.String(), "docker.io"},
	}
	for _, tt := range tests {
		s := newStore(t)
		o := anon
		o.Mirrors = map[string]string{tt.key: host}
		got, err := s.Pull(context.Background(), tt.ref, o)
		if err != nil {
			t.Fatalf("%s: %v", tt.ref, err)
		}
		if got.Digest != want {
			t.Errorf("%s: digest %s, want %s", tt.ref, got.Digest, want)
		}
		if _, ok, _ := s.Lookup(tt.ref); !ok {
			t.Errorf("%s: not tagged under its own name", tt.ref)
		}
	}
	if _, gets := c.snapshot(); gets == 0 {
		t.Error("no blob was fetched from the mirror")
	}
}
