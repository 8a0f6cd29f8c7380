// Package gc measures and collects the garbage of a state root: build
// cache nobody can use any more, snapshots and blobs nothing refers to,
// and temp files left by killed commands.
//
// What refers to what:
//
//	images.json tag -> manifest blob -> config blob + layer blobs
//	config rootfs.diff_ids -> snapshots of unpacked layers (keyed by diffID)
//	manifest layer with no blob file (a lazy layer, digest == diffID)
//	    -> diffs/DIFFID.json -> its snapshot (record.snapshot), which no
//	       blob can make again, so it stays while the image is tagged,
//	       whatever the options; + blobs compressed from it (record.compressed)
//	cache/entries/KEY.json -> snapshot (entry.Snapshot) and, once exported,
//	                          per layer (entry.Layer, and entry.Clamped's
//	                          made with SOURCE_DATE_EPOCH) a blob (.Digest,
//	                          .DiffID) or,
//	                          for a lazy layer (digest == diffID, no blob
//	                          file), diffs/DIFFID.json and its compressed
//	                          blobs (not its snapshot: the entry's own is it)
//
// A record is garbage when nothing holds it or its snapshot is missing or
// goes in the same collection: the store ignores a record whose snapshot
// is gone, so records are removed before snapshots.
//
// Every command that touches the store holds Use (a shared flock on
// ROOT/gc.lock); Collect takes it exclusively, so while it runs no build
// is using anything, and temp leftovers are safe to delete.
package gc

import (
	"context"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"time"

	"golang.org/x/sys/unix"

	"github.com/strata-build/strata/cache"
)

// Category is where an item's space is accounted.
type Category string

// Categories, in the order reports list them.
const (
	Images        Category = "images"         // blobs reachable from tags, and their lazy layers' records, snapshots and compressed blobs
	BuildCache    Category = "build-cache"    // cache entries and the snapshots/records/blobs only they hold, plus dangling ones
	BaseSnapshots Category = "base-snapshots" // unpacked layers of tagged images (made again from blobs)
	CacheMounts   Category = "cache-mounts"   // RUN --mount=type=cache directories
	Temp          Category = "temp"           // leftovers of killed commands
)

// Kind is what an item is on disk.
type Kind string

// Kinds of items.
const (
	KindImage      Kind = "image"        // a tagged manifest, the blobs it reaches and its lazy layers
	KindEntry      Kind = "entry"        // ROOT/cache/entries/KEY.json
	KindSnapshot   Kind = "snapshot"     // ROOT/snapshots/KEY16
	KindBlob       Kind = "blob"         // ROOT/blobs/sha256/HEX
	KindRecord     Kind = "layer-record" // ROOT/diffs/HEX.json: a lazy layer
	KindCacheMount Kind = "cache-mount"  // ROOT/cache-mounts/NAME
	KindTemp       Kind = "temp"         // anything under a temp dir
	KindAux        Kind = "aux-cache"    // ROOT/cache/{stat,sources,hints}: speed-ups, safe to drop
)

// Item is one thing measured or removed.
type Item struct {
	Category Category
	Kind     Kind
	// ID is the cache key (entry), full snapshot key or directory name of
	// a torn snapshot, "sha256:HEX" (blob, image; layer record: the
	// layer's diffID), or the path relative to the root (cache mount,
	// temp).
	ID string
	// Description says what the item is for: the step that made an entry
	// or snapshot, an image's tags.
	Description string
	Size        int64     // disk usage: st_blocks*512, hard links counted once
	LastUsed    time.Time // entries: last cache hit or write; others: zero
	// Dangling is true for what a plain prune removes: nothing can use it.
	Dangling bool
}

// Space sums one category: how many items of Report.Items fall in it
// (an image counts once, whatever blobs it has) and their size.
type Space struct {
	Count int
	Size  int64
}

// Report is the result of Usage (what the store holds) or Collect (what
// was removed, or would be with DryRun).
type Report struct {
	Images, BuildCache, BaseSnapshots, CacheMounts, Temp Space

	// Items lists, for Usage, everything measured; for Collect, what was
	// removed, in removal order.
	Items []Item

	// Usage only: bytes a plain prune would free (dangling items and
	// temp leftovers), and bytes prune --all would free.
	Dangling, Reclaimable int64

	// Collect only: bytes freed (that would be, with DryRun).
	Reclaimed int64
}

