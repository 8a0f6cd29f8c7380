package snapshot

import (
	"context"
	"os"
	"path/filepath"
	"reflect"
	"slices"
	"testing"

	"golang.org/x/sys/unix"
)

func TestOverlayMount(t *testing.T) {
	root := "/var/lib/strata/snapshots"
	l1 := Snapshot{Key: keyA, Dir: root + "/0123456789abcdef/fs"}
	l2 := Snapshot{Key: keyB, Dir: root + "/fedcba9876543210/fs"}
	foreign := Snapshot{Key: keyB, Dir: "/elsewhere/with,comma:colon/fs"}
	act := &Active{Dir: root + "/tmp/123/fs", Work: root + "/tmp/123/work"}
	tests := []struct {
		name   string
		lowers []Snapshot
		a      *Active
		want   Mount
	}{
		{
			name: "scratch writable",
			a:    act,
			want: Mount{Type: "bind", Source: act.Dir, Target: "/", Options: []string{"rbind"}},
		},
		{
			name: "nothing at all",
			want: Mount{Type: "tmpfs", Source: "tmpfs", Target: "/", Options: []string{"ro"}},
		},
		{
			name:   "one lower read-only",
			lowers: []Snapshot{l1},
			want:   Mount{Type: "bind", Source: l1.Dir, Target: "/", Options: []string{"rbind", "ro"}},
		},
		{
			name:   "two lowers read-only",
			lowers: []Snapshot{l2, l1},
			want: Mount{Type: "overlay", Source: "overlay", Target: "/", Options: []string{
				"lowerdir=fedcba9876543210/fs:0123456789abcdef/fs", "index=off", "redirect_dir=off", "metacopy=off",
			}},
		},
		{
			name:   "one lower writable",
			lowers: []Snapshot{l1},
			a:      act,
			want: Mount{Type: "overlay", Source: "overlay", Target: "/", Options: []string{
				"lowerdir=0123456789abcdef/fs", "upperdir=" + act.Dir, "workdir=" + act.Work,
				"index=off", "redirect_dir=off", "metacopy=off",
			}},
		},
		{
			name:   "lower outside the store is absolute and escaped",
			lowers: []Snapshot{l1, foreign},
			a:      act,
			want: Mount{Type: "overlay", Source: "overlay", Target: "/", Options: []string{
				`lowerdir=0123456789abcdef/fs:/elsewhere/with\,comma\:colon/fs`, "upperdir=" + act.Dir, "workdir=" + act.Work,
				"index=off", "redirect_dir=off", "metacopy=off",
			}},
		},
		{
			name:   "first lower outside a store: all absolute",
			lowers: []Snapshot{{Dir: "/x/fs"}, l1},
			want: Mount{Type: "overlay", Source: "overlay", Target: "/", Options: []string{
				"lowerdir=/x/fs:" + l1.Dir, "index=off", "redirect_dir=off", "metacopy=off",
			}},
		},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			if got := OverlayMount(tc.lowers, tc.a); !reflect.DeepEqual(got, tc.want) {
				t.Errorf("got  %+v\nwant %+v", got, tc.want)
			}
		})
	}
}

// mountOverlay performs m at target from the store root, as package exec
// does, and unmounts it at the end of the test.
func mountOverlay(t *testing.T, s *Store, m Mount, target string) func() {
	t.Helper()
	t.Chdir(s.Root())
	data := ""
	for i, o := range m.Options {
		if i > 0 {
			data += ","
		}
		data += o
	}
	if err := unix.Mount(m.Source, target, m.Type, 0, data); err != nil {
		t.Fatalf("mount -t %s -o %s: %v", m.Type, data, err)
	}
	done := false
	unmount := func() {
		if done {
			return
		}
		done = true
		if err := unix.Unmount(target, 0); err != nil {
			t.Errorf("unmount %s: %v", target, err)
		}
	}
	t.Cleanup(func() {
		if !done {
			_ = unix.Unmount(target, unix.MNT_DETACH)
		}
	})
	return unmount
}

// The kernel must accept exactly the options OverlayMount produces, with
// relative lowerdirs, both read-only and writable.
func TestOverlayMountKernelAccepts(t *testing.T) {
	needRoot(t)
	s := openStore(t)
	ctx := context.Background()
	l1, err := s.Unpack(ctx, keyA, bytesReader(mkTar(t, file("a", "1"), file("b", "1"))))
	if err != nil {
		t.Fatal(err)
	}
	l2, err := s.Unpack(ctx, keyB, bytesReader(mkTar(t, file("b", "2"))))
	if err != nil {
		t.Fatal(err)
	}
	mnt := t.TempDir()
	unmount := mountOverlay(t, s, OverlayMount([]Snapshot{l2, l1}, nil), mnt)
	wantContent(t, filepath.Join(mnt, "a"), "1")
	wantContent(t, filepath.Join(mnt, "b"), "2")
	if err := os.WriteFile(filepath.Join(mnt, "c"), nil, 0o644); err == nil {
		t.Error("read-only overlay accepted a write")
	}
	unmount()

	act, err := s.Prepare(ctx)
	if err != nil {
		t.Fatal(err)
	}
	unmount = mountOverlay(t, s, OverlayMount([]Snapshot{l2, l1}, act), mnt)
	mustWrite(t, filepath.Join(mnt, "c"), "3")
	unmount()
	wantContent(t, filepath.Join(act.Dir, "c"), "3")
	if err := s.Abort(act); err != nil {
		t.Fatal(err)
	}
}

func TestVolatile(t *testing.T) {
	if !hasVolatile() {
		t.Skip("kernel older than 5.10: overlayfs has no volatile option")
	}
	lowers := []Snapshot{{Dir: "/s/aaaaaaaaaaaaaaaa/fs"}, {Dir: "/s/bbbbbbbbbbbbbbbb/fs"}}
	a := &Active{Dir: "/s/tmp/1/fs", Work: "/s/tmp/1/work"}
	for _, tc := range []struct {
		name string
		m    Mount
		want bool
	}{
		{"overlay with upper", OverlayMount(lowers, a), true},
		{"read-only overlay", OverlayMount(lowers, nil), false},
		{"scratch bind", OverlayMount(nil, a), false},
		{"tmpfs", OverlayMount(nil, nil), false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			before := slices.Clone(tc.m.Options)
			got := tc.m.Volatile()
			if slices.Contains(got.Options, "volatile") != tc.want {
				t.Fatalf("options %v: volatile = %v, want %v", got.Options, !tc.want, tc.want)
			}
			if !slices.Equal(tc.m.Options, before) {
				t.Fatalf("Volatile changed the original options: %v", tc.m.Options)
			}
		})
	}
}
