package gc

import (
	"context"
	"errors"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	v1 "github.com/google/go-containerregistry/pkg/v1"
	"golang.org/x/sys/unix"

	"github.com/strata-build/strata/cache"
	"github.com/strata-build/strata/registry"
)

// scene is a store with one of everything.
type scene struct {
	img        *registry.Image // tagged
	imgSnap    string          // snapshot of its layer (diffID)
	liveKey    string          // usable entry with snapshot and layer blob
	liveLayer  registry.Layer
	goneKey    string // entry whose snapshot is gone
	goneLayer  registry.Layer
	tornKey    string // entry that does not parse
	orphanSnap string // snapshot no entry holds
	tornSnap   string // KEY16 dir without meta.json
	orphanBlob v1.Hash
	untagged   *registry.Image // built, never tagged
	mount      string          // cache mount dir, relative
	temps      []string        // relative
}

func newScene(f *fixture) *scene {
	f.t.Helper()
	ctx := context.Background()
	s := &scene{}
	s.img = f.image("example.com/a:1", "image A")
	s.imgSnap = s.img.Layers[0].DiffID.Hex
	s.liveKey, s.liveLayer = f.step("one", "1")

	s.goneKey = cache.Key("step", "two")
	s.goneLayer = f.layer(map[string]string{"two": "2"})
	f.entry(s.goneKey, "RUN two", &s.goneLayer)

	s.tornKey = cache.Key("step", "torn")
	f.write(entryRel(s.tornKey), `{"key":"`)

	s.orphanSnap = cache.Key("orphan")
	f.snapshot(s.orphanSnap, map[string]string{"x": "y"})

	s.tornSnap = "0123456789abcdef"
	f.write(filepath.Join("snapshots", s.tornSnap, "fs", "half"), "deleted")

	var err error
	if s.orphanBlob, _, err = f.reg.WriteBlob(ctx, strings.NewReader("orphan blob"), nil); err != nil {
		f.t.Fatal(err)
	}
	if s.untagged, err = f.reg.WriteImage(ctx, &v1.ConfigFile{OS: "linux", Created: v1.Time{Time: time.Unix(1, 0)}}, []registry.Layer{s.liveLayer}, true); err != nil {
		f.t.Fatal(err)
	}

	s.mount = filepath.Join("cache-mounts", cache.Key("cache-mount", "/root/.cache"))
	f.write(filepath.Join(s.mount, "pkg"), "cached")
	f.write(s.mount+".lock", "")

	s.temps = []string{
		"blobs/tmp/blob-123",
		"snapshots/tmp/456",
		"tmp/step-789",
		"cache/entries/.tmp-1",
		".images.json.tmp-2",
		"cache-mounts/.gc-trash-3",
	}
	f.write("blobs/tmp/blob-123", "partial")
	f.write("snapshots/tmp/456/fs/etc/passwd", "root:x:0:0")
	if err := os.Mkdir(filepath.Join(f.root, "snapshots/tmp/456/work"), 0o700); err != nil {
		f.t.Fatal(err)
	}
	f.write("tmp/step-789/hosts", "127.0.0.1 localhost")
	f.write("cache/entries/.tmp-1", "{")
	f.write(".images.json.tmp-2", "{")
	f.write("cache-mounts/.gc-trash-3/half", "x")
	return s
}

// assertImage checks that the tagged image and all its blobs are intact.
func assertImage(t *testing.T, f *fixture, s *scene) {
	t.Helper()
	img, ok, err := f.reg.Lookup("example.com/a:1")
	if err != nil || !ok {
		t.Fatalf("tagged image lost: ok=%v err=%v", ok, err)
	}
	for _, d := range []v1.Hash{img.Digest, img.ConfigDigest, img.Layers[0].Digest} {
		if !f.reg.HasBlob(d) {
			t.Errorf("image blob %s removed", d)
		}
	}
	rc, err := f.reg.OpenLayer(context.Background(), img.Layers[0])
	if err != nil {
		t.Fatalf("image layer unreadable: %v", err)
	}
	rc.Close()
}

