package snapshot

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"slices"
	"strings"
	"syscall"
	"testing"
	"time"

	"golang.org/x/sys/unix"
)

// xorshift is a tiny deterministic generator for test file contents (the
// golden digests must not depend on a library's random stream).
type xorshift uint64

func (x *xorshift) next() uint64 {
	v := uint64(*x)
	v ^= v << 13
	v ^= v >> 7
	v ^= v << 17
	*x = xorshift(v)
	return v
}

func (x *xorshift) fill(b []byte) {
	for i := range b {
		if i%8 == 0 {
			x.next()
		}
		b[i] = byte(uint64(*x) >> (8 * (i % 8)))
	}
}

// treeBuilder makes a deterministic upper dir: fixed contents, modes,
// owners (as root) and times, so its diff has a stable digest.
type treeBuilder struct {
	t    testing.TB
	root string
	rnd  xorshift
	dirs []string // every dir made, for setting times last
	n    int
}

func (b *treeBuilder) p(rel string) string { return filepath.Join(b.root, rel) }

// stamp sets rel's mtime to a time derived from a counter, with
// sub-second parts and a spread across the 2024 epoch used by the tests.
func (b *treeBuilder) stamp(rel string) {
	b.t.Helper()
	b.n++
	ts := time.Date(2023, 3, 1, 0, 0, 0, 0, time.UTC).Add(time.Duration(b.n) * 7 * 24 * time.Hour).Add(time.Duration(b.n*123457) % time.Second)
	tv := []unix.Timespec{unix.NsecToTimespec(ts.UnixNano()), unix.NsecToTimespec(ts.UnixNano())}
	must(b.t, unix.UtimesNanoAt(unix.AT_FDCWD, b.p(rel), tv, unix.AT_SYMLINK_NOFOLLOW))
}

func (b *treeBuilder) dir(rel string, mode uint32) {
	b.t.Helper()
	must(b.t, os.MkdirAll(b.p(rel), 0o755))
	must(b.t, os.Chmod(b.p(rel), os.FileMode(mode&0o777)))
	if mode&0o7000 != 0 {
		must(b.t, unix.Chmod(b.p(rel), mode))
	}
	// Every ancestor gets a fixed time too (MkdirAll may have made it).
	for d := rel; d != "."; d = filepath.Dir(d) {
		if !slices.Contains(b.dirs, d) {
			b.dirs = append(b.dirs, d)
		}
	}
}

func (b *treeBuilder) file(rel string, size int, mode uint32) {
	b.t.Helper()
	body := make([]byte, size)
	b.rnd.fill(body)
	must(b.t, os.WriteFile(b.p(rel), body, 0o600))
	must(b.t, unix.Chmod(b.p(rel), mode))
	b.stamp(rel)
}

func (b *treeBuilder) chown(rel string, uid, gid int) {
	b.t.Helper()
	if os.Geteuid() == 0 {
		must(b.t, os.Lchown(b.p(rel), uid, gid))
	}
}

func (b *treeBuilder) xattr(rel, name string, value []byte) {
	b.t.Helper()
	must(b.t, unix.Lsetxattr(b.p(rel), name, value, 0))
}

// finish sets directory times deepest first (children change them).
func (b *treeBuilder) finish() {
	b.t.Helper()
	for i := len(b.dirs) - 1; i >= 0; i-- {
		b.stamp(b.dirs[i])
	}
}

