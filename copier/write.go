package copier

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"time"

	"golang.org/x/sys/unix"

	mode "github.com/tonistiigi/dchapes-mode"
)

// copyChunk is how much file content is copied between context checks; the
// copy itself goes through the kernel (copy_file_range) when it can.
const copyChunk = 32 << 20

// owner is a numeric uid:gid pair.
type owner struct{ uid, gid uint32 }

// devIno identifies a source inode, to keep hard links linked.
type devIno struct{ dev, ino uint64 }

// writer creates entries under the destination root.
type writer struct {
	root      string
	chown     *owner    // --chown: every written entry
	zeroOwner bool      // build context: 0:0 instead of the source owner
	chmod     *uint32   // --chmod: every written entry but symlinks
	chmodSet  *mode.Set // symbolic --chmod, applied to each source mode
	epoch     *time.Time
	reuse     string            // Request.Reuse
	cmp       cmpBufs           // buffers for comparing files with reuse (sequential path)
	now       time.Time         // when the copy started
	links     map[devIno]string // first destination path of each hard-linked inode
	// reuseIndex is Request.ReuseIndex (only with Reuse); index is its
	// content once loaded, nil when unusable.
	reuseIndex string
	index      map[string]fileID
	indexOnce  sync.Once
	// mu guards out and stats, which pool workers update too.
	mu sync.Mutex
	// out is the index of this copy's result (nil without IndexOut).
	out   map[string]fileID
	stats copyStats
	// workers is how many goroutines copy regular files of large trees
	// (0: all in the caller); pool runs them once started, and treeFiles
	// counts the files that could go to it.
	workers   int
	pool      *pool
	treeFiles int
	// deferred lists left directories whose metadata waits for pool
	// jobs, in walk order.
	deferred []deferredDir
	// retime lists directories whose mtime must be set again once the copy
	// is done, since writing their children changes it.
	retime []timedPath
}

// copyStats counts how reused files were found equal (for tests and
// benchmarks).
type copyStats struct {
	compared int // content compared byte for byte
	indexed  int // content vouched for by the reuse index
}

// cmpBufs are the two buffers sameContent reads into, allocated on first use.
type cmpBufs [2][]byte

type timedPath struct {
	path string
	t    time.Time
}

// finish sets the deferred directory times, deepest first.
func (w *writer) finish() error {
	for i := len(w.retime) - 1; i >= 0; i-- {
		if err := setTimes(w.retime[i].path, w.retime[i].t); err != nil {
			return err
		}
	}
	return nil
}

// clamp applies SOURCE_DATE_EPOCH to a timestamp.
func (w *writer) clamp(t time.Time) time.Time {
	if w.epoch != nil && t.After(*w.epoch) {
		return *w.epoch
	}
	return t
}

// defaultOwner is the owner of directories COPY creates itself.
func (w *writer) defaultOwner() owner {
	if w.chown != nil {
		return *w.chown
	}
	return owner{}
}

// inRoot checks that abs is the destination root or below it.
func (w *writer) inRoot(abs string) (string, error) {
	rel, err := filepath.Rel(w.root, abs)
	if err != nil || rel == ".." || strings.HasPrefix(rel, "../") || filepath.IsAbs(rel) {
		return "", fmt.Errorf("path %s escapes the destination root", abs)
	}
	return rel, nil
}

// mkdirAll creates abs (already resolved inside the root) and its missing
// parents: mode 0755, owned by the --chown user (else root). Existing
// directories are left as they are; a non-directory on the way is an error.
func (w *writer) mkdirAll(abs string) error {
	rel, err := w.inRoot(abs)
	if err != nil {
		return err
	}
	if rel == "." {
		return nil
	}
	cur := w.root
	for _, c := range strings.Split(rel, "/") {
		cur = filepath.Join(cur, c)
		fi, err := os.Lstat(cur)
		if err == nil {
			if !fi.IsDir() {
				return fmt.Errorf("creating directory %s: %s exists and is not a directory", abs, w.display(cur))
			}
			continue
		}
		if !errors.Is(err, fs.ErrNotExist) {
			return fmt.Errorf("creating directory %s: %w", w.display(cur), err)
		}
		if err := os.Mkdir(cur, 0o700); err != nil {
			return fmt.Errorf("creating directory %s: %w", w.display(cur), err)
		}
		o := w.defaultOwner()
		if err := os.Lchown(cur, int(o.uid), int(o.gid)); err != nil {
			return fmt.Errorf("chown %s: %w", w.display(cur), err)
		}
		if err := unix.Fchmodat(unix.AT_FDCWD, cur, 0o755, 0); err != nil {
			return fmt.Errorf("chmod %s: %w", w.display(cur), err)
		}
		w.retime = append(w.retime, timedPath{cur, w.clamp(w.now)})
	}
	return nil
}