func (r *Report) add(it Item) {
	r.Items = append(r.Items, it)
	u := r.space(it.Category)
	u.Count++
	u.Size += it.Size
}

func (r *Report) space(c Category) *Space {
	switch c {
	case Images:
		return &r.Images
	case BuildCache:
		return &r.BuildCache
	case BaseSnapshots:
		return &r.BaseSnapshots
	case CacheMounts:
		return &r.CacheMounts
	default:
		return &r.Temp
	}
}

// Options select what Collect removes.
type Options struct {
	// All removes every build cache entry and the snapshots, layer records
	// and blobs only they hold, the unpacked snapshots of image layers, and
	// cache mounts. Tagged images stay, with their blobs and their lazy
	// layers (record, snapshot and compressed blobs).
	All bool
	// KeepStorage, when > 0, removes least recently used cache entries
	// until the build cache takes at most this many bytes. 0 means no
	// limit (use All to drop everything).
	KeepStorage int64
	// DryRun reports what would be removed and removes nothing. It takes
	// the lock exclusively like a real run, so that what it lists is what
	// a real run would remove (a running build's temp dirs are not
	// leftovers).
	DryRun bool
	// Waiting, when not nil, is called once if Collect has to wait for
	// running commands to drop their Use lock.
	Waiting func()
}

// resolveRoot returns the real absolute path of root, or "" when it does
// not exist.
func resolveRoot(root string) (string, error) {
	abs, err := filepath.Abs(root)
	if err != nil {
		return "", err
	}
	real, err := filepath.EvalSymlinks(abs)
	if errors.Is(err, fs.ErrNotExist) {
		return "", nil
	}
	return real, err
}

// Usage measures the store at root. It holds the shared lock while it
// reads, so it waits for a running Collect but not for builds; what a
// running build adds or removes meanwhile may or may not be counted.
func Usage(ctx context.Context, root string) (Report, error) {
	root, err := resolveRoot(root)
	if err != nil || root == "" {
		return Report{}, err
	}
	release, err := lock(ctx, root, unix.LOCK_SH, nil)
	if err != nil {
		return Report{}, err
	}
	defer release()
	m, err := scan(ctx, root)
	if err != nil {
		return Report{}, err
	}
	a := newAnalysis(m)
	var r Report
	err = a.measure(ctx, &r)
	for _, it := range r.Items {
		if it.Category != Images {
			r.Reclaimable += it.Size
		}
		if it.Dangling {
			r.Dangling += it.Size
		}
	}
	return r, err
}

// analysis holds a scanned model with sizes and the references between
// entries, layer records, snapshots and blobs.
type analysis struct {
	m     *model
	z     *sizer
	sizes map[string]int64 // by path: a sizer counts a hard link once, so ask it once

	blobOnDisk map[string]bool
	blobOf     map[string]*entryInfo // live entries by the blob (or lazy layer) they hold
	live       []*entryInfo          // usable entries: whole, snapshot present
	dangling   []*entryInfo          // entries nothing can use
	entryOf    map[string]*entryInfo // live entries by the snapshot keys they hold

	// The lazy layers of tagged images whose record and snapshot are
	// whole. No blob can make them again, so nothing here is removed while
	// a tag stays, whatever the options.
	imageRecords    map[string]string // record (diffID hex) -> a tag
	imageLazySnaps  map[string]string // snapshot key -> a tag
	imageCompressed map[string]bool   // blobs compressed from those layers
	// compressedFrom names, for descriptions, the record a blob was
	// compressed from.
	compressedFrom map[string]string
}

