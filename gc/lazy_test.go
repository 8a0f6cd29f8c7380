package gc

import (
	"context"
	"io"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	v1 "github.com/google/go-containerregistry/pkg/v1"

	"github.com/strata-build/strata/cache"
	"github.com/strata-build/strata/registry"
)

// lazyScene is a scene plus lazy layers (registry/diffs.go) in each state
// gc has to tell apart.
type lazyScene struct {
	*scene
	img      *registry.Image // tagged example.com/lazy:1, over imgLayer
	imgKey   string          // the live entry that made imgLayer; its snapshot serves it
	imgLayer registry.Layer  // lazy
	imgGz    registry.Layer  // compressed from imgLayer by a push

	stepKey   string // live entry whose lazy layer no tag holds
	stepLayer registry.Layer
	stepGz    registry.Layer
	untagged  *registry.Image // over stepLayer, never tagged

	lost      *registry.Image // tagged example.com/lost:1; its layer's snapshot is gone
	lostLayer registry.Layer

	orphan   registry.Layer // record of the scene's live snapshot that nothing names
	orphanGz registry.Layer

	// shared is a record (written by hand, as an older or newer store
	// might) that nothing holds, whose snapshot is dangling and whose
	// compressed blobs a tag and another record hold.
	shared v1.Hash
	torn   v1.Hash // a record that does not parse
	temp   string  // diffs/.tmp-*
	temp2  string  // diffs/.HEX.json.tmp-*, as the registry names them
}

func newLazyScene(f *fixture) *lazyScene {
	f.t.Helper()
	s := &lazyScene{scene: newScene(f)}

	s.imgKey, s.imgLayer = f.lazyStep("lazy image", "in the image")
	s.imgGz = f.compress(s.imgLayer)
	s.img = f.imageOf("example.com/lazy:1", s.imgLayer)

	s.stepKey, s.stepLayer = f.lazyStep("lazy step", "only cached")
	s.stepGz = f.compress(s.stepLayer)
	s.untagged = f.imageOf("", s.stepLayer)

	lostKey := cache.Key("lazy", "lost")
	s.lostLayer = f.record(f.snapshot(lostKey, map[string]string{"lost": "gone"}))
	s.lost = f.imageOf("example.com/lost:1", s.lostLayer)
	mustDo(f.t, os.RemoveAll(filepath.Join(f.root, snapRel(lostKey))))

	live, ok := f.snaps.Get(s.liveKey)
	if !ok {
		f.t.Fatal("scene's live snapshot missing")
	}
	s.orphan = f.record(live)
	s.orphanGz = f.compress(s.orphan)

	s.shared = v1.Hash{Algorithm: "sha256", Hex: cache.Key("shared record")}
	f.write(recordRel(s.shared), `{"snapshot":"`+s.orphanSnap+`","size":3,"compressed":{`+
		`"gzip-0":{"digest":"`+s.scene.img.Layers[0].Digest.String()+`","size":1,"mediaType":"application/vnd.oci.image.layer.v1.tar+gzip"},`+
		`"gzip-9":{"digest":"`+s.imgGz.Digest.String()+`","size":1,"mediaType":"application/vnd.oci.image.layer.v1.tar+gzip"}}}`)

	s.torn = v1.Hash{Algorithm: "sha256", Hex: cache.Key("torn record")}
	f.write(recordRel(s.torn), `{"snapshot":"`)

	s.temp = "diffs/.tmp-5"
	f.write(s.temp, `{"snap`)
	s.temp2 = "diffs/." + strings.Repeat("e", 64) + ".json.tmp-7"
	f.write(s.temp2, `{"snap`)
	return s
}