// display names a destination path as it appears in the image.
func (w *writer) display(abs string) string {
	rel, err := filepath.Rel(w.root, abs)
	if err != nil {
		return abs
	}
	return filepath.Join("/", rel)
}

// clear removes a non-directory at dst so a new entry can take its place; a
// symlink there is removed, never followed.
func (w *writer) clear(dst string) error {
	fi, err := os.Lstat(dst)
	if errors.Is(err, fs.ErrNotExist) {
		return nil
	}
	if err != nil {
		return err
	}
	if fi.IsDir() {
		return fmt.Errorf("cannot replace directory %s with a non-directory", w.display(dst))
	}
	return os.Remove(dst)
}

// nonDir writes a file, symlink, device or FIFO from src to dst.
// bufs are the caller's comparison buffers (one set per goroutine).
func (w *writer) nonDir(ctx context.Context, bufs *cmpBufs, src string, info fs.FileInfo, dst string) error {
	if err := w.clear(dst); err != nil {
		return err
	}
	w.forget(dst)
	st := info.Sys().(*syscall.Stat_t)
	var key devIno
	if info.Mode().IsRegular() && st.Nlink > 1 {
		key = devIno{uint64(st.Dev), st.Ino}
		if first, ok := w.links[key]; ok {
			if err := os.Link(first, dst); err != nil {
				return fmt.Errorf("hard-linking %s: %w", w.display(dst), err)
			}
			w.record(dst, st)
			return nil
		}
	}
	switch mode := info.Mode(); {
	case mode.IsRegular():
		// info is the lstat from before any read of src: what the
		// index records for dst.
		if w.reuse != "" && w.linkUnchanged(ctx, bufs, src, info, dst) {
			if key != (devIno{}) {
				w.links[key] = dst
			}
			w.record(dst, st)
			return nil
		}
		if err := copyFile(ctx, src, dst); err != nil {
			return err
		}
	case mode&fs.ModeSymlink != 0:
		target, err := os.Readlink(src)
		if err != nil {
			return fmt.Errorf("reading link %s: %w", src, err)
		}
		if err := os.Symlink(target, dst); err != nil {
			return fmt.Errorf("creating symlink %s: %w", w.display(dst), err)
		}
	case mode&(fs.ModeDevice|fs.ModeCharDevice|fs.ModeNamedPipe) != 0:
		if err := unix.Mknod(dst, st.Mode&(unix.S_IFMT|0o777), int(st.Rdev)); err != nil {
			return fmt.Errorf("creating device %s: %w", w.display(dst), err)
		}
	default:
		return nil // sockets cannot be copied; like BuildKit's context transfer, skip them
	}
	if err := w.meta(src, info, dst); err != nil {
		return err
	}
	if key != (devIno{}) {
		w.links[key] = dst
	}
	if info.Mode().IsRegular() {
		w.record(dst, st)
	}
	return nil
}

// enterDir makes dst for a source directory; an existing directory is
// merged into (its metadata is replaced on leave).
func (w *writer) enterDir(dst string) error {
	fi, err := os.Lstat(dst)
	if err == nil {
		if !fi.IsDir() {
			return fmt.Errorf("cannot copy a directory to non-directory %s", w.display(dst))
		}
		return nil
	}
	if !errors.Is(err, fs.ErrNotExist) {
		return err
	}
	// 0700 until leave: children are written first, then the real mode.
	if err := os.Mkdir(dst, 0o700); err != nil {
		return fmt.Errorf("creating directory %s: %w", w.display(dst), err)
	}
	return nil
}

