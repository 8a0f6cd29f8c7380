package cache

import (
	"bytes"
	"cmp"
	"crypto/sha256"
	"encoding/binary"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"time"

	"golang.org/x/sys/unix"
)

// A StatCache remembers the content digest of regular files by their path
// and stat, so an unchanged file need not be read again to be hashed. One
// file per scope (normally one build context directory) lives in
// ROOT/cache/stat.
//
// Lifecycle: OpenStatCache loads the file (a missing, torn, corrupt or
// foreign file is an empty cache); any number of goroutines then call
// Lookup and Record; Save writes the file back once, at the end of a build.
//
// Trust: an entry matches only if dev, inode, size, mtime and ctime (both in
// nanoseconds) and the full mode are all equal. Any write to a file moves
// its ctime to the current time, so content can change under an unchanged
// stat only within one timestamp tick of the last change. Record therefore
// refuses files whose mtime or ctime is not at least statRacyWindow older
// than the moment their read started: such a file might be rewritten in the
// same tick without its stat changing (git's "racily clean" entries). A
// later build records it once it has aged.
//
// Bounding: the file holds a generation number that every Save that writes
// increments. Each entry carries the generation at which it was last looked
// up (hit) or recorded; a Save drops entries untouched by this process whose
// generation is more than statKeepSaves behind, and keeps at most
// statMaxEntries (the most recently used). Deleted or renamed files thus
// leave the file after statKeepSaves writing builds. A build that only hits
// writes nothing, and ages nothing.
//
// Concurrency: Lookup, Record and Save are safe for concurrent use. Several
// processes may share a scope: Save writes a temp file in the same
// directory, fsyncs it and renames it into place, so readers see either the
// old or the new file, never a mix. Before writing, Save merges entries from
// a file another process renamed in since this one loaded, so concurrent
// builds lose little; if two renames still race, the last one wins.
type StatCache struct {
	path  string // the cache file
	scope string

	mu      sync.Mutex
	gen     uint64         // generation of the file loaded (0: none)
	loaded  os.FileInfo    // the file loaded, to notice another process's Save
	entries []statEntry    // in no particular order
	index   map[string]int // path -> position in entries
	dirty   bool           // a Record changed something since load or Save
}

// statEntry is what the cache knows about one path.
type statEntry struct {
	path    string
	key     statKey
	sum     [sha256.Size]byte
	seen    uint64 // generation of the last use written to disk
	touched bool   // looked up (hit) or recorded by this process
}

// statKey is the part of a file's stat that must be unchanged for its
// remembered digest to be used.
type statKey struct {
	dev, ino     uint64
	size         int64
	mtime, ctime int64 // nanoseconds since the epoch
	mode         uint32
}

const (
	// statRacyWindow: a file changed less than this before its read started
	// is not recorded. Far wider than any timestamp granularity, to absorb
	// the coarse kernel clock and small clock steps.
	statRacyWindow = 2 * time.Second
	// statKeepSaves is how many writing Saves an unused entry survives.
	statKeepSaves = 8
	// statMaxEntries bounds the file (about 100 bytes an entry).
	statMaxEntries = 500_000
	// statTempAge: leftover temp files (a killed Save) older than this are removed.
	statTempAge = time.Hour
)

// File format, all integers big-endian:
//
//	magic "strSTAT1" | generation u64 | entry count u64 | scope length uvarint | scope
//	entries sorted by path, each:
//	  length of the prefix shared with the previous path uvarint | rest length uvarint | rest
//	  dev u64 | ino u64 | size u64 | mtime ns u64 | ctime ns u64 | mode u32 | seen u64 | sha256 [32]
//	sha256 of everything above [32]
const statMagic = "strSTAT1"

const statFixedLen = 5*8 + 4 + 8 + sha256.Size

