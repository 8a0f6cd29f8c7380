package cache

import (
	"bytes"
	"crypto/sha256"
	"fmt"
	"os"
	"path/filepath"
	"sync"
	"testing"
	"time"

	"golang.org/x/sys/unix"
)

// oldTime is safely outside the racy window of any read done now.
func oldTime() unix.Timespec {
	return unix.NsecToTimespec(time.Date(2020, 1, 2, 3, 4, 5, 6, time.UTC).UnixNano())
}

// fakeStat is a regular file's stat that needs no file.
func fakeStat(ino uint64) *unix.Stat_t {
	return &unix.Stat_t{Dev: 7, Ino: ino, Mode: unix.S_IFREG | 0o644, Size: 100, Mtim: oldTime(), Ctim: oldTime(), Nlink: 1}
}

func sumOf(s string) []byte {
	h := sha256.Sum256([]byte(s))
	return h[:]
}

func openStat(t testing.TB, dir, scope string) *StatCache {
	t.Helper()
	s, err := OpenStatCache(dir, scope)
	if err != nil {
		t.Fatal(err)
	}
	return s
}

func mustSave(t testing.TB, s *StatCache) {
	t.Helper()
	if err := s.Save(); err != nil {
		t.Fatal(err)
	}
}

// statFile returns the single cache file in dir.
func statFile(t *testing.T, dir string) string {
	t.Helper()
	m, err := filepath.Glob(filepath.Join(dir, "[0-9a-f]*"))
	if err != nil || len(m) != 1 {
		t.Fatalf("cache files in %s: %v %v", dir, m, err)
	}
	return m[0]
}

func TestStatCacheRoundTrip(t *testing.T) {
	dir := filepath.Join(t.TempDir(), "stat")
	s := openStat(t, dir, "/ctx")
	if s.Len() != 0 {
		t.Fatalf("new cache has %d entries", s.Len())
	}
	now := time.Now()
	for i := range 50 {
		// Shared prefixes of all lengths exercise the path compression.
		p := fmt.Sprintf("/ctx/d%d/f%d", i%3, i)
		s.Record(p, fakeStat(uint64(i)), now, sumOf(p))
	}
	s.Record("/ctx", fakeStat(1000), now, sumOf("x"))
	mustSave(t, s)
	file := statFile(t, dir)
	want := sha256.Sum256([]byte("/ctx"))
	if filepath.Base(file) != fmt.Sprintf("%x", want) {
		t.Errorf("cache file %s is not named by sha256(scope)", file)
	}

	s2 := openStat(t, dir, "/ctx")
	if s2.Len() != 51 {
		t.Fatalf("reloaded %d entries, want 51", s2.Len())
	}
	for i := range 50 {
		p := fmt.Sprintf("/ctx/d%d/f%d", i%3, i)
		got, ok := s2.Lookup(p, fakeStat(uint64(i)))
		if !ok || !bytes.Equal(got, sumOf(p)) {
			t.Fatalf("Lookup(%s) = %x, %v", p, got, ok)
		}
	}
	if _, ok := s2.Lookup("/ctx/d0/none", fakeStat(0)); ok {
		t.Error("unknown path hit")
	}
	// Only hits: nothing to write, the file stays as it is.
	before, err := os.Stat(file)
	if err != nil {
		t.Fatal(err)
	}
	mustSave(t, s2)
	after, err := os.Stat(file)
	if err != nil {
		t.Fatal(err)
	}
	if !os.SameFile(before, after) || !before.ModTime().Equal(after.ModTime()) {
		t.Error("Save without changes rewrote the file")
	}
	// Recording what is already known is no change either.
	s2.Record("/ctx/d0/f0", fakeStat(0), now, sumOf("/ctx/d0/f0"))
	mustSave(t, s2)
	if after2, _ := os.Stat(file); !os.SameFile(before, after2) {
		t.Error("Save after a no-op Record rewrote the file")
	}
	// Another scope has its own file.
	if openStat(t, dir, "/other").Len() != 0 {
		t.Error("scopes share entries")
	}
}

