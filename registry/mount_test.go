package registry

import (
	"context"
	"net/http"
	"net/url"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/google/go-containerregistry/pkg/name"
	v1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/google/go-containerregistry/pkg/v1/partial"
	"github.com/google/go-containerregistry/pkg/v1/remote"
)

func TestMountableSources(t *testing.T) {
	s := newStore(t)
	img, err := s.WriteImage(context.Background(), testConfig(), writeTestLayers(t, s, 2, Gzip), true)
	if err != nil {
		t.Fatal(err)
	}
	blobs := imageBlobs(img) // config, layer 0, layer 1
	record := func(repo string, ds ...v1.Hash) {
		t.Helper()
		r, err := name.NewRepository(repo)
		if err != nil {
			t.Fatal(err)
		}
		if err := s.updateIndexFile(func(f *indexFile) error { s.addSources(f, &r, ds); return nil }); err != nil {
			t.Fatal(err)
		}
	}
	record("reg.test:5000/base/os", blobs[1])
	record("other.test/lib/x", blobs[2])
	record("reg.test:5000/dst/app", blobs[2]) // the destination itself: useless
	record("reg.test:5000/cfg/src", blobs[0])

	dst, _ := name.NewRepository("reg.test:5000/dst/app")
	v, err := s.mountable(&storeImage{s: s, digest: img.Digest}, dst)
	if err != nil {
		t.Fatal(err)
	}
	from := func(l v1.Layer) string {
		if ml, ok := l.(*remote.MountableLayer); ok {
			return ml.Reference.Context().Name()
		}
		return ""
	}
	ls, err := v.Layers()
	if err != nil {
		t.Fatal(err)
	}
	if got := from(ls[0]); got != "reg.test:5000/base/os" {
		t.Errorf("layer 0 mounts from %q", got)
	}
	if got := from(ls[1]); got != "" {
		t.Errorf("layer 1 mounts from %q; its sources are another registry and the destination", got)
	}
	cl, err := partial.ConfigLayer(v)
	if err != nil {
		t.Fatal(err)
	}
	if got := from(cl); got != "reg.test:5000/cfg/src" {
		t.Errorf("config mounts from %q", got)
	}
	if d, _ := v.Digest(); d != img.Digest {
		t.Errorf("wrapped image digest %s, want %s", d, img.Digest)
	}

	// Most recent first, no duplicates, bounded.
	for i := range maxSources + 2 {
		record("reg.test:5000/r"+string(rune('a'+i))+"/x", blobs[1])
	}
	record("reg.test:5000/ra/x", blobs[1])
	got, err := s.sources(blobs[1])
	if err != nil {
		t.Fatal(err)
	}
	if len(got) != maxSources || got[0] != "reg.test:5000/ra/x" || got[1] != "reg.test:5000/rf/x" {
		t.Errorf("sources %v", got)
	}
	// Sources of blobs that left the store are dropped at the next update.
	fake := sha([]byte("gone"))
	record("reg.test:5000/q/x", fake)
	record("reg.test:5000/q/y", blobs[0])
	if got, _ := s.sources(fake); len(got) != 0 {
		t.Errorf("sources of a missing blob kept: %v", got)
	}
	// Tag and Untag keep the sources.
	if err := s.Tag("example.test/t:1", img); err != nil {
		t.Fatal(err)
	}
	if err := s.Untag("example.test/t:1"); err != nil {
		t.Fatal(err)
	}
	if got, _ := s.sources(blobs[0]); len(got) == 0 {
		t.Error("Tag/Untag dropped the sources")
	}
}

// mountRecorder pretends repositories under hidePrefix lack every blob (the
// in-process registry shares blobs across repositories) and records the
// mount requests sent to them.
type mountRecorder struct {
	next       http.Handler
	hidePrefix string
	mu         sync.Mutex
	mounts     map[string]string // digest -> from
	patches    int
}

