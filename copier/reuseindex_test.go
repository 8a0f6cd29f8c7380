package copier

import (
	"bytes"
	"context"
	"encoding/binary"
	"fmt"
	"hash/crc32"
	"maps"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"syscall"
	"testing"
	"time"
)

// srcMtime is the mtime test sources get: old, so only the ctime (the
// file was just made) keeps them from being settled.
var srcMtime = time.Date(2020, 1, 2, 3, 4, 5, 600, time.UTC)

// later is a copy start far enough after the sources were made for them
// to count as settled, without waiting out settleTime.
func later() time.Time { return time.Now().Add(10 * time.Second) }

// writeSrc writes files under root with mode 0644 and mtime srcMtime.
func writeSrc(t testing.TB, root string, files map[string]string) {
	t.Helper()
	for name, data := range files {
		p := filepath.Join(root, name)
		if err := os.MkdirAll(filepath.Dir(p), 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(p, []byte(data), 0o644); err != nil {
			t.Fatal(err)
		}
		if err := os.Chtimes(p, srcMtime, srcMtime); err != nil {
			t.Fatal(err)
		}
	}
}

func lstatT(t testing.TB, p string) *syscall.Stat_t {
	t.Helper()
	var st syscall.Stat_t
	if err := syscall.Lstat(p, &st); err != nil {
		t.Fatal(err)
	}
	return &st
}

// changeCtime runs change on p until p's ctime differs from before: two
// changes within one clock tick share a ctime.
func changeCtime(t *testing.T, p string, change func()) {
	t.Helper()
	before := lstatT(t, p).Ctim
	for range 200 {
		change()
		if st := lstatT(t, p); st.Ctim != before {
			return
		}
		time.Sleep(5 * time.Millisecond)
	}
	t.Fatalf("ctime of %s never changed", p)
}

// readIndex decodes the index file at p, failing the test if it is not one.
func readIndex(t *testing.T, p string) map[string]fileID {
	t.Helper()
	b, err := os.ReadFile(p)
	if err != nil {
		t.Fatal(err)
	}
	m, ok := decodeIndex(b)
	if !ok {
		t.Fatalf("%s is not a valid index", p)
	}
	return m
}

func sameInode(t *testing.T, a, b string) bool {
	t.Helper()
	return lstatT(t, a).Ino == lstatT(t, b).Ino
}

// firstCopy copies src's contents to /app of a new root, writing an index.
func firstCopy(t *testing.T, src string, req Request) (root, index string) {
	t.Helper()
	root, index = t.TempDir(), filepath.Join(t.TempDir(), "index")
	req.SrcRoot, req.DestRoot, req.IndexOut = src, root, index
	if req.Sources == nil {
		req.Sources, req.Dest, req.FromContext = []string{"."}, "/app", true
	}
	if _, err := copyAt(context.Background(), req, later()); err != nil {
		t.Fatalf("first copy: %v", err)
	}
	return root, index
}

// rebuild copies src again reusing prev and its index.
func rebuild(t *testing.T, src, prev, index string, req Request) (root, newIndex string, st copyStats) {
	t.Helper()
	root, newIndex = t.TempDir(), filepath.Join(t.TempDir(), "index")
	req.SrcRoot, req.DestRoot, req.IndexOut, req.Reuse, req.ReuseIndex = src, root, newIndex, prev, index
	if req.Sources == nil {
		req.Sources, req.Dest, req.FromContext = []string{"."}, "/app", true
	}
	st, err := copyAt(context.Background(), req, later())
	if err != nil {
		t.Fatalf("rebuild: %v", err)
	}
	return root, newIndex, st
}

func TestReuseIndexRebuild(t *testing.T) {
	requireRoot(t)
	const orig = "hello world"
	overwrite := func(p, data string) {
		if err := os.WriteFile(p, []byte(data), 0o644); err != nil {
			t.Fatal(err)
		}
		if err := os.Chtimes(p, srcMtime, srcMtime); err != nil {
			t.Fatal(err)
		}
	}
	replace := func(p, data string) {
		tmp := p + ".new"
		overwrite(tmp, data)
		if err := os.Rename(tmp, p); err != nil {
			t.Fatal(err)
		}
	}
	cases := []struct {
		name             string
		change           func(t *testing.T, p string)
		want             string
		linked           bool
		indexed, compare int
	}{
		{name: "unchanged: trusted without reading",
			change: func(*testing.T, string) {}, want: orig, linked: true, indexed: 1},
		{name: "content and mtime changed: copied",
			change: func(t *testing.T, p string) {
				if err := os.WriteFile(p, []byte("HELLO"), 0o644); err != nil {
					t.Fatal(err)
				}
			}, want: "HELLO"},
		{name: "content changed, mtime restored: compared, copied",
			change: func(t *testing.T, p string) {
				changeCtime(t, p, func() { overwrite(p, "jello world") })
			}, want: "jello world", compare: 1},
		{name: "only ctime changed: compared, linked",
			change: func(t *testing.T, p string) {
				changeCtime(t, p, func() {
					if err := os.Chmod(p, 0o644); err != nil {
						t.Fatal(err)
					}
				})
			}, want: orig, linked: true, compare: 1},
		{name: "replaced by a new inode, same content: compared, linked",
			change: func(t *testing.T, p string) { replace(p, orig) },
			want:   orig, linked: true, compare: 1},
		{name: "replaced by a new inode, other content: compared, copied",
			change: func(t *testing.T, p string) { replace(p, "HELLO WORLD") },
			want:   "HELLO WORLD", compare: 1},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			src := t.TempDir()
			writeSrc(t, src, map[string]string{"f": orig})
			first, index := firstCopy(t, src, Request{})
			srcF := filepath.Join(src, "f")
			if got, want := readIndex(t, index), map[string]fileID{"app/f": idOf(lstatT(t, srcF))}; !maps.Equal(got, want) {
				t.Fatalf("first index = %v, want %v", got, want)
			}
			tc.change(t, srcF)
			second, index2, st := rebuild(t, src, first, index, Request{})
			if st.indexed != tc.indexed || st.compared != tc.compare {
				t.Errorf("indexed %d, compared %d; want %d, %d", st.indexed, st.compared, tc.indexed, tc.compare)
			}
			outF := filepath.Join(second, "app", "f")
			if got := sameInode(t, filepath.Join(first, "app", "f"), outF); got != tc.linked {
				t.Errorf("linked to the earlier result: %v, want %v", got, tc.linked)
			}
			if b, err := os.ReadFile(outF); err != nil || string(b) != tc.want {
				t.Errorf("content %q (%v), want %q", b, err, tc.want)
			}
			// Linked or copied, the new index holds the source as it is now.
			if got, want := readIndex(t, index2), map[string]fileID{"app/f": idOf(lstatT(t, srcF))}; !maps.Equal(got, want) {
				t.Errorf("second index = %v, want %v", got, want)
			}
		})
	}
}

