package exec

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"sort"
	"strings"

	securejoin "github.com/cyphar/filepath-securejoin"
	"golang.org/x/sys/unix"

	"github.com/strata-build/strata/snapshot"
)

// sandbox tracks what the child did inside the root so it can be undone:
// mounts made over paths in the image and the mount points ("stubs") it had
// to create, which must not end up in the step's upper dir.
type sandbox struct {
	root   string   // host path of the mounted root; "/" after pivot_root
	mounts []string // root-relative targets, in mount order
	stubs  []string // root-relative paths created, in creation order
	dirs   []dirTimes
}

// dirTimes remembers an image directory that received a stub, so its
// times can be put back when nothing but us touched it.
type dirTimes struct {
	rel      string
	orig     [2]unix.Timespec // atime, mtime before the first stub
	setupMod unix.Timespec    // mtime once setup finished
}

// path turns a root-relative path into one usable by the child now.
func (s *sandbox) path(rel string) string {
	return filepath.Join(s.root, rel)
}

// prepare resolves target inside the root, creating what is missing (dir,
// or an empty file when dir is false) and recording what it created. It
// returns the root-relative path to mount on.
func (s *sandbox) prepare(target string, dir bool) (string, error) {
	full, err := securejoin.SecureJoin(s.root, target)
	if err != nil {
		return "", fmt.Errorf("resolving %s in root: %w", target, err)
	}
	rel, err := filepath.Rel(s.root, full)
	if err != nil || rel == ".." || strings.HasPrefix(rel, "../") {
		return "", fmt.Errorf("resolving %s in root: escapes the root", target)
	}
	if rel == "." {
		return "", fmt.Errorf("cannot mount over the root (%s)", target)
	}
	parts := strings.Split(rel, "/")
	cur := "/"
	for i, part := range parts {
		next := filepath.Join(cur, part)
		last := i == len(parts)-1
		fi, err := os.Lstat(s.path(next))
		if err == nil {
			if fi.Mode()&os.ModeSymlink != 0 {
				return "", fmt.Errorf("mount point %s: %s is a symlink", target, next)
			}
			if !last && !fi.IsDir() {
				return "", fmt.Errorf("mount point %s: %s is not a directory", target, next)
			}
			cur = next
			continue
		}
		if !errors.Is(err, os.ErrNotExist) {
			return "", fmt.Errorf("mount point %s: %w", target, err)
		}
		if err := s.noteDir(cur); err != nil {
			return "", err
		}
		if !last || dir {
			err = os.Mkdir(s.path(next), 0o755)
		} else {
			var f *os.File
			f, err = os.OpenFile(s.path(next), os.O_CREATE|os.O_EXCL|os.O_WRONLY, 0o644)
			if err == nil {
				err = f.Close()
			}
		}
		if err != nil {
			return "", fmt.Errorf("making mount point %s: %w", target, err)
		}
		s.stubs = append(s.stubs, next)
		cur = next
	}
	return cur, nil
}

// noteDir records the times of an image directory about to get a stub.
func (s *sandbox) noteDir(rel string) error {
	for _, d := range s.dirs {
		if d.rel == rel {
			return nil
		}
	}
	for _, st := range s.stubs {
		if st == rel {
			return nil
		}
	}
	var st unix.Stat_t
	if err := unix.Lstat(s.path(rel), &st); err != nil {
		return fmt.Errorf("stat %s: %w", rel, err)
	}
	s.dirs = append(s.dirs, dirTimes{rel: rel, orig: [2]unix.Timespec{st.Atim, st.Mtim}})
	return nil
}

// setupDone records the directories' mtimes after the stubs were made.
func (s *sandbox) setupDone() {
	for i := range s.dirs {
		var st unix.Stat_t
		if unix.Lstat(s.path(s.dirs[i].rel), &st) == nil {
			s.dirs[i].setupMod = st.Mtim
		}
	}
}

// mount mounts via fn on the prepared target and records it for cleanup.
func (s *sandbox) mount(target string, dir bool, fn func(path string) error) (string, error) {
	rel, err := s.prepare(target, dir)
	if err != nil {
		return "", err
	}
	p := s.path(rel)
	if err := fn(p); err != nil {
		return "", err
	}
	s.mounts = append(s.mounts, rel)
	return p, nil
}

