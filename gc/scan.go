package gc

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"slices"
	"sort"
	"strings"
	"time"

	"github.com/strata-build/strata/cache"
)

// The store layout, relative to ROOT (see docs/design.md).
const (
	imagesFile     = "images.json"
	blobsDir       = "blobs/sha256"
	blobsTmpDir    = "blobs/tmp"
	snapshotsDir   = "snapshots"
	snapshotsTmp   = "snapshots/tmp"
	entriesDir     = "cache/entries"
	scratchDir     = "tmp"
	cacheMountsDir = "cache-mounts"
	diffsDir       = "diffs" // records of lazy layers (registry/diffs.go)

	key16 = 16 // hex characters naming a snapshot directory
	// trashPrefix names directories Collect moves things into before
	// deleting them; a leftover one is a temp leftover.
	trashPrefix = ".gc-trash-"
)

// entryInfo is one file of ROOT/cache/entries.
type entryInfo struct {
	key   string // from the file name
	path  string
	valid bool // parses and names its own key
	e     cache.Entry
	mtime time.Time
}

// snapInfo is one directory (or stray non-directory) in ROOT/snapshots.
type snapInfo struct {
	name  string // KEY16
	key   string // full key from meta.json; "" when torn
	path  string
	valid bool // meta.json names a key starting with name, fs is a directory
}

// blobInfo is one file of ROOT/blobs/sha256.
type blobInfo struct {
	hex  string
	path string
}

// recordInfo is one file ROOT/diffs/HEX.json: a lazy layer, whose tar the
// store makes by diffing a snapshot, named by its diffID.
type recordInfo struct {
	hex        string // the layer's diffID (and digest)
	path       string
	valid      bool     // a regular file that parses and names a snapshot key
	snap       string   // the snapshot the layer is read from (normalised key)
	compressed []string // hex of the blobs made from it, sorted
}

// pathInfo is a cache mount or a temp leftover.
type pathInfo struct {
	rel  string // relative to ROOT
	path string
}

// model is what the store holds and what refers to what.
type model struct {
	root string

	// images
	manifests     map[string][]string        // manifest hex -> tags naming it
	manifestBlobs map[string]map[string]bool // manifest hex -> blobs it reaches (itself included)
	imageBlobs    map[string]bool            // hex of every blob reachable from a tag
	imageDiffIDs  map[string]string          // hex of the diffIDs of tagged images' layers -> a tag
	imageLayers   map[string]string          // hex of tagged manifests' layer digests -> a tag

	// snapshot keys the containers under ROOT/containers run on: never
	// removed, whatever the options, while the container exists.
	containerSnaps map[string]string

	aux []pathInfo // ROOT/cache/{stat,sources,hints} (whole dirs)

	entries    []*entryInfo
	snaps      []*snapInfo
	snapByKey  map[string]*snapInfo // valid snapshots by full key
	snapLocks  []string             // names of ROOT/snapshots/KEY16.lock
	blobs      []*blobInfo
	records    []*recordInfo
	recordOf   map[string]*recordInfo // records by diffID hex
	mounts     []pathInfo             // ROOT/cache-mounts/NAME directories
	mountLocks []string               // ROOT/cache-mounts/NAME.lock
	temps      []pathInfo
}

func isHex(s string, n int) bool {
	if len(s) != n {
		return false
	}
	for i := 0; i < len(s); i++ {
		c := s[i]
		if (c < '0' || c > '9') && (c < 'a' || c > 'f') {
			return false
		}
	}
	return true
}

// digestHex returns HEX of "sha256:HEX", or "" for anything else.
func digestHex(d string) string {
	h, ok := strings.CutPrefix(d, "sha256:")
	if !ok || !isHex(h, 64) {
		return ""
	}
	return h
}

// snapshotKey normalises a snapshot key as package snapshot does
// ("sha256:HEX" or HEX, any case); "" when it is not one.
func snapshotKey(k string) string {
	if i := strings.IndexByte(k, ':'); i >= 0 {
		k = k[i+1:]
	}
	k = strings.ToLower(k)
	if len(k) < key16 || !isHex(k, len(k)) {
		return ""
	}
	return k
}

// dirEntries lists dir (sorted), or nothing if it does not exist. The
// directory itself must be a real directory: a symlink in the store's own
// layout would let a walk or a removal leave the root, so it is an error.
func dirEntries(dir string) ([]fs.DirEntry, error) {
	fi, err := os.Lstat(dir)
	if errors.Is(err, fs.ErrNotExist) {
		return nil, nil
	}
	if err != nil {
		return nil, err
	}
	if !fi.IsDir() {
		return nil, fmt.Errorf("%s is not a directory (a symlink?); refusing to touch the store", dir)
	}
	ents, err := os.ReadDir(dir)
	if errors.Is(err, fs.ErrNotExist) {
		return nil, nil
	}
	return ents, err
}