func (m *mountRecorder) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	if strings.HasPrefix(r.URL.Path, "/v2/"+m.hidePrefix) {
		switch {
		case r.Method == http.MethodHead && strings.Contains(r.URL.Path, "/blobs/sha256:"):
			w.WriteHeader(http.StatusNotFound)
			return
		case r.Method == http.MethodPost && strings.HasSuffix(r.URL.Path, "/blobs/uploads/"):
			q, _ := url.ParseQuery(r.URL.RawQuery)
			m.mu.Lock()
			if q.Get("mount") != "" {
				m.mounts[q.Get("mount")] = q.Get("from")
			}
			m.mu.Unlock()
		case r.Method == http.MethodPatch:
			m.mu.Lock()
			m.patches++
			m.mu.Unlock()
		}
	}
	m.next.ServeHTTP(w, r)
}

func TestPushAsksToMountFromPulledRepository(t *testing.T) {
	rec := &mountRecorder{hidePrefix: "dst/", mounts: map[string]string{}}
	host := newRegistry(t, func(h http.Handler) http.Handler { rec.next = h; return rec })
	src := newStore(t)
	built, err := src.WriteImage(context.Background(), testConfig(), writeTestLayers(t, src, 2, Gzip), true)
	if err != nil {
		t.Fatal(err)
	}
	ctx := context.Background()
	if err := Push(ctx, src.V1(built), host+"/base/os:1", anon); err != nil {
		t.Fatal(err)
	}

	s := newStore(t)
	img, err := s.Pull(ctx, host+"/base/os:1", anon)
	if err != nil {
		t.Fatal(err)
	}
	for _, d := range imageBlobs(img) {
		if got, _ := s.sources(d); !slices.Contains(got, host+"/base/os") {
			t.Errorf("blob %s: sources %v after pull", d, got)
		}
	}
	if err := Push(ctx, s.V1(img), host+"/dst/app:1", anon); err != nil {
		t.Fatal(err)
	}
	rec.mu.Lock()
	for _, d := range imageBlobs(img) {
		if from := rec.mounts[d.String()]; from != "base/os" {
			t.Errorf("blob %s: mount from %q, want base/os", d, from)
		}
	}
	rec.mu.Unlock()
	// The push recorded the destination as a source too.
	if got, _ := s.sources(img.ConfigDigest); len(got) == 0 || got[0] != host+"/dst/app" {
		t.Errorf("sources after push: %v", got)
	}
	pulled, err := newStore(t).Pull(ctx, host+"/dst/app:1", anon)
	if err != nil {
		t.Fatal(err)
	}
	if pulled.Digest != img.Digest {
		t.Errorf("pulled %s, pushed %s", pulled.Digest, img.Digest)
	}
}

// concurrency tracks how many requests of a kind are in flight at most.
type concurrency struct {
	mu       sync.Mutex
	now, max map[string]int
}

func (c *concurrency) wrap(h http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		kind := ""
		switch {
		case r.Method == http.MethodPatch:
			kind = "upload"
		case r.Method == http.MethodGet && strings.Contains(r.URL.Path, "/blobs/sha256:"):
			kind = "download"
		}
		if kind != "" {
			c.mu.Lock()
			c.now[kind]++
			c.max[kind] = max(c.max[kind], c.now[kind])
			c.mu.Unlock()
			defer func() {
				c.mu.Lock()
				c.now[kind]--
				c.mu.Unlock()
			}()
			// Hold the request a moment so that unbounded transfers
			// would overlap; the assertion is on the bound, not on time.
			time.Sleep(20 * time.Millisecond)
		}
		h.ServeHTTP(w, r)
	})
}

func TestTransfersBoundedByJobs(t *testing.T) {
	for _, jobs := range []int{1, 2} {
		c := &concurrency{now: map[string]int{}, max: map[string]int{}}
		host := newRegistry(t, c.wrap)
		src := newStore(t)
		img, err := src.WriteImage(context.Background(), testConfig(), writeTestLayers(t, src, 6, Gzip), true)
		if err != nil {
			t.Fatal(err)
		}
		o := anon
		o.Jobs = jobs
		ref := host + "/jobs/app:1"
		if err := Push(context.Background(), src.V1(img), ref, o); err != nil {
			t.Fatal(err)
		}
		if _, err := newStore(t).Pull(context.Background(), ref, o); err != nil {
			t.Fatal(err)
		}
		c.mu.Lock()
		for _, kind := range []string{"upload", "download"} {
			if c.max[kind] < 1 || c.max[kind] > jobs {
				t.Errorf("jobs=%d: %d %ss at once", jobs, c.max[kind], kind)
			}
		}
		c.mu.Unlock()
	}
}
