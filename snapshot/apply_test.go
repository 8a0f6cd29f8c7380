package snapshot

import (
	"archive/tar"
	"bytes"
	"context"
	"errors"
	"path/filepath"
	"strings"
	"testing"
)

func TestApplyOverlayMode(t *testing.T) {
	needRoot(t)
	dest := t.TempDir()
	err := apply(t, dest, ApplyOverlay,
		dir("a/"), file("a/.wh.gone", ""), file("a/keep", "k"),
		dir("b/"), file("b/.wh..wh..opq", ""), file("b/new", "n"),
		file(".wh.top", ""),
		file("nodir/.wh.f", ""),           // parent not in the layer: made
		file("x", "x"), file(".wh.x", ""), // own entry survives its whiteout
		file(".wh.y", ""), dir("y/"), // dir over own whiteout: opaque
		dir("z/"), file(".wh.z", ""), // whiteout of own dir: opaque
		file(".wh..wh.plnk", ""), // AUFS bookkeeping: ignored
	)
	if err != nil {
		t.Fatal(err)
	}
	equalLines(t, describe(t, dest), []string{
		`a 40755 0:0`,
		`a/gone 20000 0:0 0/0`,
		`a/keep 100644 0:0 "k"`,
		`b 40755 0:0 opaque=y`,
		`b/new 100644 0:0 "n"`,
		`nodir 40755 0:0`,
		`nodir/f 20000 0:0 0/0`,
		`top 20000 0:0 0/0`,
		`x 100644 0:0 "x"`,
		`y 40755 0:0 opaque=y`,
		`z 40755 0:0 opaque=y`,
	})
}

func TestApplyFlattenMode(t *testing.T) {
	needRoot(t)
	dest := t.TempDir()
	if err := apply(t, dest, ApplyFlatten,
		file("a/gone", "g"), file("a/keep", "k"),
		file("b/old", "o"), file("b/sub/old2", "o"), file("b/sub/kept-name", "lower"),
		dir("gonedir/"), file("gonedir/f", "f"),
		file("top", "t"), file("x", "old"), file("z/old", "o"), file("afile", "f"),
	); err != nil {
		t.Fatal(err)
	}
	err := apply(t, dest, ApplyFlatten,
		file("a/.wh.gone", ""),
		dir("b/"), dir("b/sub/"), file("b/sub/new", "n"),
		file("b/.wh..wh..opq", ""), // after this layer's entries: they must survive
		file(".wh.top", ""), file(".wh.gonedir", ""),
		file("x", "new"), file(".wh.x", ""),
		dir("z/"), file(".wh.z", ""),
		file(".wh.missing", ""), file("nodir/.wh.f", ""), file("afile/.wh.x", ""),
	)
	if err != nil {
		t.Fatal(err)
	}
	equalLines(t, describe(t, dest), []string{
		`a 40755 0:0`,
		`a/keep 100644 0:0 "k"`,
		`afile 100644 0:0 "f"`,
		`b 40755 0:0`,
		`b/sub 40755 0:0`,
		`b/sub/new 100644 0:0 "n"`,
		`x 100644 0:0 "new"`,
		`z 40755 0:0`,
	})
}

func TestApplyFlattenOpaqueBeforeEntries(t *testing.T) {
	needRoot(t)
	dest := t.TempDir()
	if err := apply(t, dest, ApplyFlatten, file("d/old", "o"), file("d/same", "lower")); err != nil {
		t.Fatal(err)
	}
	if err := apply(t, dest, ApplyFlatten, dir("d/"), file("d/.wh..wh..opq", ""), file("d/same", "upper")); err != nil {
		t.Fatal(err)
	}
	equalLines(t, describe(t, dest), []string{`d 40755 0:0`, `d/same 100644 0:0 "upper"`})
}

func TestApplyPlainMode(t *testing.T) {
	dest := t.TempDir()
	if err := apply(t, dest, ApplyPlain, file(".wh.foo", "w"), file("d/.wh..wh..opq", "o")); err != nil {
		t.Fatal(err)
	}
	wantContent(t, filepath.Join(dest, ".wh.foo"), "w")
	wantContent(t, filepath.Join(dest, "d/.wh..wh..opq"), "o")
}

func TestApplyOwner(t *testing.T) {
	needRoot(t)
	dest := t.TempDir()
	archive := mkTar(t,
		ent{name: "d/", typ: tar.TypeDir, uid: 1, gid: 2},
		ent{name: "d/f", typ: tar.TypeReg, mode: 0o4755, uid: 1, gid: 2},
		ent{name: "l", typ: tar.TypeSymlink, link: "d/f", uid: 1, gid: 2},
	)
	err := Apply(context.Background(), dest, bytes.NewReader(archive), ApplyOptions{Mode: ApplyPlain, Owner: &Owner{UID: 7, GID: 8}})
	if err != nil {
		t.Fatal(err)
	}
	equalLines(t, describe(t, dest), []string{
		`d 40755 7:8`,
		`d/f 104755 7:8 ""`,
		`l 120777 7:8 -> d/f`,
	})
}

