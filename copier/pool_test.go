package copier

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"runtime"
	"slices"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"golang.org/x/sys/unix"
)

// bigTree writes n files across nested directories under root: varied
// modes, owners and mtimes, every 37th file hard-linked twice, every 53rd
// with a symlink beside it, every 41st with a user xattr (when the
// filesystem takes them), and a read-only directory.
func bigTree(t *testing.T, root string, n int) {
	t.Helper()
	xattrs := true
	for i := range n {
		dir := filepath.Join(root, fmt.Sprintf("d%d", i%7), fmt.Sprintf("e%d", i%13))
		if i%5 == 0 {
			dir = filepath.Join(dir, fmt.Sprintf("deep%d", i%3))
		}
		if err := os.MkdirAll(dir, 0o755); err != nil {
			t.Fatal(err)
		}
		p := filepath.Join(dir, fmt.Sprintf("f%05d", i))
		if err := os.WriteFile(p, []byte(strings.Repeat(fmt.Sprintf("%d,", i), i%50)), 0o600); err != nil {
			t.Fatal(err)
		}
		if err := syscall.Chmod(p, []uint32{0o644, 0o755, 0o600, 0o4755, 0o440}[i%5]); err != nil {
			t.Fatal(err)
		}
		if err := os.Lchown(p, i%3*500, i%4*250); err != nil {
			t.Fatal(err)
		}
		if xattrs && i%41 == 0 {
			if err := unix.Lsetxattr(p, "user.n", []byte(fmt.Sprint(i)), 0); err != nil {
				xattrs = false // no user xattrs here: the rest still counts
			}
		}
		if i%37 == 0 {
			for k := range 2 {
				other := filepath.Join(root, fmt.Sprintf("d%d", (i+k+1)%7), fmt.Sprintf("h%05d-%d", i, k))
				if err := os.MkdirAll(filepath.Dir(other), 0o755); err != nil {
					t.Fatal(err)
				}
				if err := os.Link(p, other); err != nil {
					t.Fatal(err)
				}
			}
		}
		if i%53 == 0 {
			if err := os.Symlink(filepath.Base(p), p+".lnk"); err != nil {
				t.Fatal(err)
			}
		}
		mt := srcMtime.Add(time.Duration(i) * time.Millisecond)
		if err := unix.Lutimes(p, []unix.Timeval{unix.NsecToTimeval(mt.UnixNano()), unix.NsecToTimeval(mt.UnixNano())}); err != nil {
			t.Fatal(err)
		}
	}
	ro := filepath.Join(root, "d3", "e5")
	if err := os.Chmod(ro, 0o555); err != nil {
		t.Fatal(err)
	}
	// Directory mtimes last: the files above moved them.
	err := filepath.WalkDir(root, func(p string, d fs.DirEntry, err error) error {
		if err != nil || !d.IsDir() {
			return err
		}
		return os.Chtimes(p, srcMtime, srcMtime)
	})
	if err != nil {
		t.Fatal(err)
	}
}

