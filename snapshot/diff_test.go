package snapshot

import (
	"archive/tar"
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"golang.org/x/sys/unix"
)

func diff(t testing.TB, upper string, opts DiffOptions) ([]byte, bool) {
	t.Helper()
	var buf bytes.Buffer
	empty, err := Diff(context.Background(), upper, &buf, opts)
	if err != nil {
		t.Fatalf("Diff: %v", err)
	}
	return buf.Bytes(), empty
}

// TestDiffRealOverlay makes changes through a real overlay mount, diffs
// the upper dir and checks that base + diff flattened equals what the
// mount showed.
func TestDiffRealOverlay(t *testing.T) {
	needRoot(t)
	s := openStore(t)
	ctx := context.Background()
	base := mkTar(t,
		dir("etc/"), file("etc/passwd", "root"), file("etc/keep", "k"), file("etc/mod", "old"),
		file("gone", "g"), dir("gonedir/"), file("gonedir/f", "f"),
		dir("rdir/"), file("rdir/old", "o"), file("chmodme", "c"), file("chownme", "c"),
	)
	lower, err := s.Unpack(ctx, keyA, bytes.NewReader(base))
	if err != nil {
		t.Fatal(err)
	}
	act, err := s.Prepare(ctx)
	if err != nil {
		t.Fatal(err)
	}
	defer s.Abort(act)
	mnt := t.TempDir()
	unmount := mountOverlay(t, s, OverlayMount([]Snapshot{lower}, act), mnt)
	m := func(p string) string { return filepath.Join(mnt, p) }
	mustWrite(t, m("new/file"), "n")
	must(t, unix.Setxattr(m("new/file"), "user.note", []byte("hi"), 0))
	mustWrite(t, m("etc/mod"), "new")
	must(t, os.Remove(m("gone")))
	must(t, os.RemoveAll(m("gonedir")))
	must(t, os.RemoveAll(m("rdir")))
	mustWrite(t, m("rdir/fresh"), "fresh")
	must(t, os.Chmod(m("chmodme"), 0o600))
	must(t, os.Lchown(m("chownme"), 5, 6))
	mustWrite(t, m("hl1"), "h")
	must(t, os.Link(m("hl1"), m("hl2")))
	must(t, os.Symlink("etc/passwd", m("sym")))
	must(t, unix.Mkfifo(m("fifo"), 0o640))
	mustWrite(t, m("suid"), "s")
	must(t, unix.Chmod(m("suid"), 0o4755))
	merged := describe(t, mnt)
	unmount()

	out, empty := diff(t, act.Dir, DiffOptions{})
	if empty {
		t.Fatal("Diff reported empty")
	}
	hs := hdrs(t, out)
	// Lexical walk order; whiteouts sit where the deleted name sorts.
	equalLines(t, names(hs), []string{
		"chmodme 0", "chownme 0", "etc/ 5", "etc/mod 0", "fifo 6",
		".wh.gone 0", ".wh.gonedir 0", "hl1 0", "hl2 1", "new/ 5", "new/file 0",
		"rdir/ 5", "rdir/.wh..wh..opq 0", "rdir/fresh 0", "suid 0", "sym 2",
	})
	got := map[string]*tar.Header{}
	for _, h := range hs {
		got[h.Name] = h
		for k := range h.PAXRecords {
			if strings.Contains(k, "trusted.overlay") {
				t.Errorf("%s carries %s", h.Name, k)
			}
		}
		if h.Uname != "" || h.Gname != "" {
			t.Errorf("%s has user/group names", h.Name)
		}
	}
	if h := got["hl2"]; h != nil && (h.Typeflag != tar.TypeLink || h.Linkname != "hl1") {
		t.Errorf("hl2 = %c -> %q, want a hard link to hl1", h.Typeflag, h.Linkname)
	}
	if h := got["new/file"]; h != nil && h.PAXRecords["SCHILY.xattr.user.note"] != "hi" {
		t.Errorf("new/file xattrs = %v", h.PAXRecords)
	}

	flat := t.TempDir()
	must(t, Apply(ctx, flat, bytes.NewReader(base), ApplyOptions{Mode: ApplyFlatten}))
	must(t, Apply(ctx, flat, bytes.NewReader(out), ApplyOptions{Mode: ApplyFlatten}))
	equalLines(t, describe(t, flat), merged)
	sameInode(t, filepath.Join(flat, "hl1"), filepath.Join(flat, "hl2"))
	for _, line := range []string{`rdir/fresh 100644 0:0 "fresh"`, `suid 104755 0:0 "s"`, `chownme 100644 5:6 "c"`} {
		if !strings.Contains(strings.Join(merged, "\n"), line) {
			t.Errorf("merged view lacks %q", line)
		}
	}
}