// assertLazyImage checks that example.com/lazy:1 is whole: its layer reads
// back from the snapshot (the store checks the diffID at EOF) and a push
// reuses the blob compressed earlier.
func assertLazyImage(t *testing.T, f *fixture, s *lazyScene) {
	t.Helper()
	ctx := context.Background()
	img, ok, err := f.reg.Lookup("example.com/lazy:1")
	if err != nil || !ok {
		t.Fatalf("tagged lazy image lost: ok=%v err=%v", ok, err)
	}
	for _, d := range []v1.Hash{img.Digest, img.ConfigDigest, s.imgGz.Digest} {
		if !f.exists(f.blobRel(d)) {
			t.Errorf("blob %s of the lazy image removed", d)
		}
	}
	for _, p := range []string{recordRel(s.imgLayer.DiffID), snapRel(s.imgKey)} {
		if !f.exists(p) {
			t.Errorf("%s of the lazy image removed", p)
		}
	}
	rc, err := f.reg.OpenLayer(ctx, img.Layers[0])
	if err != nil {
		t.Fatalf("lazy layer unreadable: %v", err)
	}
	_, err = io.Copy(io.Discard, rc)
	rc.Close()
	if err != nil {
		t.Errorf("reading the lazy layer: %v", err)
	}
	out, err := f.reg.CompressLayers(ctx, img.Layers, registry.Gzip, 0)
	if err != nil {
		t.Fatal(err)
	}
	if out[0].Digest != s.imgGz.Digest {
		t.Errorf("push compressed the layer again (%s), want the remembered %s", out[0].Digest, s.imgGz.Digest)
	}
}

func TestCollectLazyLayers(t *testing.T) {
	tests := []struct {
		name string
		opts Options
		// dropped: the live entries go, and with them what only they hold.
		dropped bool
	}{
		{name: "plain", opts: Options{}},
		{name: "all", opts: Options{All: true}, dropped: true},
		{name: "keep-storage", opts: Options{KeepStorage: 1}, dropped: true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			f := newFixture(t)
			s := newLazyScene(f)
			ctx := context.Background()
			r, err := Collect(ctx, f.root, tt.opts)
			if err != nil {
				t.Fatal(err)
			}
			assertImage(t, f, s.scene)
			assertLazyImage(t, f, s)

			gone := []string{
				recordRel(s.lostLayer.DiffID), recordRel(s.orphan.DiffID), f.blobRel(s.orphanGz.Digest),
				recordRel(s.shared), recordRel(s.torn), s.temp, s.temp2, f.blobRel(s.untagged.Digest),
			}
			// The blobs the hand-written record listed are held elsewhere.
			keep := []string{f.blobRel(s.scene.img.Layers[0].Digest), f.blobRel(s.imgGz.Digest), f.blobRel(s.lost.Digest)}
			cached := []string{entryRel(s.stepKey), recordRel(s.stepLayer.DiffID), snapRel(s.stepKey), f.blobRel(s.stepGz.Digest), entryRel(s.imgKey)}
			if tt.dropped {
				gone = append(gone, cached...)
			} else {
				keep = append(keep, cached...)
				keep = append(keep, snapRel(s.liveKey)) // the orphan record's snapshot
			}
			for _, p := range keep {
				if !f.exists(p) {
					t.Errorf("%s removed, want kept", p)
				}
			}
			for _, p := range gone {
				if f.exists(p) {
					t.Errorf("%s kept, want removed", p)
				}
			}
			// The tag whose lazy layer lost its snapshot stays; only the
			// useless record went.
			if _, ok, err := f.reg.Lookup("example.com/lost:1"); err != nil || !ok {
				t.Errorf("example.com/lost:1: ok=%v err=%v", ok, err)
			}

			wantRecords := []string{s.lostLayer.DiffID.String(), s.orphan.DiffID.String(), s.shared.String(), s.torn.String()}
			if tt.dropped {
				wantRecords = append(wantRecords, s.stepLayer.DiffID.String())
			}
			if got, want := join(ids(r.Items, KindRecord)), join(sorted(wantRecords...)); got != want {
				t.Errorf("removed records %s, want %s", got, want)
			}
			at := map[string]int{}
			for i, it := range r.Items {
				at[string(it.Kind)+" "+it.ID] = i
				if it.Kind != KindRecord {
					continue
				}
				if it.Category != BuildCache || it.Size <= 0 {
					t.Errorf("record item %+v: want build cache with a size", it)
				}
				dangling := it.ID != s.stepLayer.DiffID.String()
				if it.Dangling != dangling {
					t.Errorf("record %s: dangling %v, want %v", it.ID, it.Dangling, dangling)
				}
			}
			for id, want := range map[string]string{
				s.lostLayer.DiffID.String(): "snapshot gone",
				s.torn.String():             "torn",
				s.orphan.DiffID.String():    "unreferenced",
			} {
				if d := r.Items[at["layer-record "+id]].Description; !strings.Contains(d, want) {
					t.Errorf("record %s described %q, want %q in it", id, d, want)
				}
			}
			if tt.dropped {
				// A record goes before the snapshot it is read from.
				rec, okR := at["layer-record "+s.stepLayer.DiffID.String()]
				snap, okS := at["snapshot "+s.stepKey]
				if !okR || !okS || rec > snap {
					t.Errorf("record at %d (%v), its snapshot at %d (%v): want the record first", rec, okR, snap, okS)
				}
			}
			for _, it := range r.Items {
				if it.Category == Images {
					t.Errorf("image item removed: %+v", it)
				}
			}

			// A second run finds nothing more.
			r, err = Collect(ctx, f.root, tt.opts)
			if err != nil || len(r.Items) != 0 {
				t.Errorf("second collect: %d items (%v), err %v", len(r.Items), r.Items, err)
			}
			assertLazyImage(t, f, s)
		})
	}
}