// cleanup unmounts what was mounted inside the root and removes the stubs
// that are still empty, newest first.
func (s *sandbox) cleanup() error {
	var errs []error
	for i := len(s.mounts) - 1; i >= 0; i-- {
		err := unix.Unmount(s.path(s.mounts[i]), unix.MNT_DETACH|unix.UMOUNT_NOFOLLOW)
		if err != nil && !errors.Is(err, unix.EINVAL) && !errors.Is(err, unix.ENOENT) {
			errs = append(errs, fmt.Errorf("unmounting %s: %w", s.mounts[i], err))
		}
	}
	untouched := make([]bool, len(s.dirs))
	for i, d := range s.dirs {
		var st unix.Stat_t
		untouched[i] = unix.Lstat(s.path(d.rel), &st) == nil && st.Mtim == d.setupMod
	}
	for i := len(s.stubs) - 1; i >= 0; i-- {
		p := s.path(s.stubs[i])
		fi, err := os.Lstat(p)
		if err != nil {
			continue
		}
		switch {
		case fi.IsDir():
			err = unix.Rmdir(p)
			if errors.Is(err, unix.ENOTEMPTY) || errors.Is(err, unix.EEXIST) {
				err = nil // the command put something there: keep it
			}
		case fi.Mode().IsRegular() && fi.Size() == 0:
			err = os.Remove(p)
		}
		if errors.Is(err, unix.EROFS) {
			err = nil // a read-only root (Spec.ReadOnlyRoot) keeps its stubs
		}
		if err != nil {
			errs = append(errs, fmt.Errorf("removing mount point %s: %w", s.stubs[i], err))
		}
	}
	for i, d := range s.dirs {
		if !untouched[i] {
			continue
		}
		ts := []unix.Timespec{d.orig[0], d.orig[1]}
		if err := unix.UtimesNanoAt(unix.AT_FDCWD, s.path(d.rel), ts, unix.AT_SYMLINK_NOFOLLOW); err != nil && !errors.Is(err, unix.ENOENT) && !errors.Is(err, unix.EROFS) {
			errs = append(errs, fmt.Errorf("restoring times of %s: %w", d.rel, err))
		}
	}
	return errors.Join(errs...)
}

// setupMounts makes /proc, /dev, /sys, the /etc files and the extra mounts.
func (s *sandbox) setupMounts(cfg *config) error {
	proc, err := s.mount("/proc", true, func(p string) error {
		return unix.Mount("proc", p, "proc", unix.MS_NOSUID|unix.MS_NODEV|unix.MS_NOEXEC, "")
	})
	if err != nil {
		return fmt.Errorf("mounting /proc: %w", err)
	}
	if _, err := s.mount("/dev", true, setupDev); err != nil {
		return fmt.Errorf("mounting /dev: %w", err)
	}
	sys, err := s.mount("/sys", true, func(p string) error {
		if cfg.FreshSysfs {
			// Read-only comes after, per mount: the superblock may be
			// shared with the host's /sys (same network namespace).
			return unix.Mount("sysfs", p, "sysfs", unix.MS_NOSUID|unix.MS_NODEV|unix.MS_NOEXEC, "")
		}
		return unix.Mount("/sys", p, "", unix.MS_BIND|unix.MS_REC, "")
	})
	if err != nil {
		return fmt.Errorf("mounting /sys: %w", err)
	}
	if err := protectKernelFiles(proc, sys); err != nil {
		return err
	}
	if err := setMountAttrs(sys, unix.MS_RDONLY|unix.MS_NOSUID|unix.MS_NODEV|unix.MS_NOEXEC, true); err != nil {
		return fmt.Errorf("making /sys read-only: %w", err)
	}
	if cfg.CgroupNS {
		if _, err := s.mount("/sys/fs/cgroup", true, mountCgroups); err != nil {
			return fmt.Errorf("mounting /sys/fs/cgroup: %w", err)
		}
	}

	targets := make([]string, 0, len(cfg.Files))
	for t := range cfg.Files {
		targets = append(targets, t)
	}
	sort.Strings(targets)
	for _, t := range targets {
		src := cfg.Files[t]
		if _, err := s.mount(t, false, func(p string) error {
			return unix.Mount(src, p, "", unix.MS_BIND, "")
		}); err != nil {
			return fmt.Errorf("mounting %s: %w", t, err)
		}
	}

	for i, m := range cfg.Mounts {
		if m.Subdir != "" {
			if err := s.mountSubdir(cfg, i, m); err != nil {
				return err
			}
			continue
		}
		dir := true
		if isBind(m) {
			fi, err := os.Stat(m.Source)
			if err != nil {
				return fmt.Errorf("bind mount source: %w", err)
			}
			dir = fi.IsDir()
		}
		if _, err := s.mount(m.Target, dir, func(p string) error { return mountOne(m, p) }); err != nil {
			return err
		}
	}
	return nil
}