// meta gives dst the source's owner (or the forced one), mode (or --chmod),
// xattrs and mtime (clamped to the epoch).
func (w *writer) meta(src string, info fs.FileInfo, dst string) error {
	st := info.Sys().(*syscall.Stat_t)
	o := owner{st.Uid, st.Gid}
	switch {
	case w.chown != nil:
		o = *w.chown
	case w.zeroOwner:
		o = owner{}
	}
	if err := os.Lchown(dst, int(o.uid), int(o.gid)); err != nil {
		return fmt.Errorf("chown %s: %w", w.display(dst), err)
	}
	if info.Mode()&fs.ModeSymlink == 0 {
		mode := w.applyChmod(st.Mode & 0o7777)
		// After chown: chown clears setuid/setgid bits.
		if err := unix.Fchmodat(unix.AT_FDCWD, dst, mode, 0); err != nil {
			return fmt.Errorf("chmod %s: %w", w.display(dst), err)
		}
	}
	// After chown too: it drops security.capability.
	if err := copyXattrs(src, dst); err != nil {
		return fmt.Errorf("copying xattrs to %s: %w", w.display(dst), err)
	}
	return setTimes(dst, w.clamp(time.Unix(st.Mtim.Sec, st.Mtim.Nsec)))
}

// writeData creates dst with data (an inline file) owned by the forced owner
// or root.
func (w *writer) writeData(dst string, data []byte, mode uint32) error {
	if err := w.clear(dst); err != nil {
		return err
	}
	w.forget(dst)
	f, err := os.OpenFile(dst, os.O_WRONLY|os.O_CREATE|os.O_EXCL|unix.O_NOFOLLOW|unix.O_CLOEXEC, 0o600)
	if err != nil {
		return fmt.Errorf("creating %s: %w", w.display(dst), err)
	}
	_, werr := f.Write(data)
	if cerr := f.Close(); werr == nil {
		werr = cerr
	}
	if werr != nil {
		return fmt.Errorf("writing %s: %w", w.display(dst), werr)
	}
	o := w.defaultOwner()
	if err := os.Lchown(dst, int(o.uid), int(o.gid)); err != nil {
		return fmt.Errorf("chown %s: %w", w.display(dst), err)
	}
	mode = w.applyChmod(mode & 0o7777)
	if err := unix.Fchmodat(unix.AT_FDCWD, dst, mode&0o7777, 0); err != nil {
		return fmt.Errorf("chmod %s: %w", w.display(dst), err)
	}
	return setTimes(dst, w.clamp(w.now))
}

// copyFile copies a regular file's content, checking ctx between chunks.
func copyFile(ctx context.Context, src, dst string) error {
	in, err := os.OpenFile(src, os.O_RDONLY|unix.O_NOFOLLOW|unix.O_CLOEXEC, 0)
	if err != nil {
		return fmt.Errorf("opening source %s: %w", src, err)
	}
	defer in.Close()
	out, err := os.OpenFile(dst, os.O_WRONLY|os.O_CREATE|os.O_EXCL|unix.O_NOFOLLOW|unix.O_CLOEXEC, 0o600)
	if err != nil {
		return fmt.Errorf("creating %s: %w", dst, err)
	}
	for {
		if err = ctx.Err(); err != nil {
			break
		}
		// io.CopyN hands a LimitedReader over an *os.File to the
		// destination's ReadFrom, which uses copy_file_range/sendfile.
		_, err = io.CopyN(out, in, copyChunk)
		if err == io.EOF {
			err = nil // the file ended within this chunk
			break
		}
		if err != nil {
			err = fmt.Errorf("copying %s: %w", src, err)
			break
		}
	}
	if cerr := out.Close(); err == nil && cerr != nil {
		err = fmt.Errorf("writing %s: %w", dst, cerr)
	}
	return err
}

// setTimes sets atime and mtime of p without following a symlink.
func setTimes(p string, t time.Time) error {
	ts := unix.NsecToTimespec(t.UnixNano())
	if err := unix.UtimesNanoAt(unix.AT_FDCWD, p, []unix.Timespec{ts, ts}, unix.AT_SYMLINK_NOFOLLOW); err != nil {
		return fmt.Errorf("setting times of %s: %w", p, err)
	}
	return nil
}

// skipXattr reports xattrs never copied: overlay bookkeeping of the source
// mount, and host security labels.
func skipXattr(name string) bool {
	return strings.HasPrefix(name, "trusted.overlay.") || name == "security.selinux"
}

// listXattrs returns src's xattrs (sorted by the kernel's order) that are
// copied, with their values.
func listXattrs(src string) ([]string, [][]byte, error) {
	size, err := unix.Llistxattr(src, nil)
	if err != nil || size == 0 {
		if errors.Is(err, unix.ENOTSUP) {
			err = nil
		}
		return nil, nil, err
	}
	buf := make([]byte, size)
	size, err = unix.Llistxattr(src, buf)
	if err != nil {
		return nil, nil, err
	}
	var names []string
	var values [][]byte
	for _, name := range strings.Split(string(buf[:size]), "\x00") {
		if name == "" || skipXattr(name) {
			continue
		}
		val, err := getXattr(src, name)
		if errors.Is(err, unix.ENODATA) {
			continue
		}
		if err != nil {
			return nil, nil, err
		}
		names = append(names, name)
		values = append(values, val)
	}
	return names, values, nil
}