func TestCollectDefault(t *testing.T) {
	f := newFixture(t)
	s := newScene(f)
	ctx := context.Background()

	r, err := Collect(ctx, f.root, Options{})
	if err != nil {
		t.Fatal(err)
	}
	assertImage(t, f, s)

	keep := []string{
		entryRel(s.liveKey), snapRel(s.liveKey), f.blobRel(s.liveLayer.Digest),
		snapRel(s.imgSnap), s.mount, s.mount + ".lock", snapRel(s.liveKey) + ".lock",
	}
	for _, p := range keep {
		if !f.exists(p) {
			t.Errorf("%s removed, want kept", p)
		}
	}
	gone := []string{
		entryRel(s.goneKey), entryRel(s.tornKey), f.blobRel(s.goneLayer.Digest),
		snapRel(s.orphanSnap), snapRel(s.orphanSnap) + ".lock", filepath.Join("snapshots", s.tornSnap),
		f.blobRel(s.orphanBlob), f.blobRel(s.untagged.Digest), f.blobRel(s.untagged.ConfigDigest),
	}
	gone = append(gone, s.temps...)
	for _, p := range gone {
		if f.exists(p) {
			t.Errorf("%s kept, want removed", p)
		}
	}
	// The surviving entry is still a hit, with its snapshot.
	if e, ok, err := f.cache.Get(s.liveKey); err != nil || !ok || e.Snapshot != s.liveKey {
		t.Errorf("live entry: %+v ok=%v err=%v", e, ok, err)
	}
	if _, ok := f.snaps.Get(s.liveKey); !ok {
		t.Error("live entry's snapshot lost")
	}
	// Nothing is left in the trash, and the store dirs are still there.
	ents, _ := os.ReadDir(filepath.Join(f.root, "snapshots", "tmp"))
	if len(ents) != 0 {
		t.Errorf("snapshots/tmp not empty: %v", ents)
	}

	if got, want := join(ids(r.Items, KindEntry)), join(sorted(s.goneKey, s.tornKey)); got != want {
		t.Errorf("removed entries %s, want %s", got, want)
	}
	if got, want := join(ids(r.Items, KindSnapshot)), join(sorted(s.orphanSnap, s.tornSnap)); got != want {
		t.Errorf("removed snapshots %s, want %s", got, want)
	}
	if got, want := join(ids(r.Items, KindTemp)), join(sorted(s.temps...)); got != want {
		t.Errorf("removed temps %s, want %s", got, want)
	}
	var sum int64
	for _, it := range r.Items {
		if !it.Dangling {
			t.Errorf("%s %s removed by a plain prune but not dangling", it.Kind, it.ID)
		}
		sum += it.Size
	}
	if sum != r.Reclaimed || r.Reclaimed == 0 {
		t.Errorf("Reclaimed = %d, items sum to %d", r.Reclaimed, sum)
	}

	// A second run finds nothing.
	r, err = Collect(ctx, f.root, Options{})
	if err != nil || len(r.Items) != 0 {
		t.Errorf("second collect: %d items (%v), err %v", len(r.Items), r.Items, err)
	}
}

func TestCollectAllKeepsImages(t *testing.T) {
	f := newFixture(t)
	s := newScene(f)
	r, err := Collect(context.Background(), f.root, Options{All: true})
	if err != nil {
		t.Fatal(err)
	}
	assertImage(t, f, s)
	for _, p := range []string{entryRel(s.liveKey), snapRel(s.liveKey), f.blobRel(s.liveLayer.Digest), snapRel(s.imgSnap), s.mount, s.mount + ".lock"} {
		if f.exists(p) {
			t.Errorf("%s kept by --all", p)
		}
	}
	ents, err := os.ReadDir(filepath.Join(f.root, "snapshots"))
	if err != nil {
		t.Fatal(err)
	}
	for _, e := range ents {
		if e.Name() != "tmp" {
			t.Errorf("snapshots/%s left by --all", e.Name())
		}
	}
	if r.CacheMounts.Count != 1 || r.BaseSnapshots.Count != 1 {
		t.Errorf("removed %d cache mounts, %d base snapshots; want 1 and 1", r.CacheMounts.Count, r.BaseSnapshots.Count)
	}
	for _, it := range r.Items {
		if it.Category == Images {
			t.Errorf("image item removed: %+v", it)
		}
	}
}

