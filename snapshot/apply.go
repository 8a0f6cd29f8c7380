package snapshot

import (
	"archive/tar"
	"context"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"time"

	securejoin "github.com/cyphar/filepath-securejoin"
	"golang.org/x/sys/unix"
)

// ApplyMode says what Apply does with OCI whiteout entries.
type ApplyMode int

const (
	// ApplyOverlay (the zero value) makes a per-layer snapshot: .wh.NAME
	// becomes a 0/0 character device NAME and .wh..wh..opq marks its
	// directory opaque with the trusted.overlay.opaque=y xattr.
	ApplyOverlay ApplyMode = iota
	// ApplyFlatten applies a layer onto a root filesystem: .wh.NAME deletes
	// NAME and .wh..wh..opq deletes what the directory held before this
	// layer.
	ApplyFlatten
	// ApplyPlain extracts an ordinary archive: .wh. names are plain files.
	ApplyPlain
)

// Owner is a numeric uid/gid pair.
type Owner struct {
	UID, GID int
}

// ApplyOptions control Apply.
type ApplyOptions struct {
	Mode ApplyMode
	// Owner, when set, replaces the ownership of every entry (ADD --chown).
	Owner *Owner
}

const (
	whPrefix = ".wh."
	whMeta   = ".wh..wh."
	whOpaque = ".wh..wh..opq"
	xattrPAX = "SCHILY.xattr."
)

// copyBufs holds 1 MiB copy buffers shared by Apply and Diff.
var copyBufs = sync.Pool{New: func() any { b := make([]byte, 1<<20); return &b }}

// applier is the state of one Apply call.
type applier struct {
	dest string
	opts ApplyOptions
	root bool // running as root: ownership failures are errors
	buf  []byte
	// written holds the cleaned names this layer wrote and all their
	// ancestors; whiteouts and opaque markers spare them.
	written map[string]struct{}
	// dirTimes are set last, since writing children changes them.
	dirTimes map[string][2]unix.Timespec
	// parents caches resolved parent dirs; dropped whenever a symlink or
	// directory is created over or removed, as that can change resolution.
	parents map[string]string
}

// Apply extracts the uncompressed tar r into dest. Nothing is ever created,
// changed or removed outside dest: names are cleaned ("/etc" and "./etc"
// both mean dest/etc, names climbing out with ".." are errors), symlinks
// met in parent paths are resolved as if dest were the root, hard links
// must name a regular file already inside dest, and an entry whose path
// holds a symlink replaces the symlink rather than writing through it.
// Ownership, modes (with setuid/setgid/sticky), mtimes and xattrs
// (except trusted.overlay.*, user.overlay.* and security.selinux) are kept.
func Apply(ctx context.Context, dest string, r io.Reader, opts ApplyOptions) error {
	if opts.Mode < ApplyOverlay || opts.Mode > ApplyPlain {
		return fmt.Errorf("applying layer: unknown mode %d", opts.Mode)
	}
	d, err := filepath.Abs(dest)
	if err != nil {
		return fmt.Errorf("applying layer: %w", err)
	}
	if err := os.MkdirAll(d, 0o755); err != nil {
		return fmt.Errorf("applying layer: %w", err)
	}
	bp := copyBufs.Get().(*[]byte)
	defer copyBufs.Put(bp)
	a := &applier{
		dest:     d,
		opts:     opts,
		root:     os.Geteuid() == 0,
		buf:      *bp,
		written:  map[string]struct{}{},
		dirTimes: map[string][2]unix.Timespec{},
		parents:  map[string]string{},
	}
	tr := tar.NewReader(r)
	for {
		if err := ctx.Err(); err != nil {
			return err
		}
		hdr, err := tr.Next()
		if errors.Is(err, io.EOF) {
			break
		}
		if err != nil {
			return fmt.Errorf("reading layer tar: %w", err)
		}
		if err := a.entry(hdr, tr); err != nil {
			return fmt.Errorf("applying entry %q: %w", hdr.Name, err)
		}
	}
	return a.setDirTimes()
}

