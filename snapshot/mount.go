package snapshot

import (
	"fmt"
	"path/filepath"
	"slices"
	"strings"

	"golang.org/x/sys/unix"
)

// OverlayMount describes the root filesystem made of lowers (top first) and,
// when a is not nil, the writable active snapshot a on top.
//
// Lower dirs that live in a store are named relative to that store's root
// (Store.Root), so the mount must be made from that working directory;
// others are absolute. Special cases, since overlayfs needs an upper dir or
// at least two lower dirs:
//
//   - no lowers, a != nil: a bind mount of a.Dir (FROM scratch);
//   - one lower, a == nil: a read-only bind mount of it;
//   - no lowers, a == nil: an empty read-only tmpfs.
func OverlayMount(lowers []Snapshot, a *Active) Mount {
	m := Mount{Target: "/"}
	switch {
	case len(lowers) == 0 && a == nil:
		m.Type, m.Source, m.Options = "tmpfs", "tmpfs", []string{"ro"}
		return m
	case len(lowers) == 0:
		m.Type, m.Source, m.Options = "bind", a.Dir, []string{"rbind"}
		return m
	case len(lowers) == 1 && a == nil:
		m.Type, m.Source, m.Options = "bind", lowers[0].Dir, []string{"rbind", "ro"}
		return m
	}
	root := storeRoot(lowers[0].Dir)
	dirs := make([]string, len(lowers))
	for i, l := range lowers {
		dirs[i] = lowerName(root, l.Dir)
	}
	m.Type, m.Source = "overlay", "overlay"
	m.Options = []string{"lowerdir=" + strings.Join(dirs, ":")}
	if a != nil {
		m.Options = append(m.Options, "upperdir="+escapeOpt(a.Dir), "workdir="+escapeOpt(a.Work))
	}
	// No inode index, redirects or metacopy: an upper dir then only holds
	// whole files, char-device whiteouts and opaque dirs, which is what Diff
	// understands. No userxattr: marks stay trusted.overlay.*.
	m.Options = append(m.Options, "index=off", "redirect_dir=off", "metacopy=off")
	return m
}

// storeRoot returns the store root holding a committed snapshot dir
// (ROOT/KEY16/fs), or "" when dir does not look like one.
func storeRoot(dir string) string {
	dir = filepath.Clean(dir)
	if filepath.Base(dir) != "fs" {
		return ""
	}
	k := filepath.Dir(dir)
	if !isKey16(filepath.Base(k)) {
		return ""
	}
	return filepath.Dir(k)
}

func isKey16(s string) bool {
	if len(s) != keyLen {
		return false
	}
	for _, c := range s {
		if (c < '0' || c > '9') && (c < 'a' || c > 'f') {
			return false
		}
	}
	return true
}

// lowerName is "KEY16/fs" for a snapshot in the store at root, else the
// escaped absolute path.
func lowerName(root, dir string) string {
	if root != "" && storeRoot(dir) == root {
		rel := filepath.Join(filepath.Base(filepath.Dir(filepath.Clean(dir))), "fs")
		return rel
	}
	return escapeOpt(dir)
}

// escapeOpt backslash-escapes the characters overlayfs treats as
// separators in its options.
func escapeOpt(p string) string {
	if !strings.ContainsAny(p, `\:,`) {
		return p
	}
	var b strings.Builder
	for _, c := range p {
		if c == '\\' || c == ':' || c == ',' {
			b.WriteByte('\\')
		}
		b.WriteRune(c)
	}
	return b.String()
}

// Volatile returns m with overlayfs's volatile option when m is an overlay
// with an upper dir and the kernel has the option (5.10+). Without it, the
// unmount after a build step syncs the whole upper filesystem, which for a
// step that wrote a large layer costs seconds of waiting on the disk. A
// build step's upper dir is made again if lost, so its writes need not be
// durable; containers of `strata run` keep ordinary sync semantics.
func (m Mount) Volatile() Mount {
	if m.Type != "overlay" || !hasVolatile() {
		return m
	}
	upper := false
	for _, o := range m.Options {
		upper = upper || strings.HasPrefix(o, "upperdir=")
	}
	if !upper {
		return m
	}
	m.Options = append(slices.Clip(m.Options), "volatile")
	return m
}

// hasVolatile reports whether the running kernel is 5.10 or later.
func hasVolatile() bool {
	var u unix.Utsname
	if unix.Uname(&u) != nil {
		return false
	}
	var major, minor int
	if _, err := fmt.Sscanf(unix.ByteSliceToString(u.Release[:]), "%d.%d", &major, &minor); err != nil {
		return false
	}
	return major > 5 || major == 5 && minor >= 10
}
