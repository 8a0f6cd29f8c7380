package snapshot

import (
	"archive/tar"
	"bytes"
	"context"
	"crypto/sha256"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path/filepath"
	"sort"
	"strings"
	"testing"
	"time"

	"golang.org/x/sys/unix"
)

// ent is one tar entry for a test archive.
type ent struct {
	name  string
	typ   byte
	body  string
	link  string
	mode  int64
	uid   int
	gid   int
	mtime time.Time
	pax   map[string]string
	major int64
	minor int64
}

// testTime is the default mtime of test entries.
func testTime() time.Time { return time.Date(2020, 1, 2, 3, 4, 5, 0, time.UTC) }

func file(name, body string) ent   { return ent{name: name, typ: tar.TypeReg, body: body} }
func dir(name string) ent          { return ent{name: name, typ: tar.TypeDir} }
func symlink(name, to string) ent  { return ent{name: name, typ: tar.TypeSymlink, link: to} }
func hardlink(name, to string) ent { return ent{name: name, typ: tar.TypeLink, link: to} }

// mkTar builds an archive from ents.
func mkTar(t testing.TB, ents ...ent) []byte {
	t.Helper()
	var buf bytes.Buffer
	tw := tar.NewWriter(&buf)
	for _, e := range ents {
		h := &tar.Header{
			Name: e.name, Typeflag: e.typ, Linkname: e.link, Mode: e.mode,
			Uid: e.uid, Gid: e.gid, ModTime: e.mtime, PAXRecords: e.pax,
			Devmajor: e.major, Devminor: e.minor,
		}
		if h.ModTime.IsZero() {
			h.ModTime = testTime()
		}
		if h.Mode == 0 {
			switch e.typ {
			case tar.TypeDir:
				h.Mode = 0o755
			case tar.TypeSymlink:
				h.Mode = 0o777
			default:
				h.Mode = 0o644
			}
		}
		if e.typ == tar.TypeReg {
			h.Size = int64(len(e.body))
		}
		if err := tw.WriteHeader(h); err != nil {
			t.Fatalf("writing header %q: %v", e.name, err)
		}
		if _, err := tw.Write([]byte(e.body)); err != nil {
			t.Fatalf("writing %q: %v", e.name, err)
		}
	}
	if err := tw.Close(); err != nil {
		t.Fatal(err)
	}
	return buf.Bytes()
}

func apply(t testing.TB, dest string, mode ApplyMode, ents ...ent) error {
	t.Helper()
	return Apply(context.Background(), dest, bytes.NewReader(mkTar(t, ents...)), ApplyOptions{Mode: mode})
}

func needRoot(t testing.TB) {
	t.Helper()
	if os.Geteuid() != 0 {
		t.Skip("needs root: chown, mknod and trusted.* xattrs")
	}
}

// describe renders a tree as sorted lines "path type mode uid:gid extra",
// extra being content hash, link target, device or trusted.overlay.opaque.
func describe(t testing.TB, root string) []string {
	t.Helper()
	var out []string
	err := filepath.WalkDir(root, func(p string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		rel, _ := filepath.Rel(root, p)
		if rel == "." {
			return nil
		}
		out = append(out, rel+" "+describeOne(t, p))
		return nil
	})
	if err != nil {
		t.Fatalf("walking %s: %v", root, err)
	}
	sort.Strings(out)
	return out
}

func describeOne(t testing.TB, p string) string {
	t.Helper()
	var st unix.Stat_t
	if err := unix.Lstat(p, &st); err != nil {
		t.Fatalf("lstat %s: %v", p, err)
	}
	s := fmt.Sprintf("%o %d:%d", st.Mode, st.Uid, st.Gid)
	switch st.Mode & unix.S_IFMT {
	case unix.S_IFREG:
		b, err := os.ReadFile(p)
		if err != nil {
			t.Fatal(err)
		}
		s += fmt.Sprintf(" %q", truncate(string(b)))
	case unix.S_IFLNK:
		l, _ := os.Readlink(p)
		s += " -> " + l
	case unix.S_IFCHR, unix.S_IFBLK:
		s += fmt.Sprintf(" %d/%d", unix.Major(st.Rdev), unix.Minor(st.Rdev))
	case unix.S_IFDIR:
		if v, err := getxattr(p, opaqueXattr); err == nil {
			s += " opaque=" + v
		}
	}
	return s
}

func truncate(s string) string {
	if len(s) <= 40 {
		return s
	}
	return fmt.Sprintf("sha256:%x", sha256.Sum256([]byte(s)))[:20]
}

// fingerprint records everything about a tree, mtimes included, except
// the subtree skip; used to prove nothing outside dest changed.
func fingerprint(t testing.TB, root, skip string) string {
	t.Helper()
	var b strings.Builder
	err := filepath.WalkDir(root, func(p string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		if p == skip {
			return fs.SkipDir
		}
		var st unix.Stat_t
		if err := unix.Lstat(p, &st); err != nil {
			return err
		}
		fmt.Fprintf(&b, "%s %s %d.%d\n", p, describeOne(t, p), st.Mtim.Sec, st.Mtim.Nsec)
		if v, err := getxattr(p, opaqueXattr); err == nil {
			fmt.Fprintf(&b, "  opaque=%s\n", v)
		}
		return nil
	})
	if err != nil {
		t.Fatalf("fingerprinting %s: %v", root, err)
	}
	return b.String()
}

func mustWrite(t testing.TB, p, body string) {
	t.Helper()
	if err := os.MkdirAll(filepath.Dir(p), 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(p, []byte(body), 0o644); err != nil {
		t.Fatal(err)
	}
}

func readFile(t testing.TB, p string) string {
	t.Helper()
	b, err := os.ReadFile(p)
	if err != nil {
		t.Fatalf("reading %s: %v", p, err)
	}
	return string(b)
}

func exists(p string) bool {
	_, err := os.Lstat(p)
	return !errors.Is(err, fs.ErrNotExist)
}

func equalLines(t testing.TB, got, want []string) {
	t.Helper()
	if strings.Join(got, "\n") != strings.Join(want, "\n") {
		t.Errorf("tree mismatch\ngot:\n  %s\nwant:\n  %s", strings.Join(got, "\n  "), strings.Join(want, "\n  "))
	}
}

func bytesReader(b []byte) *bytes.Reader { return bytes.NewReader(b) }

// hdrs reads every header of an archive.
func hdrs(t testing.TB, archive []byte) []*tar.Header {
	t.Helper()
	tr := tar.NewReader(bytes.NewReader(archive))
	var out []*tar.Header
	for {
		h, err := tr.Next()
		if errors.Is(err, io.EOF) {
			return out
		}
		if err != nil {
			t.Fatalf("reading diff tar: %v", err)
		}
		out = append(out, h)
	}
}

// names lists "NAME TYPE" for each header.
func names(hs []*tar.Header) []string {
	out := make([]string, len(hs))
	for i, h := range hs {
		out[i] = fmt.Sprintf("%s %c", h.Name, h.Typeflag)
	}
	return out
}