// buildDiffTree makes a tree covering what Diff handles: many small files
// of awkward sizes, files around and above the prefetch limit, a sparse
// file, empty files, hard links (small, large, empty), symlinks, both
// whiteout forms, opaque dirs, xattrs (many names, long values), unicode
// and long names, devices, a fifo, a socket, odd modes and owners, and
// mtimes on both sides of the test epoch. Root-only parts are left out
// when not root.
func buildDiffTree(t testing.TB, root string) {
	t.Helper()
	root0 := os.Geteuid() == 0
	b := &treeBuilder{t: t, root: root, rnd: 0x9e3779b97f4a7c15}
	for d := range 8 {
		b.dir(fmt.Sprintf("small/d%d", d), 0o755)
	}
	sizes := []int{0, 1, 100, 511, 512, 513, 1023, 1024, 4095, 4096, 4097, 12 << 10, 65536, 100000}
	for i := range 240 {
		size := sizes[i%len(sizes)] + i%3
		b.file(fmt.Sprintf("small/d%d/f%03d", i%8, i), size, 0o644)
	}
	b.dir("big", 0o750)
	b.file("big/at-limit", 1<<20, 0o644)
	b.file("big/limit+1", 1<<20+1, 0o644)
	b.file("big/huge.bin", 3<<20+123, 0o600)
	// Sparse: a hole, some data, a hole to the end.
	sp := b.p("big/sparse")
	f, err := os.Create(sp)
	must(t, err)
	_, err = f.WriteAt([]byte("data in the middle of a hole"), 4<<20)
	must(t, err)
	must(t, f.Truncate(6<<20))
	must(t, f.Close())
	b.stamp("big/sparse")

	b.dir("empty-dir", 0o700)
	b.file("empty-file", 0, 0o644)

	// Hard links, first names sorting before the others.
	b.dir("links", 0o755)
	b.file("links/a", 700, 0o640)
	must(t, os.Link(b.p("links/a"), b.p("links/b")))
	must(t, os.Link(b.p("links/a"), b.p("small/d0/zz-link-to-a")))
	must(t, os.Link(b.p("big/huge.bin"), b.p("links/huge-link")))
	must(t, os.Link(b.p("empty-file"), b.p("links/empty-link")))

	b.dir("sym", 0o755)
	for _, l := range [][2]string{
		{"sym/rel", "../links/a"}, {"sym/abs", "/etc/passwd"}, {"sym/dangling", "nowhere/at/all"},
		{"sym/long", strings.Repeat("long-target/", 20)}, {"sym/uni", "ünï/→/目标"},
	} {
		must(t, os.Symlink(l[1], b.p(l[0])))
		b.stamp(l[0])
	}

	// Whiteouts and opaque dirs.
	b.dir("wh/sub", 0o755)
	b.dir("wh", 0o755)
	b.file("wh/xgone", 0, 0o644)
	b.xattr("wh/xgone", "user.overlay.whiteout", nil)
	b.file("wh/not-a-whiteout", 3, 0o644) // has the xattr but is not empty
	b.xattr("wh/not-a-whiteout", "user.overlay.whiteout", nil)
	b.dir("uopq", 0o755)
	b.xattr("uopq", "user.overlay.opaque", []byte("y"))
	b.file("uopq/kept", 5, 0o644)
	b.dir("notopq", 0o755)
	b.xattr("notopq", "user.overlay.opaque", []byte("x"))
	if root0 {
		for _, w := range []string{"wh/gone", "wh/sub/gone2", "wh/zgone"} {
			must(t, unix.Mknod(b.p(w), unix.S_IFCHR, 0))
			b.stamp(w)
		}
		b.file("wh/twh", 0, 0o644)
		b.xattr("wh/twh", "trusted.overlay.whiteout", nil)
		b.dir("opq", 0o755)
		b.xattr("opq", "trusted.overlay.opaque", []byte("y"))
		b.file("opq/inside", 9, 0o644)
		must(t, unix.Mknod(b.p("dev-null"), unix.S_IFCHR|0o666, int(unix.Mkdev(1, 3))))
		b.stamp("dev-null")
		must(t, unix.Mknod(b.p("dev-loop"), unix.S_IFBLK|0o660, int(unix.Mkdev(7, 0))))
		b.stamp("dev-loop")
		b.xattr("sym/rel", "trusted.note", []byte("on a symlink"))
	}

	// Xattrs: a plain one, a binary value, a value longer than the first
	// read buffer, and enough long names to overflow the name buffer.
	b.dir("xa", 0o755)
	b.file("xa/plain", 10, 0o644)
	b.xattr("xa/plain", "user.note", []byte("hello"))
	b.xattr("xa/plain", "user.bin", []byte("a\x00b\xffc"))
	b.file("xa/long-value", 10, 0o644)
	b.xattr("xa/long-value", "user.big", bytes.Repeat([]byte("v"), 1500))
	b.file("xa/many-names", 10, 0o644)
	for i := range 7 {
		b.xattr("xa/many-names", fmt.Sprintf("user.%03d.%s", i, strings.Repeat("n", 180)), []byte{byte('0' + i)})
	}
	b.xattr("xa", "user.on-dir", []byte("d"))

	b.dir("unicode", 0o755)
	for _, n := range []string{"héllo wörld ✓", "日本語.txt", "emoji-🙂", "Zed", "a b", "-dash", ".hidden", "new\nline"} {
		b.file("unicode/"+n, len(n), 0o644)
	}
	long := strings.Repeat("x", 150)
	b.dir("deep/"+long+"/"+long, 0o755)
	b.dir("deep/"+long, 0o755)
	b.dir("deep", 0o755)
	b.file("deep/"+long+"/"+long+"/file-"+long, 33, 0o644)

	b.dir("modes", 0o755)
	b.file("modes/suid", 4, 0o4755)
	b.file("modes/none", 4, 0)
	b.dir("modes/sticky", 0o1777)
	b.dir("modes/sgid", 0o2775)
	b.chown("modes/suid", 1000, 1000)
	b.chown("modes/none", 3000000, 65534) // too big for octal: PAX uid
	b.chown("modes/sgid", 0, 50)

	must(t, unix.Mkfifo(b.p("fifo"), 0o640))
	b.stamp("fifo")
	if fd, err := unix.Socket(unix.AF_UNIX, unix.SOCK_STREAM, 0); err == nil {
		if unix.Bind(fd, &unix.SockaddrUnix{Name: b.p("sock")}) == nil {
			b.stamp("sock")
		}
		unix.Close(fd)
	}

	// Times before 1970 and far after the epoch.
	b.file("old", 3, 0o644)
	must(t, os.Chtimes(b.p("old"), time.Unix(-86400*365, 0), time.Unix(-86400*365, 0)))
	b.file("future", 3, 0o644)
	must(t, os.Chtimes(b.p("future"), time.Date(2100, 1, 1, 0, 0, 0, 0, time.UTC), time.Date(2100, 1, 1, 0, 0, 0, 0, time.UTC)))
	b.finish()
}