func TestStatCacheKeyFields(t *testing.T) {
	old := oldTime()
	newer := unix.NsecToTimespec(old.Nano() + 1)
	tests := []struct {
		name   string
		change func(st *unix.Stat_t)
	}{
		{"dev", func(st *unix.Stat_t) { st.Dev++ }},
		{"inode", func(st *unix.Stat_t) { st.Ino++ }},
		{"size", func(st *unix.Stat_t) { st.Size++ }},
		{"mtime ns", func(st *unix.Stat_t) { st.Mtim = newer }},
		{"ctime ns only", func(st *unix.Stat_t) { st.Ctim = newer }},
		{"permissions", func(st *unix.Stat_t) { st.Mode = unix.S_IFREG | 0o755 }},
		{"type", func(st *unix.Stat_t) { st.Mode = unix.S_IFLNK | 0o644 }},
	}
	s := openStat(t, t.TempDir(), "/ctx")
	s.Record("/f", fakeStat(1), time.Now(), sumOf("a"))
	if _, ok := s.Lookup("/f", fakeStat(1)); !ok {
		t.Fatal("recorded entry missed")
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			st := fakeStat(1)
			tt.change(st)
			if _, ok := s.Lookup("/f", st); ok {
				t.Errorf("a changed %s still hits", tt.name)
			}
		})
	}
	// Owner and link count are not part of the key (a chown moves ctime).
	st := fakeStat(1)
	st.Uid, st.Nlink = 5, 2
	if _, ok := s.Lookup("/f", st); !ok {
		t.Error("uid/nlink took part in the match")
	}
}

func TestStatCacheRefusesRacyEntries(t *testing.T) {
	readStart := time.Now()
	recent := unix.NsecToTimespec(readStart.Add(-time.Second).UnixNano())
	tests := []struct {
		name  string
		st    func() *unix.Stat_t
		start time.Time
		sum   []byte
		ok    bool
	}{
		{"old file", func() *unix.Stat_t { return fakeStat(1) }, readStart, sumOf("a"), true},
		{"mtime within the window", func() *unix.Stat_t { st := fakeStat(1); st.Mtim = recent; return st }, readStart, sumOf("a"), false},
		{"ctime within the window", func() *unix.Stat_t { st := fakeStat(1); st.Ctim = recent; return st }, readStart, sumOf("a"), false},
		{"mtime in the future", func() *unix.Stat_t {
			st := fakeStat(1)
			st.Mtim = unix.NsecToTimespec(readStart.Add(time.Hour).UnixNano())
			return st
		}, readStart, sumOf("a"), false},
		{"no read start", func() *unix.Stat_t { return fakeStat(1) }, time.Time{}, sumOf("a"), false},
		{"not a sha256", func() *unix.Stat_t { return fakeStat(1) }, readStart, []byte("short"), false},
		{"not a regular file", func() *unix.Stat_t { st := fakeStat(1); st.Mode = unix.S_IFDIR | 0o755; return st }, readStart, sumOf("a"), false},
		{"nil stat", func() *unix.Stat_t { return nil }, readStart, sumOf("a"), false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			s := openStat(t, t.TempDir(), "/ctx")
			s.Record("/f", tt.st(), tt.start, tt.sum)
			_, ok := s.Lookup("/f", tt.st())
			if ok != tt.ok {
				t.Errorf("hit = %v, want %v", ok, tt.ok)
			}
			want := 0
			if tt.ok {
				want = 1
			}
			if got := s.Len(); got != want {
				t.Errorf("%d entries, want %d", got, want)
			}
		})
	}
}

