package gc

import (
	"archive/tar"
	"context"
	"crypto/rand"
	"io"
	"io/fs"
	"os"
	"path/filepath"
	"sort"
	"strings"
	"testing"

	v1 "github.com/google/go-containerregistry/pkg/v1"

	"github.com/strata-build/strata/cache"
	"github.com/strata-build/strata/registry"
	"github.com/strata-build/strata/snapshot"
)

// fixture is a state root made by the real stores.
type fixture struct {
	t     *testing.T
	root  string
	reg   *registry.Store
	snaps *snapshot.Store
	cache *cache.Local
}

func newFixture(t *testing.T) *fixture {
	t.Helper()
	root := t.TempDir()
	reg, err := registry.OpenStore(root)
	if err != nil {
		t.Fatal(err)
	}
	snaps, err := snapshot.Open(filepath.Join(root, "snapshots"))
	if err != nil {
		t.Fatal(err)
	}
	c, err := cache.OpenLocal(filepath.Join(root, "cache"))
	if err != nil {
		t.Fatal(err)
	}
	return &fixture{t: t, root: root, reg: reg, snaps: snaps, cache: c}
}

// layer writes a layer blob holding files (name -> body).
func (f *fixture) layer(files map[string]string) registry.Layer {
	f.t.Helper()
	names := make([]string, 0, len(files))
	for n := range files {
		names = append(names, n)
	}
	sort.Strings(names)
	l, err := f.reg.WriteLayer(context.Background(), func(w io.Writer) error {
		tw := tar.NewWriter(w)
		for _, n := range names {
			if err := tw.WriteHeader(&tar.Header{Name: n, Mode: 0o644, Size: int64(len(files[n])), Typeflag: tar.TypeReg}); err != nil {
				return err
			}
			if _, err := io.WriteString(tw, files[n]); err != nil {
				return err
			}
		}
		return tw.Close()
	}, registry.Gzip, 0)
	if err != nil {
		f.t.Fatal(err)
	}
	return l
}

// image writes and tags a one-layer image and returns it with the
// snapshot of its layer (keyed by diffID, as builder.unpack makes it).
func (f *fixture) image(ref, body string) *registry.Image {
	f.t.Helper()
	l := f.layer(map[string]string{"file": body})
	img, err := f.reg.WriteImage(context.Background(), &v1.ConfigFile{OS: "linux", Architecture: "amd64"}, []registry.Layer{l}, true)
	if err != nil {
		f.t.Fatal(err)
	}
	if err := f.reg.Tag(ref, img); err != nil {
		f.t.Fatal(err)
	}
	f.snapshot(l.DiffID.Hex, map[string]string{"file": body})
	return img
}

// snapshot commits a snapshot holding files under key.
func (f *fixture) snapshot(key string, files map[string]string) snapshot.Snapshot {
	f.t.Helper()
	ctx := context.Background()
	a, err := f.snaps.Prepare(ctx)
	if err != nil {
		f.t.Fatal(err)
	}
	for n, body := range files {
		p := filepath.Join(a.Dir, n)
		if err := os.MkdirAll(filepath.Dir(p), 0o755); err != nil {
			f.t.Fatal(err)
		}
		if err := os.WriteFile(p, []byte(body), 0o644); err != nil {
			f.t.Fatal(err)
		}
	}
	s, err := f.snaps.Commit(ctx, a, key)
	if err != nil {
		f.t.Fatal(err)
	}
	return s
}

// entry records a cache entry for key whose snapshot is key, with an
// exported layer when l is not nil.
func (f *fixture) entry(key, createdBy string, l *registry.Layer) {
	f.t.Helper()
	e := cache.Entry{Key: key, Snapshot: key, History: v1.History{CreatedBy: createdBy}}
	if l != nil {
		e.Layer = &cache.Layer{Digest: l.Digest.String(), DiffID: l.DiffID.String(), Size: l.Size, MediaType: string(l.MediaType)}
	}
	if err := f.cache.Put(e); err != nil {
		f.t.Fatal(err)
	}
}

