package snapshot

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"io"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"
)

const (
	keyA = "0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef"
	keyB = "fedcba9876543210fedcba9876543210fedcba9876543210fedcba9876543210"
	// keyC shares keyA's first 16 characters.
	keyC = "0123456789abcdefffffffffffffffffffffffffffffffffffffffffffffffff"
)

func openStore(t *testing.T) *Store {
	t.Helper()
	s, err := Open(filepath.Join(t.TempDir(), "snapshots"))
	if err != nil {
		t.Fatal(err)
	}
	return s
}

func tmpEntries(t *testing.T, s *Store) int {
	t.Helper()
	ents, err := os.ReadDir(filepath.Join(s.Root(), "tmp"))
	if err != nil {
		t.Fatal(err)
	}
	return len(ents)
}

func TestStorePrepareCommitGet(t *testing.T) {
	s := openStore(t)
	ctx := context.Background()
	if !filepath.IsAbs(s.Root()) {
		t.Errorf("Root %q is not absolute", s.Root())
	}
	a, err := s.Prepare(ctx)
	if err != nil {
		t.Fatal(err)
	}
	for _, d := range []string{a.Dir, a.Work} {
		fi, err := os.Stat(d)
		if err != nil || !fi.IsDir() || fi.Mode().Perm() != 0o755 {
			t.Fatalf("%s: %v %v, want a 0755 dir", d, fi, err)
		}
		if !strings.HasPrefix(d, filepath.Join(s.Root(), "tmp")+"/") {
			t.Errorf("%s is not under the store's tmp", d)
		}
	}
	mustWrite(t, filepath.Join(a.Dir, "hello"), "world")
	if _, ok := s.Get(keyA); ok {
		t.Fatal("Get found a key before Commit")
	}
	snap, err := s.Commit(ctx, a, "sha256:"+keyA)
	if err != nil {
		t.Fatal(err)
	}
	want := Snapshot{Key: keyA, Dir: filepath.Join(s.Root(), keyA[:16], "fs")}
	if snap != want {
		t.Fatalf("Commit = %+v, want %+v", snap, want)
	}
	wantContent(t, filepath.Join(snap.Dir, "hello"), "world")
	for _, k := range []string{keyA, "sha256:" + keyA, strings.ToUpper(keyA)} {
		if got, ok := s.Get(k); !ok || got != want {
			t.Errorf("Get(%q) = %+v, %v", k, got, ok)
		}
	}
	var m meta
	if err := json.Unmarshal([]byte(readFile(t, filepath.Join(s.Root(), keyA[:16], "meta.json"))), &m); err != nil || m.Key != keyA {
		t.Errorf("meta.json = %+v, %v", m, err)
	}
	if exists(filepath.Join(s.Root(), keyA[:16], "work")) {
		t.Error("work dir was committed")
	}
	if n := tmpEntries(t, s); n != 0 {
		t.Errorf("%d entries left in tmp", n)
	}
	// Another store on the same root sees it.
	s2, err := Open(s.Root())
	if err != nil {
		t.Fatal(err)
	}
	if _, ok := s2.Get(keyA); !ok {
		t.Error("reopened store does not see the snapshot")
	}
}

func TestStoreCommitExistingKey(t *testing.T) {
	s := openStore(t)
	ctx := context.Background()
	a1, _ := s.Prepare(ctx)
	mustWrite(t, filepath.Join(a1.Dir, "f"), "first")
	first, err := s.Commit(ctx, a1, keyA)
	if err != nil {
		t.Fatal(err)
	}
	a2, _ := s.Prepare(ctx)
	mustWrite(t, filepath.Join(a2.Dir, "f"), "second")
	got, err := s.Commit(ctx, a2, keyA)
	if err != nil {
		t.Fatal(err)
	}
	if got != first {
		t.Errorf("second Commit = %+v, want existing %+v", got, first)
	}
	wantContent(t, filepath.Join(got.Dir, "f"), "first")
	if exists(a2.Dir) {
		t.Error("discarded active snapshot still exists")
	}
}

func TestStoreKeys(t *testing.T) {
	s := openStore(t)
	ctx := context.Background()
	a, _ := s.Prepare(ctx)
	if _, err := s.Commit(ctx, a, keyA); err != nil {
		t.Fatal(err)
	}
	// Same KEY16, different key: not the same snapshot.
	if _, ok := s.Get(keyC); ok {
		t.Error("Get matched a different key with the same prefix")
	}
	b, _ := s.Prepare(ctx)
	if _, err := s.Commit(ctx, b, keyC); err == nil {
		t.Error("Commit over a different key with the same prefix succeeded")
	}
	_ = s.Abort(b)
	for _, bad := range []string{"", "sha256:", "abc", "sha256:zz23456789abcdef0", "../../../../etc/passwd"} {
		if _, ok := s.Get(bad); ok {
			t.Errorf("Get(%q) found something", bad)
		}
		a, _ := s.Prepare(ctx)
		if _, err := s.Commit(ctx, a, bad); err == nil {
			t.Errorf("Commit(%q) accepted a bad key", bad)
		}
		_ = s.Abort(a)
	}
}

