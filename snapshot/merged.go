package snapshot

import (
	"bytes"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"time"

	"golang.org/x/sys/unix"
)

// MergedEntry is what overlayfs would show at a path of a stack of layers.
type MergedEntry struct {
	Exists bool
	Info   fs.FileInfo // of the topmost layer's entry
	Host   string      // that entry's host path
}

// ErrNotSimple is returned by LookupMerged when a path goes through a
// symlink, which only the mounted overlay resolves faithfully.
var ErrNotSimple = errors.New("path goes through a symlink")

// LookupMerged finds what the overlay of lowers (top first) shows at p
// (absolute, cleaned; the last component is not followed), honouring
// whiteouts and opaque directories. It returns every component from the
// first below "/" to p itself; a missing component ends the list with an
// entry whose Exists is false.
func LookupMerged(lowers []Snapshot, p string) ([]MergedEntry, error) {
	p = filepath.Clean("/" + p)
	if p == "/" {
		return nil, nil
	}
	layers := make([]string, len(lowers))
	for i, l := range lowers {
		layers[i] = l.Dir
	}
	var out []MergedEntry
	rel := ""
	parts := strings.Split(strings.TrimPrefix(p, "/"), "/")
	for i, c := range parts {
		rel = filepath.Join(rel, c)
		var found MergedEntry
		var below []string // layers whose dir at rel merges into the view
		for li, dir := range layers {
			host := filepath.Join(dir, rel)
			fi, err := os.Lstat(host)
			if errors.Is(err, fs.ErrNotExist) || errors.Is(err, unix.ENOTDIR) {
				continue
			}
			if err != nil {
				return nil, err
			}
			if isWhiteoutInfo(fi) {
				break // deleted here: nothing below shows
			}
			if !found.Exists {
				found = MergedEntry{Exists: true, Info: fi, Host: host}
				if !fi.IsDir() {
					break
				}
				below = append(below, dir)
				if opaque(host) {
					break
				}
				continue
			}
			// A lower layer's dir merges under the top one's; anything else
			// at rel is hidden by it.
			if fi.IsDir() {
				below = append(below, layers[li])
				if opaque(host) {
					break
				}
				continue
			}
			break
		}
		out = append(out, found)
		if !found.Exists {
			return out, nil
		}
		last := i == len(parts)-1
		if !last && found.Info.Mode()&fs.ModeSymlink != 0 {
			return nil, ErrNotSimple
		}
		if !last && !found.Info.IsDir() {
			return append(out, MergedEntry{}), nil
		}
		layers = below
	}
	return out, nil
}

func isWhiteoutInfo(fi fs.FileInfo) bool {
	if fi.Mode()&fs.ModeCharDevice == 0 {
		return false
	}
	st, ok := fi.Sys().(*syscall.Stat_t)
	if !ok {
		return false
	}
	return st.Rdev == 0
}

func opaque(dir string) bool {
	buf := make([]byte, 8)
	for _, name := range []string{opaqueXattr, userOpaqueXattr} {
		n, err := unix.Lgetxattr(dir, name, buf)
		if err == nil && bytes.Equal(buf[:n], []byte("y")) {
			return true
		}
	}
	return false
}

// CopyUpDirs makes in upper the directories of a merged path that exist in
// the lowers (entries as LookupMerged returned them for p), with their
// mode, owner, xattrs and times, as overlayfs's copy-up would before a file
// is created below them. Anything not a directory is an error.
func CopyUpDirs(upper, p string, entries []MergedEntry) error {
	parts := strings.Split(strings.TrimPrefix(filepath.Clean("/"+p), "/"), "/")
	rel := ""
	for i, e := range entries {
		if !e.Exists {
			return nil
		}
		rel = filepath.Join(rel, parts[i])
		if !e.Info.IsDir() {
			return fmt.Errorf("%s is not a directory", rel)
		}
		dst := filepath.Join(upper, rel)
		if _, err := os.Lstat(dst); err == nil {
			continue
		}
		st := e.Info.Sys().(*syscall.Stat_t)
		if err := os.Mkdir(dst, 0o700); err != nil {
			return err
		}
		if err := os.Lchown(dst, int(st.Uid), int(st.Gid)); err != nil {
			return err
		}
		if err := unix.Chmod(dst, st.Mode&0o7777); err != nil {
			return err
		}
		if err := copyDirXattrs(e.Host, dst); err != nil {
			return err
		}
		mt := time.Unix(st.Mtim.Sec, st.Mtim.Nsec)
		at := time.Unix(st.Atim.Sec, st.Atim.Nsec)
		if err := os.Chtimes(dst, at, mt); err != nil {
			return err
		}
	}
	return nil
}

// copyDirXattrs copies xattrs but overlayfs's own.
func copyDirXattrs(src, dst string) error {
	size, err := unix.Llistxattr(src, nil)
	if err != nil || size == 0 {
		if errors.Is(err, unix.ENOTSUP) {
			return nil
		}
		return err
	}
	buf := make([]byte, size)
	n, err := unix.Llistxattr(src, buf)
	if err != nil {
		return err
	}
	for _, name := range strings.Split(strings.TrimRight(string(buf[:n]), "\x00"), "\x00") {
		if name == "" || strings.HasPrefix(name, "trusted.overlay.") || strings.HasPrefix(name, "user.overlay.") {
			continue
		}
		vs, err := unix.Lgetxattr(src, name, nil)
		if err != nil {
			return err
		}
		v := make([]byte, vs)
		vn, err := unix.Lgetxattr(src, name, v)
		if err != nil {
			return err
		}
		if err := unix.Lsetxattr(dst, name, v[:vn], 0); err != nil {
			return err
		}
	}
	return nil
}