func newAnalysis(m *model) *analysis {
	a := &analysis{m: m, z: newSizer(), sizes: map[string]int64{}, blobOnDisk: map[string]bool{},
		blobOf: map[string]*entryInfo{}, entryOf: map[string]*entryInfo{},
		imageRecords: map[string]string{}, imageLazySnaps: map[string]string{},
		imageCompressed: map[string]bool{}, compressedFrom: map[string]string{}}
	for _, b := range m.blobs {
		a.blobOnDisk[b.hex] = true
	}
	for _, ei := range m.entries {
		if a.usable(ei) {
			a.live = append(a.live, ei)
		} else {
			a.dangling = append(a.dangling, ei)
		}
	}
	for _, ei := range a.live {
		for _, k := range a.entrySnaps(ei) {
			if _, ok := a.entryOf[k]; !ok {
				a.entryOf[k] = ei
			}
		}
		for _, h := range a.entryBlobs(ei) {
			if a.blobOf[h] == nil {
				a.blobOf[h] = ei
			}
			if ri := a.lazyRecord(h); ri != nil {
				for _, c := range ri.compressed {
					if a.blobOf[c] == nil {
						a.blobOf[c] = ei
					}
				}
			}
		}
	}
	for _, h := range sortedKeys(m.imageLayers) {
		ri := a.lazyRecord(h)
		if ri == nil || m.snapByKey[ri.snap] == nil {
			continue // a blob, or a lazy layer already lost: nothing to keep
		}
		ref := m.imageLayers[h]
		a.imageRecords[h] = ref
		if _, ok := a.imageLazySnaps[ri.snap]; !ok {
			a.imageLazySnaps[ri.snap] = ref
		}
		for _, c := range ri.compressed {
			a.imageCompressed[c] = true
		}
	}
	for _, ri := range m.records {
		for _, c := range ri.compressed {
			if _, ok := a.compressedFrom[c]; !ok {
				a.compressedFrom[c] = ri.hex
			}
		}
	}
	return a
}

// usable mirrors the builder: an entry is a hit when it parses and its
// snapshot (if it has one) is whole.
func (a *analysis) usable(ei *entryInfo) bool {
	if !ei.valid {
		return false
	}
	if ei.e.Empty {
		return true
	}
	return a.m.snapByKey[snapshotKey(ei.e.Snapshot)] != nil
}

// entrySnaps lists the snapshot keys an entry holds: its own, and the
// unpacked form of its exported layer (keyed by diffID).
func (a *analysis) entrySnaps(ei *entryInfo) []string {
	var out []string
	if !ei.e.Empty {
		if k := snapshotKey(ei.e.Snapshot); k != "" {
			out = append(out, k)
		}
	}
	for _, l := range entryLayers(ei) {
		if h := digestHex(l.DiffID); h != "" {
			out = append(out, h)
		}
	}
	return out
}

// entryLayers lists an entry's exported layers: the plain one and those
// made with SOURCE_DATE_EPOCH (by epoch, in order).
func entryLayers(ei *entryInfo) []cache.Layer {
	var out []cache.Layer
	if ei.e.Layer != nil {
		out = append(out, *ei.e.Layer)
	}
	for _, epoch := range sortedKeys(ei.e.Clamped) {
		out = append(out, ei.e.Clamped[epoch])
	}
	return out
}

// entryBlobs returns the hex digests of an entry's exported layers (blobs,
// or lazy layers' diffIDs).
func (a *analysis) entryBlobs(ei *entryInfo) []string {
	var out []string
	for _, l := range entryLayers(ei) {
		if h := digestHex(l.Digest); h != "" {
			out = append(out, h)
		}
	}
	return out
}

// lazyRecord returns the record the store serves the layer digest h from:
// there is no blob file for h and a whole record names it. nil otherwise.
func (a *analysis) lazyRecord(h string) *recordInfo {
	if h == "" || a.blobOnDisk[h] {
		return nil
	}
	if ri := a.m.recordOf[h]; ri != nil && ri.valid {
		return ri
	}
	return nil
}

func (a *analysis) size(ctx context.Context, path string) (int64, error) {
	if n, ok := a.sizes[path]; ok {
		return n, nil
	}
	n, err := a.z.size(ctx, path)
	if err == nil {
		a.sizes[path] = n
	}
	return n, err
}

// heldSnaps is the set of snapshot keys that containers, tagged images'
// lazy layers and live entries hold, plus those of tagged images' unpacked
// layers when images is true.
func (a *analysis) heldSnaps(live []*entryInfo, images bool) map[string]bool {
	held := map[string]bool{}
	for k := range a.m.containerSnaps {
		held[k] = true
	}
	for k := range a.imageLazySnaps {
		held[k] = true
	}
	for _, ei := range live {
		for _, k := range a.entrySnaps(ei) {
			held[k] = true
		}
	}
	if images {
		for k := range a.m.imageDiffIDs {
			held[k] = true
		}
	}
	return held
}

