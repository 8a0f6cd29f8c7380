package container

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path/filepath"
	"syscall"

	securejoin "github.com/cyphar/filepath-securejoin"
	"golang.org/x/sys/unix"

	"github.com/strata-build/strata/exec"
	"github.com/strata-build/strata/snapshot"
)

// volumeInitRequest is the payload of the volume-filling helper.
type volumeInitRequest struct {
	Root string `json:"root"` // where the image is mounted (read-only)
	Path string `json:"path"` // the mount destination inside the image
	Dest string `json:"dest"` // the volume's directory
}

// fillVolume copies the image's content at path into the volume directory
// dest when dest is empty, as Docker does for a volume a container
// mounts: in a helper process with the image's layers mounted read-only.
func (s *Store) fillVolume(ctx context.Context, lowers []snapshot.Snapshot, path, dest string) error {
	if len(lowers) == 0 {
		return nil
	}
	empty, err := isEmptyDir(dest)
	if err != nil || !empty {
		return err
	}
	tmpRoot := filepath.Join(s.root, "tmp")
	if err := os.MkdirAll(tmpRoot, 0o700); err != nil {
		return err
	}
	tmp, err := os.MkdirTemp(tmpRoot, "volume-init-")
	if err != nil {
		return err
	}
	defer os.RemoveAll(tmp)
	target := filepath.Join(tmp, "image")
	m := snapshot.OverlayMount(lowers, nil)
	m.Target = target
	payload, err := json.Marshal(volumeInitRequest{Root: target, Path: path, Dest: dest})
	if err != nil {
		return err
	}
	var stderr bytes.Buffer
	return exec.RunHelper(ctx, exec.Helper{
		Name:         helperVolumeInit,
		Payload:      payload,
		Mounts:       []snapshot.Mount{m},
		SnapshotRoot: s.snaps.Root(),
	}, &stderr)
}

func isEmptyDir(dir string) (bool, error) {
	f, err := os.Open(dir)
	if err != nil {
		return false, err
	}
	defer f.Close()
	_, err = f.Readdirnames(1)
	if errors.Is(err, io.EOF) {
		return true, nil
	}
	return false, err
}

// volumeInitHelper runs in the helper process: the image is mounted at
// req.Root.
func volumeInitHelper(payload []byte) error {
	var req volumeInitRequest
	if err := json.Unmarshal(payload, &req); err != nil {
		return err
	}
	src, err := securejoin.SecureJoin(req.Root, req.Path)
	if err != nil {
		return err
	}
	fi, err := os.Lstat(src)
	if errors.Is(err, fs.ErrNotExist) || err == nil && !fi.IsDir() {
		return nil // nothing to copy
	}
	if err != nil {
		return err
	}
	return copyTree(src, req.Dest)
}

// copyTree copies the content of directory src into the existing,
// empty directory dst, keeping owners, modes, times, symlinks, hard
// links and device nodes; dst itself takes src's owner and mode.
func copyTree(src, dst string) error {
	type dirMeta struct {
		path string
		st   *syscall.Stat_t
	}
	var dirs []dirMeta
	links := map[[2]uint64]string{}
	err := filepath.WalkDir(src, func(p string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		rel, err := filepath.Rel(src, p)
		if err != nil {
			return err
		}
		target := filepath.Join(dst, rel)
		fi, err := d.Info()
		if err != nil {
			return err
		}
		st := fi.Sys().(*syscall.Stat_t)
		mode := fi.Mode()
		switch {
		case mode.IsDir():
			if rel != "." {
				if err := os.Mkdir(target, 0o700); err != nil {
					return err
				}
			}
			dirs = append(dirs, dirMeta{target, st})
			return nil // owner, mode and times once its content is in
		case mode&fs.ModeSymlink != 0:
			link, err := os.Readlink(p)
			if err != nil {
				return err
			}
			if err := os.Symlink(link, target); err != nil {
				return err
			}
		case mode.IsRegular():
			key := [2]uint64{st.Dev, st.Ino}
			if first, ok := links[key]; ok && st.Nlink > 1 {
				return os.Link(first, target)
			}
			if err := copyFile(p, target); err != nil {
				return err
			}
			if st.Nlink > 1 {
				links[key] = target
			}
		default:
			if err := unix.Mknod(target, st.Mode, int(st.Rdev)); err != nil {
				return fmt.Errorf("making %s: %w", rel, err)
			}
		}
		return setMeta(target, st, mode&fs.ModeSymlink != 0)
	})
	if err != nil {
		return err
	}
	for i := len(dirs) - 1; i >= 0; i-- {
		if err := setMeta(dirs[i].path, dirs[i].st, false); err != nil {
			return err
		}
	}
	return nil
}

func copyFile(src, dst string) error {
	in, err := os.OpenFile(src, os.O_RDONLY|unix.O_NOFOLLOW, 0)
	if err != nil {
		return err
	}
	defer in.Close()
	out, err := os.OpenFile(dst, os.O_WRONLY|os.O_CREATE|os.O_EXCL, 0o600)
	if err != nil {
		return err
	}
	_, err = io.Copy(out, in)
	return errors.Join(err, out.Close())
}

// setMeta gives path st's owner, mode and times.
func setMeta(path string, st *syscall.Stat_t, symlink bool) error {
	if err := os.Lchown(path, int(st.Uid), int(st.Gid)); err != nil {
		return err
	}
	if !symlink {
		// After chown, which clears setuid and setgid bits.
		if err := unix.Chmod(path, st.Mode&0o7777); err != nil {
			return err
		}
	}
	ts := []unix.Timespec{unix.Timespec(st.Atim), unix.Timespec(st.Mtim)}
	return unix.UtimesNanoAt(unix.AT_FDCWD, path, ts, unix.AT_SYMLINK_NOFOLLOW)
}