// A rewrite that keeps the size and puts the old mtime back still moves
// ctime, and that is enough to miss.
func TestStatCacheDetectsRewriteWithRestoredMtime(t *testing.T) {
	dir := t.TempDir()
	p := filepath.Join(dir, "f")
	if err := os.WriteFile(p, []byte("version 1"), 0o644); err != nil {
		t.Fatal(err)
	}
	mtime := time.Date(2021, 5, 6, 7, 8, 9, 123456789, time.UTC)
	if err := os.Chtimes(p, mtime, mtime); err != nil {
		t.Fatal(err)
	}
	var st1 unix.Stat_t
	if err := unix.Lstat(p, &st1); err != nil {
		t.Fatal(err)
	}
	s := openStat(t, filepath.Join(dir, "stat"), dir)
	// The file was just made: pretend the read happened later, past the
	// racy window, so that it is recorded.
	s.Record(p, &st1, time.Now().Add(time.Hour), sumOf("version 1"))
	mustSave(t, s)

	// Rewrite until ctime differs: two changes within one clock tick share
	// a ctime (the very race Record guards against).
	var st2 unix.Stat_t
	for i := 0; ; i++ {
		if err := os.WriteFile(p, []byte("version 2"), 0o644); err != nil {
			t.Fatal(err)
		}
		if err := os.Chtimes(p, mtime, mtime); err != nil {
			t.Fatal(err)
		}
		if err := unix.Lstat(p, &st2); err != nil {
			t.Fatal(err)
		}
		if st2.Ctim != st1.Ctim {
			break
		}
		if i == 1000 {
			t.Fatal("ctime never moved")
		}
		time.Sleep(time.Millisecond)
	}
	if st2.Mtim != st1.Mtim || st2.Size != st1.Size || st2.Ino != st1.Ino {
		t.Fatalf("test setup: mtime/size/inode changed: %+v vs %+v", st1, st2)
	}
	s2 := openStat(t, filepath.Join(dir, "stat"), dir)
	if _, ok := s2.Lookup(p, &st1); !ok {
		t.Fatal("the old stat should still hit")
	}
	if _, ok := s2.Lookup(p, &st2); ok {
		t.Error("content rewritten with mtime restored: stale digest used")
	}
}

func TestStatCacheIgnoresCorruptFiles(t *testing.T) {
	dir := t.TempDir()
	s := openStat(t, dir, "/ctx")
	for i := range 20 {
		s.Record(fmt.Sprintf("/ctx/f%d", i), fakeStat(uint64(i)), time.Now(), sumOf("x"))
	}
	mustSave(t, s)
	file := statFile(t, dir)
	good, err := os.ReadFile(file)
	if err != nil {
		t.Fatal(err)
	}
	flip := func(i int) []byte {
		b := bytes.Clone(good)
		b[i] ^= 0x40
		return b
	}
	otherDir := t.TempDir()
	o := openStat(t, otherDir, "/elsewhere")
	o.Record("/ctx/f0", fakeStat(0), time.Now(), sumOf("x"))
	mustSave(t, o)
	foreign, err := os.ReadFile(statFile(t, otherDir))
	if err != nil {
		t.Fatal(err)
	}
	tests := []struct {
		name string
		data []byte
	}{
		{"empty", nil},
		{"magic only", []byte(statMagic)},
		{"torn in the middle", good[:len(good)/2]},
		{"torn by one byte", good[:len(good)-1]},
		{"one more byte", append(bytes.Clone(good), 0)},
		{"flipped header byte", flip(10)},
		{"flipped entry byte", flip(len(good) / 2)},
		{"flipped checksum byte", flip(len(good) - 1)},
		{"garbage", bytes.Repeat([]byte{0xff}, 4096)},
		{"another scope's file", foreign},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if err := os.WriteFile(file, tt.data, 0o600); err != nil {
				t.Fatal(err)
			}
			s := openStat(t, dir, "/ctx")
			if s.Len() != 0 {
				t.Fatalf("%d entries trusted from a bad file", s.Len())
			}
			if _, ok := s.Lookup("/ctx/f0", fakeStat(0)); ok {
				t.Fatal("hit from a bad file")
			}
			// The next Save replaces it with a good file.
			s.Record("/ctx/new", fakeStat(99), time.Now(), sumOf("n"))
			mustSave(t, s)
			if n := openStat(t, dir, "/ctx").Len(); n != 1 {
				t.Fatalf("after Save: %d entries, want 1", n)
			}
		})
	}
	// A directory where the file should be: still an empty cache.
	if err := os.Remove(file); err != nil {
		t.Fatal(err)
	}
	if err := os.Mkdir(file, 0o700); err != nil {
		t.Fatal(err)
	}
	if s := openStat(t, dir, "/ctx"); s.Len() != 0 {
		t.Error("a directory loaded as a cache")
	} else if err := s.Save(); err != nil {
		t.Errorf("Save without changes: %v", err)
	}
}