// readRegular reads a regular file without following a symlink.
func readRegular(p string) ([]byte, error) {
	fi, err := os.Lstat(p)
	if err != nil {
		return nil, err
	}
	if !fi.Mode().IsRegular() {
		return nil, fmt.Errorf("%s is not a regular file", p)
	}
	return os.ReadFile(p)
}

// scan reads the store at root. It fails rather than guess when the image
// index or a tagged manifest cannot be read, since a wrong guess would
// delete image blobs.
func scan(ctx context.Context, root string) (*model, error) {
	m := &model{
		root:           root,
		manifests:      map[string][]string{},
		manifestBlobs:  map[string]map[string]bool{},
		imageBlobs:     map[string]bool{},
		imageDiffIDs:   map[string]string{},
		imageLayers:    map[string]string{},
		containerSnaps: map[string]string{},
		snapByKey:      map[string]*snapInfo{},
		recordOf:       map[string]*recordInfo{},
	}
	if err := m.scanImages(); err != nil {
		return nil, err
	}
	for _, f := range []func() error{m.scanContainers, m.scanEntries, m.scanSnapshots, m.scanBlobs, m.scanRecords, m.scanMounts, m.scanTemps, m.scanAux} {
		if err := ctx.Err(); err != nil {
			return nil, err
		}
		if err := f(); err != nil {
			return nil, err
		}
	}
	return m, nil
}

func (m *model) path(rel string) string { return filepath.Join(m.root, rel) }

func (m *model) blobPath(h string) string { return filepath.Join(m.root, blobsDir, h) }

func (m *model) scanImages() error {
	b, err := readRegular(m.path(imagesFile))
	if errors.Is(err, fs.ErrNotExist) {
		return nil
	}
	if err != nil {
		return fmt.Errorf("reading image index: %w", err)
	}
	var idx struct {
		Images map[string]string `json:"images"`
	}
	if err := json.Unmarshal(b, &idx); err != nil {
		return fmt.Errorf("parsing image index %s: %w", m.path(imagesFile), err)
	}
	refs := make([]string, 0, len(idx.Images))
	for r := range idx.Images {
		refs = append(refs, r)
	}
	sort.Strings(refs)
	for _, ref := range refs {
		h := digestHex(idx.Images[ref])
		if h == "" {
			return fmt.Errorf("image index: %s names %q, not a sha256 digest", ref, idx.Images[ref])
		}
		if _, seen := m.manifests[h]; !seen {
			set := map[string]bool{}
			if err := m.markManifest(h, ref, set); err != nil {
				return err
			}
			m.manifestBlobs[h] = set
			for b := range set {
				m.imageBlobs[b] = true
			}
		}
		m.manifests[h] = append(m.manifests[h], ref)
	}
	return nil
}

// descriptor is the part of an OCI/Docker descriptor that matters here.
type descriptor struct {
	Digest string `json:"digest"`
}

// markManifest adds a manifest (or index) blob and every blob it refers
// to to set. A missing manifest holds nothing: the tag is already broken.
func (m *model) markManifest(h, ref string, set map[string]bool) error {
	if set[h] {
		return nil
	}
	b, err := readRegular(m.blobPath(h))
	if errors.Is(err, fs.ErrNotExist) {
		return nil
	}
	if err != nil {
		return fmt.Errorf("image %s: reading manifest sha256:%s: %w", ref, h, err)
	}
	set[h] = true
	var doc struct {
		Config    *descriptor  `json:"config"`
		Layers    []descriptor `json:"layers"`
		Manifests []descriptor `json:"manifests"`
	}
	if err := json.Unmarshal(b, &doc); err != nil {
		return fmt.Errorf("image %s: parsing manifest sha256:%s: %w", ref, h, err)
	}
	for _, l := range doc.Layers {
		if lh := digestHex(l.Digest); lh != "" {
			set[lh] = true
			if _, ok := m.imageLayers[lh]; !ok {
				m.imageLayers[lh] = ref
			}
		}
	}
	for _, c := range doc.Manifests {
		if ch := digestHex(c.Digest); ch != "" {
			if err := m.markManifest(ch, ref, set); err != nil {
				return err
			}
		}
	}
	if doc.Config == nil {
		return nil
	}
	ch := digestHex(doc.Config.Digest)
	if ch == "" {
		return nil
	}
	set[ch] = true
	// The diffIDs name the snapshots an image's layers unpack to. A config
	// that cannot be read only costs those snapshots (they are made again
	// from the blobs), so it is not an error.
	cb, err := readRegular(m.blobPath(ch))
	if err != nil {
		return nil
	}
	var cfg struct {
		RootFS struct {
			DiffIDs []string `json:"diff_ids"`
		} `json:"rootfs"`
	}
	if json.Unmarshal(cb, &cfg) != nil {
		return nil
	}
	for _, d := range cfg.RootFS.DiffIDs {
		if dh := digestHex(d); dh != "" {
			if _, ok := m.imageDiffIDs[dh]; !ok {
				m.imageDiffIDs[dh] = ref
			}
		}
	}
	return nil
}

