package copier

import (
	"context"
	"errors"
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"golang.org/x/sys/unix"
)

func TestCopyHardLinks(t *testing.T) {
	requireRoot(t)
	src, dst := t.TempDir(), t.TempDir()
	build(t, src, F("dir/a", "same"), H("dir/b", "dir/a"), D("dir/sub"), H("dir/sub/c", "dir/a"), F("dir/lone", "x"), H("other", "dir/a"))
	req := Request{SrcRoot: src, DestRoot: dst, Sources: []string{"dir", "other"}, Dest: "/out/", Chmod: "600", FromContext: true}
	if err := Copy(context.Background(), req); err != nil {
		t.Fatal(err)
	}
	out := filepath.Join(dst, "out")
	for _, p := range []string{"b", "sub/c", "other"} {
		assertSameInode(t, filepath.Join(out, "a"), filepath.Join(out, p))
	}
	var st syscall.Stat_t
	if err := syscall.Lstat(filepath.Join(out, "a"), &st); err != nil {
		t.Fatal(err)
	}
	if st.Nlink != 4 || st.Mode&0o7777 != 0o600 {
		t.Fatalf("out/a: nlink %d mode %o; want 4 links, mode 600", st.Nlink, st.Mode&0o7777)
	}
	if err := syscall.Lstat(filepath.Join(out, "lone"), &st); err != nil || st.Nlink != 1 {
		t.Fatalf("out/lone: nlink %d, %v", st.Nlink, err)
	}
}

func TestCopyTimes(t *testing.T) {
	requireRoot(t)
	old := time.Date(2001, 2, 3, 4, 5, 6, 0, time.UTC)
	recent := time.Date(2030, 1, 1, 0, 0, 0, 0, time.UTC)
	epoch := time.Date(2020, 1, 1, 0, 0, 0, 0, time.UTC)
	tests := []struct {
		name    string
		epoch   *int64
		wantOld time.Time // for the old file and the dir
		wantNew time.Time // for the recent file
	}{
		{name: "kept from the source", wantOld: old, wantNew: recent},
		{name: "clamped to the epoch", epoch: ptr(epoch.Unix()), wantOld: old, wantNew: epoch},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			src, dst := t.TempDir(), t.TempDir()
			build(t, src, F("d/old", "o"), F("d/new", "n"), D("d/sub"), L("d/link", "old"))
			for _, p := range []string{"d/old", "d/sub", "d/link"} {
				setTestTime(t, filepath.Join(src, p), old)
			}
			setTestTime(t, filepath.Join(src, "d/new"), recent)
			req := Request{SrcRoot: src, DestRoot: dst, Sources: []string{"d"}, Dest: "/o", Epoch: tt.epoch}
			if err := Copy(context.Background(), req); err != nil {
				t.Fatal(err)
			}
			for p, want := range map[string]time.Time{"o/old": tt.wantOld, "o/sub": tt.wantOld, "o/link": tt.wantOld, "o/new": tt.wantNew} {
				fi, err := os.Lstat(filepath.Join(dst, p))
				if err != nil {
					t.Fatal(err)
				}
				if !fi.ModTime().Equal(want) {
					t.Errorf("%s mtime = %v, want %v", p, fi.ModTime().UTC(), want)
				}
			}
			if tt.epoch != nil {
				fi, err := os.Lstat(filepath.Join(dst, "o"))
				if err != nil || fi.ModTime().After(epoch) {
					t.Errorf("created dir mtime %v after the epoch (%v)", fi.ModTime(), err)
				}
			}
		})
	}
}

func ptr[T any](v T) *T { return &v }

func setTestTime(t *testing.T, p string, tm time.Time) {
	t.Helper()
	ts := unix.NsecToTimespec(tm.UnixNano())
	if err := unix.UtimesNanoAt(unix.AT_FDCWD, p, []unix.Timespec{ts, ts}, unix.AT_SYMLINK_NOFOLLOW); err != nil {
		t.Fatal(err)
	}
}

