package copier

import (
	"bytes"
	"encoding/binary"
	"fmt"
	"hash/crc32"
	"io"
	"maps"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"syscall"
	"time"
)

// A reuse index maps each regular file a copy wrote (path relative to
// DestRoot) to the identity of the source file it came from. A later copy
// that finds the same identity on its source knows the content is the same
// without reading it. Format, version 1:
//
//	indexMagic
//	per file: uvarint len(path), path, uvarint dev, uvarint ino,
//	          varint size, varint mtime ns, varint ctime ns
//	uvarint 0 (no path is empty), uvarint number of files
//	crc32c (little endian) of every byte before it
//
// Paths are length-prefixed, so any byte (newline, tab) may appear in them.
// The checksum makes a torn or damaged file read as no index at all.
const indexMagic = "strata copier reuse-index v1\n"

// settleTime is how long before the copy started a source's mtime and ctime
// must be for its identity to be recorded: a file changed within the same
// clock tick as our lstat could keep that stat while its content moves on.
const settleTime = 2 * time.Second

// maxIndexSize bounds what is read as an index; anything larger is not one
// of ours (a million files take ~100 MB).
const maxIndexSize = 1 << 30

// fileID is what stands for a source file's content: any write changes
// ctime, which user space cannot set back.
type fileID struct {
	dev, ino     uint64
	size         int64
	mtime, ctime int64 // nanoseconds since the epoch
}

func idOf(st *syscall.Stat_t) fileID {
	return fileID{
		dev:   uint64(st.Dev),
		ino:   st.Ino,
		size:  st.Size,
		mtime: st.Mtim.Nano(),
		ctime: st.Ctim.Nano(),
	}
}

// encodeIndex serialises an index, files in byte order so equal indexes
// are equal files.
func encodeIndex(m map[string]fileID) []byte {
	b := make([]byte, 0, len(indexMagic)+len(m)*64+16)
	b = append(b, indexMagic...)
	for _, p := range slices.Sorted(maps.Keys(m)) {
		id := m[p]
		b = binary.AppendUvarint(b, uint64(len(p)))
		b = append(b, p...)
		b = binary.AppendUvarint(b, id.dev)
		b = binary.AppendUvarint(b, id.ino)
		b = binary.AppendVarint(b, id.size)
		b = binary.AppendVarint(b, id.mtime)
		b = binary.AppendVarint(b, id.ctime)
	}
	b = binary.AppendUvarint(b, 0)
	b = binary.AppendUvarint(b, uint64(len(m)))
	return binary.LittleEndian.AppendUint32(b, crc32.Checksum(b, crc32.MakeTable(crc32.Castagnoli)))
}

// decodeIndex parses an index; ok is false for anything that is not a
// whole, intact version 1 index.
func decodeIndex(b []byte) (m map[string]fileID, ok bool) {
	if len(b) < len(indexMagic)+4 || !bytes.HasPrefix(b, []byte(indexMagic)) {
		return nil, false
	}
	body, sum := b[:len(b)-4], binary.LittleEndian.Uint32(b[len(b)-4:])
	if crc32.Checksum(body, crc32.MakeTable(crc32.Castagnoli)) != sum {
		return nil, false
	}
	r := body[len(indexMagic):]
	uvarint := func() (uint64, bool) {
		v, n := binary.Uvarint(r)
		if n <= 0 {
			return 0, false
		}
		r = r[n:]
		return v, true
	}
	varint := func() (int64, bool) {
		v, n := binary.Varint(r)
		if n <= 0 {
			return 0, false
		}
		r = r[n:]
		return v, true
	}
	m = map[string]fileID{}
	for {
		n, ok := uvarint()
		if !ok || n > uint64(len(r)) {
			return nil, false
		}
		if n == 0 {
			break
		}
		p := string(r[:n])
		r = r[n:]
		var id fileID
		var ok1, ok2, ok3, ok4, ok5 bool
		id.dev, ok1 = uvarint()
		id.ino, ok2 = uvarint()
		id.size, ok3 = varint()
		id.mtime, ok4 = varint()
		id.ctime, ok5 = varint()
		if !ok1 || !ok2 || !ok3 || !ok4 || !ok5 {
			return nil, false
		}
		m[p] = id
	}
	count, ok := uvarint()
	if !ok || count != uint64(len(m)) || len(r) != 0 {
		return nil, false
	}
	return m, true
}