// OpenStatCache loads the stat cache for scope from dir (created if
// missing). The file is dir/HEX where HEX is the sha256 of scope. A file
// that cannot be read or does not verify is ignored: the cache starts
// empty, and the next Save replaces it.
func OpenStatCache(dir, scope string) (*StatCache, error) {
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return nil, fmt.Errorf("opening stat cache: %w", err)
	}
	removeOldTemps(dir)
	name := sha256.Sum256([]byte(scope))
	s := &StatCache{
		path:  filepath.Join(dir, hex.EncodeToString(name[:])),
		scope: scope,
		index: map[string]int{},
	}
	if f, gen, entries, ok := readStatFile(s.path, scope); ok {
		s.loaded, s.gen, s.entries = f, gen, entries
		s.index = make(map[string]int, len(entries))
		for i, e := range entries {
			s.index[e.path] = i
		}
	}
	return s, nil
}

// removeOldTemps deletes temp files left by killed Saves. Young ones may
// belong to a Save running in another process right now.
func removeOldTemps(dir string) {
	des, err := os.ReadDir(dir)
	if err != nil {
		return
	}
	for _, de := range des {
		if !strings.HasPrefix(de.Name(), ".tmp-") {
			continue
		}
		if fi, err := de.Info(); err == nil && time.Since(fi.ModTime()) > statTempAge {
			os.Remove(filepath.Join(dir, de.Name()))
		}
	}
}

// Len returns the number of entries held.
func (s *StatCache) Len() int {
	s.mu.Lock()
	defer s.mu.Unlock()
	return len(s.entries)
}

// Lookup returns the content sha256 recorded for path if st matches the
// stat it was recorded with.
func (s *StatCache) Lookup(path string, st *unix.Stat_t) ([]byte, bool) {
	if st == nil || st.Mode&unix.S_IFMT != unix.S_IFREG {
		return nil, false
	}
	k := keyOf(st)
	s.mu.Lock()
	defer s.mu.Unlock()
	i, ok := s.index[path]
	if !ok || s.entries[i].key != k {
		return nil, false
	}
	e := &s.entries[i]
	e.touched = true
	sum := e.sum
	return sum[:], true
}

// Record remembers sum as the content sha256 of the regular file path,
// whose stat st was taken before its content was read, starting at
// readStart. It does nothing when st is racy (changed within
// statRacyWindow of readStart) or sum is not a sha256.
func (s *StatCache) Record(path string, st *unix.Stat_t, readStart time.Time, sum []byte) {
	if st == nil || st.Mode&unix.S_IFMT != unix.S_IFREG || len(sum) != sha256.Size || !racyClean(st, readStart) {
		return
	}
	e := statEntry{path: path, key: keyOf(st), touched: true}
	copy(e.sum[:], sum)
	s.mu.Lock()
	defer s.mu.Unlock()
	if i, ok := s.index[path]; ok {
		old := &s.entries[i]
		if old.key == e.key && old.sum == e.sum {
			old.touched = true
			return
		}
		e.seen = old.seen
		*old = e
		s.dirty = true
		return
	}
	s.index[path] = len(s.entries)
	s.entries = append(s.entries, e)
	s.dirty = true
}

// racyClean reports whether st's mtime and ctime are safely older than
// readStart.
func racyClean(st *unix.Stat_t, readStart time.Time) bool {
	if readStart.IsZero() {
		return false
	}
	cutoff := readStart.Add(-statRacyWindow).UnixNano()
	return st.Mtim.Nano() < cutoff && st.Ctim.Nano() < cutoff
}

func keyOf(st *unix.Stat_t) statKey {
	return statKey{
		dev:   uint64(st.Dev),
		ino:   uint64(st.Ino),
		size:  st.Size,
		mtime: st.Mtim.Nano(),
		ctime: st.Ctim.Nano(),
		mode:  uint32(st.Mode),
	}
}