func (m *model) scanEntries() error {
	dir := m.path(entriesDir)
	ents, err := dirEntries(dir)
	if err != nil {
		return fmt.Errorf("listing cache entries: %w", err)
	}
	for _, de := range ents {
		name := de.Name()
		p := filepath.Join(dir, name)
		if strings.HasPrefix(name, ".tmp-") {
			m.temps = append(m.temps, pathInfo{rel: filepath.Join(entriesDir, name), path: p})
			continue
		}
		key, ok := strings.CutSuffix(name, ".json")
		if !ok || !isHex(key, 64) {
			continue // not ours: left alone
		}
		fi, err := os.Lstat(p)
		if err != nil {
			continue
		}
		ei := &entryInfo{key: key, path: p, mtime: fi.ModTime()}
		// Anything but a regular file (a symlink...) is never valid.
		if fi.Mode().IsRegular() {
			if b, err := os.ReadFile(p); err == nil {
				// Torn or foreign entries are misses for the cache; here
				// they are garbage.
				ei.valid = json.Unmarshal(b, &ei.e) == nil && ei.e.Key == key
			}
		}
		m.entries = append(m.entries, ei)
	}
	return nil
}

func (m *model) scanSnapshots() error {
	dir := m.path(snapshotsDir)
	ents, err := dirEntries(dir)
	if err != nil {
		return fmt.Errorf("listing snapshots: %w", err)
	}
	for _, de := range ents {
		name := de.Name()
		p := filepath.Join(dir, name)
		switch {
		case name == "tmp":
			tents, err := dirEntries(p)
			if err != nil {
				return fmt.Errorf("listing snapshots: %w", err)
			}
			for _, t := range tents {
				m.temps = append(m.temps, pathInfo{rel: filepath.Join(snapshotsTmp, t.Name()), path: filepath.Join(p, t.Name())})
			}
		case strings.HasSuffix(name, ".lock") && isHex(strings.TrimSuffix(name, ".lock"), key16):
			m.snapLocks = append(m.snapLocks, name)
		case isHex(name, key16):
			si := &snapInfo{name: name, path: p}
			m.readSnapMeta(si)
			m.snaps = append(m.snaps, si)
			if si.valid {
				m.snapByKey[si.key] = si
			}
		}
	}
	return nil
}

// readSnapMeta decides whether a snapshot directory is whole: what
// snapshot.Store.Get would find, plus an fs directory to mount.
func (m *model) readSnapMeta(si *snapInfo) {
	fi, err := os.Lstat(si.path)
	if err != nil || !fi.IsDir() {
		return
	}
	b, err := readRegular(filepath.Join(si.path, "meta.json"))
	if err != nil {
		return
	}
	var meta struct {
		Key string `json:"key"`
	}
	if json.Unmarshal(b, &meta) != nil {
		return
	}
	k := snapshotKey(meta.Key)
	if k == "" || k != meta.Key || k[:key16] != si.name {
		return
	}
	si.key = k
	fsi, err := os.Lstat(filepath.Join(si.path, "fs"))
	si.valid = err == nil && fsi.IsDir()
}

func (m *model) scanBlobs() error {
	dir := m.path(blobsDir)
	ents, err := dirEntries(dir)
	if err != nil {
		return fmt.Errorf("listing blobs: %w", err)
	}
	for _, de := range ents {
		if isHex(de.Name(), 64) {
			m.blobs = append(m.blobs, &blobInfo{hex: de.Name(), path: filepath.Join(dir, de.Name())})
		}
	}
	return nil
}