// setupDev fills a fresh tmpfs at p with what programs expect in /dev.
func setupDev(p string) error {
	if err := unix.Mount("tmpfs", p, "tmpfs", unix.MS_NOSUID|unix.MS_STRICTATIME, "mode=755,size=65536k"); err != nil {
		return err
	}
	for _, name := range []string{"null", "zero", "full", "random", "urandom", "tty"} {
		src := "/dev/" + name
		if _, err := os.Stat(src); err != nil {
			if name == "tty" {
				continue // optional: not every host has it
			}
			return fmt.Errorf("host device: %w", err)
		}
		dst := filepath.Join(p, name)
		if err := os.WriteFile(dst, nil, 0o666); err != nil {
			return err
		}
		if err := unix.Mount(src, dst, "", unix.MS_BIND, ""); err != nil {
			return fmt.Errorf("binding %s: %w", src, err)
		}
	}
	for _, d := range []struct {
		name, fstype, data string
		flags              uintptr
	}{
		{"shm", "tmpfs", "mode=1777,size=65536k", unix.MS_NOSUID | unix.MS_NODEV | unix.MS_NOEXEC},
		{"pts", "devpts", "newinstance,ptmxmode=0666,mode=0620,gid=5", unix.MS_NOSUID | unix.MS_NOEXEC},
		{"mqueue", "mqueue", "", unix.MS_NOSUID | unix.MS_NODEV | unix.MS_NOEXEC},
	} {
		dst := filepath.Join(p, d.name)
		if err := os.Mkdir(dst, 0o755); err != nil {
			return err
		}
		if err := unix.Mount(d.fstype, dst, d.fstype, d.flags, d.data); err != nil {
			return fmt.Errorf("mounting %s: %w", d.name, err)
		}
	}
	for name, target := range map[string]string{
		"ptmx": "pts/ptmx", "fd": "/proc/self/fd", "stdin": "/proc/self/fd/0",
		"stdout": "/proc/self/fd/1", "stderr": "/proc/self/fd/2", "core": "/proc/kcore",
	} {
		if err := os.Symlink(target, filepath.Join(p, name)); err != nil {
			return err
		}
	}
	return nil
}

// protectKernelFiles makes the dangerous parts of /proc and /sys
// read-only or hides them, as container runtimes do by default.
func protectKernelFiles(proc, sys string) error {
	for _, rel := range []string{"bus", "fs", "irq", "sys", "sysrq-trigger"} {
		p := filepath.Join(proc, rel)
		if _, err := os.Lstat(p); err != nil {
			continue
		}
		if err := unix.Mount(p, p, "", unix.MS_BIND|unix.MS_REC, ""); err != nil {
			return fmt.Errorf("protecting /proc/%s: %w", rel, err)
		}
		if err := setMountAttrs(p, unix.MS_RDONLY|unix.MS_NOSUID|unix.MS_NODEV|unix.MS_NOEXEC, true); err != nil {
			return fmt.Errorf("protecting /proc/%s: %w", rel, err)
		}
	}
	masked := []string{
		filepath.Join(proc, "acpi"), filepath.Join(proc, "asound"), filepath.Join(proc, "kcore"),
		filepath.Join(proc, "keys"), filepath.Join(proc, "latency_stats"), filepath.Join(proc, "sched_debug"),
		filepath.Join(proc, "scsi"), filepath.Join(proc, "timer_list"), filepath.Join(proc, "timer_stats"),
		filepath.Join(sys, "firmware"), filepath.Join(sys, "devices/virtual/powercap"),
	}
	for _, p := range masked {
		fi, err := os.Lstat(p)
		if err != nil {
			continue
		}
		if fi.IsDir() {
			err = unix.Mount("tmpfs", p, "tmpfs", unix.MS_RDONLY|unix.MS_NOSUID|unix.MS_NODEV|unix.MS_NOEXEC, "size=0")
		} else {
			err = unix.Mount("/dev/null", p, "", unix.MS_BIND, "")
		}
		if err != nil {
			return fmt.Errorf("masking %s: %w", p, err)
		}
	}
	return nil
}

// mountSubdir mounts m on a staging dir outside the root, binds its Subdir
// at m.Target and drops the staging mount (the bind keeps what it needs).
func (s *sandbox) mountSubdir(cfg *config, i int, m snapshot.Mount) error {
	if cfg.Scratch == "" {
		return fmt.Errorf("mounting %s: no scratch dir for a sub-directory mount", m.Target)
	}
	staging := filepath.Join(cfg.Scratch, fmt.Sprintf("mount-%d", i))
	if err := os.Mkdir(staging, 0o700); err != nil {
		return err
	}
	whole := m
	whole.Subdir = ""
	if err := mountOne(whole, staging); err != nil {
		return err
	}
	defer unix.Unmount(staging, unix.MNT_DETACH)
	src, err := securejoin.SecureJoin(staging, m.Subdir)
	if err != nil {
		return fmt.Errorf("mounting %s: %w", m.Target, err)
	}
	fi, err := os.Stat(src)
	if err != nil {
		return fmt.Errorf("mount source %s: %w", m.Subdir, err)
	}
	ro := parseOptions(m.Options).flags&unix.MS_RDONLY != 0
	_, err = s.mount(m.Target, fi.IsDir(), func(p string) error {
		if err := unix.Mount(src, p, "", unix.MS_BIND|unix.MS_REC, ""); err != nil {
			return fmt.Errorf("bind mounting %s at %s: %w", m.Subdir, m.Target, err)
		}
		if ro {
			return setMountAttrs(p, unix.MS_RDONLY, true)
		}
		return nil
	})
	return err
}