func TestStoreAbort(t *testing.T) {
	s := openStore(t)
	a, err := s.Prepare(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	// What overlayfs leaves behind: work/work with mode 000.
	ww := filepath.Join(a.Work, "work")
	mustWrite(t, filepath.Join(ww, "x"), "x")
	mustWrite(t, filepath.Join(a.Dir, "d", "f"), "f")
	if err := os.Chmod(ww, 0); err != nil {
		t.Fatal(err)
	}
	if err := os.Chmod(filepath.Join(a.Dir, "d"), 0o500); err != nil {
		t.Fatal(err)
	}
	if err := s.Abort(a); err != nil {
		t.Fatal(err)
	}
	if n := tmpEntries(t, s); n != 0 {
		t.Errorf("%d entries left in tmp", n)
	}
	if err := s.Abort(nil); err != nil {
		t.Errorf("Abort(nil) = %v", err)
	}
}

// failReader fails the test's expectations if anything reads it.
type failReader struct{ read bool }

func (f *failReader) Read([]byte) (int, error) {
	f.read = true
	return 0, errors.New("must not be read")
}

func TestStoreUnpack(t *testing.T) {
	needRoot(t)
	s := openStore(t)
	ctx := context.Background()
	archive := mkTar(t, dir("etc/"), file("etc/os-release", "ID=test"), file("etc/.wh.gone", ""))
	// Trailing bytes after the footer must be consumed too.
	r := bytes.NewReader(append(archive, make([]byte, 4096)...))
	snap, err := s.Unpack(ctx, "sha256:"+keyB, r)
	if err != nil {
		t.Fatal(err)
	}
	if r.Len() != 0 {
		t.Errorf("Unpack left %d bytes unread", r.Len())
	}
	equalLines(t, describe(t, snap.Dir), []string{
		`etc 40755 0:0`,
		`etc/gone 20000 0:0 0/0`,
		`etc/os-release 100644 0:0 "ID=test"`,
	})
	fr := &failReader{}
	again, err := s.Unpack(ctx, keyB, fr)
	if err != nil || again != snap || fr.read {
		t.Errorf("second Unpack = %+v, %v (read: %v); want %+v without reading", again, err, fr.read, snap)
	}
}

func TestStoreUnpackFailure(t *testing.T) {
	s := openStore(t)
	_, err := s.Unpack(context.Background(), keyA, bytes.NewReader(mkTar(t, file("../x", "x"))))
	if err == nil {
		t.Fatal("Unpack of a hostile archive succeeded")
	}
	if _, ok := s.Get(keyA); ok {
		t.Error("failed Unpack committed a snapshot")
	}
	if n := tmpEntries(t, s); n != 0 {
		t.Errorf("%d entries left in tmp", n)
	}
}

func TestStoreUnpackConcurrent(t *testing.T) {
	s := openStore(t)
	archive := mkTar(t, file("f", strings.Repeat("data", 10000)))
	const n = 4
	var wg sync.WaitGroup
	snaps := make([]Snapshot, n)
	errs := make([]error, n)
	for i := range n {
		wg.Go(func() {
			// A store per goroutine, as if in separate processes.
			s2, err := Open(s.Root())
			if err != nil {
				errs[i] = err
				return
			}
			snaps[i], errs[i] = s2.Unpack(context.Background(), keyA, bytes.NewReader(archive))
		})
	}
	wg.Wait()
	for i := range n {
		if errs[i] != nil || snaps[i] != snaps[0] {
			t.Errorf("Unpack %d = %+v, %v; want %+v", i, snaps[i], errs[i], snaps[0])
		}
	}
	if n := tmpEntries(t, s); n != 0 {
		t.Errorf("%d entries left in tmp", n)
	}
}

func TestStoreLockHonoursContext(t *testing.T) {
	s := openStore(t)
	unlock, err := s.lock(context.Background(), keyA)
	if err != nil {
		t.Fatal(err)
	}
	defer unlock()
	ctx, cancel := context.WithTimeout(context.Background(), 50*time.Millisecond)
	defer cancel()
	_, err = s.Unpack(ctx, keyA, io.MultiReader())
	if !errors.Is(err, context.DeadlineExceeded) {
		t.Errorf("Unpack while locked = %v, want deadline exceeded", err)
	}
}