func TestStatCacheDecodeRejectsMalformedBodies(t *testing.T) {
	// Valid checksums over bad bodies: the parser must not trust them.
	e := []statEntry{{path: "/a/b", key: keyOf(fakeStat(1))}, {path: "/a/c", key: keyOf(fakeStat(2))}}
	good := encodeStat("/s", 1, e)
	body := good[:len(good)-sha256.Size]
	reseal := func(b []byte) []byte {
		s := sha256.Sum256(b)
		return append(bytes.Clone(b), s[:]...)
	}
	hdr := len(statMagic) + 8
	withCount := func(n byte) []byte {
		b := bytes.Clone(body)
		b[hdr+7] = n
		return reseal(b)
	}
	tests := []struct {
		name string
		data []byte
	}{
		{"count too high", withCount(3)},
		{"count too low", withCount(1)},
		{"count huge", reseal(append(append([]byte(statMagic), 0, 0, 0, 0, 0, 0, 0, 1, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 2), "/s"...))},
		{"truncated entry", reseal(body[:len(body)-5])},
		{"shared prefix beyond previous path", func() []byte {
			b := bytes.Clone(body)
			i := hdr + 8 + 1 + len("/s")
			b[i] = 9 // the first path has nothing to share
			return reseal(b)
		}()},
	}
	if _, got, err := decodeStat(good, "/s"); err != nil || len(got) != 2 || got[1].path != "/a/c" {
		t.Fatalf("good file: %v %+v", err, got)
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if _, _, err := decodeStat(tt.data, "/s"); err == nil {
				t.Error("accepted")
			}
		})
	}
}

func TestStatCacheDropsUnusedEntries(t *testing.T) {
	dir := t.TempDir()
	s := openStat(t, dir, "/ctx")
	s.Record("/ctx/gone", fakeStat(1), time.Now(), sumOf("g"))
	s.Record("/ctx/used", fakeStat(2), time.Now(), sumOf("u"))
	mustSave(t, s)
	// Each later "process" hits /ctx/used and records something new, so
	// it writes; /ctx/gone is never asked for again.
	for i := range statKeepSaves + 1 {
		s := openStat(t, dir, "/ctx")
		if _, ok := s.index["/ctx/gone"]; !ok { // a peek: Lookup would keep it alive
			t.Fatalf("before save %d: unused entry dropped too early", i)
		}
		if _, ok := s.Lookup("/ctx/used", fakeStat(2)); !ok {
			t.Fatalf("before save %d: used entry missing", i)
		}
		s.Record(fmt.Sprintf("/ctx/new%d", i), fakeStat(uint64(10+i)), time.Now(), sumOf("n"))
		mustSave(t, s)
	}
	s = openStat(t, dir, "/ctx")
	if _, ok := s.index["/ctx/gone"]; ok {
		t.Errorf("entry unused for %d saves survived", statKeepSaves+1)
	}
	if _, ok := s.index["/ctx/new0"]; !ok {
		t.Errorf("entry unused for %d saves dropped", statKeepSaves)
	}
	if _, ok := s.Lookup("/ctx/used", fakeStat(2)); !ok {
		t.Error("used entry dropped")
	}
}

func TestStatCacheConcurrentUse(t *testing.T) {
	s := openStat(t, t.TempDir(), "/ctx")
	const workers, paths = 8, 200
	var wg sync.WaitGroup
	for w := range workers {
		wg.Go(func() {
			for i := range paths {
				p := fmt.Sprintf("/ctx/f%d", i)
				if _, ok := s.Lookup(p, fakeStat(uint64(i))); !ok {
					s.Record(p, fakeStat(uint64(i)), time.Now(), sumOf(p))
				}
				if i%50 == w {
					if err := s.Save(); err != nil {
						t.Error(err)
					}
				}
			}
		})
	}
	wg.Wait()
	for i := range paths {
		p := fmt.Sprintf("/ctx/f%d", i)
		if got, ok := s.Lookup(p, fakeStat(uint64(i))); !ok || !bytes.Equal(got, sumOf(p)) {
			t.Fatalf("%s: %x %v", p, got, ok)
		}
	}
}

