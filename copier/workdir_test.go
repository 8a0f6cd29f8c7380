package copier

import (
	"os"
	"path/filepath"
	"syscall"
	"testing"
)

func TestMkdirAll(t *testing.T) {
	if os.Geteuid() != 0 {
		t.Skip("needs root to chown")
	}
	root := t.TempDir()
	outside := t.TempDir()
	must(t, os.MkdirAll(filepath.Join(root, "etc"), 0o755))
	must(t, os.WriteFile(filepath.Join(root, "etc", "passwd"), []byte("root:x:0:0::/root:/bin/sh\napp:x:1000:1001::/home/app:/bin/sh\n"), 0o644))
	must(t, os.Mkdir(filepath.Join(root, "existing"), 0o700))
	must(t, os.Symlink(outside, filepath.Join(root, "escape")))

	tests := []struct {
		dir, user string
		check     string
		uid, gid  uint32
	}{
		{"/a/b/c", "", "a/b/c", 0, 0},
		{"/app/data", "app", "app/data", 1000, 1001},
		{"/existing/new", "app", "new-under-existing", 1000, 1001},
		{"/escape/x", "", "escape-target/x", 0, 0},
	}
	for _, tt := range tests {
		if err := MkdirAll(root, tt.dir, tt.user); err != nil {
			t.Fatalf("MkdirAll(%s): %v", tt.dir, err)
		}
		p := filepath.Join(root, tt.check)
		switch tt.check {
		case "new-under-existing":
			p = filepath.Join(root, "existing", "new")
			fi, _ := os.Stat(filepath.Join(root, "existing"))
			if fi.Mode().Perm() != 0o700 {
				t.Errorf("existing dir mode changed to %v", fi.Mode().Perm())
			}
		case "escape-target/x":
			// The link's absolute target is taken inside root.
			p = filepath.Join(root, outside, "x")
			if _, err := os.Stat(filepath.Join(outside, "x")); err == nil {
				t.Errorf("MkdirAll wrote outside the root")
			}
		}
		fi, err := os.Stat(p)
		if err != nil {
			t.Fatalf("%s: %v", tt.dir, err)
		}
		st := fi.Sys().(*syscall.Stat_t)
		if !fi.IsDir() || fi.Mode().Perm() != 0o755 || st.Uid != tt.uid || st.Gid != tt.gid {
			t.Errorf("%s: dir=%v mode=%v owner=%d:%d, want dir 0755 %d:%d", tt.dir, fi.IsDir(), fi.Mode().Perm(), st.Uid, st.Gid, tt.uid, tt.gid)
		}
	}
	must(t, os.WriteFile(filepath.Join(root, "file"), nil, 0o644))
	if err := MkdirAll(root, "/file/sub", ""); err == nil {
		t.Error("MkdirAll through a file succeeded")
	}
	if err := MkdirAll(root, "/x", "ghost"); err == nil {
		t.Error("unknown user accepted")
	}
}

func must(t *testing.T, err error) {
	t.Helper()
	if err != nil {
		t.Fatal(err)
	}
}