func testEpoch() *time.Time {
	e := time.Date(2024, 6, 1, 12, 0, 0, 0, time.UTC)
	return &e
}

// stressLimits are pipeline limits far from the defaults, so that every
// path (tiny batches, one slot ahead, the writer reading every body, no
// files kept open, directories named by path, small prefetch limit, many
// workers) meets every kind of entry.
func stressLimits() map[string]limits {
	return map[string]limits{
		"default":          defaultLimits(),
		"writer reads all": {prefetchMax: 4096, batchEntries: 1, batchesAhead: 1, workers: 0, maxDirFDs: 1, maxOpenFiles: 0},
		"tight":            {prefetchMax: 1 << 20, batchEntries: 3, batchesAhead: 1, workers: 1, maxDirFDs: 2, maxOpenFiles: 2},
		"wide":             {prefetchMax: 1 << 20, batchEntries: 1000, batchesAhead: 40, workers: 4, maxDirFDs: 1000, maxOpenFiles: 100000},
	}
}

// diffBoth runs Diff (with lim) and the oracle over upper and fails unless
// both give the same bytes, emptiness and error text.
func diffBoth(t *testing.T, upper string, opts DiffOptions, lim limits) []byte {
	t.Helper()
	var got, want bytes.Buffer
	gotEmpty, gotErr := diffWith(context.Background(), upper, &got, opts, lim)
	wantEmpty, wantErr := oracleDiff(context.Background(), upper, &want, opts)
	if fmt.Sprint(gotErr) != fmt.Sprint(wantErr) {
		t.Fatalf("Diff error %v, oracle %v", gotErr, wantErr)
	}
	if gotEmpty != wantEmpty {
		t.Errorf("Diff empty=%v, oracle %v", gotEmpty, wantEmpty)
	}
	if !bytes.Equal(got.Bytes(), want.Bytes()) {
		t.Fatalf("Diff output differs from the oracle at byte %d (%d vs %d bytes)",
			firstDiff(got.Bytes(), want.Bytes()), got.Len(), want.Len())
	}
	return got.Bytes()
}

func firstDiff(a, b []byte) int {
	for i := range min(len(a), len(b)) {
		if a[i] != b[i] {
			return i
		}
	}
	return min(len(a), len(b))
}

// openFDs counts this process's open file descriptors.
func openFDs(t testing.TB) int {
	t.Helper()
	ents, err := os.ReadDir("/proc/self/fd")
	if err != nil {
		t.Fatal(err)
	}
	return len(ents)
}

