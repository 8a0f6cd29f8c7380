package gc

import (
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"

	"golang.org/x/sys/unix"
)

// Trees are walked through directory descriptors (openat/fstatat/unlinkat
// with O_NOFOLLOW and AT_SYMLINK_NOFOLLOW): a snapshot holds whatever a
// build wrote, including symlinks to anywhere, and none of them may lead a
// walk or a removal out of the store.

const openDirFlags = unix.O_RDONLY | unix.O_DIRECTORY | unix.O_NOFOLLOW | unix.O_CLOEXEC

type devIno struct{ dev, ino uint64 }

// sizer measures disk usage (st_blocks*512). A file with several links is
// counted once per sizer, wherever it is met first.
type sizer struct {
	seen map[devIno]bool
}

func newSizer() *sizer { return &sizer{seen: map[devIno]bool{}} }

func (z *sizer) blocks(st *unix.Stat_t) int64 {
	if st.Mode&unix.S_IFMT != unix.S_IFDIR && st.Nlink > 1 {
		k := devIno{uint64(st.Dev), st.Ino}
		if z.seen[k] {
			return 0
		}
		z.seen[k] = true
	}
	return st.Blocks * 512
}

// size returns the disk usage of path and, for a directory, of everything
// below it on the same filesystem. Entries that vanish or cannot be read
// count as nothing: the number is a measure, not a promise.
func (z *sizer) size(ctx context.Context, path string) (int64, error) {
	var st unix.Stat_t
	if err := unix.Lstat(path, &st); err != nil {
		if errors.Is(err, unix.ENOENT) {
			return 0, nil
		}
		return 0, fmt.Errorf("measuring %s: %w", path, err)
	}
	n := z.blocks(&st)
	if st.Mode&unix.S_IFMT != unix.S_IFDIR {
		return n, nil
	}
	fd, err := unix.Open(path, openDirFlags, 0)
	if err != nil {
		return n, nil
	}
	sub, err := z.dirSize(ctx, fd, path, uint64(st.Dev))
	return n + sub, err
}

// dirSize sums the entries of the open directory fd and closes it.
func (z *sizer) dirSize(ctx context.Context, fd int, path string, dev uint64) (int64, error) {
	names, err := readNames(fd, path)
	if err != nil {
		unix.Close(fd)
		return 0, nil
	}
	defer unix.Close(fd)
	var total int64
	for _, name := range names {
		if err := ctx.Err(); err != nil {
			return total, err
		}
		var st unix.Stat_t
		if err := unix.Fstatat(fd, name, &st, unix.AT_SYMLINK_NOFOLLOW); err != nil {
			continue
		}
		total += z.blocks(&st)
		if st.Mode&unix.S_IFMT != unix.S_IFDIR || uint64(st.Dev) != dev {
			continue
		}
		cfd, err := unix.Openat(fd, name, openDirFlags, 0)
		if err != nil {
			continue
		}
		n, err := z.dirSize(ctx, cfd, path+"/"+name, dev)
		total += n
		if err != nil {
			return total, err
		}
	}
	return total, nil
}

// readNames lists the directory fd without closing it.
func readNames(fd int, path string) ([]string, error) {
	// A duplicate, so that closing the os.File leaves fd open.
	dup, err := unix.FcntlInt(uintptr(fd), unix.F_DUPFD_CLOEXEC, 0)
	if err != nil {
		return nil, err
	}
	f := os.NewFile(uintptr(dup), path)
	defer f.Close()
	return f.Readdirnames(-1)
}

// removeTree removes path and everything below it without following
// symlinks. Directories that forbid it (mode 000, read-only) are made
// writable on the way down; nothing else may change the tree while it
// runs (Collect holds the store lock exclusively). It refuses to descend
// into another filesystem, so a leftover mount can never be emptied.
func removeTree(ctx context.Context, path string) error {
	parent, name := filepath.Dir(path), filepath.Base(path)
	pfd, err := unix.Open(parent, openDirFlags, 0)
	if err != nil {
		if errors.Is(err, unix.ENOENT) {
			return nil
		}
		return fmt.Errorf("removing %s: %w", path, err)
	}
	defer unix.Close(pfd)
	var st unix.Stat_t
	if err := unix.Fstat(pfd, &st); err != nil {
		return fmt.Errorf("removing %s: %w", path, err)
	}
	return removeAt(ctx, pfd, name, path, uint64(st.Dev))
}