// TestCollectUntaggedLazyImage: a lazy layer in no tagged image stays
// while an entry holds it and goes, record first, with prune --all.
func TestCollectUntaggedLazyImage(t *testing.T) {
	f := newFixture(t)
	key, l := f.lazyStep("step", "body")
	gz := f.compress(l)
	img := f.imageOf("", l)
	ctx := context.Background()

	if _, err := Collect(ctx, f.root, Options{}); err != nil {
		t.Fatal(err)
	}
	for _, p := range []string{entryRel(key), snapRel(key), recordRel(l.DiffID), f.blobRel(gz.Digest)} {
		if !f.exists(p) {
			t.Errorf("plain prune removed %s, which a live entry holds", p)
		}
	}
	if f.exists(f.blobRel(img.Digest)) {
		t.Error("untagged manifest kept")
	}
	if _, ok, err := f.cache.Get(key); err != nil || !ok {
		t.Errorf("entry no longer a hit: ok=%v err=%v", ok, err)
	}
	if !f.reg.HasBlob(l.Digest) {
		t.Error("the entry's lazy layer is no longer served")
	}

	r, err := Collect(ctx, f.root, Options{All: true})
	if err != nil {
		t.Fatal(err)
	}
	for _, p := range []string{entryRel(key), snapRel(key), recordRel(l.DiffID), f.blobRel(gz.Digest)} {
		if f.exists(p) {
			t.Errorf("prune --all kept %s", p)
		}
	}
	var kinds []string
	for _, it := range r.Items {
		kinds = append(kinds, string(it.Kind))
	}
	if want := []string{"entry", "layer-record", "snapshot", "blob"}; !slices.Equal(kinds, want) {
		t.Errorf("removed %v, want %v in that order", kinds, want)
	}
}