// Save writes the cache back if a Record changed it: entries from a file
// another process saved meanwhile are merged in, old entries dropped, and
// the result renamed into place atomically. After an error the cache is
// unchanged and Save may be retried.
func (s *StatCache) Save() error {
	s.mu.Lock()
	defer s.mu.Unlock()
	if !s.dirty {
		return nil
	}
	gen := s.gen
	entries := s.entries
	if cur, err := os.Stat(s.path); err == nil && !sameVersion(cur, s.loaded) {
		// Another process renamed a new file in since we loaded.
		if _, dgen, disk, ok := readStatFile(s.path, s.scope); ok {
			entries = mergeStat(s.entries, s.index, disk)
			gen = max(gen, dgen)
		}
	}
	gen++
	kept := make([]statEntry, 0, len(entries))
	for _, e := range entries {
		if e.touched {
			e.seen = gen
		} else if gen-e.seen > statKeepSaves {
			continue
		}
		kept = append(kept, e)
	}
	if len(kept) > statMaxEntries {
		slices.SortFunc(kept, func(a, b statEntry) int { return cmp.Compare(b.seen, a.seen) })
		kept = kept[:statMaxEntries]
	}
	slices.SortFunc(kept, func(a, b statEntry) int { return strings.Compare(a.path, b.path) })
	if err := writeFileAtomic(s.path, encodeStat(s.scope, gen, kept)); err != nil {
		return fmt.Errorf("saving stat cache: %w", err)
	}
	index := make(map[string]int, len(kept))
	for i, e := range kept {
		index[e.path] = i
	}
	s.entries, s.index, s.gen, s.dirty = kept, index, gen, false
	if fi, err := os.Stat(s.path); err == nil {
		s.loaded = fi
	}
	return nil
}

// sameVersion reports whether cur is still the file loaded. Inode numbers
// are reused quickly, so size and mtime must match too.
func sameVersion(cur, loaded os.FileInfo) bool {
	return loaded != nil && os.SameFile(cur, loaded) && cur.Size() == loaded.Size() && cur.ModTime().Equal(loaded.ModTime())
}

// mergeStat returns ours with disk's entries added: for a path in both,
// ours wins if this process used it, else disk's (it is at least as new).
// ours is not modified.
func mergeStat(ours []statEntry, index map[string]int, disk []statEntry) []statEntry {
	out := slices.Clone(ours)
	for _, d := range disk {
		i, ok := index[d.path]
		switch {
		case !ok:
			out = append(out, d)
		case !out[i].touched:
			out[i] = d
		}
	}
	return out
}

func encodeStat(scope string, gen uint64, entries []statEntry) []byte {
	b := make([]byte, 0, 64+len(scope)+len(entries)*(statFixedLen+24)+sha256.Size)
	b = append(b, statMagic...)
	b = binary.BigEndian.AppendUint64(b, gen)
	b = binary.BigEndian.AppendUint64(b, uint64(len(entries)))
	b = binary.AppendUvarint(b, uint64(len(scope)))
	b = append(b, scope...)
	prev := ""
	for _, e := range entries {
		n := commonPrefix(prev, e.path)
		b = binary.AppendUvarint(b, uint64(n))
		b = binary.AppendUvarint(b, uint64(len(e.path)-n))
		b = append(b, e.path[n:]...)
		b = binary.BigEndian.AppendUint64(b, e.key.dev)
		b = binary.BigEndian.AppendUint64(b, e.key.ino)
		b = binary.BigEndian.AppendUint64(b, uint64(e.key.size))
		b = binary.BigEndian.AppendUint64(b, uint64(e.key.mtime))
		b = binary.BigEndian.AppendUint64(b, uint64(e.key.ctime))
		b = binary.BigEndian.AppendUint32(b, e.key.mode)
		b = binary.BigEndian.AppendUint64(b, e.seen)
		b = append(b, e.sum[:]...)
		prev = e.path
	}
	sum := sha256.Sum256(b)
	return append(b, sum[:]...)
}

func commonPrefix(a, b string) int {
	n := min(len(a), len(b))
	for i := range n {
		if a[i] != b[i] {
			return i
		}
	}
	return n
}

var errStatCorrupt = errors.New("corrupt stat cache")

// readStatFile loads path; ok is false if it is missing, unreadable,
// corrupt or written for another scope.
func readStatFile(path, scope string) (fi os.FileInfo, gen uint64, entries []statEntry, ok bool) {
	f, err := os.Open(path)
	if err != nil {
		return nil, 0, nil, false
	}
	defer f.Close()
	if fi, err = f.Stat(); err != nil || !fi.Mode().IsRegular() {
		return nil, 0, nil, false
	}
	data := make([]byte, fi.Size())
	if _, err := io.ReadFull(f, data); err != nil {
		return nil, 0, nil, false
	}
	gen, entries, err = decodeStat(data, scope)
	if err != nil {
		return nil, 0, nil, false
	}
	return fi, gen, entries, true
}

