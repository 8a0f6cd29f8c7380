package copier

import (
	"context"
	"crypto/sha256"
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"sync"
	"testing"
	"time"

	"github.com/strata-build/strata/cache"
	"golang.org/x/sys/unix"
)

var _ FileDigests = (*cache.StatCache)(nil)

// mapDigests is a FileDigests that trusts every Record and counts calls.
type mapDigests struct {
	t       *testing.T
	mu      sync.Mutex
	sums    map[string][]byte
	stats   map[string]unix.Stat_t
	hits    int
	records int
}

func newMapDigests(t *testing.T) *mapDigests {
	return &mapDigests{t: t, sums: map[string][]byte{}, stats: map[string]unix.Stat_t{}}
}

func (m *mapDigests) Lookup(p string, st *unix.Stat_t) ([]byte, bool) {
	m.mu.Lock()
	defer m.mu.Unlock()
	old, ok := m.stats[p]
	if !ok || !sameStat(&old, st) {
		return nil, false
	}
	m.hits++
	return m.sums[p], true
}

func (m *mapDigests) Record(p string, st *unix.Stat_t, readStart time.Time, sum []byte) {
	m.t.Helper()
	var now unix.Stat_t
	if err := unix.Lstat(p, &now); err != nil || !sameStat(&now, st) {
		m.t.Errorf("Record(%s) with a stat that is not the file's: %v", p, err)
	}
	if readStart.IsZero() || readStart.After(time.Now()) {
		m.t.Errorf("Record(%s) with read start %v", p, readStart)
	}
	m.mu.Lock()
	defer m.mu.Unlock()
	m.sums[p], m.stats[p] = sum, *st
	m.records++
}

// lateReads hands the real stat cache a read time an hour on: the test's
// files, made a moment ago, are then past its racy window and get recorded.
type lateReads struct{ *cache.StatCache }

func (l lateReads) Record(p string, st *unix.Stat_t, readStart time.Time, sum []byte) {
	l.StatCache.Record(p, st, readStart.Add(time.Hour), sum)
}

func mustChecksum(t testing.TB, req Request) string {
	t.Helper()
	d, err := Checksum(context.Background(), req)
	if err != nil {
		t.Fatal(err)
	}
	return d
}

func TestChecksumSameWithDigests(t *testing.T) {
	tree := []node{
		F("a/one", "1"), FM("a/two", "two", 0o755), F("a/empty", ""), L("a/link", "one"),
		H("a/hard", "a/one"), D("a/sub"), F("a/sub/x.log", "log"), F("a/sub/deep", "deep"),
		F("top", "top"), H("a/sub/hard2", "top"),
	}
	tests := []struct {
		name string
		req  Request
	}{
		{"context dir", Request{Sources: []string{"a"}, FromContext: true}},
		{"whole context", Request{Sources: []string{"."}, FromContext: true, Ignore: []string{"**/*.log"}}},
		{"stage sources", Request{Sources: []string{"a", "top"}}},
		{"single file", Request{Sources: []string{"top"}, FromContext: true}},
		{"glob with parents", Request{Sources: []string{"a/*"}, Parents: true, FromContext: true}},
		{"excludes", Request{Sources: []string{"a"}, Excludes: []string{"sub"}, FromContext: true}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			root := t.TempDir()
			build(t, root, tree...)
			req := tt.req
			req.SrcRoot = root
			plain := mustChecksum(t, req)

			d := newMapDigests(t)
			req.Digests = d
			if cold := mustChecksum(t, req); cold != plain {
				t.Fatalf("cold digest %s, want %s", cold, plain)
			}
			if d.hits != 0 || d.records == 0 {
				t.Fatalf("cold run: %d hits, %d records", d.hits, d.records)
			}
			recorded := d.records
			if warm := mustChecksum(t, req); warm != plain {
				t.Fatalf("warm digest %s, want %s", warm, plain)
			}
			if d.hits != recorded || d.records != recorded {
				t.Errorf("warm run: %d hits, %d new records; want %d hits and none", d.hits, d.records-recorded, recorded)
			}
			// A hit is used as is: a wrong remembered digest shows in the
			// result, so the file itself was not read.
			for p := range d.sums {
				bad := sha256.Sum256([]byte("not the content"))
				d.sums[p] = bad[:]
				break
			}
			if poisoned := mustChecksum(t, req); poisoned == plain {
				t.Error("a remembered digest was not used")
			}
		})
	}
}

func TestChecksumWithStatCache(t *testing.T) {
	mtime := time.Date(2022, 3, 4, 5, 6, 7, 0, time.UTC)
	tests := []struct {
		name   string
		change func(t *testing.T, root string)
	}{
		{"same size, mtime restored", func(t *testing.T, root string) {
			rewriteKeepingStat(t, filepath.Join(root, "dir/b"), "B", mtime)
		}},
		{"grown", write("dir/b", "bb")},
		{"replaced by rename", func(t *testing.T, root string) {
			tmp := filepath.Join(root, "tmp")
			if err := os.WriteFile(tmp, []byte("B"), 0o644); err != nil {
				t.Fatal(err)
			}
			if err := os.Chtimes(tmp, mtime, mtime); err != nil {
				t.Fatal(err)
			}
			if err := os.Rename(tmp, filepath.Join(root, "dir/b")); err != nil {
				t.Fatal(err)
			}
		}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			root, statDir := t.TempDir(), t.TempDir()
			build(t, root, F("dir/a", "a"), F("dir/b", "b"), H("dir/c", "dir/a"), L("dir/l", "b"))
			for _, p := range []string{"dir/a", "dir/b"} {
				if err := os.Chtimes(filepath.Join(root, p), mtime, mtime); err != nil {
					t.Fatal(err)
				}
			}
			req := Request{SrcRoot: root, Sources: []string{"dir"}, FromContext: true}
			plain := mustChecksum(t, req)

			// One build records, the next (a fresh process) only loads.
			sc, err := cache.OpenStatCache(statDir, root)
			if err != nil {
				t.Fatal(err)
			}
			req.Digests = lateReads{sc}
			if got := mustChecksum(t, req); got != plain {
				t.Fatalf("first build %s, want %s", got, plain)
			}
			if err := sc.Save(); err != nil {
				t.Fatal(err)
			}
			if sc, err = cache.OpenStatCache(statDir, root); err != nil {
				t.Fatal(err)
			}
			if sc.Len() != 2 {
				t.Fatalf("stat cache has %d entries, want 2 (a hard link is hashed once)", sc.Len())
			}
			req.Digests = lateReads{sc}
			if got := mustChecksum(t, req); got != plain {
				t.Fatalf("cached build %s, want %s", got, plain)
			}

			tt.change(t, root)
			req.Digests = nil
			changed := mustChecksum(t, req)
			if changed == plain {
				t.Fatal("test setup: the change did not change the plain checksum")
			}
			req.Digests = lateReads{sc}
			if got := mustChecksum(t, req); got != changed {
				t.Errorf("after the change: %s with the stat cache, %s without", got, changed)
			}
		})
	}
}