// Two processes sharing a scope: the second Save merges the first's
// entries, and however the Saves interleave the file stays valid.
func TestStatCacheProcessesShareAScope(t *testing.T) {
	dir := t.TempDir()
	a := openStat(t, dir, "/ctx")
	b := openStat(t, dir, "/ctx")
	a.Record("/ctx/a", fakeStat(1), time.Now(), sumOf("a"))
	b.Record("/ctx/b", fakeStat(2), time.Now(), sumOf("b"))
	mustSave(t, a)
	mustSave(t, b)
	c := openStat(t, dir, "/ctx")
	for _, p := range []struct {
		path string
		ino  uint64
	}{{"/ctx/a", 1}, {"/ctx/b", 2}} {
		if _, ok := c.Lookup(p.path, fakeStat(p.ino)); !ok {
			t.Errorf("%s lost", p.path)
		}
	}

	var wg sync.WaitGroup
	for w := range 6 {
		wg.Go(func() {
			for i := range 5 {
				s, err := OpenStatCache(dir, "/ctx")
				if err != nil {
					t.Error(err)
					return
				}
				s.Record(fmt.Sprintf("/ctx/w%d-%d", w, i), fakeStat(uint64(100*w+i)), time.Now(), sumOf("w"))
				if err := s.Save(); err != nil {
					t.Error(err)
				}
			}
		})
	}
	wg.Wait()
	data, err := os.ReadFile(statFile(t, dir))
	if err != nil {
		t.Fatal(err)
	}
	if _, entries, err := decodeStat(data, "/ctx"); err != nil || len(entries) < 2 {
		t.Fatalf("after concurrent saves: %d entries, %v", len(entries), err)
	}
	if left, _ := filepath.Glob(filepath.Join(dir, ".tmp-*")); len(left) != 0 {
		t.Errorf("temp files left: %v", left)
	}
}

func TestOpenStatCacheRemovesOldTemps(t *testing.T) {
	dir := t.TempDir()
	oldTmp, newTmp := filepath.Join(dir, ".tmp-1"), filepath.Join(dir, ".tmp-2")
	for _, p := range []string{oldTmp, newTmp} {
		if err := os.WriteFile(p, []byte("x"), 0o600); err != nil {
			t.Fatal(err)
		}
	}
	long := time.Now().Add(-2 * statTempAge)
	if err := os.Chtimes(oldTmp, long, long); err != nil {
		t.Fatal(err)
	}
	openStat(t, dir, "/ctx")
	if _, err := os.Stat(oldTmp); !os.IsNotExist(err) {
		t.Error("old temp file kept")
	}
	if _, err := os.Stat(newTmp); err != nil {
		t.Error("recent temp file (maybe another process's Save) removed")
	}
}

func BenchmarkStatCacheLoad(b *testing.B) {
	dir := b.TempDir()
	const n = 20_000
	s := openStat(b, dir, "/home/user/src/project")
	for i := range n {
		p := fmt.Sprintf("/home/user/src/project/pkg%03d/sub%02d/file%05d.go", i/100, i%7, i)
		s.Record(p, fakeStat(uint64(i)), time.Now(), sumOf(p))
	}
	mustSave(b, s)
	for b.Loop() {
		s := openStat(b, dir, "/home/user/src/project")
		if s.Len() != n {
			b.Fatalf("loaded %d entries", s.Len())
		}
	}
	if fi, err := os.Stat(s.path); err == nil {
		b.ReportMetric(float64(fi.Size())/n, "filebytes/entry")
	}
}

func BenchmarkStatCacheSave(b *testing.B) {
	dir := b.TempDir()
	const n = 20_000
	s := openStat(b, dir, "/home/user/src/project")
	for i := range n {
		p := fmt.Sprintf("/home/user/src/project/pkg%03d/sub%02d/file%05d.go", i/100, i%7, i)
		s.Record(p, fakeStat(uint64(i)), time.Now(), sumOf(p))
	}
	mustSave(b, s)
	i := 0
	for b.Loop() {
		// One changed file makes the Save write all entries.
		s.Record("/home/user/src/project/changed", fakeStat(uint64(n+i)), time.Now(), sumOf("c"))
		i++
		mustSave(b, s)
	}
}