// TestRecordSnapshotStates checks which records a plain prune keeps: only
// one a live entry names, not one whose snapshot stays for another entry,
// one whose snapshot is torn, one naming no snapshot key, or a symlink.
func TestRecordSnapshotStates(t *testing.T) {
	tests := []struct {
		name string
		// setup returns the record and whether a plain prune keeps it.
		setup func(f *fixture) (v1.Hash, bool)
	}{
		{"held by a live entry", func(f *fixture) (v1.Hash, bool) {
			_, l := f.lazyStep("held", "x")
			return l.DiffID, true
		}},
		{"entry gone, snapshot held by another entry", func(f *fixture) (v1.Hash, bool) {
			key, l := f.lazyStep("other", "x")
			mustDo(f.t, os.Remove(filepath.Join(f.root, entryRel(key))))
			mustDo(f.t, f.cache.Put(cache.Entry{Key: cache.Key("step", "user"), Snapshot: key}))
			return l.DiffID, false
		}},
		{"snapshot goes in the same prune", func(f *fixture) (v1.Hash, bool) {
			// The store keeps the first record of a content: the live
			// entry's layer is read from an orphan snapshot, which goes.
			first := f.record(f.snapshot(cache.Key("first"), map[string]string{"same": "x"}))
			_, l := f.lazyStep("same", "x")
			if l.DiffID != first.DiffID {
				f.t.Fatalf("same content, two diffIDs: %s %s", l.DiffID, first.DiffID)
			}
			return l.DiffID, false
		}},
		{"snapshot torn", func(f *fixture) (v1.Hash, bool) {
			key, l := f.lazyStep("torn", "x")
			mustDo(f.t, os.Remove(filepath.Join(f.root, snapRel(key), "meta.json")))
			return l.DiffID, false
		}},
		{"bad snapshot key", func(f *fixture) (v1.Hash, bool) {
			d := v1.Hash{Algorithm: "sha256", Hex: cache.Key("bad key")}
			f.write(recordRel(d), `{"snapshot":"not-hex","size":1}`)
			return d, false
		}},
		{"symlink", func(f *fixture) (v1.Hash, bool) {
			_, l := f.lazyStep("link", "x")
			target := filepath.Join(f.t.TempDir(), "record.json")
			mustDo(f.t, os.Rename(filepath.Join(f.root, recordRel(l.DiffID)), target))
			mustDo(f.t, os.Symlink(target, filepath.Join(f.root, recordRel(l.DiffID))))
			return l.DiffID, false
		}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			f := newFixture(t)
			d, kept := tt.setup(f)
			u, err := Usage(context.Background(), f.root)
			if err != nil {
				t.Fatal(err)
			}
			found := false
			for _, it := range u.Items {
				if it.Kind == KindRecord && it.ID == d.String() {
					found = true
					if it.Dangling == kept {
						t.Errorf("du: %+v, want dangling %v", it, !kept)
					}
				}
			}
			if !found {
				t.Errorf("du does not list record %s", d)
			}
			if _, err := Collect(context.Background(), f.root, Options{}); err != nil {
				t.Fatal(err)
			}
			if f.exists(recordRel(d)) != kept {
				t.Errorf("record kept %v, want %v", !kept, kept)
			}
		})
	}
}