// loadIndex reads the index at p; any problem means no index (nil), since
// the caller then just compares contents.
func loadIndex(p string) map[string]fileID {
	f, err := os.Open(p)
	if err != nil {
		return nil
	}
	defer f.Close()
	fi, err := f.Stat()
	if err != nil || !fi.Mode().IsRegular() || fi.Size() > maxIndexSize {
		return nil
	}
	b := make([]byte, fi.Size())
	if _, err := io.ReadFull(f, b); err != nil {
		return nil
	}
	m, _ := decodeIndex(b)
	return m
}

// checkIndexDir fails early (before anything is copied) when IndexOut
// cannot be written because its directory is missing.
func checkIndexDir(p string) error {
	fi, err := os.Stat(filepath.Dir(p))
	if err != nil {
		return fmt.Errorf("index output %s: %w", p, err)
	}
	if !fi.IsDir() {
		return fmt.Errorf("index output %s: %s is not a directory", p, filepath.Dir(p))
	}
	return nil
}

// writeIndex replaces p with the index m: a temp file beside it renamed
// into place, so p is never seen half written. No fsync: a file torn by a
// crash fails its checksum and is ignored.
func writeIndex(p string, m map[string]fileID) error {
	dir, base := filepath.Split(p)
	if dir == "" {
		dir = "."
	}
	f, err := os.CreateTemp(dir, "."+strings.ReplaceAll(base, "*", "")+".tmp*")
	if err != nil {
		return fmt.Errorf("writing index %s: %w", p, err)
	}
	_, err = f.Write(encodeIndex(m))
	if cerr := f.Close(); err == nil {
		err = cerr
	}
	if err == nil {
		err = os.Rename(f.Name(), p)
	}
	if err != nil {
		os.Remove(f.Name())
		return fmt.Errorf("writing index %s: %w", p, err)
	}
	return nil
}

// settled reports whether a source's identity may be recorded: its mtime
// and ctime are both more than settleTime before the copy started.
func (w *writer) settled(st *syscall.Stat_t) bool {
	limit := w.now.Add(-settleTime).UnixNano()
	return st.Mtim.Nano() < limit && st.Ctim.Nano() < limit
}

// destRel is dst relative to the destination root, the index key.
func (w *writer) destRel(dst string) (string, bool) {
	rel, err := filepath.Rel(w.root, dst)
	if err != nil || rel == "." || rel == ".." || strings.HasPrefix(rel, "../") {
		return "", false
	}
	return rel, true
}

// record notes that dst now holds the content of the source stat'ed as st
// (before it was read); unsettled sources are left out.
func (w *writer) record(dst string, st *syscall.Stat_t) {
	if w.out == nil {
		return
	}
	rel, ok := w.destRel(dst)
	if !ok {
		return
	}
	w.mu.Lock()
	defer w.mu.Unlock()
	if !w.settled(st) {
		delete(w.out, rel)
		return
	}
	w.out[rel] = idOf(st)
}

// forget drops dst from the index being written: something else than a
// recorded source now sits there.
func (w *writer) forget(dst string) {
	if w.out == nil {
		return
	}
	if rel, ok := w.destRel(dst); ok {
		w.mu.Lock()
		delete(w.out, rel)
		w.mu.Unlock()
	}
}

// forgetUnder drops dir and everything below it (an archive was extracted
// there, possibly over files already recorded).
func (w *writer) forgetUnder(dir string) {
	if w.out == nil {
		return
	}
	rel, err := filepath.Rel(w.root, dir)
	if err != nil {
		return
	}
	// Callers drain the pool first; the lock is for form's sake.
	w.mu.Lock()
	defer w.mu.Unlock()
	if rel == "." {
		clear(w.out)
		return
	}
	for p := range w.out {
		if p == rel || strings.HasPrefix(p, rel+"/") {
			delete(w.out, p)
		}
	}
}

// indexed reports whether the Reuse index vouches for rel: the file there
// came from a source whose identity was st's (loaded on first use).
func (w *writer) indexed(rel string, st *syscall.Stat_t) bool {
	if w.reuseIndex == "" {
		return false
	}
	w.indexOnce.Do(func() { w.index = loadIndex(w.reuseIndex) })
	id, ok := w.index[rel]
	return ok && id == idOf(st)
}