func TestDiffMatchesOracle(t *testing.T) {
	upper := t.TempDir()
	buildDiffTree(t, upper)
	fds := openFDs(t)
	for limName, lim := range stressLimits() {
		for _, tc := range []struct {
			name string
			opts DiffOptions
		}{
			{"no epoch", DiffOptions{}},
			{"epoch", DiffOptions{Epoch: testEpoch()}},
			{"epoch before everything", DiffOptions{Epoch: &time.Time{}}},
		} {
			t.Run(limName+"/"+tc.name, func(t *testing.T) {
				out := diffBoth(t, upper, tc.opts, lim)
				if n := len(hdrs(t, out)); n < 300 {
					t.Errorf("only %d entries", n)
				}
			})
		}
	}
	if n := openFDs(t); n != fds {
		t.Errorf("%d open files before, %d after", fds, n)
	}
}

// TestDiffGolden pins the digests of the generated tree's layer, computed
// with the sequential implementation before Diff was pipelined: recorded
// diffIDs depend on these bytes.
func TestDiffGolden(t *testing.T) {
	needRoot(t)
	upper := t.TempDir()
	buildDiffTree(t, upper)
	for _, tc := range []struct {
		name string
		opts DiffOptions
		want string
	}{
		{"no epoch", DiffOptions{}, "70890ac054960d6ce8e9aec67017438da0c1ebb64b323786273f7b2e5525b17d"},
		{"epoch", DiffOptions{Epoch: testEpoch()}, "18410160c8da7706770681bb14a26c03208e5874c018f3b04f49311685839e95"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			h := sha256.New()
			if _, err := Diff(context.Background(), upper, h, tc.opts); err != nil {
				t.Fatal(err)
			}
			if got := hex.EncodeToString(h.Sum(nil)); got != tc.want {
				t.Errorf("digest %s, want %s", got, tc.want)
			}
		})
	}
}

// mkdirDeep makes depth nested dirs named name under root, relative to
// open directories (paths may outgrow PATH_MAX), and a file in the last.
func mkdirDeep(t *testing.T, root, name string, depth int) {
	t.Helper()
	fd, err := unix.Open(root, unix.O_RDONLY|unix.O_DIRECTORY|unix.O_CLOEXEC, 0)
	must(t, err)
	for range depth {
		must(t, unix.Mkdirat(fd, name, 0o755))
		sub, err := unix.Openat(fd, name, unix.O_RDONLY|unix.O_DIRECTORY|unix.O_CLOEXEC, 0)
		unix.Close(fd)
		must(t, err)
		fd = sub
	}
	f, err := unix.Openat(fd, "leaf", unix.O_CREAT|unix.O_WRONLY|unix.O_CLOEXEC, 0o644)
	must(t, err)
	unix.Write(f, []byte("leaf"))
	unix.Close(f)
	unix.Close(fd)
}

// TestDiffMatchesOracleSmallTrees covers trees with nothing to prefetch,
// only big files, only non-regular entries, more entries or bytes than
// fit in flight, depth beyond the kept directories and beyond PATH_MAX.
func TestDiffMatchesOracleSmallTrees(t *testing.T) {
	for _, tc := range []struct {
		name  string
		build func(t *testing.T, root string)
	}{
		{"empty", func(t *testing.T, root string) {}},
		{"one empty file", func(t *testing.T, root string) { mustWrite(t, filepath.Join(root, "e"), "") }},
		{"only dirs", func(t *testing.T, root string) { must(t, os.MkdirAll(filepath.Join(root, "a/b/c"), 0o755)) }},
		{"only big", func(t *testing.T, root string) {
			mustWrite(t, filepath.Join(root, "b1"), strings.Repeat("b", 2<<20+3))
			mustWrite(t, filepath.Join(root, "b2"), strings.Repeat("c", 1<<20+1))
		}},
		{"symlinks", func(t *testing.T, root string) {
			must(t, os.Symlink("x", filepath.Join(root, "l1")))
			must(t, os.Symlink("/y", filepath.Join(root, "l2")))
			must(t, os.Symlink(strings.Repeat("t", 300), filepath.Join(root, "l3")))
		}},
		{"more small files than in flight", func(t *testing.T, root string) {
			for i := range 1500 {
				mustWrite(t, filepath.Join(root, fmt.Sprintf("f%04d", i)), strings.Repeat("s", i%700))
			}
		}},
		{"small files filling the byte budget", func(t *testing.T, root string) {
			for i := range 40 {
				mustWrite(t, filepath.Join(root, fmt.Sprintf("m%02d", i)), strings.Repeat("m", 1<<20-i))
			}
		}},
		{"deeper than the kept dirs", func(t *testing.T, root string) { mkdirDeep(t, root, "d", 50) }},
		{"deeper than PATH_MAX", func(t *testing.T, root string) { mkdirDeep(t, root, strings.Repeat("p", 200), 25) }},
	} {
		t.Run(tc.name, func(t *testing.T) {
			root := t.TempDir()
			tc.build(t, root)
			for limName, lim := range stressLimits() {
				t.Run(limName, func(t *testing.T) { diffBoth(t, root, DiffOptions{}, lim) })
			}
		})
	}
}