// fullDump lists every entry under root with all that a copy sets: type,
// mode, owner, size, mtime, content or target, xattrs, and the other
// paths sharing its inode.
func fullDump(t *testing.T, root string) []string {
	t.Helper()
	byIno := map[uint64][]string{}
	type ent struct {
		rel  string
		line string
		ino  uint64
	}
	var ents []ent
	err := filepath.WalkDir(root, func(p string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		rel, _ := filepath.Rel(root, p)
		if rel == "." {
			return nil // made by the test
		}
		var st unix.Stat_t
		if err := unix.Lstat(p, &st); err != nil {
			return err
		}
		line := fmt.Sprintf("%s mode=%o uid=%d gid=%d size=%d mtime=%d.%09d", rel, st.Mode, st.Uid, st.Gid, st.Size, st.Mtim.Sec, st.Mtim.Nsec)
		switch st.Mode & unix.S_IFMT {
		case unix.S_IFREG:
			data, err := os.ReadFile(p)
			if err != nil {
				return err
			}
			line += fmt.Sprintf(" data=%q", data)
			byIno[st.Ino] = append(byIno[st.Ino], rel)
		case unix.S_IFLNK:
			target, err := os.Readlink(p)
			if err != nil {
				return err
			}
			line += " -> " + target
		}
		names, values, err := listXattrs(p)
		if err != nil {
			return err
		}
		for i, n := range names {
			line += fmt.Sprintf(" xattr %s=%q", n, values[i])
		}
		ents = append(ents, ent{rel, line, st.Ino})
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	var out []string
	for _, e := range ents {
		line := e.line
		if others := byIno[e.ino]; len(others) > 1 {
			line += " links=" + strings.Join(others, ",")
		}
		out = append(out, line)
	}
	slices.Sort(out)
	return out
}

// poolRunning reports whether a pool worker goroutine exists. A worker
// marks itself done on its way out and a new one shows only once
// scheduled, so the answer is waited for over a few scheduling rounds:
// want is the answer expected.
func poolRunning(want bool) bool {
	buf := make([]byte, 1<<20)
	var seen bool
	for range 1000 {
		n := runtime.Stack(buf, true)
		seen = bytes.Contains(buf[:n], []byte("copier.(*pool).work"))
		if seen == want {
			break
		}
		runtime.Gosched()
	}
	return seen
}

// TestPoolSameTree copies a large tree with the pool and without, in the
// request shapes that take different paths, and wants identical results.
func TestPoolSameTree(t *testing.T) {
	requireRoot(t)
	src := t.TempDir()
	bigTree(t, src, 2500)
	// Two directories copied to the same place: their files collide.
	writeSrc(t, src, map[string]string{"over/a/x": "first", "over/a/y": "first y", "over2/a/x": "second"})
	for i := range 100 {
		writeSrc(t, src, map[string]string{fmt.Sprintf("over/a/z%03d", i): "one", fmt.Sprintf("over2/a/z%03d", i): "two"})
	}
	now := later()
	prevRoot := t.TempDir()
	prevIndex := filepath.Join(t.TempDir(), "index")
	first := Request{SrcRoot: src, Sources: []string{"."}, DestRoot: prevRoot, Dest: "/app", IndexOut: prevIndex}
	if _, err := copyWorkers(context.Background(), first, now, 0); err != nil {
		t.Fatal(err)
	}
	cases := []struct {
		name string
		req  Request
	}{
		{"plain", Request{Sources: []string{"."}, Dest: "/app"}},
		{"context", Request{Sources: []string{"d0", "d3"}, Dest: "/app/", FromContext: true}},
		{"chown chmod", Request{Sources: []string{"d1", "d2"}, Dest: "/x/", Chown: "1000:1000", Chmod: "0640"}},
		{"symbolic chmod", Request{Sources: []string{"d[2-4]"}, Dest: "/y/", Chmod: "u+x,g-w"}},
		{"colliding sources", Request{Sources: []string{"over", "over2", "over"}, Dest: "/o/"}},
		{"parents", Request{Sources: []string{"d4/e1", "d5"}, Dest: "/p/", Parents: true}},
		{"reuse with index", Request{Sources: []string{"."}, Dest: "/app", Reuse: prevRoot, ReuseIndex: prevIndex}},
		{"reuse compare", Request{Sources: []string{"."}, Dest: "/app", Reuse: prevRoot}},
		{"reuse other owner", Request{Sources: []string{"."}, Dest: "/app", Reuse: prevRoot, ReuseIndex: prevIndex, Chown: "7"}},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			var dumps [2][]string
			var indexes [2][]byte
			var stats [2]copyStats
			for i, workers := range []int{0, 2} {
				req := tc.req
				req.SrcRoot, req.DestRoot = src, t.TempDir()
				req.IndexOut = filepath.Join(t.TempDir(), "index")
				st, err := copyWorkers(context.Background(), req, now, workers)
				if err != nil {
					t.Fatalf("workers=%d: %v", workers, err)
				}
				dumps[i], stats[i] = fullDump(t, req.DestRoot), st
				if indexes[i], err = os.ReadFile(req.IndexOut); err != nil {
					t.Fatal(err)
				}
			}
			if len(dumps[0]) < 100 {
				t.Fatalf("only %d entries copied", len(dumps[0]))
			}
			if d := diffLines(dumps[1], dumps[0]); d != "" {
				t.Errorf("trees differ (- sequential, + pool):\n%s", d)
			}
			if !bytes.Equal(indexes[0], indexes[1]) {
				t.Errorf("IndexOut differs: %d bytes sequential, %d with the pool", len(indexes[0]), len(indexes[1]))
			}
			if stats[0] != stats[1] {
				t.Errorf("stats %+v sequential, %+v with the pool", stats[0], stats[1])
			}
			if tc.req.Reuse != "" && tc.req.Chown == "" && stats[0].compared+stats[0].indexed == 0 {
				t.Errorf("no file reused: %+v", stats[0])
			}
			if poolRunning(false) {
				t.Error("a pool worker outlived the copy")
			}
		})
	}
}