// TestDiffRoundTrip: a layer applied in overlay mode diffs back to the
// same entries, whiteouts included.
func TestDiffRoundTrip(t *testing.T) {
	needRoot(t)
	layer := mkTar(t,
		file(".wh.top", ""),
		dir("a/"), file("a/.wh.gone", ""), file("a/keep", "k"),
		dir("b/"), file("b/.wh..wh..opq", ""), file("b/new", "n"),
		ent{name: "b/sub", typ: tar.TypeReg, mode: 0o4711, uid: 3, gid: 4, body: "x"},
		hardlink("b/sub2", "b/sub"),
		symlink("l", "/abs/target"),
		ent{name: "null", typ: tar.TypeChar, mode: 0o666, major: 1, minor: 3},
	)
	snap := t.TempDir()
	must(t, Apply(context.Background(), snap, bytes.NewReader(layer), ApplyOptions{Mode: ApplyOverlay}))
	out, _ := diff(t, snap, DiffOptions{})
	equalLines(t, names(hdrs(t, out)), []string{
		"a/ 5", "a/.wh.gone 0", "a/keep 0",
		"b/ 5", "b/.wh..wh..opq 0", "b/new 0", "b/sub 0", "b/sub2 1",
		"l 2", "null 3", ".wh.top 0",
	})
	again := t.TempDir()
	must(t, Apply(context.Background(), again, bytes.NewReader(out), ApplyOptions{Mode: ApplyOverlay}))
	equalLines(t, describe(t, again), describe(t, snap))
	for _, h := range hdrs(t, out) {
		if !h.ModTime.Equal(testTime()) && !strings.Contains(h.Name, ".wh.") {
			t.Errorf("%s mtime %v, want %v", h.Name, h.ModTime, testTime())
		}
	}
}

