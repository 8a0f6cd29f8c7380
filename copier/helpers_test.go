package copier

import (
	"archive/tar"
	"bytes"
	"compress/gzip"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"syscall"
	"testing"
	"time"
)

// node describes one path of a test tree. Kind: 'f' file, 'd' dir,
// 'l' symlink (Data is the target), 'h' hard link (Data: path of the file).
type node struct {
	Kind     byte
	Path     string
	Data     string
	Mode     fs.FileMode
	UID, GID int
}

func F(p, data string) node                 { return node{Kind: 'f', Path: p, Data: data, Mode: 0o644} }
func FM(p, data string, m fs.FileMode) node { return node{Kind: 'f', Path: p, Data: data, Mode: m} }
func D(p string) node                       { return node{Kind: 'd', Path: p, Mode: 0o755} }
func DM(p string, m fs.FileMode) node       { return node{Kind: 'd', Path: p, Mode: m} }
func L(p, target string) node               { return node{Kind: 'l', Path: p, Data: target} }
func H(p, existing string) node             { return node{Kind: 'h', Path: p, Data: existing} }

// owned sets a node's owner.
func owned(n node, uid, gid int) node { n.UID, n.GID = uid, gid; return n }

// requireRoot skips tests that chown.
func requireRoot(t *testing.T) {
	t.Helper()
	if os.Geteuid() != 0 {
		t.Skip("needs root: copies set file owners (chown)")
	}
}

// build creates nodes under root, parents first, with exact modes and owners.
func build(t *testing.T, root string, nodes ...node) {
	t.Helper()
	for _, n := range nodes {
		p := filepath.Join(root, n.Path)
		if err := os.MkdirAll(filepath.Dir(p), 0o755); err != nil {
			t.Fatal(err)
		}
		var err error
		switch n.Kind {
		case 'f':
			err = os.WriteFile(p, []byte(n.Data), 0o600)
		case 'd':
			err = os.MkdirAll(p, 0o755)
		case 'l':
			err = os.Symlink(n.Data, p)
		case 'h':
			err = os.Link(filepath.Join(root, n.Data), p)
		}
		if err != nil {
			t.Fatal(err)
		}
		if n.Kind == 'f' || n.Kind == 'd' {
			// Raw unix bits: FM(p, d, 0o4755) means setuid.
			if err := syscall.Chmod(p, uint32(n.Mode)&0o7777); err != nil {
				t.Fatal(err)
			}
		}
		if n.Kind != 'h' && (n.UID != 0 || n.GID != 0) {
			if err := os.Lchown(p, n.UID, n.GID); err != nil {
				t.Fatal(err)
			}
		}
	}
}

// dump lists every path under root (root itself excluded) as
// "/path TYPE MODE UID:GID [content | -> target]", sorted.
func dump(t *testing.T, root string) []string {
	t.Helper()
	var out []string
	err := filepath.WalkDir(root, func(p string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		if p == root {
			return nil
		}
		fi, err := os.Lstat(p)
		if err != nil {
			return err
		}
		st := fi.Sys().(*syscall.Stat_t)
		rel := "/" + filepath.ToSlash(strings.TrimPrefix(p, root+"/"))
		line := fmt.Sprintf("%s %s %04o %d:%d", rel, kind(fi), st.Mode&0o7777, st.Uid, st.Gid)
		switch {
		case fi.Mode().IsRegular():
			data, err := os.ReadFile(p)
			if err != nil {
				return err
			}
			line += " " + string(data)
		case fi.Mode()&fs.ModeSymlink != 0:
			target, err := os.Readlink(p)
			if err != nil {
				return err
			}
			line = fmt.Sprintf("%s l -> %s", rel, target)
		}
		out = append(out, line)
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	slices.Sort(out)
	return out
}

func kind(fi fs.FileInfo) string {
	switch m := fi.Mode(); {
	case m.IsDir():
		return "d"
	case m.IsRegular():
		return "f"
	case m&fs.ModeSymlink != 0:
		return "l"
	case m&fs.ModeNamedPipe != 0:
		return "p"
	default:
		return "?"
	}
}

// diffLines reports the difference between two sorted listings.
func diffLines(got, want []string) string {
	var b strings.Builder
	for _, g := range got {
		if !slices.Contains(want, g) {
			fmt.Fprintf(&b, "  unexpected: %s\n", g)
		}
	}
	for _, w := range want {
		if !slices.Contains(got, w) {
			fmt.Fprintf(&b, "  missing:    %s\n", w)
		}
	}
	return b.String()
}

// tarEntry is one entry of a test archive.
type tarEntry struct {
	name, data, link string
	typ              byte
	mode             int64
	uid, gid         int
}

// makeTar returns an uncompressed tar holding entries.
func makeTar(t *testing.T, entries ...tarEntry) []byte {
	t.Helper()
	var buf bytes.Buffer
	tw := tar.NewWriter(&buf)
	for _, e := range entries {
		typ := e.typ
		if typ == 0 {
			typ = tar.TypeReg
		}
		hdr := &tar.Header{Name: e.name, Typeflag: typ, Mode: e.mode, Uid: e.uid, Gid: e.gid,
			Linkname: e.link, ModTime: time.Unix(1600000000, 0), Format: tar.FormatPAX}
		if typ == tar.TypeReg {
			hdr.Size = int64(len(e.data))
		}
		if err := tw.WriteHeader(hdr); err != nil {
			t.Fatal(err)
		}
		if typ == tar.TypeReg {
			if _, err := tw.Write([]byte(e.data)); err != nil {
				t.Fatal(err)
			}
		}
	}
	if err := tw.Close(); err != nil {
		t.Fatal(err)
	}
	return buf.Bytes()
}

func gzipBytes(t *testing.T, data []byte) []byte {
	t.Helper()
	var buf bytes.Buffer
	zw := gzip.NewWriter(&buf)
	if _, err := zw.Write(data); err != nil {
		t.Fatal(err)
	}
	if err := zw.Close(); err != nil {
		t.Fatal(err)
	}
	return buf.Bytes()
}