func TestUsageLazyLayers(t *testing.T) {
	f := newFixture(t)
	s := newLazyScene(f)
	ctx := context.Background()
	r, err := Usage(ctx, f.root)
	if err != nil {
		t.Fatal(err)
	}
	byID := map[string]Item{}
	for _, it := range r.Items {
		byID[string(it.Kind)+" "+it.ID] = it
	}
	// The lazy image's snapshot, record and compressed blob count with it.
	for _, id := range []string{"snapshot " + s.imgKey, "layer-record " + s.imgLayer.DiffID.String(), "blob " + s.imgGz.Digest.String()} {
		if it, ok := byID[id]; ok {
			t.Errorf("%s listed on its own (%+v), want it counted with its image", id, it)
		}
	}
	img := byID["image "+s.img.Digest.String()]
	z := newSizer()
	var want int64
	for _, p := range []string{f.blobRel(s.img.Digest), f.blobRel(s.img.ConfigDigest), snapRel(s.imgKey), recordRel(s.imgLayer.DiffID), f.blobRel(s.imgGz.Digest)} {
		n, err := z.size(ctx, filepath.Join(f.root, p))
		mustDo(t, err)
		want += n
	}
	if img.Category != Images || img.Size != want {
		t.Errorf("lazy image item %+v, want size %d", img, want)
	}
	if r.Images.Count != 3 {
		t.Errorf("%d images, want 3", r.Images.Count)
	}

	checks := []struct {
		id       string
		dangling bool
		desc     string
	}{
		{"layer-record " + s.stepLayer.DiffID.String(), false, "RUN lazy step"},
		{"blob " + s.stepGz.Digest.String(), false, "RUN lazy step"},
		{"snapshot " + s.stepKey, false, "RUN lazy step"},
		{"layer-record " + s.lostLayer.DiffID.String(), true, "(snapshot gone)"},
		{"layer-record " + s.orphan.DiffID.String(), true, "unreferenced"},
		{"blob " + s.orphanGz.Digest.String(), true, "compressed from layer " + s.orphan.DiffID.String()[:19]},
		{"layer-record " + s.shared.String(), true, "unreferenced"},
		{"layer-record " + s.torn.String(), true, "torn"},
		{"temp " + s.temp, true, ""},
		{"temp " + s.temp2, true, ""},
	}
	for _, c := range checks {
		it, ok := byID[c.id]
		if !ok {
			t.Errorf("%s not reported", c.id)
			continue
		}
		if it.Category == Images || it.Dangling != c.dangling || it.Size <= 0 || it.Description != c.desc {
			t.Errorf("%s: %+v, want dangling %v, description %q", c.id, it, c.dangling, c.desc)
		}
	}

	// du's two totals are what the two prunes free.
	c, err := Collect(ctx, f.root, Options{DryRun: true})
	if err != nil {
		t.Fatal(err)
	}
	if c.Reclaimed != r.Dangling {
		t.Errorf("prune would free %d, du says %d dangling", c.Reclaimed, r.Dangling)
	}
	c, err = Collect(ctx, f.root, Options{DryRun: true, All: true})
	if err != nil {
		t.Fatal(err)
	}
	if c.Reclaimed != r.Reclaimable {
		t.Errorf("prune --all would free %d, du says %d reclaimable", c.Reclaimed, r.Reclaimable)
	}
}

// TestCollectClampedLayers: the layer a SOURCE_DATE_EPOCH build made of a
// step (entry.Clamped) stays, with its compressed blob, as long as the
// entry does, and goes with it.
func TestCollectClampedLayers(t *testing.T) {
	f := newFixture(t)
	ctx := context.Background()
	key, plain := f.lazyStep("clamped", "body")
	snap, ok := f.snaps.Get(key)
	if !ok {
		t.Fatal("step snapshot missing")
	}
	epoch := time.Unix(1, 0) // before every mtime: the tar differs
	clamped, err := f.reg.RecordDiff(ctx, snap, &epoch)
	if err != nil {
		t.Fatal(err)
	}
	if clamped.DiffID == plain.DiffID {
		t.Fatal("the clamped layer has the plain layer's diffID")
	}
	gz := f.compress(clamped)
	e, _, err := f.cache.Get(key)
	if err != nil {
		t.Fatal(err)
	}
	one := int64(1)
	e.SetLayerFor(&one, cache.Layer{Digest: clamped.Digest.String(), DiffID: clamped.DiffID.String(), Size: clamped.Size, MediaType: string(clamped.MediaType)})
	mustDo(t, f.cache.Put(e))

	held := []string{recordRel(plain.DiffID), recordRel(clamped.DiffID), f.blobRel(gz.Digest), snapRel(key)}
	if _, err := Collect(ctx, f.root, Options{}); err != nil {
		t.Fatal(err)
	}
	for _, p := range held {
		if !f.exists(p) {
			t.Errorf("plain prune removed %s, which the live entry holds", p)
		}
	}
	if _, err := Collect(ctx, f.root, Options{All: true}); err != nil {
		t.Fatal(err)
	}
	for _, p := range held {
		if f.exists(p) {
			t.Errorf("prune --all kept %s", p)
		}
	}
}