func TestDryRunRemovesNothing(t *testing.T) {
	scenes := []struct {
		name  string
		setup func(f *fixture)
	}{
		{"scene", func(f *fixture) { newScene(f) }},
		{"lazy", func(f *fixture) { newLazyScene(f) }},
	}
	for _, sc := range scenes {
		for _, opts := range []Options{{DryRun: true}, {DryRun: true, All: true}, {DryRun: true, KeepStorage: 1}} {
			t.Run(sc.name+"-"+optsName(opts), func(t *testing.T) {
				dryRunMatches(t, sc.setup, opts)
			})
		}
	}
}

// dryRunMatches checks that a dry run changes nothing and lists what the
// real run then removes.
func dryRunMatches(t *testing.T, setup func(*fixture), opts Options) {
	t.Helper()
	f := newFixture(t)
	setup(f)
	before := tree(t, f.root)
	dry, err := Collect(context.Background(), f.root, opts)
	if err != nil {
		t.Fatal(err)
	}
	after := tree(t, f.root)
	for p, v := range before {
		if after[p] != v {
			t.Errorf("%s changed: %q -> %q", p, v, after[p])
		}
	}
	for p := range after {
		if _, ok := before[p]; !ok && p != lockName {
			t.Errorf("%s appeared", p)
		}
	}
	// The real run removes exactly what the dry run listed.
	opts.DryRun = false
	real, err := Collect(context.Background(), f.root, opts)
	if err != nil {
		t.Fatal(err)
	}
	for _, k := range []Kind{KindEntry, KindRecord, KindSnapshot, KindBlob, KindCacheMount, KindTemp, KindAux} {
		if got, want := join(ids(real.Items, k)), join(ids(dry.Items, k)); got != want {
			t.Errorf("%s: removed %s, dry run said %s", k, got, want)
		}
	}
	if dry.Reclaimed != real.Reclaimed {
		t.Errorf("dry run reclaims %d, real run %d", dry.Reclaimed, real.Reclaimed)
	}
}

func optsName(o Options) string {
	var s []string
	if o.All {
		s = append(s, "all")
	}
	if o.KeepStorage > 0 {
		s = append(s, "keep")
	}
	if o.DryRun {
		s = append(s, "dry")
	}
	return strings.Join(s, "-")
}

func TestKeepStorageLRU(t *testing.T) {
	tests := []struct {
		name string
		// keep is how many of the newest steps' bytes the limit allows.
		keep int
		// hit is the step to look up (a cache hit) just before collecting.
		hit  string
		want []string // surviving steps
	}{
		{name: "all fit", keep: 3, want: []string{"old", "mid", "new"}},
		{name: "oldest goes", keep: 2, want: []string{"mid", "new"}},
		{name: "two go", keep: 1, want: []string{"new"}},
		{name: "nothing fits", keep: 0, want: nil},
		{name: "hit refreshes", keep: 2, hit: "old", want: []string{"old", "new"}},
	}
	for _, tt := range tests {
		for _, lazy := range []bool{false, true} {
			name := tt.name
			if lazy {
				name += " lazy"
			}
			t.Run(name, func(t *testing.T) { keepStorageCase(t, tt.keep, tt.hit, tt.want, lazy) })
		}
	}
}