// decodeStat parses a whole file, checksum first: nothing in a file that
// does not verify is used.
func decodeStat(data []byte, scope string) (uint64, []statEntry, error) {
	if len(data) < len(statMagic)+16+1+sha256.Size {
		return 0, nil, errStatCorrupt
	}
	body, trailer := data[:len(data)-sha256.Size], data[len(data)-sha256.Size:]
	if sum := sha256.Sum256(body); !bytes.Equal(sum[:], trailer) || string(body[:len(statMagic)]) != statMagic {
		return 0, nil, errStatCorrupt
	}
	r := statReader{b: body[len(statMagic):]}
	gen := r.u64()
	count := r.u64()
	if s := r.bytes(r.uvarint()); r.bad || string(s) != scope {
		return 0, nil, errStatCorrupt
	}
	// Each entry takes at least statFixedLen+2 bytes: a count beyond that
	// is corrupt, and checking first bounds the allocation.
	if count > uint64(len(r.b)/(statFixedLen+2)) {
		return 0, nil, errStatCorrupt
	}
	entries := make([]statEntry, count)
	// All paths go into one buffer that becomes one string: loading costs
	// a few allocations instead of one per entry.
	arena := make([]byte, 0, len(r.b))
	ends := make([]int, count)
	prevStart := 0
	for i := range entries {
		shared, rest := r.uvarint(), r.uvarint()
		if r.bad || shared > uint64(len(arena)-prevStart) {
			return 0, nil, errStatCorrupt
		}
		start := len(arena)
		arena = append(arena, arena[prevStart:prevStart+int(shared)]...)
		arena = append(arena, r.bytes(rest)...)
		ends[i], prevStart = len(arena), start
		e := &entries[i]
		e.key.dev = r.u64()
		e.key.ino = r.u64()
		e.key.size = int64(r.u64())
		e.key.mtime = int64(r.u64())
		e.key.ctime = int64(r.u64())
		e.key.mode = r.u32()
		e.seen = r.u64()
		copy(e.sum[:], r.bytes(sha256.Size))
		if r.bad {
			return 0, nil, errStatCorrupt
		}
	}
	if len(r.b) != 0 {
		return 0, nil, errStatCorrupt
	}
	all := string(arena)
	start := 0
	for i := range entries {
		entries[i].path = all[start:ends[i]]
		start = ends[i]
	}
	return gen, entries, nil
}

// statReader consumes big-endian fields; past the end it sets bad and
// returns zeros.
type statReader struct {
	b   []byte
	bad bool
}

func (r *statReader) bytes(n uint64) []byte {
	if r.bad || n > uint64(len(r.b)) {
		r.bad = true
		return nil
	}
	out := r.b[:n]
	r.b = r.b[n:]
	return out
}

func (r *statReader) u64() uint64 {
	if b := r.bytes(8); b != nil {
		return binary.BigEndian.Uint64(b)
	}
	return 0
}

func (r *statReader) u32() uint32 {
	if b := r.bytes(4); b != nil {
		return binary.BigEndian.Uint32(b)
	}
	return 0
}

func (r *statReader) uvarint() uint64 {
	v, n := binary.Uvarint(r.b)
	if n <= 0 {
		r.bad = true
		return 0
	}
	r.b = r.b[n:]
	return v
}

// writeFileAtomic replaces path with data: temp file in the same
// directory, fsync, rename. A crash leaves the old file or the new one.
func writeFileAtomic(path string, data []byte) error {
	f, err := os.CreateTemp(filepath.Dir(path), ".tmp-")
	if err != nil {
		return err
	}
	defer os.Remove(f.Name()) // no-op after the rename
	if _, err := f.Write(data); err != nil {
		f.Close()
		return err
	}
	if err := f.Sync(); err != nil {
		f.Close()
		return err
	}
	if err := f.Close(); err != nil {
		return err
	}
	return os.Rename(f.Name(), path)
}