// holding is what stays after a collection: by snapshot key, record hex
// and blob hex.
type holding struct {
	snaps, records, blobs map[string]bool
}

// held works out what stays when live are the entries left (and, with
// images, tagged images' unpacked layers stay too). A record stays when a
// tag or a live entry holds it and its snapshot is whole and stays; the
// blobs compressed from it stay with it.
func (a *analysis) held(live []*entryInfo, images bool) holding {
	h := holding{snaps: a.heldSnaps(live, images), records: map[string]bool{}, blobs: map[string]bool{}}
	for r := range a.imageRecords {
		h.records[r] = true // its snapshot is whole and in h.snaps
	}
	for _, ei := range live {
		for _, b := range a.entryBlobs(ei) {
			h.blobs[b] = true
			if ri := a.lazyRecord(b); ri != nil && a.m.snapByKey[ri.snap] != nil && h.snaps[ri.snap] {
				h.records[ri.hex] = true
			}
		}
	}
	for b := range a.m.imageBlobs {
		h.blobs[b] = true
	}
	for r := range h.records {
		for _, c := range a.m.recordOf[r].compressed {
			h.blobs[c] = true
		}
	}
	return h
}

// snapItem describes a snapshot; dangling says whether a plain prune
// would remove it.
func (a *analysis) snapItem(si *snapInfo, dangling bool) Item {
	it := Item{Category: BuildCache, Kind: KindSnapshot, ID: si.name, Dangling: dangling}
	if si.valid {
		it.ID = si.key
		if ref, ok := a.imageLazySnaps[si.key]; ok {
			it.Category = Images
			it.Description = "layer of " + ref
		} else if ref, ok := a.m.imageDiffIDs[si.key]; ok {
			it.Category = BaseSnapshots
			it.Description = "layer of " + ref
		} else if ei := a.entryOf[si.key]; ei != nil {
			it.Description = ei.e.History.CreatedBy
		}
	} else {
		it.Description = "torn"
	}
	return it
}

func (a *analysis) entryItem(ei *entryInfo, dangling bool) Item {
	it := Item{Category: BuildCache, Kind: KindEntry, ID: ei.key, LastUsed: ei.mtime, Dangling: dangling}
	switch {
	case !ei.valid:
		it.Description = "torn"
	case dangling:
		it.Description = ei.e.History.CreatedBy + " (snapshot gone)"
	default:
		it.Description = ei.e.History.CreatedBy
	}
	return it
}

// recordItem describes a layer record; dangling says whether a plain
// prune would remove it.
func (a *analysis) recordItem(ri *recordInfo, dangling bool) Item {
	it := Item{Category: BuildCache, Kind: KindRecord, ID: "sha256:" + ri.hex, Dangling: dangling}
	var what string
	if ref, ok := a.imageRecords[ri.hex]; ok {
		it.Category = Images
		what = "layer of " + ref
	} else if ei := a.blobOf[ri.hex]; ei != nil && a.lazyRecord(ri.hex) == ri {
		what = ei.e.History.CreatedBy
	}
	switch {
	case !ri.valid:
		it.Description = "torn"
	case a.m.snapByKey[ri.snap] == nil:
		it.Description = strings.TrimSpace(what + " (snapshot gone)")
	case what == "" && dangling:
		it.Description = "unreferenced"
	default:
		it.Description = what
	}
	return it
}

func (a *analysis) blobItem(b *blobInfo, dangling bool) Item {
	it := Item{Category: BuildCache, Kind: KindBlob, ID: "sha256:" + b.hex, Dangling: dangling}
	if a.m.imageBlobs[b.hex] || a.imageCompressed[b.hex] {
		it.Category = Images
	}
	if ei := a.blobOf[b.hex]; ei != nil {
		it.Description = ei.e.History.CreatedBy
	} else if r, ok := a.compressedFrom[b.hex]; ok {
		it.Description = "compressed from layer sha256:" + r[:12]
	} else if dangling {
		it.Description = "unreferenced"
	}
	return it
}