// keepStorageCase runs one TestKeepStorageLRU case; with lazy, the steps'
// layers are lazy and pushed once, so each step also holds a layer record
// and a compressed blob.
func keepStorageCase(t *testing.T, keep int, hit string, want []string, lazy bool) {
	t.Helper()
	f := newFixture(t)
	s := newScene(f)
	steps := []string{"old", "mid", "new"}
	keys := map[string]string{}
	stepIDs := map[string][]string{} // what du lists for a step
	held := map[string][]string{}    // a lazy step's record and compressed blob
	base := time.Now().Add(-time.Hour)
	for i, name := range steps {
		// Same size for all: the limit counts whole steps.
		body := strings.Repeat(name[:1], 20000)
		var l registry.Layer
		if lazy {
			keys[name], l = f.lazyStep(name, body)
			gz := f.compress(l)
			stepIDs[name] = []string{keys[name], l.Digest.String(), gz.Digest.String()}
			held[name] = []string{recordRel(l.DiffID), f.blobRel(gz.Digest)}
		} else {
			keys[name], l = f.step(name, body)
			stepIDs[name] = []string{keys[name], l.Digest.String()}
		}
		mt := base.Add(time.Duration(i) * time.Minute)
		if err := os.Chtimes(filepath.Join(f.root, entryRel(keys[name])), mt, mt); err != nil {
			t.Fatal(err)
		}
	}
	// The scene's own live step is the oldest of all.
	old := base.Add(-time.Minute)
	if err := os.Chtimes(filepath.Join(f.root, entryRel(s.liveKey)), old, old); err != nil {
		t.Fatal(err)
	}
	u, err := Usage(context.Background(), f.root)
	if err != nil {
		t.Fatal(err)
	}
	stepSize := map[string]int64{}
	for _, it := range u.Items {
		for name, ids := range stepIDs {
			if slices.Contains(ids, it.ID) {
				stepSize[name] += it.Size
			}
		}
	}
	var limit int64
	for _, name := range steps[len(steps)-keep:] {
		limit += stepSize[name]
	}
	if hit != "" {
		if _, ok, err := f.cache.Get(keys[hit]); err != nil || !ok {
			t.Fatalf("Get %s: ok=%v err=%v", hit, ok, err)
		}
	}
	opts := Options{KeepStorage: limit}
	if limit == 0 {
		opts.KeepStorage = 1
	}
	if _, err := Collect(context.Background(), f.root, opts); err != nil {
		t.Fatal(err)
	}
	var got []string
	for _, name := range steps {
		_, ok, err := f.cache.Get(keys[name])
		if err != nil {
			t.Fatal(err)
		}
		_, snap := f.snaps.Get(keys[name])
		if ok != snap {
			t.Errorf("%s: entry %v but snapshot %v", name, ok, snap)
		}
		if ok {
			got = append(got, name)
		}
		for _, p := range held[name] {
			if f.exists(p) != ok {
				t.Errorf("%s: entry %v but %s %v", name, ok, p, f.exists(p))
			}
		}
	}
	if join(got) != join(want) {
		t.Errorf("surviving steps %v, want %v", got, want)
	}
	if f.exists(entryRel(s.liveKey)) {
		t.Error("the least recently used entry survived")
	}
	assertImage(t, f, s)
}

func TestCollectWaitsForUse(t *testing.T) {
	f := newFixture(t)
	s := newScene(f)
	ctx := context.Background()
	release, err := Use(ctx, f.root, nil)
	if err != nil {
		t.Fatal(err)
	}
	// Another command may share the lock.
	release2, err := Use(ctx, f.root, func() { t.Error("Use waited for another Use") })
	if err != nil {
		t.Fatal(err)
	}
	release2()

	waiting := make(chan struct{})
	done := make(chan error, 1)
	go func() {
		_, err := Collect(ctx, f.root, Options{Waiting: func() { close(waiting) }})
		done <- err
	}()
	select {
	case <-waiting:
	case err := <-done:
		t.Fatalf("Collect did not wait for the command holding the store (err %v)", err)
	}
	select {
	case err := <-done:
		t.Fatalf("Collect returned while a command held the store: %v", err)
	default:
	}
	if !f.exists(entryRel(s.goneKey)) {
		t.Fatal("Collect removed something while a command held the store")
	}
	release()
	if err := <-done; err != nil {
		t.Fatal(err)
	}
	if f.exists(entryRel(s.goneKey)) {
		t.Error("dangling entry survived once the lock was free")
	}
}