// failWriter accepts limit bytes, then fails (with a short write).
type failWriter struct {
	buf   bytes.Buffer
	limit int
}

var errDiskFull = errors.New("disk full")

func (w *failWriter) Write(p []byte) (int, error) {
	if room := w.limit - w.buf.Len(); len(p) > room {
		w.buf.Write(p[:room])
		return room, errDiskFull
	}
	return w.buf.Write(p)
}

// TestDiffWriteErrorsMatchOracle fails the writer at many offsets (inside
// headers, PAX records, bodies, padding, the footer) and checks Diff
// reports the same error for the same entry and wrote the same bytes.
func TestDiffWriteErrorsMatchOracle(t *testing.T) {
	upper := t.TempDir()
	for i := range 20 {
		mustWrite(t, filepath.Join(upper, fmt.Sprintf("d/f%02d", i)), strings.Repeat("q", 300*i))
	}
	mustWrite(t, filepath.Join(upper, "d/"+strings.Repeat("long", 40)), "pax name")
	mustWrite(t, filepath.Join(upper, "e/big"), strings.Repeat("B", 1<<20+5))
	mustWrite(t, filepath.Join(upper, "e/tail"), "t")
	must(t, os.Mkdir(filepath.Join(upper, "op"), 0o755))
	must(t, unix.Setxattr(filepath.Join(upper, "op"), "user.overlay.opaque", []byte("y"), 0))
	var full bytes.Buffer
	if _, err := oracleDiff(context.Background(), upper, &full, DiffOptions{}); err != nil {
		t.Fatal(err)
	}
	var offsets []int
	for off := 0; off < full.Len(); off += 512 {
		if off > 80<<10 && off < full.Len()-4<<10 && off%(256<<10) != 0 {
			continue // sample the big file sparsely
		}
		offsets = append(offsets, off, off+1, off+511)
	}
	offsets = append(offsets, full.Len()-1, full.Len())
	fds := openFDs(t)
	for limName, lim := range map[string]limits{"default": defaultLimits(), "tight": stressLimits()["tight"]} {
		for _, limit := range offsets {
			got, want := &failWriter{limit: limit}, &failWriter{limit: limit}
			_, gotErr := diffWith(context.Background(), upper, got, DiffOptions{}, lim)
			_, wantErr := oracleDiff(context.Background(), upper, want, DiffOptions{})
			if fmt.Sprint(gotErr) != fmt.Sprint(wantErr) || (gotErr == nil) != (limit >= full.Len()) {
				t.Errorf("%s, limit %d: Diff error %v, oracle %v", limName, limit, gotErr, wantErr)
			}
			if wantErr != nil && !errors.Is(gotErr, errDiskFull) {
				t.Errorf("%s, limit %d: %v does not wrap the writer's error", limName, limit, gotErr)
			}
			if !bytes.Equal(got.buf.Bytes(), want.buf.Bytes()) {
				t.Errorf("%s, limit %d: wrote %d bytes, oracle %d", limName, limit, got.buf.Len(), want.buf.Len())
			}
		}
	}
	if n := openFDs(t); n != fds {
		t.Errorf("%d open files before, %d after", fds, n)
	}
}

