package container

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/strata-build/strata/netns"
)

func openTestStore(t *testing.T) *Store {
	t.Helper()
	s, err := Open(t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	return s
}

// placeTest makes a created container without an image.
func placeTest(t *testing.T, s *Store, name string) (*Container, error) {
	t.Helper()
	id, err := newID()
	if err != nil {
		t.Fatal(err)
	}
	return s.place(t.Context(), Config{ID: id, Name: name, Created: time.Now(), Args: []string{"true"}, Network: netns.ModeNone})
}

func TestOpenRefusesOddRoots(t *testing.T) {
	for _, r := range []string{"", filepath.Join(t.TempDir(), "a,b"), filepath.Join(t.TempDir(), "a:b")} {
		if _, err := Open(r); err == nil {
			t.Errorf("Open(%q) succeeded", r)
		}
	}
}

func TestStoreNamesAndLookup(t *testing.T) {
	s := openTestStore(t)
	a, err := placeTest(t, s, "alpha")
	if err != nil {
		t.Fatal(err)
	}
	b, err := placeTest(t, s, "")
	if err != nil {
		t.Fatal(err)
	}
	if !isName(b.Config.Name) || b.Config.Name == "alpha" {
		t.Errorf("generated name %q", b.Config.Name)
	}
	if _, err := placeTest(t, s, "alpha"); err == nil {
		t.Error("a second container named alpha was made")
	}
	for _, ref := range []string{"alpha", "/alpha", a.ID(), a.ID()[:12], a.ID()[:20]} {
		if c, err := s.Get(ref); err != nil || c.ID() != a.ID() {
			t.Errorf("Get(%q) = %v, %v", ref, c, err)
		}
	}
	if _, err := s.Get("nope"); !errors.Is(err, ErrNotFound) {
		t.Errorf("Get(nope) = %v, want ErrNotFound", err)
	}
	// Two IDs always share the empty prefix; find one they share more of.
	if _, err := s.Get(""); !errors.Is(err, ErrNotFound) {
		t.Errorf("Get(\"\") = %v", err)
	}
	list, err := s.List()
	if err != nil || len(list) != 2 || list[0].ID() != b.ID() {
		t.Errorf("List: %d containers, %v; want 2, newest first", len(list), err)
	}
	if c, _ := s.Get(a.ID()); c.State.Status != StatusCreated {
		t.Errorf("status %q, want created", c.State.Status)
	}
	ents, _ := os.ReadDir(s.containersDir())
	for _, e := range ents {
		if strings.HasPrefix(e.Name(), ".tmp-") {
			t.Errorf("temporary dir left: %s", e.Name())
		}
	}
}

// TestConcurrentNames makes containers of one name from many goroutines
// at once: exactly one wins.
func TestConcurrentNames(t *testing.T) {
	s := openTestStore(t)
	const n = 12
	var wg sync.WaitGroup
	errs := make([]error, n)
	for i := range n {
		wg.Add(1)
		go func() {
			defer wg.Done()
			_, errs[i] = placeTest(t, s, "same")
		}()
	}
	wg.Wait()
	ok := 0
	for _, err := range errs {
		if err == nil {
			ok++
		} else if !strings.Contains(err.Error(), "already in use") {
			t.Errorf("unexpected error: %v", err)
		}
	}
	if list, _ := s.List(); ok != 1 || len(list) != 1 {
		t.Errorf("%d creations succeeded, %d containers exist; want 1 and 1", ok, len(list))
	}
}

func TestReconcileDeadMonitor(t *testing.T) {
	s := openTestStore(t)
	c, err := placeTest(t, s, "orphan")
	if err != nil {
		t.Fatal(err)
	}
	// A process that existed and is gone: its PID and start time.
	cmd := exec.Command("true")
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	pid := cmd.Process.Pid
	start, _, err := procStart(pid)
	if err != nil {
		t.Fatal(err)
	}
	if err := cmd.Wait(); err != nil {
		t.Fatal(err)
	}
	if _, err := s.updateState(t.Context(), c.ID(), func(st *State) error {
		st.Status, st.MonitorPid, st.MonitorStart, st.Pid, st.PidStart = StatusRunning, pid, start, pid, start
		return nil
	}); err != nil {
		t.Fatal(err)
	}
	got, err := s.Get("orphan")
	if err != nil || got.State.Status != StatusDead || got.State.Error == "" {
		t.Fatalf("state %+v, %v; want dead with an error", got.State, err)
	}
	if err := s.Signal(t.Context(), "orphan", syscall.SIGTERM); err == nil {
		t.Error("signalling a dead container succeeded")
	}
	if err := s.Stop(t.Context(), "orphan", 0); err != nil {
		t.Errorf("stopping a dead container: %v", err)
	}
	// Our own process is alive: running stays running.
	self, _, _ := procStart(os.Getpid())
	if _, err := s.updateState(t.Context(), c.ID(), func(st *State) error {
		st.MonitorPid, st.MonitorStart = os.Getpid(), self
		return nil
	}); err != nil {
		t.Fatal(err)
	}
	if got, _ := s.Get("orphan"); got.State.Status != StatusRunning {
		t.Errorf("status %q with a live monitor, want running", got.State.Status)
	}
	if err := s.Remove(t.Context(), "orphan", RemoveOptions{}); err == nil {
		t.Error("a running container was removed without Force")
	}
}

func TestRemove(t *testing.T) {
	s := openTestStore(t)
	c, err := placeTest(t, s, "gone")
	if err != nil {
		t.Fatal(err)
	}
	upper, _ := upperDirs(c.Dir)
	if err := os.WriteFile(filepath.Join(upper, "written"), []byte("x"), 0o644); err != nil {
		t.Fatal(err)
	}
	// An overlay work dir is left unreadable by the kernel.
	_, work := upperDirs(c.Dir)
	if err := os.Mkdir(filepath.Join(work, "work"), 0); err != nil {
		t.Fatal(err)
	}
	if err := s.Remove(t.Context(), "gone", RemoveOptions{}); err != nil {
		t.Fatal(err)
	}
	if _, err := os.Stat(c.Dir); !os.IsNotExist(err) {
		t.Errorf("container dir left: %v", err)
	}
	if err := s.Remove(t.Context(), "gone", RemoveOptions{}); !errors.Is(err, ErrNotFound) {
		t.Errorf("second Remove: %v, want ErrNotFound", err)
	}
	ents, _ := os.ReadDir(s.containersDir())
	for _, e := range ents {
		if e.Name() != ".lock" {
			t.Errorf("left in containers dir: %s", e.Name())
		}
	}
}

func TestVolumes(t *testing.T) {
	s := openTestStore(t)
	ctx := t.Context()
	v, err := s.CreateVolume(ctx, "data")
	if err != nil {
		t.Fatal(err)
	}
	if fi, err := os.Stat(v.Mountpoint); err != nil || !fi.IsDir() || fi.Mode().Perm() != 0o755 {
		t.Fatalf("mountpoint %s: %v %v", v.Mountpoint, fi, err)
	}
	if err := os.WriteFile(filepath.Join(v.Mountpoint, "f"), []byte("kept"), 0o644); err != nil {
		t.Fatal(err)
	}
	// Creating it again returns it, content and all.
	if again, err := s.CreateVolume(ctx, "data"); err != nil || again.CreatedAt != v.CreatedAt {
		t.Errorf("CreateVolume again: %+v, %v", again, err)
	}
	for _, bad := range []string{"", "a", "-x", "a/b", "..", "a b"} {
		if _, err := s.CreateVolume(ctx, bad); err == nil {
			t.Errorf("CreateVolume(%q) succeeded", bad)
		}
	}
	if _, err := s.CreateVolume(ctx, "other"); err != nil {
		t.Fatal(err)
	}
	vols, err := s.Volumes()
	if err != nil || len(vols) != 2 || vols[0].Name != "data" || vols[1].Name != "other" {
		t.Errorf("Volumes = %+v, %v", vols, err)
	}

	id, _ := newID()
	if _, err := s.place(ctx, Config{ID: id, Name: "user", Mounts: []MountSpec{{Type: MountVolume, Source: "data", Destination: "/d"}}}); err != nil {
		t.Fatal(err)
	}
	if err := s.RemoveVolume(ctx, "data"); err == nil || !strings.Contains(err.Error(), "in use") {
		t.Errorf("removing a volume in use: %v", err)
	}
	if err := s.Remove(ctx, "user", RemoveOptions{Volumes: true}); err != nil {
		t.Fatal(err)
	}
	if _, err := s.Volume("data"); err != nil {
		t.Errorf("rm -v removed a named volume: %v", err)
	}
	if err := s.RemoveVolume(ctx, "data"); err != nil {
		t.Fatal(err)
	}
	if _, err := s.Volume("data"); !errors.Is(err, ErrNotFound) {
		t.Errorf("Volume after removal: %v", err)
	}
	if err := s.RemoveVolume(ctx, "data"); !errors.Is(err, ErrNotFound) {
		t.Errorf("removing twice: %v", err)
	}

	// Anonymous volumes go with their container when asked.
	id, _ = newID()
	if _, _, err := s.ensureVolume(ctx, id+"-0", true); err != nil {
		t.Fatal(err)
	}
	if _, err := s.place(ctx, Config{ID: id, Name: "anon", Mounts: []MountSpec{{Type: MountVolume, Source: id + "-0", Destination: "/d", Anonymous: true}}}); err != nil {
		t.Fatal(err)
	}
	if err := s.Remove(ctx, "anon", RemoveOptions{Volumes: true}); err != nil {
		t.Fatal(err)
	}
	if _, err := s.Volume(id + "-0"); !errors.Is(err, ErrNotFound) {
		t.Errorf("anonymous volume left after rm -v: %v", err)
	}
}

func TestLogs(t *testing.T) {
	s := openTestStore(t)
	c, err := placeTest(t, s, "talk")
	if err != nil {
		t.Fatal(err)
	}
	lf, err := openLog(logPath(c.Dir))
	if err != nil {
		t.Fatal(err)
	}
	out := &logStream{l: lf, stream: "stdout"}
	errs := &logStream{l: lf, stream: "stderr"}
	fmt.Fprint(out, "one\ntw")
	fmt.Fprint(errs, "bad\n")
	fmt.Fprint(out, "o\nthree")
	long := strings.Repeat("x", maxLogLine+10)
	fmt.Fprint(errs, long)
	out.flush()
	errs.flush()
	lf.Close()

	tests := []struct {
		tail             int
		stdout, stderr   string
		timestampsPrefix bool
	}{
		{-1, "one\ntwo\nthree", "bad\n" + long, false},
		{3, "three", long, false}, // the long line is two entries
		{2, "three", strings.Repeat("x", 10), false},
		{1, "", strings.Repeat("x", 10), false},
		{0, "", "", false},
		{-1, "", "", true},
	}
	for _, tc := range tests {
		var o, e bytes.Buffer
		if err := s.Logs(t.Context(), "talk", LogOptions{Tail: tc.tail, Timestamps: tc.timestampsPrefix}, &o, &e); err != nil {
			t.Fatal(err)
		}
		if tc.timestampsPrefix {
			first, _, _ := strings.Cut(o.String(), " ")
			if _, err := time.Parse(time.RFC3339Nano, first); err != nil || !strings.HasSuffix(strings.SplitN(o.String(), "\n", 2)[0], " one") {
				t.Errorf("timestamped line %q", strings.SplitN(o.String(), "\n", 2)[0])
			}
			continue
		}
		if o.String() != tc.stdout || e.String() != tc.stderr {
			t.Errorf("tail %d: stdout %q stderr %.20q…, want %q %.20q…", tc.tail, o.String(), e.String(), tc.stdout, tc.stderr)
		}
	}
	// -f on a container that is not running returns at once.
	ctx, cancel := context.WithTimeout(t.Context(), time.Minute)
	defer cancel()
	var o bytes.Buffer
	if err := s.Logs(ctx, "talk", LogOptions{Follow: true, Tail: -1}, &o, &o); err != nil || !strings.HasPrefix(o.String(), "one\n") {
		t.Errorf("Logs -f of a created container: %v %q", err, o.String())
	}
}

func TestCopyTree(t *testing.T) {
	src, dst := t.TempDir(), t.TempDir()
	must := func(err error) {
		t.Helper()
		if err != nil {
			t.Fatal(err)
		}
	}
	must(os.MkdirAll(filepath.Join(src, "d", "e"), 0o750))
	must(os.WriteFile(filepath.Join(src, "d", "f"), []byte("content"), 0o640))
	must(os.Link(filepath.Join(src, "d", "f"), filepath.Join(src, "hard")))
	must(os.Symlink("../elsewhere", filepath.Join(src, "d", "link")))
	must(os.Chmod(src, 0o711))
	old := time.Date(2001, 2, 3, 4, 5, 6, 0, time.UTC)
	must(os.Chtimes(filepath.Join(src, "d", "f"), old, old))
	must(os.Chtimes(filepath.Join(src, "d"), old, old))
	must(copyTree(src, dst))

	if b, err := os.ReadFile(filepath.Join(dst, "d", "f")); err != nil || string(b) != "content" {
		t.Errorf("file: %q %v", b, err)
	}
	if l, err := os.Readlink(filepath.Join(dst, "d", "link")); err != nil || l != "../elsewhere" {
		t.Errorf("symlink: %q %v", l, err)
	}
	a, _ := os.Stat(filepath.Join(dst, "d", "f"))
	h, _ := os.Stat(filepath.Join(dst, "hard"))
	if !os.SameFile(a, h) {
		t.Error("hard link not kept")
	}
	if a.Mode().Perm() != 0o640 || !a.ModTime().Equal(old) {
		t.Errorf("file mode %v mtime %v", a.Mode(), a.ModTime())
	}
	if fi, _ := os.Stat(filepath.Join(dst, "d")); fi.Mode().Perm() != 0o750 || !fi.ModTime().Equal(old) {
		t.Errorf("dir mode %v mtime %v", fi.Mode(), fi.ModTime())
	}
	if fi, _ := os.Stat(dst); fi.Mode().Perm() != 0o711 {
		t.Errorf("the volume root took mode %v, want the image dir's 0711", fi.Mode())
	}
}
