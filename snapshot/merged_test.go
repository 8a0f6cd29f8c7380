package snapshot

import (
	"errors"
	"os"
	"path/filepath"
	"syscall"
	"testing"

	"golang.org/x/sys/unix"
)

func TestLookupMerged(t *testing.T) {
	if os.Geteuid() != 0 {
		t.Skip("needs root for whiteout devices and trusted xattrs")
	}
	top, mid, bot := t.TempDir(), t.TempDir(), t.TempDir()
	mk := func(dir, rel string) {
		if err := os.MkdirAll(filepath.Join(dir, rel), 0o755); err != nil {
			t.Fatal(err)
		}
	}
	file := func(dir, rel string) {
		mk(dir, filepath.Dir(rel))
		if err := os.WriteFile(filepath.Join(dir, rel), nil, 0o644); err != nil {
			t.Fatal(err)
		}
	}
	mk(bot, "a/b")
	mk(bot, "gone/x")
	file(bot, "opq/old")
	file(bot, "f")
	mk(mid, "a/c")
	if err := unix.Mknod(filepath.Join(mid, "gone"), unix.S_IFCHR, 0); err != nil {
		t.Fatal(err)
	}
	mk(top, "opq")
	if err := unix.Lsetxattr(filepath.Join(top, "opq"), opaqueXattr, []byte("y"), 0); err != nil {
		t.Fatal(err)
	}
	if err := os.Symlink("a", filepath.Join(top, "link")); err != nil {
		t.Fatal(err)
	}
	lowers := []Snapshot{{Dir: top}, {Dir: mid}, {Dir: bot}}
	tests := []struct {
		path   string
		exists []bool // per component
		err    error
	}{
		{path: "/a/b", exists: []bool{true, true}}, // merged from bot under mid's a
		{path: "/a/c", exists: []bool{true, true}}, // from mid
		{path: "/a/new", exists: []bool{true, false}},
		{path: "/gone/x", exists: []bool{false}},        // whited out in mid
		{path: "/opq/old", exists: []bool{true, false}}, // opaque dir hides bot's file
		{path: "/f/x", exists: []bool{true, false}},     // below a file
		{path: "/link/b", err: ErrNotSimple},
		{path: "/link", exists: []bool{true}}, // the last component is not followed
	}
	for _, tc := range tests {
		got, err := LookupMerged(lowers, tc.path)
		if tc.err != nil {
			if !errors.Is(err, tc.err) {
				t.Errorf("%s: err %v, want %v", tc.path, err, tc.err)
			}
			continue
		}
		if err != nil {
			t.Errorf("%s: %v", tc.path, err)
			continue
		}
		var ex []bool
		for _, e := range got {
			ex = append(ex, e.Exists)
		}
		if len(ex) != len(tc.exists) {
			t.Errorf("%s: exists %v, want %v", tc.path, ex, tc.exists)
			continue
		}
		for i := range ex {
			if ex[i] != tc.exists[i] {
				t.Errorf("%s: exists %v, want %v", tc.path, ex, tc.exists)
				break
			}
		}
	}

	// Copy-up makes the existing parents with their metadata.
	if err := os.Chmod(filepath.Join(bot, "a"), 0o750); err != nil {
		t.Fatal(err)
	}
	if err := os.Chown(filepath.Join(mid, "a"), 12, 34); err != nil {
		t.Fatal(err)
	}
	entries, err := LookupMerged(lowers, "/a/new/deeper")
	if err != nil {
		t.Fatal(err)
	}
	upper := t.TempDir()
	if err := CopyUpDirs(upper, "/a/new/deeper", entries); err != nil {
		t.Fatal(err)
	}
	fi, err := os.Stat(filepath.Join(upper, "a"))
	if err != nil {
		t.Fatal(err)
	}
	if st := fi.Sys().(*syscall.Stat_t); fi.Mode().Perm() != 0o755 || st.Uid != 12 || st.Gid != 34 {
		t.Errorf("copied-up /a: mode %v owner %d:%d, want the top layer's (mid) 0755 12:34", fi.Mode().Perm(), st.Uid, st.Gid)
	}
	if _, err := os.Stat(filepath.Join(upper, "a", "new")); err == nil {
		t.Errorf("CopyUpDirs made a directory that does not exist below")
	}
}