// asNobodyEnv makes TestDiffEntryErrorsMatchOracle run its permission
// cases in a child test process that runs as nobody.
const asNobodyEnv = "STRATA_DIFF_TEST_AS_NOBODY"

// TestDiffEntryErrorsMatchOracle: errors met while walking surface for
// the same entry, with the same text, after the same bytes.
func TestDiffEntryErrorsMatchOracle(t *testing.T) {
	for _, tc := range []struct {
		name     string
		perms    bool // needs permissions to apply (not root)
		build    func(t *testing.T, root string)
		contains string
	}{
		{"missing upper", false, func(t *testing.T, root string) { must(t, os.Remove(root)) }, "lstat"},
		{"upper is a file", false, func(t *testing.T, root string) {
			must(t, os.Remove(root))
			mustWrite(t, root, "x")
		}, ""},
		{"upper is a symlink to a dir", false, func(t *testing.T, root string) {
			mustWrite(t, root+"-target/f", "f")
			must(t, os.Remove(root))
			must(t, os.Symlink(root+"-target", root))
		}, ""},
		{"unreadable file", true, func(t *testing.T, root string) {
			mustWrite(t, filepath.Join(root, "a"), "aaa")
			mustWrite(t, filepath.Join(root, "b"), "secret")
			must(t, os.Chmod(filepath.Join(root, "b"), 0))
			mustWrite(t, filepath.Join(root, "c"), "ccc")
		}, "opening b: open"},
		{"unreadable empty file", true, func(t *testing.T, root string) {
			mustWrite(t, filepath.Join(root, "b"), "")
			must(t, os.Chmod(filepath.Join(root, "b"), 0))
		}, "opening b: open"},
		{"unreadable big file", true, func(t *testing.T, root string) {
			mustWrite(t, filepath.Join(root, "b"), strings.Repeat("z", 3<<20))
			must(t, os.Chmod(filepath.Join(root, "b"), 0))
		}, "opening b: open"},
		{"unreadable whiteout file", true, func(t *testing.T, root string) {
			mustWrite(t, filepath.Join(root, "w"), "")
			must(t, unix.Setxattr(filepath.Join(root, "w"), "user.overlay.whiteout", nil, 0))
			must(t, os.Chmod(filepath.Join(root, "w"), 0))
			mustWrite(t, filepath.Join(root, "x"), "x")
		}, ""},
		{"unreadable dir", true, func(t *testing.T, root string) {
			mustWrite(t, filepath.Join(root, "a/x"), "x")
			mustWrite(t, filepath.Join(root, "b/y"), "y")
			must(t, os.Chmod(filepath.Join(root, "a"), 0))
		}, "open "},
		{"unsearchable dir", true, func(t *testing.T, root string) {
			mustWrite(t, filepath.Join(root, "a/x"), "x")
			must(t, os.Chmod(filepath.Join(root, "a"), 0o444))
		}, "stat a/x: permission denied"},
		{"unreadable upper", true, func(t *testing.T, root string) {
			mustWrite(t, filepath.Join(root, "x"), "x")
			must(t, os.Chmod(root, 0o311))
		}, "open "},
	} {
		t.Run(tc.name, func(t *testing.T) {
			if tc.perms && os.Geteuid() == 0 {
				t.Skip("root reads everything; TestDiffEntryErrorsAsNobody runs this as nobody")
			}
			if !tc.perms && os.Getenv(asNobodyEnv) != "" {
				t.Skip("run by root already")
			}
			root := filepath.Join(t.TempDir(), "upper")
			must(t, os.Mkdir(root, 0o755))
			tc.build(t, root)
			t.Cleanup(func() {
				filepath.Walk(filepath.Dir(root), func(p string, _ os.FileInfo, _ error) error {
					os.Chmod(p, 0o755)
					return nil
				})
			})
			for limName, lim := range stressLimits() {
				var got, want bytes.Buffer
				_, gotErr := diffWith(context.Background(), root, &got, DiffOptions{}, lim)
				_, wantErr := oracleDiff(context.Background(), root, &want, DiffOptions{})
				if fmt.Sprint(gotErr) != fmt.Sprint(wantErr) {
					t.Errorf("%s: Diff error %v, oracle %v", limName, gotErr, wantErr)
				}
				if gotErr != nil && !strings.Contains(gotErr.Error(), tc.contains) {
					t.Errorf("%s: error %q lacks %q", limName, gotErr, tc.contains)
				}
				if !bytes.Equal(got.Bytes(), want.Bytes()) {
					t.Errorf("%s: wrote %d bytes, oracle %d", limName, got.Len(), want.Len())
				}
			}
		})
	}
}