// scanRecords reads ROOT/diffs. A record is read more leniently than the
// store reads it (unknown or mistyped fields are ignored): keeping a record
// the store would ignore only wastes a file, while dropping one it uses
// would lose a layer nothing can make again.
func (m *model) scanRecords() error {
	dir := m.path(diffsDir)
	ents, err := dirEntries(dir)
	if err != nil {
		return fmt.Errorf("listing layer records: %w", err)
	}
	for _, de := range ents {
		name := de.Name()
		p := filepath.Join(dir, name)
		// The registry writes HEX.json through .HEX.json.tmp-*.
		if strings.HasPrefix(name, ".tmp-") || strings.HasPrefix(name, ".") && strings.Contains(name, ".json.tmp-") {
			m.temps = append(m.temps, pathInfo{rel: filepath.Join(diffsDir, name), path: p})
			continue
		}
		h, ok := strings.CutSuffix(name, ".json")
		if !ok || !isHex(h, 64) {
			continue // not ours: left alone
		}
		ri := &recordInfo{hex: h, path: p}
		// Anything but a regular file that parses is torn or foreign: the
		// store never trusts it.
		if b, err := readRegular(p); err == nil {
			var rec struct {
				Snapshot   string                `json:"snapshot"`
				Compressed map[string]descriptor `json:"compressed"`
			}
			if json.Unmarshal(b, &rec) == nil {
				ri.snap = snapshotKey(rec.Snapshot)
				ri.valid = ri.snap != ""
				for _, c := range rec.Compressed {
					if ch := digestHex(c.Digest); ch != "" && !slices.Contains(ri.compressed, ch) {
						ri.compressed = append(ri.compressed, ch)
					}
				}
				slices.Sort(ri.compressed)
			}
		}
		m.records = append(m.records, ri)
		m.recordOf[h] = ri
	}
	return nil
}

func (m *model) scanMounts() error {
	dir := m.path(cacheMountsDir)
	ents, err := dirEntries(dir)
	if err != nil {
		return fmt.Errorf("listing cache mounts: %w", err)
	}
	for _, de := range ents {
		name := de.Name()
		rel := filepath.Join(cacheMountsDir, name)
		switch {
		case strings.HasPrefix(name, trashPrefix):
			m.temps = append(m.temps, pathInfo{rel: rel, path: m.path(rel)})
		case strings.HasSuffix(name, ".lock") && de.Type().IsRegular():
			m.mountLocks = append(m.mountLocks, name)
		case de.IsDir():
			m.mounts = append(m.mounts, pathInfo{rel: rel, path: m.path(rel)})
		}
	}
	return nil
}

func (m *model) scanAux() error {
	for _, d := range []string{"cache/stat", "cache/sources", "cache/hints"} {
		fi, err := os.Lstat(m.path(d))
		if errors.Is(err, fs.ErrNotExist) {
			continue
		}
		if err != nil {
			return err
		}
		if !fi.IsDir() {
			return fmt.Errorf("%s is not a directory", m.path(d))
		}
		m.aux = append(m.aux, pathInfo{rel: d, path: m.path(d)})
	}
	return nil
}

func (m *model) scanTemps() error {
	for _, d := range []string{blobsTmpDir, scratchDir} {
		ents, err := dirEntries(m.path(d))
		if err != nil {
			return fmt.Errorf("listing temp files: %w", err)
		}
		for _, de := range ents {
			rel := filepath.Join(d, de.Name())
			m.temps = append(m.temps, pathInfo{rel: rel, path: m.path(rel)})
		}
	}
	// registry writes images.json through ROOT/.images.json.tmp-*.
	ents, err := os.ReadDir(m.root)
	if err != nil && !errors.Is(err, fs.ErrNotExist) {
		return fmt.Errorf("listing %s: %w", m.root, err)
	}
	for _, de := range ents {
		if strings.HasPrefix(de.Name(), "."+imagesFile+".tmp-") {
			m.temps = append(m.temps, pathInfo{rel: de.Name(), path: m.path(de.Name())})
		}
	}
	return nil
}

// scanContainers reads the layers of every container (running or not:
// a stopped container can start again). A config that cannot be read
// makes the scan fail rather than risk removing a container's layers.
func (m *model) scanContainers() error {
	dir := filepath.Join(m.root, "containers")
	ents, err := os.ReadDir(dir)
	if errors.Is(err, fs.ErrNotExist) {
		return nil
	}
	if err != nil {
		return err
	}
	for _, e := range ents {
		if !e.IsDir() || strings.HasPrefix(e.Name(), ".") {
			continue
		}
		b, err := os.ReadFile(filepath.Join(dir, e.Name(), "config.json"))
		if errors.Is(err, fs.ErrNotExist) {
			continue // being created or removed; its layers are held by the store lock
		}
		if err != nil {
			return fmt.Errorf("reading container %s: %w", e.Name(), err)
		}
		var cfg struct {
			Layers []string `json:"layers"`
		}
		if err := json.Unmarshal(b, &cfg); err != nil {
			return fmt.Errorf("reading container %s: %w", e.Name(), err)
		}
		for _, k := range cfg.Layers {
			m.containerSnaps[k] = e.Name()
		}
	}
	return nil
}