// measure fills r with every item of the store.
func (a *analysis) measure(ctx context.Context, r *Report) error {
	m := a.m
	// Images, one item per manifest: its blobs and, for each lazy layer,
	// the record, the snapshot it is read from and the blobs compressed
	// from it. Anything shared by several images counts with the first.
	counted := map[string]bool{} // by path
	for _, h := range sortedKeys(m.manifests) {
		set := m.manifestBlobs[h]
		if !set[h] {
			continue // manifest missing: the tag holds nothing
		}
		it := Item{Category: Images, Kind: KindImage, ID: "sha256:" + h, Description: strings.Join(m.manifests[h], ", ")}
		var paths []string
		for _, b := range sortedKeys(set) {
			if a.blobOnDisk[b] {
				paths = append(paths, m.blobPath(b))
				continue
			}
			if _, ok := a.imageRecords[b]; !ok {
				continue
			}
			ri := m.recordOf[b]
			paths = append(paths, ri.path, m.snapByKey[ri.snap].path)
			for _, c := range ri.compressed {
				if a.blobOnDisk[c] {
					paths = append(paths, m.blobPath(c))
				}
			}
		}
		for _, p := range paths {
			if counted[p] {
				continue
			}
			counted[p] = true
			n, err := a.size(ctx, p)
			if err != nil {
				return err
			}
			it.Size += n
		}
		r.add(it)
	}

	for _, ei := range m.entries {
		it := a.entryItem(ei, !a.usable(ei))
		n, err := a.size(ctx, ei.path)
		if err != nil {
			return err
		}
		it.Size = n
		r.add(it)
	}
	held := a.held(a.live, true)
	for _, ri := range m.records {
		if _, ok := a.imageRecords[ri.hex]; ok {
			continue // counted with its image
		}
		it := a.recordItem(ri, !held.records[ri.hex])
		n, err := a.size(ctx, ri.path)
		if err != nil {
			return err
		}
		it.Size = n
		r.add(it)
	}
	for _, si := range m.snaps {
		if _, ok := a.imageLazySnaps[si.key]; ok && si.valid {
			continue // counted with its image
		}
		it := a.snapItem(si, !si.valid || !held.snaps[si.key])
		n, err := a.size(ctx, si.path)
		if err != nil {
			return err
		}
		it.Size = n
		r.add(it)
	}
	for _, b := range m.blobs {
		if m.imageBlobs[b.hex] || a.imageCompressed[b.hex] {
			continue // counted with its image
		}
		it := a.blobItem(b, !held.blobs[b.hex])
		n, err := a.size(ctx, b.path)
		if err != nil {
			return err
		}
		it.Size = n
		r.add(it)
	}
	for _, p := range m.mounts {
		n, err := a.size(ctx, p.path)
		if err != nil {
			return err
		}
		r.add(Item{Category: CacheMounts, Kind: KindCacheMount, ID: p.rel, Size: n})
	}
	for _, p := range m.temps {
		n, err := a.size(ctx, p.path)
		if err != nil {
			return err
		}
		r.add(Item{Category: Temp, Kind: KindTemp, ID: p.rel, Size: n, Dangling: true})
	}
	for _, p := range m.aux {
		n, err := a.size(ctx, p.path)
		if err != nil {
			return err
		}
		r.add(Item{Category: BuildCache, Kind: KindAux, ID: p.rel, Size: n})
	}
	return nil
}

func sortedKeys[V any](m map[string]V) []string {
	out := make([]string, 0, len(m))
	for k := range m {
		out = append(out, k)
	}
	slices.Sort(out)
	return out
}