func getXattr(p, name string) ([]byte, error) {
	size, err := unix.Lgetxattr(p, name, nil)
	if err != nil {
		return nil, err
	}
	buf := make([]byte, size)
	size, err = unix.Lgetxattr(p, name, buf)
	if err != nil {
		return nil, err
	}
	return buf[:size], nil
}

// copyXattrs copies xattrs; ones the destination filesystem refuses are
// dropped, as BuildKit does.
func copyXattrs(src, dst string) error {
	names, values, err := listXattrs(src)
	if err != nil {
		return err
	}
	for i, name := range names {
		err := unix.Lsetxattr(dst, name, values[i], 0)
		if err != nil && !errors.Is(err, unix.ENOTSUP) && !errors.Is(err, unix.EPERM) {
			return fmt.Errorf("setting %s: %w", name, err)
		}
	}
	return nil
}

// linkUnchanged hard-links dst to the file at the same place in w.reuse
// when that file is exactly what copying src would make: same content,
// mode, owner and mtime, and no xattrs on either. The content is compared
// byte for byte unless the reuse index recorded src's current identity for
// that file. Any doubt means false and a normal copy.
func (w *writer) linkUnchanged(ctx context.Context, bufs *cmpBufs, src string, info fs.FileInfo, dst string) bool {
	rel, err := filepath.Rel(w.root, dst)
	if err != nil || strings.HasPrefix(rel, "..") {
		return false
	}
	cand := filepath.Join(w.reuse, rel)
	cfi, err := os.Lstat(cand)
	if err != nil || !cfi.Mode().IsRegular() || cfi.Size() != info.Size() {
		return false
	}
	st := info.Sys().(*syscall.Stat_t)
	cst := cfi.Sys().(*syscall.Stat_t)
	o := owner{st.Uid, st.Gid}
	switch {
	case w.chown != nil:
		o = *w.chown
	case w.zeroOwner:
		o = owner{}
	}
	mt := w.clamp(time.Unix(st.Mtim.Sec, st.Mtim.Nsec))
	if cst.Uid != o.uid || cst.Gid != o.gid || cst.Mode&0o7777 != w.applyChmod(st.Mode&0o7777) ||
		cst.Mtim.Sec != mt.Unix() || cst.Mtim.Nsec != int64(mt.Nanosecond()) {
		return false
	}
	if n, _, err := listXattrs(src); err != nil || len(n) > 0 {
		return false
	}
	if w.indexed(rel, st) {
		// cand was written by the copy the index describes, from this
		// source as it still is (an xattr change would have moved its
		// ctime): it has the source's xattrs, i.e. none.
		w.mu.Lock()
		w.stats.indexed++
		w.mu.Unlock()
	} else {
		if n, _, err := listXattrs(cand); err != nil || len(n) > 0 {
			return false
		}
		if bufs[0] == nil {
			*bufs = cmpBufs{make([]byte, 256<<10), make([]byte, 256<<10)}
		}
		w.mu.Lock()
		w.stats.compared++
		w.mu.Unlock()
		if !sameContent(ctx, src, cand, bufs[0], bufs[1]) {
			return false
		}
	}
	return os.Link(cand, dst) == nil
}

// sameContent compares two files byte for byte.
func sameContent(ctx context.Context, a, b string, ba, bb []byte) bool {
	fa, err := os.OpenFile(a, os.O_RDONLY|unix.O_NOFOLLOW|unix.O_CLOEXEC, 0)
	if err != nil {
		return false
	}
	defer fa.Close()
	fb, err := os.OpenFile(b, os.O_RDONLY|unix.O_NOFOLLOW|unix.O_CLOEXEC, 0)
	if err != nil {
		return false
	}
	defer fb.Close()
	for {
		if ctx.Err() != nil {
			return false
		}
		na, ea := io.ReadFull(fa, ba)
		nb, eb := io.ReadFull(fb, bb)
		if na != nb || !bytes.Equal(ba[:na], bb[:nb]) {
			return false
		}
		if ea == io.EOF || ea == io.ErrUnexpectedEOF {
			return eb == ea
		}
		if ea != nil || eb != nil {
			return false
		}
	}
}