// cleanName turns a tar name into a clean relative path ("." for the root)
// and rejects names that climb out of it.
func cleanName(name string) (string, error) {
	if strings.IndexByte(name, 0) >= 0 {
		return "", errors.New("name contains NUL")
	}
	for {
		if s, ok := strings.CutPrefix(name, "/"); ok {
			name = s
		} else if s, ok := strings.CutPrefix(name, "./"); ok {
			name = s
		} else {
			break
		}
	}
	n := path.Clean(name)
	if n == ".." || strings.HasPrefix(n, "../") {
		return "", errors.New("path escapes the destination")
	}
	return n, nil
}

// split returns the parent (".": root) and last element of a clean name.
func split(rel string) (string, string) {
	dir, base := path.Split(rel)
	return path.Clean(dir), base
}

func (a *applier) entry(hdr *tar.Header, r io.Reader) error {
	if hdr.Typeflag == tar.TypeXGlobalHeader {
		return nil
	}
	rel, err := cleanName(hdr.Name)
	if err != nil {
		return err
	}
	if a.opts.Mode != ApplyPlain && strings.HasPrefix(path.Base(rel), whPrefix) {
		return a.whiteout(rel)
	}
	if rel == "." {
		if hdr.Typeflag != tar.TypeDir {
			return errors.New("names the destination root but is not a directory")
		}
		return a.meta(a.dest, ".", hdr)
	}
	parentRel, base := split(rel)
	parent, err := a.parent(parentRel, true)
	if err != nil {
		return err
	}
	target := filepath.Join(parent, base)

	var linkSrc string
	if hdr.Typeflag == tar.TypeLink {
		if linkSrc, err = a.linkTarget(hdr.Linkname); err != nil {
			return err
		}
		if linkSrc == target {
			a.markWritten(rel)
			return nil
		}
	}
	isDir := hdr.Typeflag == tar.TypeDir
	kept, wasWhiteout, err := a.clear(target, isDir)
	if err != nil {
		return err
	}
	perm := uint32(hdr.Mode) & 0o7777
	switch hdr.Typeflag {
	case tar.TypeDir:
		if !kept {
			err = os.Mkdir(target, 0o700)
		}
	case tar.TypeReg, '\x00', tar.TypeCont, tar.TypeGNUSparse:
		err = a.writeFile(target, r)
	case tar.TypeSymlink:
		clear(a.parents)
		err = os.Symlink(hdr.Linkname, target)
	case tar.TypeLink:
		// Flags 0: never follow linkSrc should it be a symlink by now.
		err = unix.Linkat(unix.AT_FDCWD, linkSrc, unix.AT_FDCWD, target, 0)
	case tar.TypeChar:
		err = unix.Mknod(target, unix.S_IFCHR|perm, devNum(hdr))
	case tar.TypeBlock:
		err = unix.Mknod(target, unix.S_IFBLK|perm, devNum(hdr))
	case tar.TypeFifo:
		err = unix.Mknod(target, unix.S_IFIFO|perm, 0)
	default:
		return fmt.Errorf("unsupported tar entry type %q", hdr.Typeflag)
	}
	if err != nil {
		return fmt.Errorf("creating %s: %w", rel, err)
	}
	a.markWritten(rel)
	if hdr.Typeflag == tar.TypeLink {
		return nil // shares the target's inode and metadata
	}
	if isDir && wasWhiteout && a.opts.Mode == ApplyOverlay {
		// A directory made over this layer's own whiteout must also hide
		// what lower layers had there.
		if err := setOpaque(target); err != nil {
			return err
		}
	}
	return a.meta(target, rel, hdr)
}

func devNum(hdr *tar.Header) int {
	return int(unix.Mkdev(uint32(hdr.Devmajor), uint32(hdr.Devminor)))
}