// step makes a live cache entry with its snapshot and exported layer.
func (f *fixture) step(name, body string) (key string, l registry.Layer) {
	f.t.Helper()
	key = cache.Key("step", name)
	f.snapshot(key, map[string]string{name: body})
	l = f.layer(map[string]string{name: body})
	f.entry(key, "RUN "+name, &l)
	return key, l
}

// lazyStep makes a live cache entry whose layer is lazy, as a build now
// does: a snapshot, the store's record of its layer (no blob) and the
// entry naming the layer (digest == diffID).
func (f *fixture) lazyStep(name, body string) (key string, l registry.Layer) {
	f.t.Helper()
	key = cache.Key("lazy", name)
	l = f.record(f.snapshot(key, map[string]string{name: body}))
	f.entry(key, "RUN "+name, &l)
	return key, l
}

// record makes snap a lazy layer of the store.
func (f *fixture) record(snap snapshot.Snapshot) registry.Layer {
	f.t.Helper()
	l, err := f.reg.RecordDiff(context.Background(), snap, nil)
	if err != nil {
		f.t.Fatal(err)
	}
	if l.Digest != l.DiffID || f.exists(f.blobRel(l.Digest)) || !f.exists(recordRel(l.DiffID)) {
		f.t.Fatalf("RecordDiff made %+v: want a record and no blob", l)
	}
	return l
}

// compress makes the gzip blob of the lazy layer l, as a push does; the
// store remembers it in the layer's record.
func (f *fixture) compress(l registry.Layer) registry.Layer {
	f.t.Helper()
	out, err := f.reg.CompressLayers(context.Background(), []registry.Layer{l}, registry.Gzip, 0)
	if err != nil {
		f.t.Fatal(err)
	}
	if out[0].Digest == l.Digest || !f.exists(f.blobRel(out[0].Digest)) {
		f.t.Fatalf("CompressLayers made %+v", out[0])
	}
	return out[0]
}

// imageOf writes a one-layer image over l, tagged as ref unless ref is "".
func (f *fixture) imageOf(ref string, l registry.Layer) *registry.Image {
	f.t.Helper()
	img, err := f.reg.WriteImage(context.Background(), &v1.ConfigFile{OS: "linux", Architecture: "amd64", Author: ref}, []registry.Layer{l}, true)
	if err != nil {
		f.t.Fatal(err)
	}
	if ref != "" {
		if err := f.reg.Tag(ref, img); err != nil {
			f.t.Fatal(err)
		}
	}
	return img
}

func (f *fixture) write(rel, body string) {
	f.t.Helper()
	p := filepath.Join(f.root, rel)
	if err := os.MkdirAll(filepath.Dir(p), 0o755); err != nil {
		f.t.Fatal(err)
	}
	if err := os.WriteFile(p, []byte(body), 0o644); err != nil {
		f.t.Fatal(err)
	}
}

func (f *fixture) exists(rel string) bool {
	_, err := os.Lstat(filepath.Join(f.root, rel))
	return err == nil
}

func (f *fixture) blobRel(d v1.Hash) string { return filepath.Join("blobs", "sha256", d.Hex) }

func snapRel(key string) string { return filepath.Join("snapshots", key[:16]) }

func recordRel(d v1.Hash) string { return filepath.Join("diffs", d.Hex+".json") }

func entryRel(key string) string { return filepath.Join("cache", "entries", key+".json") }

// tree lists every path under root with its size and mode, to see that
// nothing changed.
func tree(t *testing.T, root string) map[string]string {
	t.Helper()
	out := map[string]string{}
	err := filepath.WalkDir(root, func(p string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		fi, err := d.Info()
		if err != nil {
			return err
		}
		rel, _ := filepath.Rel(root, p)
		if fi.IsDir() {
			out[rel] = fi.Mode().String()
		} else {
			out[rel] = fi.Mode().String() + " " + fi.ModTime().String()
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	return out
}

func randomBytes(n int) string {
	b := make([]byte, n)
	rand.Read(b)
	return string(b)
}

func ids(items []Item, kind Kind) []string {
	var out []string
	for _, it := range items {
		if it.Kind == kind {
			out = append(out, it.ID)
		}
	}
	sort.Strings(out)
	return out
}

func isRoot() bool { return os.Geteuid() == 0 }

func join(s []string) string { return strings.Join(s, ",") }