// TestReuseIndexMetadata checks that --chown/--chmod/--epoch still decide
// reuse with an index: only the content compare is skipped.
func TestReuseIndexMetadata(t *testing.T) {
	requireRoot(t)
	epoch := func(s int64) *int64 { return &s }
	cases := []struct {
		name          string
		first, second Request
		linked        bool
	}{
		{name: "plain", linked: true},
		{name: "same --chmod", first: Request{Chmod: "0755"}, second: Request{Chmod: "0755"}, linked: true},
		{name: "same symbolic --chmod", first: Request{Chmod: "u+x"}, second: Request{Chmod: "u+x"}, linked: true},
		{name: "other --chmod", first: Request{Chmod: "0755"}, second: Request{Chmod: "0700"}},
		{name: "--chmod added", second: Request{Chmod: "0600"}},
		{name: "same --chown", first: Request{Chown: "1000:1000"}, second: Request{Chown: "1000:1000"}, linked: true},
		{name: "other --chown", first: Request{Chown: "1000:1000"}, second: Request{Chown: "1000:2000"}},
		{name: "same --epoch", first: Request{Epoch: epoch(1e9)}, second: Request{Epoch: epoch(1e9)}, linked: true},
		{name: "other --epoch", first: Request{Epoch: epoch(1e9)}, second: Request{Epoch: epoch(1e9 + 1)}},
		{name: "--epoch added", second: Request{Epoch: epoch(1e9)}},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			src := t.TempDir()
			writeSrc(t, src, map[string]string{"f": "data"})
			first, index := firstCopy(t, src, tc.first)
			second, _, st := rebuild(t, src, first, index, tc.second)
			a, b := filepath.Join(first, "app", "f"), filepath.Join(second, "app", "f")
			if got := sameInode(t, a, b); got != tc.linked {
				t.Fatalf("linked %v, want %v", got, tc.linked)
			}
			if want := map[bool]int{true: 1}[tc.linked]; st.indexed != want || st.compared != 0 {
				t.Errorf("indexed %d, compared %d; want %d, 0", st.indexed, st.compared, want)
			}
			// A fresh copy with the second options gives the same metadata.
			fresh := t.TempDir()
			req := tc.second
			req.SrcRoot, req.DestRoot, req.Sources, req.Dest, req.FromContext = src, fresh, []string{"."}, "/app", true
			if err := Copy(context.Background(), req); err != nil {
				t.Fatal(err)
			}
			got, want := lstatT(t, b), lstatT(t, filepath.Join(fresh, "app", "f"))
			if got.Mode != want.Mode || got.Uid != want.Uid || got.Gid != want.Gid || got.Mtim != want.Mtim {
				t.Errorf("rebuilt file: mode %o %d:%d mtime %v; fresh copy: mode %o %d:%d mtime %v",
					got.Mode, got.Uid, got.Gid, got.Mtim, want.Mode, want.Uid, want.Gid, want.Mtim)
			}
		})
	}
}

