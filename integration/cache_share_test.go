package integration

import (
	"archive/tar"
	"encoding/json"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"

	"github.com/klauspost/compress/zstd"
)

// cacheDockerfile has a stage whose layers never reach the image, random
// data (a re-run would show), and a cache mount.
const cacheDockerfile = `FROM busybox AS tool
RUN head -c 2000000 /dev/urandom > /big && sha256sum /big > /big.sum

FROM busybox
COPY app.txt /app.txt
COPY --from=tool /big.sum /big.sum
RUN head -c 32 /dev/urandom | sha256sum > /rand
RUN --mount=type=cache,target=/var/cache/pkgs echo downloaded > /var/cache/pkgs/pkg && cat /var/cache/pkgs/pkg > /pkg
`

// TestRegistryCacheTwoAgents checks --cache-to/--cache-from through the
// registry: a second agent with an empty root re-runs no step, gets the
// same files, and downloads only the layers of the final image; with
// mode=max the cache mount's content travels too.
func TestRegistryCacheTwoAgents(t *testing.T) {
	needRoot(t)
	ctx := t.TempDir()
	writeFiles(t, ctx, map[string]string{"Dockerfile": cacheDockerfile, "app.txt": "app\n"})
	cacheRef := fx.registry + "/cache/app:buildcache"

	outA := filepath.Join(t.TempDir(), "out")
	mustBuild(t, buildOpts{root: t.TempDir(), context: ctx, mirror: true, outputs: []string{"type=local,dest=" + outA},
		extra: []string{"--cache-to", "type=registry,ref=" + cacheRef + ",mode=max"}})

	rootB := t.TempDir()
	outB := filepath.Join(t.TempDir(), "out")
	r := mustBuild(t, buildOpts{root: rootB, context: ctx, mirror: true, outputs: []string{"type=local,dest=" + outB},
		extra: []string{"--cache-from", "type=registry,ref=" + cacheRef}})
	for line, end := range steps(t, r.stderr) {
		if end != "CACHED" {
			t.Errorf("agent B: step %s ended %q, want CACHED", line, end)
		}
	}
	for _, f := range []string{"rand", "big.sum", "app.txt", "pkg"} {
		if a, b := readFile(t, filepath.Join(outA, f)), readFile(t, filepath.Join(outB, f)); a != b {
			t.Errorf("agent B's /%s = %q, agent A built %q", f, b, a)
		}
	}

	// The tool stage's 2 MB layer is in the cache but not in the image:
	// agent B must not have fetched it.
	raw, err := exec.Command("skopeo", "inspect", "--tls-verify=false", "--raw", "docker://"+cacheRef).Output()
	if err != nil {
		t.Fatalf("skopeo inspect of the cache: %v", err)
	}
	var m struct {
		Config struct{ MediaType string }
		Layers []struct {
			Digest string
			Size   int64
		}
	}
	if err := json.Unmarshal(raw, &m); err != nil {
		t.Fatal(err)
	}
	if m.Config.MediaType != "application/vnd.strata.cache.config.v1+json" {
		t.Errorf("cache manifest config media type %q", m.Config.MediaType)
	}
	big := 0
	for _, l := range m.Layers {
		if l.Size < 1500000 {
			continue
		}
		big++
		hex := strings.TrimPrefix(l.Digest, "sha256:")
		if _, err := os.Stat(filepath.Join(rootB, "blobs", "sha256", hex)); err == nil {
			t.Errorf("agent B fetched the tool stage's layer %s, which the image does not need", l.Digest)
		}
	}
	if big != 1 {
		t.Errorf("the mode=max cache holds %d layers of 2 MB, want 1 (the tool stage's)", big)
	}

	// A changed step re-runs on agent B, and its cache mount comes seeded
	// from agent A's export.
	writeFiles(t, ctx, map[string]string{"Dockerfile": strings.Replace(cacheDockerfile,
		"echo downloaded > /var/cache/pkgs/pkg && cat", "cat", 1)})
	rootC := t.TempDir()
	outC := filepath.Join(t.TempDir(), "out")
	r = mustBuild(t, buildOpts{root: rootC, context: ctx, mirror: true, outputs: []string{"type=local,dest=" + outC},
		extra: []string{"--cache-from", cacheRef}})
	st := steps(t, r.stderr)
	if st["Dockerfile:8"] != "DONE" || st["Dockerfile:7"] != "CACHED" {
		t.Errorf("agent C: steps %v, want line 7 CACHED and the changed line 8 DONE", st)
	}
	if got := readFile(t, filepath.Join(outC, "pkg")); got != "downloaded\n" {
		t.Errorf("agent C's cache mount was not seeded from the registry cache: /pkg = %q", got)
	}
}