func removeAt(ctx context.Context, pfd int, name, path string, dev uint64) error {
	if err := ctx.Err(); err != nil {
		return err
	}
	var st unix.Stat_t
	if err := unix.Fstatat(pfd, name, &st, unix.AT_SYMLINK_NOFOLLOW); err != nil {
		if errors.Is(err, unix.ENOENT) {
			return nil
		}
		return fmt.Errorf("removing %s: %w", path, err)
	}
	if st.Mode&unix.S_IFMT != unix.S_IFDIR {
		if err := unix.Unlinkat(pfd, name, 0); err != nil && !errors.Is(err, unix.ENOENT) {
			return fmt.Errorf("removing %s: %w", path, err)
		}
		return nil
	}
	if uint64(st.Dev) != dev {
		return fmt.Errorf("removing %s: another filesystem is mounted there", path)
	}
	if st.Mode&0o700 != 0o700 {
		// fchmodat follows symlinks, but fstatat just saw a directory and
		// nothing else changes the tree now. Without this, a mode 000 or
		// read-only directory could not be listed or emptied by a process
		// lacking CAP_DAC_OVERRIDE.
		if err := unix.Fchmodat(pfd, name, 0o700, 0); err != nil {
			return fmt.Errorf("removing %s: %w", path, err)
		}
	}
	fd, err := unix.Openat(pfd, name, openDirFlags, 0)
	if err != nil {
		return fmt.Errorf("removing %s: %w", path, err)
	}
	var ost unix.Stat_t
	if err := unix.Fstat(fd, &ost); err != nil || ost.Dev != st.Dev || ost.Ino != st.Ino {
		unix.Close(fd)
		return fmt.Errorf("removing %s: directory changed while being removed", path)
	}
	names, err := readNames(fd, path)
	if err != nil {
		unix.Close(fd)
		return fmt.Errorf("removing %s: %w", path, err)
	}
	for _, n := range names {
		if err := removeAt(ctx, fd, n, path+"/"+n, dev); err != nil {
			unix.Close(fd)
			return err
		}
	}
	unix.Close(fd)
	if err := unix.Unlinkat(pfd, name, unix.AT_REMOVEDIR); err != nil && !errors.Is(err, unix.ENOENT) {
		return fmt.Errorf("removing %s: %w", path, err)
	}
	return nil
}

// mountPoints lists the mount points at or below root, from
// /proc/self/mountinfo. Nothing under a mount point is removed.
func mountPoints(root string) ([]string, error) {
	b, err := os.ReadFile("/proc/self/mountinfo")
	if err != nil {
		return nil, fmt.Errorf("reading mount table: %w", err)
	}
	var out []string
	for _, line := range strings.Split(string(b), "\n") {
		f := strings.Fields(line)
		if len(f) < 5 {
			continue
		}
		mp := unescapeMount(f[4])
		if within(mp, root) {
			out = append(out, mp)
		}
	}
	return out, nil
}

// unescapeMount undoes mountinfo's octal escapes (\040 for a space...).
func unescapeMount(s string) string {
	if !strings.Contains(s, `\`) {
		return s
	}
	var b strings.Builder
	for i := 0; i < len(s); i++ {
		if s[i] == '\\' && i+3 < len(s) && isOctal(s[i+1]) && isOctal(s[i+2]) && isOctal(s[i+3]) {
			b.WriteByte((s[i+1]-'0')<<6 | (s[i+2]-'0')<<3 | (s[i+3] - '0'))
			i += 3
			continue
		}
		b.WriteByte(s[i])
	}
	return b.String()
}

func isOctal(c byte) bool { return c >= '0' && c <= '7' }

// within reports whether p is dir or below it (clean absolute paths).
func within(p, dir string) bool {
	return p == dir || strings.HasPrefix(p, strings.TrimSuffix(dir, "/")+"/")
}