// TestIndexOutSettled checks that only sources whose mtime and ctime are
// more than settleTime old are recorded, with their lstat identity.
func TestIndexOutSettled(t *testing.T) {
	requireRoot(t)
	src := t.TempDir()
	writeSrc(t, src, map[string]string{"old": "o", "future": "f"})
	future := time.Now().Add(time.Hour)
	if err := os.Chtimes(filepath.Join(src, "future"), future, future); err != nil {
		t.Fatal(err)
	}
	cases := []struct {
		name string
		now  time.Time
		want []string
	}{
		// Just written: ctimes are now, mtimes aside.
		{name: "fresh ctime", now: time.Now(), want: nil},
		// The mtime in the future is not settled either.
		{name: "settled ctime", now: later(), want: []string{"app/old"}},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			index := filepath.Join(t.TempDir(), "index")
			req := Request{SrcRoot: src, Sources: []string{"."}, DestRoot: t.TempDir(), Dest: "/app", FromContext: true, IndexOut: index}
			if _, err := copyAt(context.Background(), req, tc.now); err != nil {
				t.Fatal(err)
			}
			got := readIndex(t, index)
			if keys := slices.Sorted(maps.Keys(got)); !slices.Equal(keys, tc.want) {
				t.Fatalf("index holds %q, want %q", keys, tc.want)
			}
			for _, k := range tc.want {
				if want := idOf(lstatT(t, filepath.Join(src, strings.TrimPrefix(k, "app/")))); got[k] != want {
					t.Errorf("%s: recorded %+v, want %+v", k, got[k], want)
				}
			}
		})
	}
}

// TestReuseIndexIgnored checks that an index that cannot be used is no
// index: the copy succeeds and compares contents.
func TestReuseIndexIgnored(t *testing.T) {
	requireRoot(t)
	src := t.TempDir()
	writeSrc(t, src, map[string]string{"f": "content"})
	first, index := firstCopy(t, src, Request{})
	valid, err := os.ReadFile(index)
	if err != nil {
		t.Fatal(err)
	}
	// The same records under another format's header, with a good checksum.
	foreign := append([]byte("strata copier reuse-index v2\n"), valid[len(indexMagic):len(valid)-4]...)
	foreign = binary.LittleEndian.AppendUint32(foreign, crc32.Checksum(foreign, crc32.MakeTable(crc32.Castagnoli)))
	flipped := bytes.Clone(valid)
	flipped[len(indexMagic)+2] ^= 0x40
	cases := []struct {
		name    string
		setup   func(p string) // makes the index at p; nil: none
		noReuse bool
		indexed int
	}{
		{name: "valid (control)", setup: func(p string) { os.WriteFile(p, valid, 0o644) }, indexed: 1},
		{name: "missing"},
		{name: "empty file", setup: func(p string) { os.WriteFile(p, nil, 0o644) }},
		{name: "garbage", setup: func(p string) { os.WriteFile(p, []byte("app/f\x00not an index\n"), 0o644) }},
		{name: "torn", setup: func(p string) { os.WriteFile(p, valid[:len(valid)-3], 0o644) }},
		{name: "flipped byte", setup: func(p string) { os.WriteFile(p, flipped, 0o644) }},
		{name: "other version", setup: func(p string) { os.WriteFile(p, foreign, 0o644) }},
		{name: "a directory", setup: func(p string) { os.Mkdir(p, 0o755) }},
		{name: "without Reuse", setup: func(p string) { os.WriteFile(p, valid, 0o644) }, noReuse: true},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			p := filepath.Join(t.TempDir(), "index")
			if tc.setup != nil {
				tc.setup(p)
			}
			dst := t.TempDir()
			req := Request{SrcRoot: src, Sources: []string{"."}, DestRoot: dst, Dest: "/app", FromContext: true, Reuse: first, ReuseIndex: p}
			if tc.noReuse {
				req.Reuse = ""
			}
			st, err := copyAt(context.Background(), req, later())
			if err != nil {
				t.Fatalf("Copy: %v", err)
			}
			wantCompared := 1 - tc.indexed
			if tc.noReuse {
				wantCompared = 0
			}
			if st.indexed != tc.indexed || st.compared != wantCompared {
				t.Errorf("indexed %d, compared %d; want %d, %d", st.indexed, st.compared, tc.indexed, wantCompared)
			}
			linked := sameInode(t, filepath.Join(first, "app", "f"), filepath.Join(dst, "app", "f"))
			if linked == tc.noReuse {
				t.Errorf("linked %v, want %v", linked, !tc.noReuse)
			}
		})
	}
}