// TestLocalCacheExport checks --cache-to/--cache-from type=local.
func TestLocalCacheExport(t *testing.T) {
	needRoot(t)
	ctx := t.TempDir()
	writeFiles(t, ctx, map[string]string{"Dockerfile": "FROM busybox\nRUN head -c 32 /dev/urandom | sha256sum > /rand\n"})
	dir := filepath.Join(t.TempDir(), "cache")
	outA := filepath.Join(t.TempDir(), "out")
	mustBuild(t, buildOpts{root: t.TempDir(), context: ctx, mirror: true, outputs: []string{"type=local,dest=" + outA},
		extra: []string{"--cache-to", "type=local,dest=" + dir}})
	outB := filepath.Join(t.TempDir(), "out")
	r := mustBuild(t, buildOpts{root: t.TempDir(), context: ctx, mirror: true, outputs: []string{"type=local,dest=" + outB},
		extra: []string{"--cache-from", "type=local,src=" + dir}})
	if st := steps(t, r.stderr); st["Dockerfile:2"] != "CACHED" {
		t.Errorf("with a local cache: RUN ended %q, want CACHED", st["Dockerfile:2"])
	}
	if a, b := readFile(t, filepath.Join(outA, "rand")), readFile(t, filepath.Join(outB, "rand")); a != b {
		t.Errorf("/rand differs: %q vs %q", a, b)
	}
	// A cache that does not exist is a warning, not a failure.
	r = mustBuild(t, buildOpts{root: t.TempDir(), context: ctx, mirror: true,
		extra: []string{"--cache-from", "type=local,src=" + filepath.Join(t.TempDir(), "none")}})
	if !strings.Contains(r.stderr, "WARNING: importing cache") {
		t.Errorf("a missing cache source gave no warning:\n%s", r.stderr)
	}
}

// TestCacheMissingBlob checks that an imported cache whose manifest lists
// a blob it no longer has costs that step a re-run, not the build, and
// that the lookups after it still hit.
func TestCacheMissingBlob(t *testing.T) {
	needRoot(t)
	ctx := t.TempDir()
	writeFiles(t, ctx, map[string]string{"Dockerfile": "FROM busybox\n" +
		"RUN head -c 32 /dev/urandom | sha256sum > /one\n" +
		"RUN head -c 32 /dev/urandom | sha256sum > /two\n"})
	dir := filepath.Join(t.TempDir(), "cache")
	outA := filepath.Join(t.TempDir(), "out")
	mustBuild(t, buildOpts{root: t.TempDir(), context: ctx, mirror: true, outputs: []string{"type=local,dest=" + outA},
		extra: []string{"--cache-to", "type=local,dest=" + dir}})

	// The cache lists the steps' layers in build order: drop the first.
	var idx struct{ Manifests []struct{ Digest string } }
	var m struct{ Layers []struct{ Digest string } }
	blob := func(d string) string { return filepath.Join(dir, "blobs", "sha256", strings.TrimPrefix(d, "sha256:")) }
	if err := json.Unmarshal([]byte(readFile(t, filepath.Join(dir, "index.json"))), &idx); err != nil || len(idx.Manifests) != 1 {
		t.Fatalf("cache index: %v %+v", err, idx)
	}
	if err := json.Unmarshal([]byte(readFile(t, blob(idx.Manifests[0].Digest))), &m); err != nil || len(m.Layers) != 2 {
		t.Fatalf("cache manifest: %v %+v", err, m)
	}
	if err := os.Remove(blob(m.Layers[0].Digest)); err != nil {
		t.Fatal(err)
	}

	outB := filepath.Join(t.TempDir(), "out")
	r := mustBuild(t, buildOpts{root: t.TempDir(), context: ctx, mirror: true, outputs: []string{"type=local,dest=" + outB},
		extra: []string{"--cache-from", "type=local,src=" + dir}})
	if st := steps(t, r.stderr); st["Dockerfile:2"] != "DONE" || st["Dockerfile:3"] != "CACHED" {
		t.Errorf("steps %v: want line 2 run again (its blob is gone) and line 3 CACHED", st)
	}
	if !strings.Contains(r.stderr, "does not have it") {
		t.Errorf("no warning about the missing blob:\n%s", r.stderr)
	}
	if a, b := readFile(t, filepath.Join(outA, "one")), readFile(t, filepath.Join(outB, "one")); a == b {
		t.Errorf("/one is the cached %q: the step did not run again", a)
	}
	if a, b := readFile(t, filepath.Join(outA, "two")), readFile(t, filepath.Join(outB, "two")); a != b {
		t.Errorf("/two = %q, the cache has %q", b, a)
	}

	// A blob that is there at the lookup but cannot be fetched (here:
	// damaged, so it fails verification) costs a second pass over the
	// build, in which its step is a miss.
	if err := os.WriteFile(blob(m.Layers[1].Digest), []byte("damaged"), 0o644); err != nil {
		t.Fatal(err)
	}
	outC := filepath.Join(t.TempDir(), "out")
	r = mustBuild(t, buildOpts{root: t.TempDir(), context: ctx, mirror: true, outputs: []string{"type=local,dest=" + outC},
		extra: []string{"--cache-from", "type=local,src=" + dir}})
	if st := steps(t, r.stderr); st["Dockerfile:3"] != "DONE" {
		t.Errorf("steps %v: want line 3 run again (its blob is damaged)", st)
	}
	if !strings.Contains(r.stderr, "building again without it") {
		t.Errorf("no warning about the second pass:\n%s", r.stderr)
	}
	if a, c := readFile(t, filepath.Join(outA, "two")), readFile(t, filepath.Join(outC, "two")); a == c {
		t.Errorf("/two is the cached %q: the step did not run again", a)
	}
}

