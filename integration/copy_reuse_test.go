package integration

import (
	"fmt"
	"os"
	"path/filepath"
	"syscall"
	"testing"
	"time"
)

// TestBuildCopyReuse checks the rebuild of a COPY after a change: files
// whose source is unchanged are hard-linked from the previous result, and
// changed files are copied even when their size and mtime are what they
// were (the sources are settled, so the previous result's index is used;
// copier's tests check that it skips reading them).
func TestBuildCopyReuse(t *testing.T) {
	f := needRoot(t)
	root := t.TempDir()
	ctx := t.TempDir()
	files := map[string]string{"Dockerfile": "FROM " + f.registry + "/library/busybox\nCOPY src /app\n"}
	for i := range 40 {
		files[fmt.Sprintf("src/d%d/f%02d", i%4, i)] = fmt.Sprintf("file %02d first\n", i)
	}
	writeFiles(t, ctx, files)
	// The index only vouches for sources settled before the copy started.
	time.Sleep(2500 * time.Millisecond)

	out := func() string {
		dir := filepath.Join(t.TempDir(), "out")
		mustBuild(t, buildOpts{root: root, context: ctx, outputs: []string{"type=local,dest=" + dir}})
		return filepath.Join(dir, "app")
	}
	first := out()
	if got := readFile(t, filepath.Join(first, "d1", "f05")); got != "file 05 first\n" {
		t.Fatalf("first build: /app/d1/f05 = %q", got)
	}

	// Same size; f05 also gets its old mtime back, so only its ctime and
	// content tell.
	src05 := filepath.Join(ctx, "src", "d1", "f05")
	fi, err := os.Stat(src05)
	if err != nil {
		t.Fatal(err)
	}
	writeFiles(t, ctx, map[string]string{"src/d1/f05": "file 05 SECOND", "src/d2/f06": "file 06 second\n"})
	if err := os.Chtimes(src05, fi.ModTime(), fi.ModTime()); err != nil {
		t.Fatal(err)
	}
	second := out()
	for rel, want := range map[string]string{"d1/f05": "file 05 SECOND", "d2/f06": "file 06 second\n", "d3/f07": "file 07 first\n"} {
		if got := readFile(t, filepath.Join(second, rel)); got != want {
			t.Errorf("after the change: /app/%s = %q, want %q", rel, got, want)
		}
	}

	// In the store, the unchanged files of the two COPY results share
	// inodes; the changed ones do not.
	links := func(rel string) uint64 {
		m, _ := filepath.Glob(filepath.Join(root, "snapshots", "*", "fs", "app", rel))
		if len(m) == 0 {
			t.Fatalf("no snapshot holds /app/%s", rel)
		}
		var st syscall.Stat_t
		if err := syscall.Stat(m[0], &st); err != nil {
			t.Fatal(err)
		}
		return uint64(st.Nlink)
	}
	if n := links("d3/f07"); n != 2 {
		t.Errorf("unchanged /app/d3/f07 has %d links, want 2 (shared by both COPY results)", n)
	}
	for _, rel := range []string{"d1/f05", "d2/f06"} {
		if n := links(rel); n != 1 {
			t.Errorf("changed /app/%s has %d links, want 1", rel, n)
		}
	}
}