// Collect removes garbage from the store at root, as opts say (see
// Options; by default only what nothing can use). It takes the store lock
// exclusively, waiting for running commands; ctx ends the wait.
//
// Removal keeps the store consistent if it is killed at any point: cache
// entries go first (a missing entry is a miss), then layer records (a
// layer whose record is gone is made again by the next build that needs
// it; a record is never left pointing at a snapshot this run removes,
// though the store would ignore one that did), then snapshots (each
// renamed into a trash dir under ROOT/snapshots/tmp before it is deleted,
// so no half-deleted snapshot is ever found under its key), then blobs
// (an entry whose blob is gone exports its layer again), then cache mounts
// and temp leftovers. Whatever a killed Collect leaves in a trash dir is a
// temp leftover for the next one.
//
// An item that cannot be removed is reported in the returned error (all
// such errors, joined) and the rest goes on; an entry that stays keeps
// what it refers to. The report lists what was removed.
func Collect(ctx context.Context, root string, opts Options) (Report, error) {
	root, err := resolveRoot(root)
	if err != nil || root == "" {
		return Report{}, err
	}
	release, err := lock(ctx, root, unix.LOCK_EX, opts.Waiting)
	if err != nil {
		return Report{}, err
	}
	defer release()
	m, err := scan(ctx, root)
	if err != nil {
		return Report{}, err
	}
	mps, err := mountPoints(root)
	if err != nil {
		return Report{}, err
	}
	c := &collector{analysis: newAnalysis(m), opts: opts, mounts: mps}
	err = c.run(ctx)
	for _, it := range c.r.Items {
		c.r.Reclaimed += it.Size
	}
	return c.r, errors.Join(append(c.errs, err)...)
}

type collector struct {
	*analysis
	opts   Options
	mounts []string // mount points under the root
	r      Report
	errs   []error // items that could not be removed
}

func (c *collector) run(ctx context.Context) error {
	m := c.m
	// Phase 1: cache entries.
	live := slices.Clone(c.live)
	var drop []*entryInfo
	switch {
	case c.opts.All:
		drop, live = live, nil
	case c.opts.KeepStorage > 0:
		var err error
		if live, drop, err = c.lru(ctx, live); err != nil {
			return err
		}
	}
	for _, ei := range c.dangling {
		if err := c.remove(ctx, ei.path, c.entryItem(ei, true)); err != nil && !errors.Is(err, errSkipped) {
			return err
		}
	}
	for _, ei := range drop {
		if err := c.remove(ctx, ei.path, c.entryItem(ei, false)); err != nil {
			if !errors.Is(err, errSkipped) {
				return err
			}
			live = append(live, ei) // still there: keep what it holds
		}
	}
	c.sync(m.path(entriesDir))

	// Phase 2: layer records, before the snapshots they are read from.
	held := c.held(live, !c.opts.All)
	initial := c.held(c.live, true)
	for _, ri := range m.records {
		if held.records[ri.hex] {
			continue
		}
		if err := c.remove(ctx, ri.path, c.recordItem(ri, !initial.records[ri.hex])); err != nil {
			if !errors.Is(err, errSkipped) {
				return err
			}
			// Still there: its blobs stay with it, as an entry's do.
			for _, b := range ri.compressed {
				held.blobs[b] = true
			}
		}
	}
	c.sync(m.path(diffsDir))

	// Phase 3: snapshots.
	var gone []*snapInfo
	for _, si := range m.snaps {
		if si.valid && held.snaps[si.key] {
			continue
		}
		gone = append(gone, si)
	}
	if err := c.removeSnapshots(ctx, gone, initial.snaps); err != nil {
		return err
	}

	// Phase 4: blobs.
	for _, b := range m.blobs {
		if held.blobs[b.hex] {
			continue
		}
		if err := c.remove(ctx, b.path, c.blobItem(b, !initial.blobs[b.hex])); err != nil && !errors.Is(err, errSkipped) {
			return err
		}
	}
	c.sync(m.path(blobsDir))

	// Phase 5: cache mounts.
	if c.opts.All {
		if err := c.removeMounts(ctx); err != nil {
			return err
		}
	}

	// Phase 5b: the stat cache, downloaded ADD sources and COPY hints
	// only speed builds up; --all drops them.
	if c.opts.All {
		for _, p := range m.aux {
			if err := c.remove(ctx, p.path, Item{Category: BuildCache, Kind: KindAux, ID: p.rel}); err != nil && !errors.Is(err, errSkipped) {
				return err
			}
		}
	}

	// Phase 6: temp leftovers; no command runs, so none is in use.
	for _, p := range m.temps {
		if err := c.remove(ctx, p.path, Item{Category: Temp, Kind: KindTemp, ID: p.rel, Dangling: true}); err != nil && !errors.Is(err, errSkipped) {
			return err
		}
	}
	return nil
}

// errSkipped marks an item that could not be removed; the error itself is
// in c.errs and collection goes on.
var errSkipped = errors.New("skipped")