// TestBuildCompression checks --compression zstd for new layers, and that
// a later gzip build re-exports the cached step in gzip.
func TestBuildCompression(t *testing.T) {
	needRoot(t)
	root, ctx := t.TempDir(), t.TempDir()
	writeFiles(t, ctx, map[string]string{"Dockerfile": "FROM busybox\nRUN echo zstd > /z\n"})
	layerTypes := func(extra ...string) []string {
		dir := filepath.Join(t.TempDir(), "layout")
		mustBuild(t, buildOpts{root: root, context: ctx, mirror: true, outputs: []string{"type=oci,dest=" + dir}, extra: extra})
		if len(extra) == 0 {
			// go-containerregistry's validation reads layers as gzip only.
			validateLayout(t, dir)
		}
		idx := readFile(t, filepath.Join(dir, "index.json"))
		var index struct{ Manifests []struct{ Digest string } }
		if err := json.Unmarshal([]byte(idx), &index); err != nil || len(index.Manifests) == 0 {
			t.Fatalf("index.json: %v %s", err, idx)
		}
		raw := readFile(t, filepath.Join(dir, "blobs", "sha256", strings.TrimPrefix(index.Manifests[0].Digest, "sha256:")))
		var m struct {
			Layers []struct{ MediaType, Digest string }
		}
		if err := json.Unmarshal([]byte(raw), &m); err != nil {
			t.Fatal(err)
		}
		var out []string
		for _, l := range m.Layers {
			out = append(out, l.MediaType)
		}
		if top := m.Layers[len(m.Layers)-1]; strings.HasSuffix(top.MediaType, "+zstd") {
			// The zstd layer holds the RUN's file.
			f, err := os.Open(filepath.Join(dir, "blobs", "sha256", strings.TrimPrefix(top.Digest, "sha256:")))
			if err != nil {
				t.Fatal(err)
			}
			defer f.Close()
			zr, err := zstd.NewReader(f)
			if err != nil {
				t.Fatal(err)
			}
			defer zr.Close()
			tr := tar.NewReader(zr)
			found := false
			for {
				h, err := tr.Next()
				if err != nil {
					break
				}
				found = found || h.Name == "z"
			}
			if !found {
				t.Errorf("the zstd layer has no entry z")
			}
		}
		return out
	}
	z := layerTypes("--compression", "zstd", "--compression-level", "3")
	if len(z) < 2 || z[len(z)-1] != "application/vnd.oci.image.layer.v1.tar+zstd" {
		t.Errorf("--compression zstd: layer media types %v, want the new layer +zstd", z)
	}
	g := layerTypes()
	if len(g) < 2 || g[len(g)-1] != "application/vnd.oci.image.layer.v1.tar+gzip" {
		t.Errorf("default compression after a zstd build: layer media types %v, want the new layer +gzip", g)
	}
	r := build(t, buildOpts{root: root, context: ctx, mirror: true, extra: []string{"--compression", "lz4"}})
	if r.code == 0 || !strings.Contains(r.stderr, "gzip or zstd") {
		t.Errorf("--compression lz4: want a usage error, got\n%s", r)
	}
}