func TestIndexFormat(t *testing.T) {
	id := func(n int64) fileID {
		return fileID{dev: uint64(n) << 40, ino: uint64(n), size: n * 1000, mtime: -n, ctime: n << 50}
	}
	cases := map[string]map[string]fileID{
		"empty": {},
		"one":   {"a": id(1)},
		"odd names": {
			"new\nline": id(2), "tab\there": id(3), "x\xffy": id(4), "sub dir/a\tb\nc": id(5),
			strings.Repeat("long/", 900) + "f": id(6), "zero": {},
		},
	}
	for name, m := range cases {
		t.Run(name, func(t *testing.T) {
			b := encodeIndex(m)
			got, ok := decodeIndex(b)
			if !ok || !maps.Equal(got, m) {
				t.Fatalf("round trip: %v %v, want %v", ok, got, m)
			}
			if !bytes.Equal(encodeIndex(got), b) {
				t.Errorf("encoding is not deterministic")
			}
			for n := range len(b) {
				if _, ok := decodeIndex(b[:n]); ok {
					t.Fatalf("torn at %d of %d bytes: accepted", n, len(b))
				}
			}
			for i := range b {
				c := bytes.Clone(b)
				c[i] ^= 0x01
				if _, ok := decodeIndex(c); ok {
					t.Fatalf("byte %d flipped: accepted", i)
				}
			}
			if _, ok := decodeIndex(append(bytes.Clone(b), 0)); ok {
				t.Errorf("trailing byte: accepted")
			}
		})
	}
}