// TestDiffEntryErrorsAsNobody runs the permission cases of
// TestDiffEntryErrorsMatchOracle (which root cannot provoke) in a copy of
// the test binary running as nobody.
func TestDiffEntryErrorsAsNobody(t *testing.T) {
	needRoot(t)
	if os.Getenv(asNobodyEnv) != "" {
		t.Skip("already the child")
	}
	self, err := os.Executable()
	must(t, err)
	// The build dir is private to root: copy the binary where nobody can
	// run it.
	dir := t.TempDir()
	must(t, os.Chmod(dir, 0o755))
	must(t, os.Chmod(filepath.Dir(dir), 0o755))
	bin := filepath.Join(dir, "snapshot.test")
	data, err := os.ReadFile(self)
	must(t, err)
	must(t, os.WriteFile(bin, data, 0o755))
	cmd := exec.Command(bin, "-test.run=^TestDiffEntryErrorsMatchOracle$", "-test.v", "-test.count=1")
	cmd.Env = append(os.Environ(), asNobodyEnv+"=1", "TMPDIR="+os.TempDir())
	cmd.Dir = dir
	cmd.SysProcAttr = &syscall.SysProcAttr{Credential: &syscall.Credential{Uid: 65534, Gid: 65534}}
	out, err := cmd.CombinedOutput()
	if err != nil {
		t.Fatalf("child as nobody: %v\n%s", err, out)
	}
	for _, name := range []string{"unreadable_file", "unreadable_empty_file", "unreadable_big_file", "unreadable_whiteout_file", "unreadable_dir", "unsearchable_dir", "unreadable_upper"} {
		if !bytes.Contains(out, []byte("--- PASS: TestDiffEntryErrorsMatchOracle/"+name+" ")) {
			t.Errorf("child did not pass %s:\n%s", name, out)
		}
	}
}

// TestDiffCancelledBeforeStart: with ctx cancelled from the start, Diff
// reports what the sequential walk did: the root's lstat error when there
// is no root, else ctx's error, and writes nothing.
func TestDiffCancelledBeforeStart(t *testing.T) {
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	dir := t.TempDir()
	mustWrite(t, filepath.Join(dir, "tree/f"), "f")
	mustWrite(t, filepath.Join(dir, "file"), "f")
	for _, root := range []string{"missing", "tree", "file"} {
		t.Run(root, func(t *testing.T) {
			for range 20 { // the order of events must not matter
				var got, want bytes.Buffer
				_, gotErr := Diff(ctx, filepath.Join(dir, root), &got, DiffOptions{})
				_, wantErr := oracleDiff(ctx, filepath.Join(dir, root), &want, DiffOptions{})
				if fmt.Sprint(gotErr) != fmt.Sprint(wantErr) || wantErr == nil {
					t.Fatalf("Diff error %v, oracle %v", gotErr, wantErr)
				}
				if got.Len() != 0 || want.Len() != 0 {
					t.Fatalf("wrote %d bytes, oracle %d", got.Len(), want.Len())
				}
			}
		})
	}
}

// cancelWriter cancels its context once it has taken after bytes.
type cancelWriter struct {
	n, after int
	cancel   context.CancelFunc
}

func (w *cancelWriter) Write(p []byte) (int, error) {
	w.n += len(p)
	if w.n >= w.after {
		w.cancel()
	}
	return len(p), nil
}

// diffGoroutines counts goroutines running Diff's pipeline.
func diffGoroutines() int {
	buf := make([]byte, 1<<20)
	buf = buf[:runtime.Stack(buf, true)]
	n := 0
	for _, g := range bytes.Split(buf, []byte("\n\n")) {
		if bytes.Contains(g, []byte("snapshot.(*differ)")) {
			n++
		}
	}
	return n
}

