package source

import (
	"context"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path/filepath"
	"slices"
	"syscall"
	"time"

	"golang.org/x/sys/unix"
)

// ctxReader stops a long local copy when ctx ends (network bodies already
// do, through the request's context).
type ctxReader struct {
	ctx context.Context
	r   io.Reader
}

func (c ctxReader) Read(p []byte) (int, error) {
	if err := c.ctx.Err(); err != nil {
		return 0, err
	}
	return c.r.Read(p)
}

// publishDir renames the finished directory tmp to final. If final already
// exists (another caller published the same entry first) tmp is removed
// and won is false: entries are immutable and equal by construction.
func publishDir(tmp, final string) (won bool, err error) {
	err = os.Rename(tmp, final)
	if err == nil {
		return true, nil
	}
	if errors.Is(err, syscall.EEXIST) || errors.Is(err, syscall.ENOTEMPTY) {
		if fi, serr := os.Lstat(final); serr == nil && fi.IsDir() {
			_ = os.RemoveAll(tmp)
			return false, nil
		}
	}
	return false, err
}

// writeFileAtomic writes data to path through a temp file in the same
// directory, so readers see the old or the new content, never a part.
func writeFileAtomic(path string, data []byte) error {
	f, err := os.CreateTemp(filepath.Dir(path), ".tmp-*")
	if err != nil {
		return err
	}
	tmp := f.Name()
	_, err = f.Write(data)
	if err == nil {
		err = f.Sync()
	}
	if cerr := f.Close(); err == nil {
		err = cerr
	}
	if err == nil {
		err = os.Rename(tmp, path)
	}
	if err != nil {
		_ = os.Remove(tmp)
	}
	return err
}

// lchtimes sets atime and mtime of p without following a symlink.
func lchtimes(p string, t time.Time) error {
	ts := unix.NsecToTimespec(t.UnixNano())
	return unix.UtimesNanoAt(unix.AT_FDCWD, p, []unix.Timespec{ts, ts}, unix.AT_SYMLINK_NOFOLLOW)
}

// normaliseTree gives every entry under root the time t, and, outside any
// .git directory, the modes a Git checkout has with umask 022 (what
// BuildKit documents for ADD from Git: files 0644, or 0755 when any execute
// bit is set; directories 0755). Directories are done last, deepest first,
// so setting a child's time never disturbs a parent's.
func normaliseTree(ctx context.Context, root string, t time.Time) error {
	var dirs []string
	err := filepath.WalkDir(root, func(p string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		if err := ctx.Err(); err != nil {
			return err
		}
		inGit := isInGitDir(root, p)
		switch {
		case d.IsDir():
			if !inGit {
				if err := os.Chmod(p, 0o755); err != nil {
					return err
				}
			}
			dirs = append(dirs, p)
			return nil
		case d.Type()&fs.ModeSymlink != 0:
			return lchtimes(p, t)
		case d.Type().IsRegular() && !inGit:
			fi, err := d.Info()
			if err != nil {
				return err
			}
			mode := fs.FileMode(0o644)
			if fi.Mode()&0o111 != 0 {
				mode = 0o755
			}
			if err := os.Chmod(p, mode); err != nil {
				return err
			}
		}
		return lchtimes(p, t)
	})
	if err != nil {
		return err
	}
	for _, d := range slices.Backward(dirs) {
		if err := lchtimes(d, t); err != nil {
			return err
		}
	}
	return nil
}

// isInGitDir reports whether p (under root) is a .git entry or inside one.
func isInGitDir(root, p string) bool {
	rel, err := filepath.Rel(root, p)
	if err != nil {
		return false
	}
	for {
		dir, base := filepath.Split(rel)
		if base == ".git" {
			return true
		}
		dir = filepath.Clean(dir)
		if dir == "." || dir == string(filepath.Separator) || dir == rel {
			return false
		}
		rel = dir
	}
}

// removeGitEntries deletes every ".git" entry under root: the top-level git
// dir and the ".git" files git writes into submodule checkouts. Git never
// tracks a path named .git, so nothing of the tree is lost.
func removeGitEntries(ctx context.Context, root string) error {
	return filepath.WalkDir(root, func(p string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		if err := ctx.Err(); err != nil {
			return err
		}
		if d.Name() != ".git" || p == root {
			return nil
		}
		if err := os.RemoveAll(p); err != nil {
			return fmt.Errorf("removing %s: %w", p, err)
		}
		if d.IsDir() {
			return fs.SkipDir
		}
		return nil
	})
}