func TestIndexOutErrors(t *testing.T) {
	requireRoot(t)
	src := t.TempDir()
	writeSrc(t, src, map[string]string{"f": "x"})
	notDir := filepath.Join(t.TempDir(), "file")
	if err := os.WriteFile(notDir, nil, 0o644); err != nil {
		t.Fatal(err)
	}
	for name, out := range map[string]string{
		"missing directory":         filepath.Join(t.TempDir(), "no", "index"),
		"parent is not a directory": filepath.Join(notDir, "index"),
	} {
		t.Run(name, func(t *testing.T) {
			dst := t.TempDir()
			err := Copy(context.Background(), Request{SrcRoot: src, Sources: []string{"f"}, DestRoot: dst, Dest: "/f", FromContext: true, IndexOut: out})
			if err == nil || !strings.Contains(err.Error(), out) {
				t.Fatalf("Copy error = %v, want one naming %s", err, out)
			}
			if got := dump(t, dst); len(got) != 0 {
				t.Errorf("copied before failing: %q", got)
			}
		})
	}
	t.Run("replaced, nothing left beside it", func(t *testing.T) {
		dir := t.TempDir()
		out := filepath.Join(dir, "index")
		if err := os.WriteFile(out, []byte("stale"), 0o644); err != nil {
			t.Fatal(err)
		}
		req := Request{SrcRoot: src, Sources: []string{"f"}, DestRoot: t.TempDir(), Dest: "/f", FromContext: true, IndexOut: out}
		if _, err := copyAt(context.Background(), req, later()); err != nil {
			t.Fatal(err)
		}
		if got := readIndex(t, out); len(got) != 1 {
			t.Errorf("index = %v, want one file", got)
		}
		names, _ := readDirNames(dir)
		if !slices.Equal(names, []string{"index"}) {
			t.Errorf("directory holds %q, want only the index", names)
		}
	})
	t.Run("glob matching nothing writes an empty index", func(t *testing.T) {
		out := filepath.Join(t.TempDir(), "index")
		if err := os.WriteFile(out, encodeIndex(map[string]fileID{"f": {ino: 1}}), 0o644); err != nil {
			t.Fatal(err)
		}
		req := Request{SrcRoot: src, Sources: []string{"nothing*"}, DestRoot: t.TempDir(), Dest: "/d/", IndexOut: out}
		if err := Copy(context.Background(), req); err != nil {
			t.Fatal(err)
		}
		if got := readIndex(t, out); len(got) != 0 {
			t.Errorf("index = %v, want empty", got)
		}
	})
	t.Run("failed copy writes nothing", func(t *testing.T) {
		dir := t.TempDir()
		out := filepath.Join(dir, "index")
		req := Request{SrcRoot: src, Sources: []string{"missing"}, DestRoot: t.TempDir(), Dest: "/d/", IndexOut: out}
		if err := Copy(context.Background(), req); err == nil {
			t.Fatal("Copy of a missing source succeeded")
		}
		if names, _ := readDirNames(dir); len(names) != 0 {
			t.Errorf("directory holds %q after a failed copy", names)
		}
	})
}

// TestIndexOutOverwritten checks that a path written twice in one copy is
// recorded only when a source file wrote it last.
func TestIndexOutOverwritten(t *testing.T) {
	requireRoot(t)
	src := t.TempDir()
	writeSrc(t, src, map[string]string{"one/f": "regular", "one/g": "g"})
	if err := os.MkdirAll(filepath.Join(src, "two"), 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.Symlink("g", filepath.Join(src, "two", "f")); err != nil {
		t.Fatal(err)
	}
	tarball := makeTar(t, tarEntry{name: "f", data: "from the archive", mode: 0o644})
	if err := os.WriteFile(filepath.Join(src, "x.tar"), tarball, 0o644); err != nil {
		t.Fatal(err)
	}
	cases := []struct {
		name string
		req  Request
		want []string
	}{
		{name: "file then symlink", req: Request{Sources: []string{"one", "two"}}, want: []string{"d/g"}},
		{name: "symlink then file", req: Request{Sources: []string{"two", "one"}}, want: []string{"d/f", "d/g"}},
		{name: "file then inline", req: Request{Sources: []string{"one"}, Inline: []Inline{{Name: "f", Data: []byte("inline")}}}, want: []string{"d/g"}},
		// Everything under the extraction directory is dropped.
		{name: "file then archive", req: Request{Sources: []string{"one", "x.tar"}, Add: true}, want: nil},
		{name: "archive then file", req: Request{Sources: []string{"x.tar", "one"}, Add: true}, want: []string{"d/f", "d/g"}},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			out := filepath.Join(t.TempDir(), "index")
			req := tc.req
			req.SrcRoot, req.DestRoot, req.Dest, req.FromContext, req.IndexOut = src, t.TempDir(), "/d/", true, out
			if _, err := copyAt(context.Background(), req, later()); err != nil {
				t.Fatal(err)
			}
			if got := slices.Sorted(maps.Keys(readIndex(t, out))); !slices.Equal(got, tc.want) {
				t.Errorf("index holds %q, want %q", got, tc.want)
			}
		})
	}
}

