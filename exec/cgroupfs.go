package exec

import (
	"bufio"
	"fmt"
	"os"
	"path/filepath"
	"strings"

	"golang.org/x/sys/unix"
)

// hostCgroupDir is where the host's cgroup hierarchies are mounted.
const hostCgroupDir = "/sys/fs/cgroup"

// cgroupMount is one cgroup hierarchy mounted on the host.
type cgroupMount struct {
	rel    string // path under hostCgroupDir; "" for the dir itself
	fstype string // cgroup or cgroup2
	opts   string // super options naming the hierarchy (controllers, name=)
}

// hostCgroupMounts lists the cgroup mounts under /sys/fs/cgroup in our
// mount namespace (a copy of the host's).
func hostCgroupMounts() ([]cgroupMount, error) {
	f, err := os.Open("/proc/self/mountinfo")
	if err != nil {
		return nil, err
	}
	defer f.Close()
	var out []cgroupMount
	sc := bufio.NewScanner(f)
	sc.Buffer(make([]byte, 0, 64<<10), 1<<20)
	for sc.Scan() {
		// ID PARENT MAJ:MIN ROOT MOUNTPOINT OPTS [TAGS...] - FSTYPE SOURCE SUPEROPTS
		fields := strings.Fields(sc.Text())
		dash := -1
		for i, x := range fields {
			if x == "-" {
				dash = i
				break
			}
		}
		if dash < 5 || len(fields) < dash+4 {
			continue
		}
		fstype, mp := fields[dash+1], fields[4]
		if fstype != "cgroup" && fstype != "cgroup2" {
			continue
		}
		rel, ok := strings.CutPrefix(mp, hostCgroupDir)
		if !ok || (rel != "" && !strings.HasPrefix(rel, "/")) {
			continue
		}
		var opts []string
		for _, o := range strings.Split(fields[dash+3], ",") {
			if o != "rw" && o != "ro" {
				opts = append(opts, o)
			}
		}
		out = append(out, cgroupMount{rel: strings.TrimPrefix(rel, "/"), fstype: fstype, opts: strings.Join(opts, ",")})
	}
	return out, sc.Err()
}

// mountCgroups mounts, at p, the host's cgroup hierarchies as seen from
// the calling thread's cgroup namespace, read-only: the hierarchy itself
// when the host has a single one at /sys/fs/cgroup (v2), else a tmpfs
// holding each of them and the host's symlinks (cpu -> cpu,cpuacct).
func mountCgroups(p string) error {
	ms, err := hostCgroupMounts()
	if err != nil {
		return err
	}
	const flags = unix.MS_NOSUID | unix.MS_NODEV | unix.MS_NOEXEC
	ro := func(target string) error {
		return setMountAttrs(target, unix.MS_RDONLY|flags, false)
	}
	for _, m := range ms {
		if m.rel == "" {
			if err := unix.Mount("cgroup", p, m.fstype, flags, m.opts); err != nil {
				return fmt.Errorf("mounting %s: %w", m.fstype, err)
			}
			return ro(p)
		}
	}
	if err := unix.Mount("tmpfs", p, "tmpfs", flags, "mode=755,size=64k"); err != nil {
		return err
	}
	for _, m := range ms {
		if strings.Contains(m.rel, "/") {
			continue // nested mounts are not hierarchies we know
		}
		dir := filepath.Join(p, m.rel)
		if err := os.Mkdir(dir, 0o555); err != nil && !os.IsExist(err) {
			return err
		}
		if err := unix.Mount("cgroup", dir, m.fstype, flags, m.opts); err != nil {
			return fmt.Errorf("mounting %s (%s): %w", m.rel, m.opts, err)
		}
		if err := ro(dir); err != nil {
			return err
		}
	}
	if ents, err := os.ReadDir(hostCgroupDir); err == nil {
		for _, e := range ents {
			if e.Type()&os.ModeSymlink == 0 {
				continue
			}
			if target, err := os.Readlink(filepath.Join(hostCgroupDir, e.Name())); err == nil && !strings.Contains(target, "/") {
				_ = os.Symlink(target, filepath.Join(p, e.Name()))
			}
		}
	}
	return ro(p)
}