func TestLockWaitRespectsContext(t *testing.T) {
	f := newFixture(t)
	release, err := Use(context.Background(), f.root, nil)
	if err != nil {
		t.Fatal(err)
	}
	defer release()
	ctx, cancel := context.WithCancel(context.Background())
	_, err = Collect(ctx, f.root, Options{Waiting: cancel})
	if !errors.Is(err, context.Canceled) {
		t.Errorf("Collect with a cancelled wait: %v, want context.Canceled", err)
	}

	// And the other way round: Use waits while Collect's exclusive lock is
	// held.
	release()
	excl, err := lock(context.Background(), f.root, unix.LOCK_EX, nil)
	if err != nil {
		t.Fatal(err)
	}
	defer excl()
	ctx, cancel = context.WithCancel(context.Background())
	waited := false
	_, err = Use(ctx, f.root, func() { waited = true; cancel() })
	if !waited || !errors.Is(err, context.Canceled) {
		t.Errorf("Use under an exclusive lock: waited=%v err=%v", waited, err)
	}
}

// TestRemoveHostileSnapshot removes a snapshot made of what overlay and
// RUN steps leave: unreadable directories, whiteouts, an opaque
// directory, and symlinks leading out of the root.
func TestRemoveHostileSnapshot(t *testing.T) {
	f := newFixture(t)
	victim := t.TempDir()
	if err := os.WriteFile(filepath.Join(victim, "precious"), []byte("keep"), 0o644); err != nil {
		t.Fatal(err)
	}
	key := cache.Key("hostile")
	snap := f.snapshot(key, map[string]string{"locked/inner/file": "x", "ro/file": "y"})
	mustDo(t, os.Symlink(victim, filepath.Join(snap.Dir, "out")))
	mustDo(t, os.Symlink(filepath.Join(victim, "precious"), filepath.Join(snap.Dir, "locked", "inner", "link")))
	mustDo(t, os.Symlink("../../../../..", filepath.Join(snap.Dir, "up")))
	mustDo(t, os.Chmod(filepath.Join(snap.Dir, "locked", "inner"), 0))
	mustDo(t, os.Chmod(filepath.Join(snap.Dir, "locked"), 0))
	mustDo(t, os.Chmod(filepath.Join(snap.Dir, "ro"), 0o555))
	if isRoot() {
		mustDo(t, unix.Mknod(filepath.Join(snap.Dir, "deleted"), unix.S_IFCHR, 0))
		mustDo(t, unix.Mkdir(filepath.Join(snap.Dir, "opaque"), 0o755))
		mustDo(t, unix.Setxattr(filepath.Join(snap.Dir, "opaque"), "trusted.overlay.opaque", []byte("y"), 0))
	} else {
		t.Log("not root: no whiteout device or opaque xattr in the tree")
	}
	r, err := Collect(context.Background(), f.root, Options{})
	if err != nil {
		t.Fatal(err)
	}
	if f.exists(snapRel(key)) {
		t.Error("snapshot still there")
	}
	if got := ids(r.Items, KindSnapshot); join(got) != key {
		t.Errorf("removed snapshots %v, want %s", got, key)
	}
	if b, err := os.ReadFile(filepath.Join(victim, "precious")); err != nil || string(b) != "keep" {
		t.Errorf("file outside the root: %q, %v", b, err)
	}
	ents, _ := os.ReadDir(filepath.Join(f.root, "snapshots", "tmp"))
	if len(ents) != 0 {
		t.Errorf("trash left behind: %v", ents)
	}
}

func TestRefusesMountedLeftover(t *testing.T) {
	if !isRoot() {
		t.Skip("mounting needs root")
	}
	// A tmpfs has a device of its own; a bind mount of the same
	// filesystem does not, and only the mount table tells.
	for _, kind := range []string{"tmpfs", "bind"} {
		t.Run(kind, func(t *testing.T) {
			f := newFixture(t)
			mnt := filepath.Join(f.root, "tmp", "step-1", "mnt")
			mustDo(t, os.MkdirAll(mnt, 0o755))
			src := t.TempDir()
			if kind == "tmpfs" {
				mustDo(t, unix.Mount("tmpfs", mnt, "tmpfs", 0, ""))
			} else {
				mustDo(t, unix.Mount(src, mnt, "", unix.MS_BIND, ""))
			}
			t.Cleanup(func() { unix.Unmount(mnt, unix.MNT_DETACH) })
			mustDo(t, os.WriteFile(filepath.Join(mnt, "data"), []byte("x"), 0o644))
			f.write("tmp/step-2/file", "gone")

			_, err := Collect(context.Background(), f.root, Options{})
			if err == nil || !strings.Contains(err.Error(), "mounted") {
				t.Errorf("Collect over a mount: err = %v", err)
			}
			if _, err := os.Stat(filepath.Join(mnt, "data")); err != nil {
				t.Errorf("file on the mount: %v", err)
			}
			if f.exists("tmp/step-2") {
				t.Error("other leftovers were not removed")
			}
		})
	}
}