func TestReuseIndexOddNames(t *testing.T) {
	requireRoot(t)
	files := map[string]string{"new\nline": "1", "tab\there": "2", "x\xffy": "3", "sub dir/a\tb\nc": "4"}
	src := t.TempDir()
	writeSrc(t, src, files)
	first, index := firstCopy(t, src, Request{})
	second, index2, st := rebuild(t, src, first, index, Request{})
	if st.indexed != len(files) || st.compared != 0 {
		t.Errorf("indexed %d, compared %d; want %d, 0", st.indexed, st.compared, len(files))
	}
	got := readIndex(t, index2)
	for name := range files {
		if !sameInode(t, filepath.Join(first, "app", name), filepath.Join(second, "app", name)) {
			t.Errorf("%q not linked", name)
		}
		if want := idOf(lstatT(t, filepath.Join(src, name))); got["app/"+name] != want {
			t.Errorf("%q: recorded %+v, want %+v", name, got["app/"+name], want)
		}
	}
	if len(got) != len(files) {
		t.Errorf("index has %d files, want %d", len(got), len(files))
	}
}

func TestReuseIndexHardLinks(t *testing.T) {
	requireRoot(t)
	src := t.TempDir()
	writeSrc(t, src, map[string]string{"a": "shared", "c": "alone"})
	if err := os.Link(filepath.Join(src, "a"), filepath.Join(src, "b")); err != nil {
		t.Fatal(err)
	}
	first, index := firstCopy(t, src, Request{})
	if got := slices.Sorted(maps.Keys(readIndex(t, index))); !slices.Equal(got, []string{"app/a", "app/b", "app/c"}) {
		t.Fatalf("first index holds %q", got)
	}
	second, index2, st := rebuild(t, src, first, index, Request{})
	// b is linked to a within the copy, so only a and c consult the index.
	if st.indexed != 2 || st.compared != 0 {
		t.Errorf("indexed %d, compared %d; want 2, 0", st.indexed, st.compared)
	}
	at := func(root, name string) string { return filepath.Join(root, "app", name) }
	for _, p := range []string{at(first, "b"), at(second, "a"), at(second, "b")} {
		if !sameInode(t, at(first, "a"), p) {
			t.Errorf("%s is not the same inode as the earlier a", p)
		}
	}
	if sameInode(t, at(second, "a"), at(second, "c")) {
		t.Errorf("a and c share an inode")
	}
	if got := len(readIndex(t, index2)); got != 3 {
		t.Errorf("second index has %d files, want 3", got)
	}
}

// BenchmarkRebuild copies an unchanged tree of 2,000 files of 64 KiB again
// with Reuse, comparing contents or trusting the index.
func BenchmarkRebuild(b *testing.B) {
	if os.Geteuid() != 0 {
		b.Skip("needs root: copies set file owners (chown)")
	}
	src := b.TempDir()
	data := bytes.Repeat([]byte("0123456789abcdef"), 4096)
	for i := range 2000 {
		p := filepath.Join(src, fmt.Sprintf("d%02d", i/100), fmt.Sprintf("f%04d", i))
		if err := os.MkdirAll(filepath.Dir(p), 0o755); err != nil {
			b.Fatal(err)
		}
		data[0] = byte(i) // not all equal
		if err := os.WriteFile(p, data, 0o644); err != nil {
			b.Fatal(err)
		}
	}
	work := b.TempDir()
	first, index := filepath.Join(work, "first"), filepath.Join(work, "index")
	req := Request{SrcRoot: src, Sources: []string{"."}, DestRoot: first, Dest: "/app", FromContext: true, IndexOut: index}
	if err := os.Mkdir(first, 0o755); err != nil {
		b.Fatal(err)
	}
	if _, err := copyAt(context.Background(), req, later()); err != nil {
		b.Fatal(err)
	}
	for _, bc := range []struct {
		name         string
		reuse, index string
	}{
		{"copy", "", ""},
		{"compare", first, ""},
		{"index", first, index},
	} {
		for _, workers := range []int{0, defaultWorkers()} {
			b.Run(fmt.Sprintf("%s/workers=%d", bc.name, workers), func(b *testing.B) {
				dst := filepath.Join(work, "dst")
				for range b.N {
					b.StopTimer()
					if err := os.RemoveAll(dst); err != nil {
						b.Fatal(err)
					}
					if err := os.Mkdir(dst, 0o755); err != nil {
						b.Fatal(err)
					}
					b.StartTimer()
					r := Request{SrcRoot: src, Sources: []string{"."}, DestRoot: dst, Dest: "/app", FromContext: true,
						Reuse: bc.reuse, ReuseIndex: bc.index, IndexOut: filepath.Join(work, "index2")}
					if _, err := copyWorkers(context.Background(), r, later(), workers); err != nil {
						b.Fatal(err)
					}
				}
			})
		}
	}
}