// parent resolves the directory rel (a clean name) within dest, following
// symlinks as if dest were "/". With create, missing directories are made;
// otherwise a missing one (or a non-directory) is an error wrapping
// fs.ErrNotExist.
func (a *applier) parent(rel string, create bool) (string, error) {
	if rel == "." {
		return a.dest, nil
	}
	if p, ok := a.parents[rel]; ok {
		return p, nil
	}
	p, err := securejoin.SecureJoin(a.dest, rel)
	if err != nil {
		return "", fmt.Errorf("resolving %s: %w", rel, err)
	}
	fi, err := os.Lstat(p)
	switch {
	case !create && (err == nil && !fi.IsDir() || errors.Is(err, unix.ENOTDIR)):
		// Whatever is there is not a directory, so nothing is below it.
		return "", fmt.Errorf("parent %s: %w", rel, fs.ErrNotExist)
	case err == nil && !fi.IsDir():
		return "", fmt.Errorf("parent %s is not a directory", rel)
	case err == nil:
	case errors.Is(err, fs.ErrNotExist) && create:
		// SecureJoin resolved every existing component, so what is left
		// to create holds no symlinks.
		if err := os.MkdirAll(p, 0o755); err != nil {
			return "", fmt.Errorf("creating parent %s: %w", rel, err)
		}
	default:
		return "", fmt.Errorf("parent %s: %w", rel, err)
	}
	a.parents[rel] = p
	return p, nil
}

// linkTarget resolves a hard link's target name within dest; it must be
// an existing regular file.
func (a *applier) linkTarget(name string) (string, error) {
	rel, err := cleanName(name)
	if err != nil {
		return "", fmt.Errorf("hard link target %q: %w", name, err)
	}
	if rel == "." {
		return "", fmt.Errorf("hard link target %q is the root", name)
	}
	parentRel, base := split(rel)
	parent, err := a.parent(parentRel, false)
	if err != nil {
		return "", fmt.Errorf("hard link target %q: %w", name, err)
	}
	p := filepath.Join(parent, base)
	fi, err := os.Lstat(p)
	if err != nil {
		return "", fmt.Errorf("hard link target %q: %w", name, err)
	}
	if !fi.Mode().IsRegular() {
		return "", fmt.Errorf("hard link target %q is not a regular file", name)
	}
	return p, nil
}

// clear makes room for a new entry at target. An existing directory is
// kept when keepDir is set (kept reports that); anything else there is
// removed. wasWhiteout reports that an overlay whiteout was replaced.
func (a *applier) clear(target string, keepDir bool) (kept, wasWhiteout bool, err error) {
	fi, err := os.Lstat(target)
	if errors.Is(err, fs.ErrNotExist) {
		return false, false, nil
	}
	if err != nil {
		return false, false, err
	}
	if fi.IsDir() {
		if keepDir {
			return true, false, nil
		}
		clear(a.parents)
		return false, false, os.RemoveAll(target)
	}
	if fi.Mode()&fs.ModeSymlink != 0 {
		clear(a.parents)
	}
	return false, isWhiteout(fi), os.Remove(target)
}

// isWhiteout reports whether fi is an overlay whiteout (0/0 char device).
func isWhiteout(fi fs.FileInfo) bool {
	if fi.Mode()&fs.ModeCharDevice == 0 || fi.Mode()&fs.ModeDevice == 0 {
		return false
	}
	st, ok := fi.Sys().(*syscall.Stat_t)
	if !ok {
		return false
	}
	return st.Rdev == 0
}