func TestRefusesBrokenStore(t *testing.T) {
	tests := []struct {
		name  string
		setup func(f *fixture)
	}{
		{"corrupt image index", func(f *fixture) { f.write("images.json", "{") }},
		{"corrupt tagged manifest", func(f *fixture) {
			d, _, err := f.reg.WriteBlob(context.Background(), strings.NewReader("not a manifest"), nil)
			mustDo(f.t, err)
			f.write("images.json", `{"images":{"example.com/b:1":"`+d.String()+`"}}`)
		}},
		{"symlinked snapshot dir", func(f *fixture) {
			other := f.t.TempDir()
			mustDo(f.t, os.Rename(filepath.Join(f.root, "snapshots"), filepath.Join(other, "snapshots")))
			mustDo(f.t, os.Symlink(filepath.Join(other, "snapshots"), filepath.Join(f.root, "snapshots")))
		}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			f := newFixture(t)
			newScene(f)
			tt.setup(f)
			before := tree(t, f.root)
			if _, err := Collect(context.Background(), f.root, Options{All: true}); err == nil {
				t.Error("Collect succeeded")
			}
			if _, err := Usage(context.Background(), f.root); err == nil {
				t.Error("Usage succeeded")
			}
			after := tree(t, f.root)
			for p := range before {
				if _, ok := after[p]; !ok {
					t.Errorf("%s removed", p)
				}
			}
		})
	}
}

func TestUsage(t *testing.T) {
	f := newFixture(t)
	s := newScene(f)
	// A hard-linked file counts once.
	key := cache.Key("links")
	snap := f.snapshot(key, map[string]string{"big": randomBytes(1 << 20)})
	mustDo(t, os.Link(filepath.Join(snap.Dir, "big"), filepath.Join(snap.Dir, "big2")))
	f.entry(key, "RUN links", nil)

	r, err := Usage(context.Background(), f.root)
	if err != nil {
		t.Fatal(err)
	}
	byID := map[string]Item{}
	for _, it := range r.Items {
		byID[string(it.Kind)+" "+it.ID] = it
	}
	ls := byID["snapshot "+key]
	if ls.Size < 1<<20 || ls.Size >= 2<<20 {
		t.Errorf("hard-linked snapshot size %d, want about 1MiB", ls.Size)
	}
	if ls.Category != BuildCache || ls.Dangling || ls.Description != "RUN links" {
		t.Errorf("snapshot item %+v", ls)
	}
	checks := []struct {
		id       string
		cat      Category
		dangling bool
	}{
		{"image sha256:" + s.img.Digest.Hex, Images, false},
		{"entry " + s.liveKey, BuildCache, false},
		{"snapshot " + s.liveKey, BuildCache, false},
		{"blob " + s.liveLayer.Digest.String(), BuildCache, false},
		{"entry " + s.goneKey, BuildCache, true},
		{"entry " + s.tornKey, BuildCache, true},
		{"blob " + s.goneLayer.Digest.String(), BuildCache, true},
		{"snapshot " + s.orphanSnap, BuildCache, true},
		{"snapshot " + s.tornSnap, BuildCache, true},
		{"snapshot " + s.imgSnap, BaseSnapshots, false},
		{"blob " + s.untagged.Digest.String(), BuildCache, true},
		{"cache-mount " + s.mount, CacheMounts, false},
		{"temp tmp/step-789", Temp, true},
	}
	for _, c := range checks {
		it, ok := byID[c.id]
		if !ok {
			t.Errorf("%s not reported", c.id)
			continue
		}
		if it.Category != c.cat || it.Dangling != c.dangling || it.Size <= 0 {
			t.Errorf("%s: %+v, want category %s dangling %v", c.id, it, c.cat, c.dangling)
		}
	}
	if r.Images.Count != 1 || r.CacheMounts.Count != 1 || r.Temp.Count != len(s.temps) || r.BaseSnapshots.Count != 1 {
		t.Errorf("counts: %+v %+v %+v %+v", r.Images, r.CacheMounts, r.Temp, r.BaseSnapshots)
	}
	if r.Reclaimable != r.BuildCache.Size+r.BaseSnapshots.Size+r.CacheMounts.Size+r.Temp.Size {
		t.Errorf("Reclaimable %d does not add up", r.Reclaimable)
	}
	// What a plain prune frees is what Usage calls dangling.
	c, err := Collect(context.Background(), f.root, Options{DryRun: true})
	if err != nil {
		t.Fatal(err)
	}
	if c.Reclaimed != r.Dangling {
		t.Errorf("prune would free %d, Usage says %d dangling", c.Reclaimed, r.Dangling)
	}
	c, err = Collect(context.Background(), f.root, Options{DryRun: true, All: true})
	if err != nil {
		t.Fatal(err)
	}
	if c.Reclaimed != r.Reclaimable {
		t.Errorf("prune --all would free %d, Usage says %d reclaimable", c.Reclaimed, r.Reclaimable)
	}
}

