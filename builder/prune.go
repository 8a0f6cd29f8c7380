package builder

import (
	"os"
	"path"
	"path/filepath"
	"slices"

	"golang.org/x/sys/unix"

	"github.com/strata-build/strata/snapshot"
)

// pruneCopyUps removes directories that overlayfs copied up only because
// the sandbox put mount points below them (/etc for /etc/hosts, the parents
// of RUN --mount targets): empty in the upper dir, not opaque, and with the
// same mode, owner and mtime as the directory below. They would otherwise
// add an entry to every RUN layer.
func pruneCopyUps(upper string, lowers []snapshot.Snapshot, targets []string) {
	seen := map[string]bool{}
	var dirs []string
	for _, t := range targets {
		for d := path.Dir(path.Clean("/" + t)); d != "/"; d = path.Dir(d) {
			if !seen[d] {
				seen[d] = true
				dirs = append(dirs, d)
			}
		}
	}
	// Deepest first, so a parent emptied by pruning its child goes too.
	slices.SortFunc(dirs, func(a, b string) int { return len(b) - len(a) })
	for _, d := range dirs {
		up := filepath.Join(upper, d)
		if !redundantCopyUp(up, lowers, d) {
			continue
		}
		_ = os.Remove(up)
	}
}

func redundantCopyUp(up string, lowers []snapshot.Snapshot, rel string) bool {
	var st unix.Stat_t
	if err := unix.Lstat(up, &st); err != nil || st.Mode&unix.S_IFMT != unix.S_IFDIR {
		return false
	}
	if empty, err := isEmptyDir(up); err != nil || !empty {
		return false
	}
	buf := make([]byte, 8)
	for _, attr := range []string{"trusted.overlay.opaque", "user.overlay.opaque"} {
		if n, err := unix.Lgetxattr(up, attr, buf); err == nil && n > 0 {
			return false
		}
	}
	for _, l := range lowers { // top first: the first one holding rel decides
		var ls unix.Stat_t
		if err := unix.Lstat(filepath.Join(l.Dir, rel), &ls); err != nil {
			continue
		}
		return ls.Mode == st.Mode && ls.Uid == st.Uid && ls.Gid == st.Gid &&
			ls.Mtim == st.Mtim
	}
	return false
}
