package copier

import (
	"context"
	"os"
	"path/filepath"
	"syscall"
	"testing"
	"time"
)

// TestCopyReuse checks that a copy with Reuse hard-links exactly the files
// that would come out identical, and copies the rest.
func TestCopyReuse(t *testing.T) {
	src := t.TempDir()
	mtime := time.Date(2020, 1, 2, 3, 4, 5, 0, time.UTC)
	write := func(name, content string) {
		p := filepath.Join(src, name)
		if err := os.MkdirAll(filepath.Dir(p), 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(p, []byte(content), 0o644); err != nil {
			t.Fatal(err)
		}
		if err := os.Chtimes(p, mtime, mtime); err != nil {
			t.Fatal(err)
		}
	}
	write("same.txt", "unchanged")
	write("sub/same2.txt", "also unchanged")
	write("edited.txt", "aaaa")
	write("moded.txt", "mode")
	copyTo := func(reuse string, chmod string) string {
		dst := t.TempDir()
		err := Copy(context.Background(), Request{SrcRoot: src, Sources: []string{"."}, DestRoot: dst, Dest: "/app", FromContext: true, Reuse: reuse, Chmod: chmod})
		if err != nil {
			t.Fatal(err)
		}
		return dst
	}
	first := copyTo("", "")
	// Same size and mtime, other content: only a byte compare can tell.
	write("edited.txt", "bbbb")
	if err := os.Chmod(filepath.Join(src, "moded.txt"), 0o600); err != nil {
		t.Fatal(err)
	}
	second := copyTo(first, "")
	ino := func(root, rel string) uint64 {
		fi, err := os.Stat(filepath.Join(root, "app", rel))
		if err != nil {
			t.Fatal(err)
		}
		return fi.Sys().(*syscall.Stat_t).Ino
	}
	for rel, linked := range map[string]bool{"same.txt": true, "sub/same2.txt": true, "edited.txt": false, "moded.txt": false} {
		if got := ino(first, rel) == ino(second, rel); got != linked {
			t.Errorf("%s: hard-linked %v, want %v", rel, got, linked)
		}
	}
	if b, _ := os.ReadFile(filepath.Join(second, "app", "edited.txt")); string(b) != "bbbb" {
		t.Errorf("edited.txt = %q, want the new content", b)
	}
	if fi, _ := os.Stat(filepath.Join(second, "app", "moded.txt")); fi.Mode().Perm() != 0o600 {
		t.Errorf("moded.txt mode %v, want 0600", fi.Mode().Perm())
	}
	// A --chmod that changes the result forbids reuse.
	third := copyTo(first, "0755")
	if ino(first, "same.txt") == ino(third, "same.txt") {
		t.Errorf("with --chmod=0755 same.txt was linked to a 0644 file")
	}
}