func TestMissingRoot(t *testing.T) {
	root := filepath.Join(t.TempDir(), "none")
	if r, err := Usage(context.Background(), root); err != nil || len(r.Items) != 0 {
		t.Errorf("Usage: %+v %v", r, err)
	}
	if r, err := Collect(context.Background(), root, Options{All: true}); err != nil || len(r.Items) != 0 {
		t.Errorf("Collect: %+v %v", r, err)
	}
	if _, err := os.Stat(root); err == nil {
		t.Error("Usage or Collect created the root")
	}
}

func TestUnescapeMount(t *testing.T) {
	tests := []struct{ in, want string }{
		{`/a/b`, `/a/b`},
		{`/a\040b`, `/a b`},
		{`/a\134b`, `/a\b`},
		{`/a\04`, `/a\04`},
	}
	for _, tt := range tests {
		if got := unescapeMount(tt.in); got != tt.want {
			t.Errorf("unescapeMount(%q) = %q, want %q", tt.in, got, tt.want)
		}
	}
}

func mustDo(t *testing.T, err error) {
	t.Helper()
	if err != nil {
		t.Fatal(err)
	}
}

func sorted(s ...string) []string {
	s = slices.Clone(s)
	slices.Sort(s)
	return s
}

// TestAuxCaches checks the stat cache, ADD downloads and COPY hints: du
// counts them as build cache, a plain prune keeps them, --all drops them.
func TestAuxCaches(t *testing.T) {
	f := newFixture(t)
	newScene(f)
	aux := []string{"cache/stat/abc", "cache/sources/http/files/x/f", "cache/hints/h"}
	for _, p := range aux {
		full := filepath.Join(f.root, p)
		if err := os.MkdirAll(filepath.Dir(full), 0o700); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(full, []byte("data"), 0o600); err != nil {
			t.Fatal(err)
		}
	}
	u, err := Usage(context.Background(), f.root)
	if err != nil {
		t.Fatal(err)
	}
	n := 0
	for _, it := range u.Items {
		if it.Kind == KindAux {
			n++
			if it.Category != BuildCache || it.Size == 0 {
				t.Errorf("aux item %+v: want build cache with a size", it)
			}
		}
	}
	if n != 3 {
		t.Errorf("du lists %d aux caches, want 3", n)
	}
	if _, err := Collect(context.Background(), f.root, Options{}); err != nil {
		t.Fatal(err)
	}
	for _, p := range aux {
		if !f.exists(p) {
			t.Errorf("a plain prune removed %s", p)
		}
	}
	if _, err := Collect(context.Background(), f.root, Options{All: true}); err != nil {
		t.Fatal(err)
	}
	for _, p := range aux {
		if f.exists(p) {
			t.Errorf("prune --all kept %s", p)
		}
	}
}