// TestDiffCancelMidway cancels while Diff is in the middle of small files
// and of a big one: it stops soon after (far from the end of the tar),
// returns ctx's error and leaves no goroutine or open file behind.
func TestDiffCancelMidway(t *testing.T) {
	upper := t.TempDir()
	for i := range 600 {
		mustWrite(t, filepath.Join(upper, fmt.Sprintf("a/f%03d", i)), strings.Repeat("s", 4000))
	}
	mustWrite(t, filepath.Join(upper, "b/big"), strings.Repeat("B", 24<<20))
	for i := range 600 {
		mustWrite(t, filepath.Join(upper, fmt.Sprintf("c/f%03d", i)), strings.Repeat("s", 4000))
	}
	full := &cancelWriter{after: 1 << 62, cancel: func() {}}
	if _, err := Diff(context.Background(), upper, full, DiffOptions{}); err != nil {
		t.Fatal(err)
	}
	fds := openFDs(t)
	for limName, lim := range stressLimits() {
		for _, after := range []int{1, 100 << 10, 3 << 20, 10 << 20, full.n - 10000} {
			t.Run(fmt.Sprint(limName, "/", after), func(t *testing.T) {
				ctx, cancel := context.WithCancel(context.Background())
				defer cancel()
				w := &cancelWriter{after: after, cancel: cancel}
				_, err := diffWith(ctx, upper, w, DiffOptions{}, lim)
				if !errors.Is(err, context.Canceled) || !strings.HasPrefix(err.Error(), "diffing ") {
					t.Fatalf("Diff = %v, want a wrapped context.Canceled", err)
				}
				// Nothing is written after the entry (or the 1 MiB chunk of a
				// big file) during which ctx was cancelled.
				if w.n > after+(1<<20)+(64<<10) || w.n >= full.n {
					t.Errorf("wrote %d bytes after cancelling at %d (whole tar %d)", w.n, after, full.n)
				}
				for i := 0; diffGoroutines() > 0; i++ {
					if i == 1000 {
						t.Fatalf("%d Diff goroutines still running", diffGoroutines())
					}
					time.Sleep(time.Millisecond)
				}
				if n := openFDs(t); n != fds {
					t.Errorf("%d open files before, %d after", fds, n)
				}
			})
		}
	}
}

// BenchmarkDiffSHA256 is the builder's case: a layer's diffID, the tar
// hashed as it is made. Sub-benchmarks: Diff, the sequential version it
// replaced, and hashing the same tar from memory (the floor).
func BenchmarkDiffSHA256(b *testing.B) {
	upper := b.TempDir()
	body := bytes.Repeat([]byte("0123456789abcdef"), 12<<10/16)
	for i := range 5000 {
		p := filepath.Join(upper, fmt.Sprintf("d%02d/f%04d", i%50, i))
		if i < 50 {
			must(b, os.Mkdir(filepath.Dir(p), 0o755))
		}
		body[i%len(body)]++ // distinct contents
		must(b, os.WriteFile(p, body, 0o644))
	}
	big := bytes.Repeat([]byte("big file content"), 20<<20/16)
	for i := range 2 {
		big[i]++
		must(b, os.WriteFile(filepath.Join(upper, fmt.Sprintf("d%02d/big", i*25)), big, 0o644))
	}
	unix.Sync() // no writeback competing with the measurement
	ctx := context.Background()
	for _, impl := range []struct {
		name string
		diff func(context.Context, string, io.Writer, DiffOptions) (bool, error)
	}{{"Diff", Diff}, {"sequential", oracleDiff}} {
		b.Run(impl.name, func(b *testing.B) {
			h := sha256.New()
			cw := &cancelWriter{after: 1 << 62, cancel: func() {}}
			if _, err := impl.diff(ctx, upper, io.MultiWriter(h, cw), DiffOptions{}); err != nil {
				b.Fatal(err)
			}
			b.SetBytes(int64(cw.n))
			for b.Loop() {
				h.Reset()
				if _, err := impl.diff(ctx, upper, h, DiffOptions{}); err != nil {
					b.Fatal(err)
				}
			}
		})
	}
	// The floor: hashing the same tar from memory.
	b.Run("hash-only", func(b *testing.B) {
		var tarball bytes.Buffer
		if _, err := Diff(ctx, upper, &tarball, DiffOptions{}); err != nil {
			b.Fatal(err)
		}
		b.SetBytes(int64(tarball.Len()))
		h := sha256.New()
		for b.Loop() {
			h.Reset()
			h.Write(tarball.Bytes())
		}
	})
}
