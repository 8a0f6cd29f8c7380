package user

import (
	"os"
	"path/filepath"
	"reflect"
	"strings"
	"testing"
)

const testPasswd = `root:x:0:0:root:/root:/bin/bash
daemon:x:1:1:daemon:/usr/sbin:/usr/sbin/nologin
# a comment line
nobody:x:65534:65534:nobody:/nonexistent:/usr/sbin/nologin
broken line without fields
bad:x:notanumber:0::/bad:/bin/sh
app:x:1000:1000::/home/app:/bin/sh
nohome:x:1001:1001:::/bin/sh
1234:x:4321:4321::/home/numeric:/bin/sh
`

const testGroup = `root:x:0:
daemon:x:1:
nogroup:x:65534:
app:x:1000:
audio:x:29:app,other
video:x:44: other , app
staff:x:50:root
wheel:x:10:app
`

// writeRoot makes a rootfs with the given /etc files (absent when empty).
func writeRoot(t *testing.T, passwd, group string) string {
	t.Helper()
	root := t.TempDir()
	if err := os.MkdirAll(filepath.Join(root, "etc"), 0o755); err != nil {
		t.Fatal(err)
	}
	for name, data := range map[string]string{"passwd": passwd, "group": group} {
		if data == "" {
			continue
		}
		if err := os.WriteFile(filepath.Join(root, "etc", name), []byte(data), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	return root
}

func TestLookup(t *testing.T) {
	root := writeRoot(t, testPasswd, testGroup)
	tests := []struct {
		spec    string
		want    User
		wantErr string
	}{
		{spec: "", want: User{UID: 0, GID: 0, Groups: []uint32{50}, Home: "/root"}},
		{spec: "root", want: User{Groups: []uint32{50}, Home: "/root"}},
		{spec: "0", want: User{Groups: []uint32{50}, Home: "/root"}},
		{spec: "daemon", want: User{UID: 1, GID: 1, Home: "/usr/sbin"}},
		{spec: "app", want: User{UID: 1000, GID: 1000, Groups: []uint32{29, 44, 10}, Home: "/home/app"}},
		{spec: "1000", want: User{UID: 1000, GID: 1000, Groups: []uint32{29, 44, 10}, Home: "/home/app"}},
		// An explicit group replaces the implicit memberships (runc).
		{spec: "app:audio", want: User{UID: 1000, GID: 29, Home: "/home/app"}},
		{spec: "app:44", want: User{UID: 1000, GID: 44, Home: "/home/app"}},
		{spec: "app:777", want: User{UID: 1000, GID: 777, Home: "/home/app"}},
		{spec: "1000:nogroup", want: User{UID: 1000, GID: 65534, Home: "/home/app"}},
		{spec: "daemon:0", want: User{UID: 1, GID: 0, Home: "/usr/sbin"}},
		// Numeric uid without an entry: gid 0, home "/".
		{spec: "5000", want: User{UID: 5000, GID: 0, Home: "/"}},
		{spec: "5000:5001", want: User{UID: 5000, GID: 5001, Home: "/"}},
		{spec: "5000:audio", want: User{UID: 5000, GID: 29, Home: "/"}},
		{spec: "nohome", want: User{UID: 1001, GID: 1001, Home: "/"}},
		// A user literally named "1234" matches by name before uid 1234 is tried.
		{spec: "1234", want: User{UID: 4321, GID: 4321, Home: "/home/numeric"}},
		{spec: "4294967295", want: User{UID: 4294967295, Home: "/"}},
		{spec: "nosuchuser", wantErr: "unable to find user nosuchuser: no matching entries in passwd file"},
		{spec: "bad", wantErr: "unable to find user bad"},
		{spec: "-1", wantErr: "unable to find user -1"},
		{spec: "4294967296", wantErr: "unable to find user 4294967296"},
		{spec: "app:nosuchgroup", wantErr: "unable to find group nosuchgroup: no matching entries in group file"},
		{spec: "app:", wantErr: "empty group"},
		{spec: ":app", wantErr: "empty user"},
	}
	for _, tt := range tests {
		t.Run(tt.spec, func(t *testing.T) {
			got, err := Lookup(root, tt.spec)
			if tt.wantErr != "" {
				if err == nil || !strings.Contains(err.Error(), tt.wantErr) {
					t.Fatalf("Lookup(%q) error = %v, want containing %q", tt.spec, err, tt.wantErr)
				}
				return
			}
			if err != nil {
				t.Fatalf("Lookup(%q): %v", tt.spec, err)
			}
			if !reflect.DeepEqual(got, tt.want) {
				t.Fatalf("Lookup(%q) = %+v, want %+v", tt.spec, got, tt.want)
			}
		})
	}
}

func TestLookupMissingFiles(t *testing.T) {
	root := writeRoot(t, "", "")
	tests := []struct {
		spec    string
		want    User
		wantErr string
	}{
		{spec: "", want: User{Home: "/"}},
		{spec: "1000", want: User{UID: 1000, Home: "/"}},
		{spec: "1000:1000", want: User{UID: 1000, GID: 1000, Home: "/"}},
		{spec: "app", wantErr: "unable to find user app: no matching entries in passwd file"},
		{spec: "1000:staff", wantErr: "unable to find group staff"},
	}
	for _, tt := range tests {
		got, err := Lookup(root, tt.spec)
		if tt.wantErr != "" {
			if err == nil || !strings.Contains(err.Error(), tt.wantErr) {
				t.Errorf("Lookup(%q) error = %v, want %q", tt.spec, err, tt.wantErr)
			}
			continue
		}
		if err != nil || !reflect.DeepEqual(got, tt.want) {
			t.Errorf("Lookup(%q) = %+v, %v; want %+v", tt.spec, got, err, tt.want)
		}
	}
}

// TestLookupStaysInRoot checks that symlinks in the image resolve inside it:
// the host's /etc/passwd (which has root) must never be read.
func TestLookupStaysInRoot(t *testing.T) {
	tests := []struct {
		name  string
		setup func(t *testing.T, root string)
	}{
		{"etc symlink to absolute /etc", func(t *testing.T, root string) {
			mustSymlink(t, "/etc", filepath.Join(root, "etc"))
		}},
		{"etc symlink climbing out", func(t *testing.T, root string) {
			mustSymlink(t, "../../../../../../etc", filepath.Join(root, "etc"))
		}},
		{"passwd symlink to host file", func(t *testing.T, root string) {
			mustMkdir(t, filepath.Join(root, "etc"))
			mustSymlink(t, "/etc/passwd", filepath.Join(root, "etc", "passwd"))
			mustSymlink(t, "/etc/group", filepath.Join(root, "etc", "group"))
		}},
		{"passwd symlink via dotdot", func(t *testing.T, root string) {
			mustMkdir(t, filepath.Join(root, "etc"))
			mustSymlink(t, "../../../../../../../etc/passwd", filepath.Join(root, "etc", "passwd"))
		}},
		{"etc symlink to a missing host dir", func(t *testing.T, root string) {
			mustSymlink(t, "../../../../../../usr/../etc/../etc2", filepath.Join(root, "etc"))
		}},
		{"passwd symlink to a host path missing in root", func(t *testing.T, root string) {
			mustMkdir(t, filepath.Join(root, "etc"))
			mustSymlink(t, "/../../../../etc/../etc/hostname/../passwd-host", filepath.Join(root, "etc", "passwd"))
		}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			root := t.TempDir()
			tt.setup(t, root)
			// Links resolving to themselves inside the root are loops (an
			// error); the others find nothing. Either way the host's root
			// entry must never show up.
			if got, err := Lookup(root, "root"); err == nil {
				t.Fatalf("Lookup(root) = %+v: a host file was read", got)
			}
			got, err := Lookup(root, "0")
			if err == nil && got.Home != "/" {
				t.Fatalf("Lookup(0) = %+v; want the no-entry defaults", got)
			}
		})
	}

	// A symlink that stays inside the root is followed.
	root := t.TempDir()
	mustMkdir(t, filepath.Join(root, "real"))
	if err := os.WriteFile(filepath.Join(root, "real", "passwd"), []byte("inside:x:7:8::/in:/bin/sh\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	mustSymlink(t, "/real", filepath.Join(root, "etc"))
	got, err := Lookup(root, "inside")
	if err != nil || got.UID != 7 || got.GID != 8 || got.Home != "/in" {
		t.Fatalf("Lookup(inside) = %+v, %v", got, err)
	}
}

func TestLookupNotRegular(t *testing.T) {
	root := t.TempDir()
	mustMkdir(t, filepath.Join(root, "etc", "passwd"))
	if _, err := Lookup(root, "root"); err == nil || !strings.Contains(err.Error(), "not a regular file") {
		t.Fatalf("Lookup with a directory passwd: %v", err)
	}
	if _, err := Lookup("", "root"); err == nil {
		t.Fatal("Lookup with empty rootfs succeeded")
	}
}

func mustSymlink(t *testing.T, target, link string) {
	t.Helper()
	if err := os.Symlink(target, link); err != nil {
		t.Fatal(err)
	}
}

func mustMkdir(t *testing.T, dir string) {
	t.Helper()
	if err := os.MkdirAll(dir, 0o755); err != nil {
		t.Fatal(err)
	}
}