// TestPoolError puts directories where two files of the walk go: the pool
// must return the error a sequential copy stops at (the first in walk
// order) and leave no worker behind.
func TestPoolError(t *testing.T) {
	requireRoot(t)
	src := t.TempDir()
	files := map[string]string{}
	for i := range 1000 {
		files[fmt.Sprintf("d%d/f%04d", i/100, i)] = "x"
	}
	writeSrc(t, src, files)
	for _, workers := range []int{0, 2, 4} {
		t.Run(fmt.Sprint("workers=", workers), func(t *testing.T) {
			dst := t.TempDir()
			for _, p := range []string{"app/d3/f0350", "app/d3/f0351", "app/d8/f0800"} {
				if err := os.MkdirAll(filepath.Join(dst, p, "sub"), 0o755); err != nil {
					t.Fatal(err)
				}
			}
			req := Request{SrcRoot: src, Sources: []string{"."}, DestRoot: dst, Dest: "/app", FromContext: true}
			_, err := copyWorkers(context.Background(), req, later(), workers)
			want := "COPY /: cannot replace directory /app/d3/f0350 with a non-directory"
			if err == nil || err.Error() != want {
				t.Errorf("error = %v, want %s", err, want)
			}
			if poolRunning(false) {
				t.Error("a pool worker outlived the copy")
			}
			// Nothing after the failed file in walk order was started
			// by the walk (the last directory is never entered).
			if _, err := os.Lstat(filepath.Join(dst, "app/d9")); !errors.Is(err, fs.ErrNotExist) {
				t.Errorf("app/d9 after the error: %v", err)
			}
		})
	}
}

// countdownCtx is canceled after its Err has been asked n times: a copy
// canceled midway, at a point that does not depend on timing.
type countdownCtx struct {
	context.Context
	mu   sync.Mutex
	n    int
	done chan struct{}
}

func (c *countdownCtx) Done() <-chan struct{} { return c.done }

func (c *countdownCtx) Err() error {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.n > 0 {
		c.n--
		if c.n == 0 {
			close(c.done)
		}
	}
	if c.n == 0 {
		return context.Canceled
	}
	return nil
}

// TestPoolRunningSeen checks that poolRunning does see workers.
func TestPoolRunningSeen(t *testing.T) {
	w := &writer{workers: 2}
	w.pool = w.startPool(context.Background())
	if !poolRunning(true) {
		t.Error("running pool not seen")
	}
	w.stopPool()
	if poolRunning(false) {
		t.Error("stopped pool still seen")
	}
}

func TestPoolCancel(t *testing.T) {
	requireRoot(t)
	src := t.TempDir()
	files := map[string]string{}
	for i := range 2000 {
		files[fmt.Sprintf("d%d/f%04d", i/100, i)] = strings.Repeat("y", i)
	}
	writeSrc(t, src, files)
	for _, workers := range []int{0, 2} {
		t.Run(fmt.Sprint("workers=", workers), func(t *testing.T) {
			dst := t.TempDir()
			ctx := &countdownCtx{Context: context.Background(), n: 500, done: make(chan struct{})}
			req := Request{SrcRoot: src, Sources: []string{"."}, DestRoot: dst, Dest: "/app", FromContext: true}
			_, err := copyWorkers(ctx, req, later(), workers)
			if !errors.Is(err, context.Canceled) {
				t.Errorf("error = %v, want context.Canceled", err)
			}
			if poolRunning(false) {
				t.Error("a pool worker outlived the copy")
			}
			if _, err := os.Lstat(filepath.Join(dst, "app/d19/f1999")); !errors.Is(err, fs.ErrNotExist) {
				t.Errorf("last file written despite the cancel: %v", err)
			}
		})
	}
}
