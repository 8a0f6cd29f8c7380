package cgroups

import (
	"bufio"
	"bytes"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"slices"
	"sort"
	"strings"
)

// Mode is the cgroup version resource controllers are used through.
type Mode int

const (
	// V1 is the legacy or hybrid layout: resource controllers live on
	// cgroup v1 hierarchies; a cgroup2 mount, if any, carries few or none.
	V1 Mode = iota + 1
	// V2 is the unified layout: one cgroup2 hierarchy carries the controllers.
	V2
)

func (m Mode) String() string {
	switch m {
	case V1:
		return "v1"
	case V2:
		return "v2"
	}
	return fmt.Sprintf("Mode(%d)", int(m))
}

// Layout is where this machine's cgroup hierarchies are mounted.
type Layout struct {
	Mode Mode
	// Hybrid is true for V1 with a cgroup2 mount as well (usually
	// /sys/fs/cgroup/unified).
	Hybrid bool
	// Unified is the cgroup2 mount point, "" when there is none.
	Unified string
	// Controllers maps each controller the kernel has bound to a mounted
	// hierarchy to that hierarchy's mount point; a controller whose mount
	// point is Unified is a v2 controller.
	Controllers map[string]string
}

func (l Layout) String() string {
	var b strings.Builder
	b.WriteString(l.Mode.String())
	switch {
	case l.Mode == V2:
		b.WriteString(" (unified)")
	case l.Hybrid:
		b.WriteString(" (hybrid)")
	default:
		b.WriteString(" (legacy)")
	}
	if l.Unified != "" {
		fmt.Fprintf(&b, " cgroup2=%s", l.Unified)
	}
	names := make([]string, 0, len(l.Controllers))
	for c := range l.Controllers {
		names = append(names, c)
	}
	sort.Strings(names)
	for _, c := range names {
		fmt.Fprintf(&b, " %s=%s", c, l.Controllers[c])
	}
	return b.String()
}

// onV2 reports whether controller c is bound to the cgroup2 hierarchy.
func (l Layout) onV2(c string) bool {
	m, ok := l.Controllers[c]
	return ok && l.Unified != "" && m == l.Unified
}

// Detect reports whether this machine's resource controllers are used
// through cgroup v1 (legacy or hybrid) or cgroup v2 (unified).
func Detect() (Mode, error) {
	l, err := DetectLayout()
	if err != nil {
		return 0, err
	}
	return l.Mode, nil
}

// DetectLayout reads /proc/self/mountinfo and the cgroup2 mount's
// cgroup.controllers to find where every controller is.
func DetectLayout() (Layout, error) {
	f, err := os.Open("/proc/self/mountinfo")
	if err != nil {
		return Layout{}, fmt.Errorf("cgroups: %w", err)
	}
	defer f.Close()
	mounts, err := parseMountinfo(f)
	if err != nil {
		return Layout{}, err
	}
	return buildLayout(mounts, func(dir string) ([]byte, error) {
		return os.ReadFile(filepath.Join(dir, "cgroup.controllers"))
	})
}

// isV1Controller reports whether a v1 mount's super option names a
// controller; other options (rw, name=systemd, xattr, ...) do not.
func isV1Controller(o string) bool {
	switch o {
	case "blkio", "cpu", "cpuacct", "cpuset", "devices", "freezer", "hugetlb",
		"memory", "misc", "net_cls", "net_prio", "perf_event", "pids", "rdma":
		return true
	}
	return false
}

type cgroupMount struct {
	root, point, fstype string
	superOpts           []string
}

// parseMountinfo returns the cgroup and cgroup2 mounts of a mountinfo file.
func parseMountinfo(r io.Reader) ([]cgroupMount, error) {
	var out []cgroupMount
	sc := bufio.NewScanner(r)
	sc.Buffer(make([]byte, 0, 64*1024), 1024*1024)
	for sc.Scan() {
		// id parent maj:min root point opts [optional...] - fstype source superopts
		fields := strings.Fields(sc.Text())
		sep := slices.Index(fields, "-")
		if sep < 6 || len(fields) < sep+4 {
			continue
		}
		fstype := fields[sep+1]
		if fstype != "cgroup" && fstype != "cgroup2" {
			continue
		}
		out = append(out, cgroupMount{
			root:      unescapeMountinfo(fields[3]),
			point:     unescapeMountinfo(fields[4]),
			fstype:    fstype,
			superOpts: strings.Split(fields[sep+3], ","),
		})
	}
	if err := sc.Err(); err != nil {
		return nil, fmt.Errorf("cgroups: read mountinfo: %w", err)
	}
	return out, nil
}

// unescapeMountinfo undoes the kernel's octal escapes (\040 for a space).
func unescapeMountinfo(s string) string {
	if !strings.Contains(s, `\`) {
		return s
	}
	var b strings.Builder
	for i := 0; i < len(s); i++ {
		if s[i] == '\\' && i+4 <= len(s) && isOctal(s[i+1:i+4]) {
			b.WriteByte((s[i+1]-'0')<<6 | (s[i+2]-'0')<<3 | (s[i+3] - '0'))
			i += 3
			continue
		}
		b.WriteByte(s[i])
	}
	return b.String()
}

func isOctal(s string) bool {
	if len(s) != 3 {
		return false
	}
	for i := 0; i < 3; i++ {
		if s[i] < '0' || s[i] > '7' {
			return false
		}
	}
	return s[0] <= '3'
}

// buildLayout turns cgroup mounts into a Layout; readControllers reads a
// cgroup2 directory's cgroup.controllers.
func buildLayout(mounts []cgroupMount, readControllers func(dir string) ([]byte, error)) (Layout, error) {
	l := Layout{Controllers: map[string]string{}}
	// A hierarchy may be mounted more than once (bind mounts); prefer a
	// mount of its root so paths below it are the real cgroup paths.
	pick := func(cur string, curRoot string, m cgroupMount) bool {
		return cur == "" || (curRoot != "/" && m.root == "/")
	}
	roots := map[string]string{}
	v1Resource := false
	for _, m := range mounts {
		if m.fstype == "cgroup2" {
			if pick(l.Unified, roots[l.Unified], m) {
				l.Unified = m.point
				roots[m.point] = m.root
			}
			continue
		}
		for _, o := range m.superOpts {
			if !isV1Controller(o) {
				continue
			}
			v1Resource = true
			cur := l.Controllers[o]
			if pick(cur, roots[cur], m) {
				l.Controllers[o] = m.point
				roots[m.point] = m.root
			}
		}
	}
	if l.Unified == "" && !v1Resource {
		return Layout{}, errors.New("cgroups: no cgroup or cgroup2 file system is mounted (see /proc/self/mountinfo)")
	}
	if l.Unified != "" {
		data, err := readControllers(l.Unified)
		if err != nil {
			return Layout{}, fmt.Errorf("cgroups: read available v2 controllers: %w", err)
		}
		for _, c := range strings.Fields(string(bytes.TrimSpace(data))) {
			// The kernel binds a controller to one hierarchy only; a v1
			// mount of it wins should both ever be listed.
			if _, ok := l.Controllers[c]; !ok {
				l.Controllers[c] = l.Unified
			}
		}
	}
	switch {
	case !v1Resource:
		l.Mode = V2
	default:
		l.Mode = V1
		l.Hybrid = l.Unified != ""
	}
	return l, nil
}