// writeFile creates target (which must not exist) with r's content.
func (a *applier) writeFile(target string, r io.Reader) error {
	f, err := os.OpenFile(target, os.O_WRONLY|os.O_CREATE|os.O_EXCL|unix.O_NOFOLLOW|unix.O_CLOEXEC, 0o600)
	if err != nil {
		return err
	}
	// The wrappers hide ReadFrom/WriteTo so the pooled buffer is used.
	if _, err := io.CopyBuffer(struct{ io.Writer }{f}, struct{ io.Reader }{r}, a.buf); err != nil {
		f.Close()
		return err
	}
	return f.Close()
}

// markWritten records rel and its ancestors as written by this layer.
func (a *applier) markWritten(rel string) {
	if a.opts.Mode == ApplyPlain {
		return
	}
	for rel != "." {
		if _, ok := a.written[rel]; ok {
			return // its ancestors are already there
		}
		a.written[rel] = struct{}{}
		rel = path.Dir(rel)
	}
}

// meta sets ownership, xattrs, mode and times on a just-written entry.
// Order matters: chown clears setuid bits and file capabilities.
func (a *applier) meta(target, rel string, hdr *tar.Header) error {
	uid, gid := hdr.Uid, hdr.Gid
	if o := a.opts.Owner; o != nil {
		uid, gid = o.UID, o.GID
	}
	if err := os.Lchown(target, uid, gid); err != nil && (a.root || !errors.Is(err, fs.ErrPermission)) {
		return fmt.Errorf("chown %s: %w", rel, err)
	}
	symlink := hdr.Typeflag == tar.TypeSymlink
	for k, v := range hdr.PAXRecords {
		name, ok := strings.CutPrefix(k, xattrPAX)
		if !ok || skipXattr(name) {
			continue
		}
		if err := unix.Lsetxattr(target, name, []byte(v), 0); err != nil {
			if errors.Is(err, unix.ENOTSUP) || (errors.Is(err, unix.EPERM) && (symlink || !a.root)) {
				continue
			}
			return fmt.Errorf("setting xattr %s on %s: %w", name, rel, err)
		}
	}
	if !symlink {
		if err := unix.Chmod(target, uint32(hdr.Mode)&0o7777); err != nil {
			return fmt.Errorf("chmod %s: %w", rel, err)
		}
	}
	atime := hdr.AccessTime
	if atime.IsZero() {
		atime = hdr.ModTime
	}
	ts := [2]unix.Timespec{timespec(atime), timespec(hdr.ModTime)}
	if hdr.Typeflag == tar.TypeDir {
		a.dirTimes[rel] = ts
		return nil
	}
	if err := unix.UtimesNanoAt(unix.AT_FDCWD, target, ts[:], unix.AT_SYMLINK_NOFOLLOW); err != nil {
		return fmt.Errorf("setting times of %s: %w", rel, err)
	}
	return nil
}

func timespec(t time.Time) unix.Timespec {
	return unix.Timespec{Sec: t.Unix(), Nsec: int64(t.Nanosecond())}
}

// skipXattr reports xattrs never taken from or put into a layer: overlay's
// own marks (a layer must not forge them) and host security labels.
func skipXattr(name string) bool {
	return strings.HasPrefix(name, "trusted.overlay.") ||
		strings.HasPrefix(name, "user.overlay.") ||
		name == "security.selinux"
}

// setDirTimes sets the recorded directory times, resolving each name
// afresh since the tree may have changed since it was written.
func (a *applier) setDirTimes() error {
	for rel, ts := range a.dirTimes {
		p := a.dest
		if rel != "." {
			parentRel, base := split(rel)
			parent, err := securejoin.SecureJoin(a.dest, parentRel)
			if err != nil {
				continue
			}
			p = filepath.Join(parent, base)
		}
		fi, err := os.Lstat(p)
		if err != nil || !fi.IsDir() {
			continue // replaced or removed by a later entry
		}
		if err := unix.UtimesNanoAt(unix.AT_FDCWD, p, ts[:], unix.AT_SYMLINK_NOFOLLOW); err != nil {
			return fmt.Errorf("setting times of %s: %w", rel, err)
		}
	}
	return nil
}