func TestCopySpecialFiles(t *testing.T) {
	requireRoot(t)
	src, dst := t.TempDir(), t.TempDir()
	build(t, src, D("d"))
	if err := unix.Mkfifo(filepath.Join(src, "d/fifo"), 0o640); err != nil {
		t.Fatal(err)
	}
	if err := unix.Mknod(filepath.Join(src, "d/null"), unix.S_IFCHR|0o666, int(unix.Mkdev(1, 3))); err != nil {
		t.Fatal(err)
	}
	// A named FIFO must be recreated, not opened (which would block).
	req := Request{SrcRoot: src, DestRoot: dst, Sources: []string{"d", "d/fifo"}, Dest: "/o/", FromContext: true}
	if err := Copy(context.Background(), req); err != nil {
		t.Fatal(err)
	}
	for _, p := range []string{"o/fifo"} {
		fi, err := os.Lstat(filepath.Join(dst, p))
		if err != nil || fi.Mode()&os.ModeNamedPipe == 0 || fi.Mode().Perm() != 0o640 {
			t.Fatalf("%s: %v %v; want a 0640 fifo", p, fi, err)
		}
	}
	var st unix.Stat_t
	if err := unix.Lstat(filepath.Join(dst, "o/null"), &st); err != nil {
		t.Fatal(err)
	}
	if st.Mode&unix.S_IFMT != unix.S_IFCHR || st.Rdev != unix.Mkdev(1, 3) {
		t.Fatalf("o/null: mode %o rdev %d; want char device 1:3", st.Mode, st.Rdev)
	}
}

func TestCopyXattrs(t *testing.T) {
	requireRoot(t)
	src, dst := t.TempDir(), t.TempDir()
	build(t, src, F("f", "x"))
	p := filepath.Join(src, "f")
	if err := unix.Lsetxattr(p, "user.test", []byte("v1"), 0); err != nil {
		t.Skipf("filesystem without user xattrs: %v", err)
	}
	if err := unix.Lsetxattr(p, "trusted.overlay.opaque", []byte("y"), 0); err != nil {
		t.Skipf("cannot set trusted xattrs: %v", err)
	}
	if err := Copy(context.Background(), Request{SrcRoot: src, DestRoot: dst, Sources: []string{"f"}, Dest: "/g", Chown: "5:5"}); err != nil {
		t.Fatal(err)
	}
	got, err := getXattr(filepath.Join(dst, "g"), "user.test")
	if err != nil || string(got) != "v1" {
		t.Fatalf("user.test = %q, %v", got, err)
	}
	if _, err := getXattr(filepath.Join(dst, "g"), "trusted.overlay.opaque"); !errors.Is(err, unix.ENODATA) {
		t.Fatalf("trusted.overlay.opaque copied: %v", err)
	}
}

func TestCopyCancelled(t *testing.T) {
	src, dst := t.TempDir(), t.TempDir()
	build(t, src, F("a", "1"), F("b", "2"))
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	err := Copy(ctx, Request{SrcRoot: src, DestRoot: dst, Sources: []string{"."}, Dest: "/o"})
	if !errors.Is(err, context.Canceled) {
		t.Fatalf("Copy with a cancelled context: %v", err)
	}
	if _, err := Checksum(ctx, Request{SrcRoot: src, Sources: []string{"."}}); !errors.Is(err, context.Canceled) {
		t.Fatalf("Checksum with a cancelled context: %v", err)
	}
}

func TestCopyRequestErrors(t *testing.T) {
	src := t.TempDir()
	tests := []struct {
		name string
		req  Request
		want string
	}{
		{"no destination root", Request{SrcRoot: src, Sources: []string{"."}}, "empty destination root"},
		{"no source root", Request{DestRoot: src, Sources: []string{"."}}, "empty source root"},
		{"bad ignore pattern", Request{SrcRoot: src, DestRoot: src, Sources: []string{"."}, Ignore: []string{"["}}, ".dockerignore"},
		{"bad exclude pattern", Request{SrcRoot: src, DestRoot: src, Sources: []string{"."}, Excludes: []string{"!"}}, "--exclude"},
	}
	for _, tt := range tests {
		err := Copy(context.Background(), tt.req)
		if err == nil || !strings.Contains(err.Error(), tt.want) {
			t.Errorf("%s: error %v, want %q", tt.name, err, tt.want)
		}
	}
}