// remove measures and removes one item (a file or a tree) and records it.
// Only a cancelled ctx stops the whole collection.
func (c *collector) remove(ctx context.Context, path string, it Item) error {
	if err := ctx.Err(); err != nil {
		return err
	}
	n, err := c.size(ctx, path)
	if err != nil {
		return err
	}
	it.Size = n
	if !c.opts.DryRun {
		if err := c.guard(path); err != nil {
			c.errs = append(c.errs, err)
			return errSkipped
		}
		if err := removeTree(ctx, path); err != nil {
			if ctx.Err() != nil {
				return ctx.Err()
			}
			c.errs = append(c.errs, err)
			return errSkipped
		}
	}
	c.r.add(it)
	return nil
}

// guard refuses to remove a path with a mount at or below it.
func (c *collector) guard(path string) error {
	for _, mp := range c.mounts {
		if within(mp, path) {
			return fmt.Errorf("not removing %s: %s is mounted", path, mp)
		}
	}
	return nil
}

// sync makes removals in dir durable before the next phase starts, so
// that after a crash no later phase's removal is visible without it.
func (c *collector) sync(dir string) {
	if c.opts.DryRun {
		return
	}
	if f, err := os.Open(dir); err == nil {
		_ = f.Sync()
		f.Close()
	}
}

// removeSnapshots moves each snapshot into a trash dir, makes the renames
// durable, then deletes the trash. initial is what held snapshots before
// this collection, to tell dangling ones from dropped ones.
func (c *collector) removeSnapshots(ctx context.Context, gone []*snapInfo, initial map[string]bool) error {
	m := c.m
	if len(gone) == 0 {
		c.removeLocks(m.path(snapshotsDir), m.snapLocks)
		return nil
	}
	type moved struct {
		it   Item
		path string
	}
	var trashed []moved
	var trash string
	for _, si := range gone {
		if err := ctx.Err(); err != nil {
			return err
		}
		it := c.snapItem(si, !si.valid || !initial[si.key])
		n, err := c.size(ctx, si.path)
		if err != nil {
			return err
		}
		it.Size = n
		if c.opts.DryRun {
			c.r.add(it)
			continue
		}
		if err := c.guard(si.path); err != nil {
			c.errs = append(c.errs, err)
			continue
		}
		if trash == "" {
			tmp := m.path(snapshotsTmp)
			if err := os.MkdirAll(tmp, 0o700); err != nil {
				return fmt.Errorf("making snapshot trash: %w", err)
			}
			if trash, err = os.MkdirTemp(tmp, trashPrefix); err != nil {
				return fmt.Errorf("making snapshot trash: %w", err)
			}
		}
		dst := filepath.Join(trash, si.name)
		if err := os.Rename(si.path, dst); err != nil {
			c.errs = append(c.errs, fmt.Errorf("removing snapshot %s: %w", si.name, err))
			continue
		}
		trashed = append(trashed, moved{it, dst})
	}
	if c.opts.DryRun {
		return nil
	}
	c.sync(m.path(snapshotsDir))
	failed := false
	for _, t := range trashed {
		if err := removeTree(ctx, t.path); err != nil {
			if ctx.Err() != nil {
				return ctx.Err()
			}
			// Out of its key already: the next collection finishes it.
			c.errs = append(c.errs, err)
			failed = true
		}
		c.r.add(t.it)
	}
	if trash != "" {
		// After a failure above, this fails the same way: said once.
		if err := removeTree(ctx, trash); err != nil && ctx.Err() == nil && !failed {
			c.errs = append(c.errs, err)
		}
	}
	c.removeLocks(m.path(snapshotsDir), m.snapLocks)
	return nil
}

// removeLocks deletes the lock files NAME.lock in dir whose NAME is gone.
// Nobody holds them while Collect has the store lock. They take no space,
// so they are not reported.
func (c *collector) removeLocks(dir string, names []string) {
	if c.opts.DryRun {
		return
	}
	for _, n := range names {
		if _, err := os.Lstat(filepath.Join(dir, strings.TrimSuffix(n, ".lock"))); errors.Is(err, fs.ErrNotExist) {
			_ = os.Remove(filepath.Join(dir, n))
		}
	}
}