func TestApplyTypeChanges(t *testing.T) {
	needRoot(t)
	dest := t.TempDir()
	if err := apply(t, dest, ApplyFlatten,
		file("f2d", "x"), file("d2f/a/b", "x"), symlink("l2d", "f2d"), dir("d2l/"), file("d2l/x", "x"),
	); err != nil {
		t.Fatal(err)
	}
	if err := apply(t, dest, ApplyFlatten,
		dir("f2d/"), file("d2f", "now a file"), dir("l2d/"), symlink("d2l", "f2d"),
	); err != nil {
		t.Fatal(err)
	}
	equalLines(t, describe(t, dest), []string{
		`d2f 100644 0:0 "now a file"`,
		`d2l 120777 0:0 -> f2d`,
		`f2d 40755 0:0`,
		`l2d 40755 0:0`,
	})
}

// A rewritten file must not change the content of its old hard links.
func TestApplyReplaceHardlinkedFile(t *testing.T) {
	needRoot(t)
	dest := t.TempDir()
	if err := apply(t, dest, ApplyFlatten, file("f", "old"), hardlink("h", "f")); err != nil {
		t.Fatal(err)
	}
	sameInode(t, filepath.Join(dest, "f"), filepath.Join(dest, "h"))
	if err := apply(t, dest, ApplyFlatten, file("f", "new")); err != nil {
		t.Fatal(err)
	}
	wantContent(t, filepath.Join(dest, "f"), "new")
	wantContent(t, filepath.Join(dest, "h"), "old")
}

func TestApplyXattrs(t *testing.T) {
	needRoot(t)
	dest := t.TempDir()
	caps := "\x01\x00\x00\x02\x00\x04\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00"
	err := apply(t, dest, ApplyOverlay, ent{name: "bin/ping", typ: tar.TypeReg, uid: 3, pax: map[string]string{
		"SCHILY.xattr.security.capability": caps,
		"SCHILY.xattr.user.note":           "hi",
		"SCHILY.xattr.security.selinux":    "system_u:object_r:bin_t:s0",
	}})
	if err != nil {
		t.Fatal(err)
	}
	p := filepath.Join(dest, "bin/ping")
	// Set after chown, which would otherwise drop the capability.
	if v, err := getxattr(p, "security.capability"); err != nil || v != caps {
		t.Errorf("security.capability = %q, %v", v, err)
	}
	if v, err := getxattr(p, "user.note"); err != nil || v != "hi" {
		t.Errorf("user.note = %q, %v", v, err)
	}
	if _, err := getxattr(p, "security.selinux"); err == nil {
		t.Error("security.selinux was copied from the layer")
	}
}

func TestApplyErrors(t *testing.T) {
	dest := t.TempDir()
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	if err := Apply(ctx, dest, bytes.NewReader(mkTar(t, file("a", "a"))), ApplyOptions{}); !errors.Is(err, context.Canceled) {
		t.Errorf("cancelled Apply: %v, want context.Canceled", err)
	}
	if exists(filepath.Join(dest, "a")) {
		t.Error("cancelled Apply wrote an entry")
	}
	if err := Apply(context.Background(), dest, bytes.NewReader(nil), ApplyOptions{Mode: 42}); err == nil {
		t.Error("unknown mode accepted")
	}
	if err := Apply(context.Background(), dest, strings.NewReader("not a tar at all, not a tar at all"), ApplyOptions{}); err == nil {
		t.Error("garbage accepted")
	}
	trunc := mkTar(t, file("big", strings.Repeat("x", 4096)))[:1024]
	if err := Apply(context.Background(), dest, bytes.NewReader(trunc), ApplyOptions{}); err == nil {
		t.Error("truncated archive accepted")
	}
}

func TestCleanName(t *testing.T) {
	tests := []struct {
		in, want string
		bad      bool
	}{
		{in: "a/b", want: "a/b"},
		{in: "/a/b/", want: "a/b"},
		{in: "./a", want: "a"},
		{in: "././/a//b", want: "a/b"},
		{in: "", want: "."},
		{in: "./", want: "."},
		{in: "/", want: "."},
		{in: "a/..", want: "."},
		{in: "..", bad: true},
		{in: "../a", bad: true},
		{in: "a/../..", bad: true},
		{in: "/../a", bad: true},
		{in: "./../a", bad: true},
		{in: "a\x00b", bad: true},
		{in: "..a", want: "..a"},
	}
	for _, tc := range tests {
		got, err := cleanName(tc.in)
		if tc.bad {
			if err == nil {
				t.Errorf("cleanName(%q) = %q, want error", tc.in, got)
			}
			continue
		}
		if err != nil || got != tc.want {
			t.Errorf("cleanName(%q) = %q, %v; want %q", tc.in, got, err, tc.want)
		}
	}
}