// rewriteKeepingStat gives p new content of the same size and puts its
// mtime back, waiting for the clock to tick so ctime moves.
func rewriteKeepingStat(t *testing.T, p, data string, mtime time.Time) {
	t.Helper()
	var before, after unix.Stat_t
	if err := unix.Lstat(p, &before); err != nil {
		t.Fatal(err)
	}
	for i := 0; ; i++ {
		if err := os.WriteFile(p, []byte(data), 0o644); err != nil {
			t.Fatal(err)
		}
		if err := os.Chtimes(p, mtime, mtime); err != nil {
			t.Fatal(err)
		}
		if err := unix.Lstat(p, &after); err != nil {
			t.Fatal(err)
		}
		if after.Ctim != before.Ctim {
			break
		}
		if i == 1000 {
			t.Fatal("ctime never moved")
		}
		time.Sleep(time.Millisecond)
	}
	if after.Size != before.Size || after.Mtim != before.Mtim || after.Ino != before.Ino {
		t.Fatal("test setup: size, mtime or inode changed")
	}
}

// Requests go to the copy helper as JSON; Digests must stay behind.
func TestRequestJSONLeavesDigestsOut(t *testing.T) {
	req := Request{SrcRoot: "/ctx", Sources: []string{"a"}, Digests: newMapDigests(t)}
	b, err := json.Marshal(req)
	if err != nil {
		t.Fatal(err)
	}
	var back Request
	if err := json.Unmarshal(b, &back); err != nil {
		t.Fatal(err)
	}
	if back.Digests != nil || back.SrcRoot != "/ctx" {
		t.Errorf("round trip: %+v", back)
	}
}

// makeContext writes files files of sizes averaging ~11.5 KB (a 20,000
// file, 230 MB context scaled down) in directories of 100.
func makeContext(b *testing.B, root string, files int) (total int64) {
	buf := make([]byte, 23_000)
	for i := range buf {
		buf[i] = byte(i*31 + i/7)
	}
	for i := range files {
		dir := filepath.Join(root, fmt.Sprintf("d%03d", i/100))
		if i%100 == 0 {
			if err := os.MkdirAll(dir, 0o755); err != nil {
				b.Fatal(err)
			}
		}
		size := (i*7919)%len(buf) + 1
		copy(buf, fmt.Sprintf("file %d\n", i))
		if err := os.WriteFile(filepath.Join(dir, fmt.Sprintf("f%05d", i)), buf[:size], 0o644); err != nil {
			b.Fatal(err)
		}
		total += int64(size)
	}
	return total
}

func BenchmarkChecksumContext(b *testing.B) {
	root, statDir := b.TempDir(), b.TempDir()
	const files = 5000
	total := makeContext(b, root, files)
	// Let the files age past the stat cache's racy window, as a real
	// context's files have, so that they are recorded.
	time.Sleep(2100 * time.Millisecond)
	req := Request{SrcRoot: root, Sources: []string{"."}, FromContext: true}
	ctx := context.Background()
	want := mustChecksum(b, req)

	// build is one build's work on the context: load, checksum, save.
	build := func(b *testing.B) {
		sc, err := cache.OpenStatCache(statDir, root)
		if err != nil {
			b.Fatal(err)
		}
		r := req
		r.Digests = sc
		got, err := Checksum(ctx, r)
		if err != nil {
			b.Fatal(err)
		}
		if got != want {
			b.Fatalf("checksum %s, want %s", got, want)
		}
		if err := sc.Save(); err != nil {
			b.Fatal(err)
		}
	}

	b.Run("cold", func(b *testing.B) {
		b.SetBytes(total)
		for b.Loop() {
			if _, err := Checksum(ctx, req); err != nil {
				b.Fatal(err)
			}
		}
	})
	b.Run("first", func(b *testing.B) {
		// An empty stat cache: full hashing plus recording and writing.
		b.SetBytes(total)
		for b.Loop() {
			b.StopTimer()
			if err := os.RemoveAll(statDir); err != nil {
				b.Fatal(err)
			}
			b.StartTimer()
			build(b)
		}
	})
	b.Run("warm", func(b *testing.B) {
		build(b) // fill the cache
		sc, err := cache.OpenStatCache(statDir, root)
		if err != nil {
			b.Fatal(err)
		}
		if sc.Len() != files {
			b.Fatalf("stat cache holds %d of %d files", sc.Len(), files)
		}
		b.SetBytes(total)
		for b.Loop() {
			build(b)
		}
	})
}