// removeMounts deletes every cache mount, each renamed out of its name
// first so that a half-deleted one is never mounted again.
func (c *collector) removeMounts(ctx context.Context) error {
	m := c.m
	dir := m.path(cacheMountsDir)
	var trash string
	failed := false
	for _, p := range m.mounts {
		if err := ctx.Err(); err != nil {
			return err
		}
		it := Item{Category: CacheMounts, Kind: KindCacheMount, ID: p.rel}
		n, err := c.size(ctx, p.path)
		if err != nil {
			return err
		}
		it.Size = n
		if c.opts.DryRun {
			c.r.add(it)
			continue
		}
		if err := c.guard(p.path); err != nil {
			c.errs = append(c.errs, err)
			continue
		}
		if trash == "" {
			if trash, err = os.MkdirTemp(dir, trashPrefix); err != nil {
				return fmt.Errorf("making cache mount trash: %w", err)
			}
		}
		dst := filepath.Join(trash, filepath.Base(p.path))
		if err := os.Rename(p.path, dst); err != nil {
			c.errs = append(c.errs, fmt.Errorf("removing cache mount %s: %w", p.rel, err))
			continue
		}
		if err := removeTree(ctx, dst); err != nil {
			if ctx.Err() != nil {
				return ctx.Err()
			}
			c.errs = append(c.errs, err)
			failed = true
		}
		c.r.add(it)
	}
	if trash != "" {
		if err := removeTree(ctx, trash); err != nil && ctx.Err() == nil && !failed {
			c.errs = append(c.errs, err)
		}
	}
	c.removeLocks(dir, m.mountLocks)
	return nil
}

// lru picks, oldest use first, the live entries to drop until what the
// build cache holds is at most KeepStorage: entry files plus the
// snapshots, layer records and blobs that only entries hold (what tagged
// images hold is not build cache). Dangling things are not counted: the
// sweep removes them anyway.
func (c *collector) lru(ctx context.Context, live []*entryInfo) (keep, drop []*entryInfo, err error) {
	m := c.m
	objSize := map[string]int64{}
	holds := map[*entryInfo][]string{}
	refs := map[string]int{}
	var total int64
	for _, ei := range live {
		n, err := c.size(ctx, ei.path)
		if err != nil {
			return nil, nil, err
		}
		total += n
		var objs []string
		hold := func(obj, path string) error {
			objs = append(objs, obj)
			if _, ok := objSize[obj]; ok {
				return nil
			}
			n, err := c.size(ctx, path)
			objSize[obj] = n
			return err
		}
		for _, k := range c.entrySnaps(ei) {
			_, base := m.imageDiffIDs[k]
			_, lazy := c.imageLazySnaps[k]
			if !base && !lazy && m.snapByKey[k] != nil {
				if err := hold("snapshot:"+k, m.snapByKey[k].path); err != nil {
					return nil, nil, err
				}
			}
		}
		var blobs []string
		for _, b := range c.entryBlobs(ei) {
			blobs = append(blobs, b)
			ri := c.lazyRecord(b)
			if ri == nil {
				continue
			}
			if _, image := c.imageRecords[ri.hex]; !image {
				if err := hold("record:"+ri.hex, ri.path); err != nil {
					return nil, nil, err
				}
			}
			blobs = append(blobs, ri.compressed...)
		}
		for _, h := range blobs {
			if h != "" && c.blobOnDisk[h] && !m.imageBlobs[h] && !c.imageCompressed[h] {
				if err := hold("blob:"+h, m.blobPath(h)); err != nil {
					return nil, nil, err
				}
			}
		}
		holds[ei] = objs
		for _, o := range objs {
			if refs[o] == 0 {
				total += objSize[o]
			}
			refs[o]++
		}
	}
	order := slices.Clone(live)
	slices.SortStableFunc(order, func(a, b *entryInfo) int {
		if c := a.mtime.Compare(b.mtime); c != 0 {
			return c
		}
		return strings.Compare(a.key, b.key)
	})
	for len(order) > 0 && total > c.opts.KeepStorage {
		ei := order[0]
		order = order[1:]
		drop = append(drop, ei)
		total -= c.sizes[ei.path]
		for _, o := range holds[ei] {
			refs[o]--
			if refs[o] == 0 {
				total -= objSize[o]
			}
		}
	}
	return order, drop, nil
}