func TestDiffHeaders(t *testing.T) {
	upper := t.TempDir()
	mustWrite(t, filepath.Join(upper, "d/f"), "hello")
	must(t, os.Chmod(filepath.Join(upper, "d/f"), 0o751))
	must(t, os.Link(filepath.Join(upper, "d/f"), filepath.Join(upper, "d/g")))
	must(t, os.Symlink("../x", filepath.Join(upper, "d/l")))
	mustWrite(t, filepath.Join(upper, "plain"), "p")
	// An xattr whiteout (zero-size file marked by xattr) and an opaque
	// mark, in the user.* namespace so no root is needed.
	mustWrite(t, filepath.Join(upper, "xwh"), "")
	must(t, unix.Setxattr(filepath.Join(upper, "xwh"), "user.overlay.whiteout", nil, 0))
	must(t, os.Mkdir(filepath.Join(upper, "op"), 0o755))
	must(t, unix.Setxattr(filepath.Join(upper, "op"), "user.overlay.opaque", []byte("y"), 0))
	// "x" means "holds xattr whiteouts", not opaque.
	must(t, os.Mkdir(filepath.Join(upper, "notop"), 0o755))
	must(t, unix.Setxattr(filepath.Join(upper, "notop"), "user.overlay.opaque", []byte("x"), 0))
	must(t, unix.Setxattr(filepath.Join(upper, "plain"), "user.keep", []byte("v\x00bin"), 0))
	late := time.Date(2030, 1, 1, 0, 0, 0, 0, time.UTC)
	early := time.Date(2001, 1, 1, 0, 0, 0, 500, time.UTC)
	for _, p := range []string{"d", "d/f", "plain", "xwh", "op", "notop"} {
		must(t, os.Chtimes(filepath.Join(upper, p), late, late))
	}
	epoch := time.Date(2024, 5, 6, 7, 8, 9, 0, time.UTC)
	must(t, unix.Lutimes(filepath.Join(upper, "d/l"), []unix.Timeval{unix.NsecToTimeval(early.UnixNano()), unix.NsecToTimeval(early.UnixNano())}))

	out, empty := diff(t, upper, DiffOptions{Epoch: &epoch})
	if empty {
		t.Fatal("empty")
	}
	hs := hdrs(t, out)
	equalLines(t, names(hs), []string{
		"d/ 5", "d/f 0", "d/g 1", "d/l 2", "notop/ 5", "op/ 5", "op/.wh..wh..opq 0", "plain 0", ".wh.xwh 0",
	})
	byName := map[string]*tar.Header{}
	for _, h := range hs {
		byName[h.Name] = h
		if !h.AccessTime.IsZero() || !h.ChangeTime.IsZero() {
			t.Errorf("%s has atime/ctime", h.Name)
		}
		if h.Uid != os.Geteuid() && !strings.Contains(h.Name, ".wh.") {
			t.Errorf("%s uid %d", h.Name, h.Uid)
		}
	}
	f := byName["d/f"]
	if f.Mode != 0o751 || f.Size != 5 || !f.ModTime.Equal(epoch) {
		t.Errorf("d/f = mode %o size %d mtime %v", f.Mode, f.Size, f.ModTime)
	}
	if g := byName["d/g"]; g.Linkname != "d/f" || g.Size != 0 {
		t.Errorf("d/g = %+v, want a link to d/f", g)
	}
	if l := byName["d/l"]; l.Linkname != "../x" || !l.ModTime.Equal(early.Truncate(time.Second)) {
		t.Errorf("d/l = %q mtime %v", l.Linkname, l.ModTime)
	}
	if p := byName["plain"]; p.PAXRecords["SCHILY.xattr.user.keep"] != "v\x00bin" || p.Format != tar.FormatPAX {
		t.Errorf("plain xattrs %q format %v", p.PAXRecords, p.Format)
	}
	for _, n := range []string{"op/", "notop/"} {
		if _, ok := byName[n].PAXRecords["SCHILY.xattr.user.overlay.opaque"]; ok {
			t.Errorf("%s carries the overlay xattr", n)
		}
	}
	if w := byName[".wh.xwh"]; w.Mode != 0 || w.Size != 0 {
		t.Errorf("whiteout = %+v", w)
	}
}

func TestDiffEmptyAndCancel(t *testing.T) {
	upper := t.TempDir()
	out, empty := diff(t, upper, DiffOptions{})
	if !empty || len(hdrs(t, out)) != 0 || len(out) == 0 {
		t.Errorf("empty upper: empty=%v, %d bytes", empty, len(out))
	}
	mustWrite(t, filepath.Join(upper, "f"), "x")
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	if _, err := Diff(ctx, upper, io.Discard, DiffOptions{}); !errors.Is(err, context.Canceled) {
		t.Errorf("cancelled Diff = %v", err)
	}
	if _, err := Diff(context.Background(), filepath.Join(upper, "missing"), io.Discard, DiffOptions{}); err == nil {
		t.Error("Diff of a missing dir succeeded")
	}
}

func must(t testing.TB, err error) {
	t.Helper()
	if err != nil {
		t.Fatal(err)
	}
}

func BenchmarkDiff(b *testing.B) {
	upper := b.TempDir()
	for i := range 2000 {
		mustWrite(b, filepath.Join(upper, fmt.Sprintf("d%02d/f%04d", i%20, i)), strings.Repeat("x", 512+i%1024))
	}
	ctx := context.Background()
	for b.Loop() {
		if _, err := Diff(ctx, upper, io.Discard, DiffOptions{}); err != nil {
			b.Fatal(err)
		}
	}
}
