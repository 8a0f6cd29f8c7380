package snapshot

import (
	"archive/tar"
	"bytes"
	"context"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"golang.org/x/sys/unix"
)

// TestApplyHostile feeds archives that try to reach outside dest. Symlinks
// aim at a sentinel dir next to dest (not the host's /etc) so that a bug
// damages only test data; the whole tree around dest must stay unchanged.
func TestApplyHostile(t *testing.T) {
	needRoot(t)
	type env struct{ dest, sent, inDest string } // inDest: dest + sentinel's absolute path
	tests := []struct {
		name    string
		mode    ApplyMode
		ents    func(sent string) []ent
		wantErr string
		check   func(t *testing.T, e env)
	}{
		{name: "dotdot", ents: one(file("../escape", "x")), wantErr: "escapes"},
		{name: "dotdot inner", ents: one(file("a/../../escape", "x")), wantErr: "escapes"},
		{name: "dotdot deep", ents: one(file("a/b/../../../../escape", "x")), wantErr: "escapes"},
		{name: "dotdot after slash", ents: one(file("/../escape", "x")), wantErr: "escapes"},
		{
			name: "absolute name lands inside",
			ents: one(file("/etc/x", "a"), file("./etc/y", "b"), file("//etc/z", "c")),
			check: func(t *testing.T, e env) {
				for n, want := range map[string]string{"x": "a", "y": "b", "z": "c"} {
					if got := readFile(t, filepath.Join(e.dest, "etc", n)); got != want {
						t.Errorf("etc/%s = %q, want %q", n, got, want)
					}
				}
			},
		},
		{
			name: "symlink to / then write through",
			ents: func(s string) []ent { return []ent{symlink("evil", "/"), file("evil"+s+"/file", "pwned")} },
			check: func(t *testing.T, e env) {
				wantContent(t, filepath.Join(e.inDest, "file"), "pwned")
			},
		},
		{
			name: "symlink to ../../ then write through",
			ents: one(symlink("evil", "../../"), file("evil/escape", "x")),
			check: func(t *testing.T, e env) {
				wantContent(t, filepath.Join(e.dest, "escape"), "x")
			},
		},
		{
			name: "symlink to sentinel then write through",
			ents: func(s string) []ent { return []ent{symlink("s", s), file("s/file", "pwned")} },
			check: func(t *testing.T, e env) {
				wantContent(t, filepath.Join(e.inDest, "file"), "pwned")
			},
		},
		{
			name: "symlink chain escaping",
			ents: func(s string) []ent {
				return []ent{
					symlink("l1", "l2"), symlink("l2", "sub/l3"), dir("sub/"),
					symlink("sub/l3", "../../../../.."+s), file("l1/file", "pwned"),
				}
			},
			check: func(t *testing.T, e env) {
				wantContent(t, filepath.Join(e.inDest, "file"), "pwned")
			},
		},
		{
			name:    "symlink loop",
			ents:    one(symlink("l", "l"), file("l/x", "x")),
			wantErr: "resolving",
		},
		{
			name: "hardlink to outside path that is missing inside",
			ents: func(s string) []ent { return []ent{hardlink("h", s+"/file")} },
			// The name is resolved inside dest, where it does not exist.
			wantErr: "hard link target",
		},
		{
			name: "hardlink to /etc/passwd resolves inside",
			ents: one(file("etc/passwd", "inside"), hardlink("h", "/etc/passwd")),
			check: func(t *testing.T, e env) {
				sameInode(t, filepath.Join(e.dest, "h"), filepath.Join(e.dest, "etc/passwd"))
			},
		},
		{name: "hardlink to ../x", ents: one(hardlink("h", "../sentinel/file")), wantErr: "escapes"},
		{
			name:    "hardlink to symlink to outside",
			ents:    func(s string) []ent { return []ent{symlink("s", s+"/file"), hardlink("h", "s")} },
			wantErr: "not a regular file",
		},
		{
			name:    "hardlink through symlinked parent",
			ents:    func(s string) []ent { return []ent{symlink("d", s), hardlink("h", "d/file")} },
			wantErr: "hard link target",
		},
		{name: "hardlink to dir", ents: one(dir("d/"), hardlink("h", "d")), wantErr: "not a regular file"},
		{
			name: "hardlink to self",
			ents: one(file("f", "x"), hardlink("f", "./f")),
			check: func(t *testing.T, e env) {
				wantContent(t, filepath.Join(e.dest, "f"), "x")
			},
		},
		{name: "whiteout of ../x", mode: ApplyFlatten, ents: one(file("../.wh.sentinel", "")), wantErr: "escapes"},
		{name: "whiteout named ..", mode: ApplyFlatten, ents: one(file("a/.wh...", "")), wantErr: "bad whiteout"},
		{name: "whiteout with empty name", mode: ApplyOverlay, ents: one(file(".wh.", "")), wantErr: "bad whiteout"},
		{
			name: "whiteout through symlinked dir (flatten)",
			mode: ApplyFlatten,
			ents: func(s string) []ent { return []ent{symlink("d", s), file("d/.wh.file", "")} },
		},
		{
			name: "whiteout through symlinked dir (overlay)",
			ents: func(s string) []ent { return []ent{symlink("d", s), file("d/.wh.file", "")} },
			check: func(t *testing.T, e env) {
				wantDesc(t, filepath.Join(e.inDest, "file"), "20000 0:0 0/0")
			},
		},
		{
			name: "opaque marker in symlinked dir (flatten)",
			mode: ApplyFlatten,
			ents: func(s string) []ent { return []ent{symlink("d", s), file("d/.wh..wh..opq", "")} },
		},
		{
			name: "opaque marker in symlinked dir (overlay)",
			ents: func(s string) []ent { return []ent{symlink("d", s), file("d/.wh..wh..opq", "")} },
			check: func(t *testing.T, e env) {
				wantDesc(t, e.inDest, "40755 0:0 opaque=y")
			},
		},
		{
			name: "dir replaces symlink to outside",
			ents: func(s string) []ent {
				return []ent{symlink("d", s), {name: "d/", typ: tar.TypeDir, mode: 0o700}, file("d/new", "n")}
			},
			check: func(t *testing.T, e env) {
				wantDesc(t, filepath.Join(e.dest, "d"), "40700 0:0")
				wantContent(t, filepath.Join(e.dest, "d/new"), "n")
			},
		},
		{
			name: "file replaces symlink to outside",
			ents: func(s string) []ent { return []ent{symlink("f", s+"/file"), file("f", "new")} },
			check: func(t *testing.T, e env) {
				wantDesc(t, filepath.Join(e.dest, "f"), `100644 0:0 "new"`)
			},
		},
		{
			name: "symlink replaces dir, later entry writes through it",
			ents: func(s string) []ent {
				return []ent{dir("a/"), file("a/x", "x"), symlink("a", s), file("a/y", "pwned")}
			},
			check: func(t *testing.T, e env) {
				wantContent(t, filepath.Join(e.inDest, "y"), "pwned")
				wantDesc(t, filepath.Join(e.dest, "a"), "120777 0:0 -> "+e.sent)
			},
		},
		{
			name: "device nodes and fifo",
			ents: one(
				ent{name: "dev/null", typ: tar.TypeChar, mode: 0o666, major: 1, minor: 3},
				ent{name: "dev/loop0", typ: tar.TypeBlock, mode: 0o660, major: 7, minor: 0, gid: 6},
				ent{name: "p", typ: tar.TypeFifo, mode: 0o600},
			),
			check: func(t *testing.T, e env) {
				wantDesc(t, filepath.Join(e.dest, "dev/null"), "20666 0:0 1/3")
				wantDesc(t, filepath.Join(e.dest, "dev/loop0"), "60660 0:6 7/0")
				wantDesc(t, filepath.Join(e.dest, "p"), "10600 0:0")
			},
		},
		{
			name: "very long name",
			ents: one(file(strings.Repeat("d123456789/", 30)+"file", "long")),
			check: func(t *testing.T, e env) {
				wantContent(t, filepath.Join(e.dest, strings.Repeat("d123456789/", 30)+"file"), "long")
			},
		},
		{
			name: "duplicates: later wins, dir keeps contents",
			ents: one(file("dup", "one"), file("dup", "two"),
				ent{name: "d/", typ: tar.TypeDir, mode: 0o700}, file("d/f", "f"),
				ent{name: "d/", typ: tar.TypeDir, mode: 0o750}),
			check: func(t *testing.T, e env) {
				wantContent(t, filepath.Join(e.dest, "dup"), "two")
				wantDesc(t, filepath.Join(e.dest, "d"), "40750 0:0")
				wantContent(t, filepath.Join(e.dest, "d/f"), "f")
			},
		},
		{
			name: "entries . and ./ set the root's metadata",
			ents: one(ent{name: ".", typ: tar.TypeDir, mode: 0o700}, ent{name: "./", typ: tar.TypeDir, mode: 0o711, uid: 5}),
			check: func(t *testing.T, e env) {
				wantDesc(t, e.dest, "40711 5:0")
			},
		},
		{name: "file named .", ents: one(file(".", "x")), wantErr: "destination root"},
		{name: "empty name", ents: one(file("", "x")), wantErr: "destination root"},
		{name: "parent is a file", ents: one(file("a", "x"), file("a/b", "y")), wantErr: "not a directory"},
		{
			name: "setuid, setgid and sticky kept",
			ents: one(
				ent{name: "bin/su", typ: tar.TypeReg, mode: 0o4755, uid: 1000, gid: 1000},
				ent{name: "bin/sg", typ: tar.TypeReg, mode: 0o2711},
				ent{name: "tmp/", typ: tar.TypeDir, mode: 0o1777},
			),
			check: func(t *testing.T, e env) {
				wantDesc(t, filepath.Join(e.dest, "bin/su"), `104755 1000:1000 ""`)
				wantDesc(t, filepath.Join(e.dest, "bin/sg"), `102711 0:0 ""`)
				wantDesc(t, filepath.Join(e.dest, "tmp"), "41777 0:0")
			},
		},
		{
			name: "directory mtimes kept",
			ents: one(
				ent{name: "d/", typ: tar.TypeDir, mtime: time.Unix(1e9, 0)},
				file("d/f", "f"),
				ent{name: "d/e/", typ: tar.TypeDir, mtime: time.Unix(1e9+7, 0)},
				file("d/e/g", "g"),
				ent{name: "l", typ: tar.TypeSymlink, link: "d", mtime: time.Unix(5, 0)},
			),
			check: func(t *testing.T, e env) {
				wantMtime(t, filepath.Join(e.dest, "d"), 1e9)
				wantMtime(t, filepath.Join(e.dest, "d/e"), 1e9+7)
				wantMtime(t, filepath.Join(e.dest, "d/f"), testTime().Unix())
				wantMtime(t, filepath.Join(e.dest, "l"), 5)
			},
		},
		{
			name: "absolute symlink target kept as written",
			ents: one(symlink("l", "/etc/passwd")),
			check: func(t *testing.T, e env) {
				wantDesc(t, filepath.Join(e.dest, "l"), "120777 0:0 -> /etc/passwd")
			},
		},
		{
			name: "forged overlay xattr dropped",
			ents: one(ent{name: "d/", typ: tar.TypeDir, pax: map[string]string{
				"SCHILY.xattr.trusted.overlay.opaque": "y",
				"SCHILY.xattr.user.foo":               "bar",
			}}),
			check: func(t *testing.T, e env) {
				wantDesc(t, filepath.Join(e.dest, "d"), "40755 0:0")
				if v, err := getxattr(filepath.Join(e.dest, "d"), "user.foo"); err != nil || v != "bar" {
					t.Errorf("user.foo = %q, %v; want bar", v, err)
				}
			},
		},
		{
			name: "name normalisation",
			ents: one(file("./a/./b/../c", "c")),
			check: func(t *testing.T, e env) {
				wantContent(t, filepath.Join(e.dest, "a/c"), "c")
				if exists(filepath.Join(e.dest, "a/b")) {
					t.Error("a/b should not exist")
				}
			},
		},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			outer := t.TempDir()
			base := filepath.Join(outer, "x", "y")
			e := env{dest: filepath.Join(base, "dest"), sent: filepath.Join(base, "sentinel")}
			e.inDest = filepath.Join(e.dest, e.sent)
			mustWrite(t, filepath.Join(e.sent, "file"), "precious")
			mustWrite(t, filepath.Join(e.sent, "sub", "f"), "precious too")
			if err := os.MkdirAll(e.dest, 0o755); err != nil {
				t.Fatal(err)
			}
			before := fingerprint(t, outer, e.dest)
			archive := mkTar(t, tc.ents(e.sent)...)
			err := Apply(context.Background(), e.dest, bytes.NewReader(archive), ApplyOptions{Mode: tc.mode})
			switch {
			case tc.wantErr == "" && err != nil:
				t.Fatalf("Apply: %v", err)
			case tc.wantErr != "" && err == nil:
				t.Fatalf("Apply succeeded, want error containing %q", tc.wantErr)
			case tc.wantErr != "" && !strings.Contains(err.Error(), tc.wantErr):
				t.Fatalf("Apply error %q, want it to contain %q", err, tc.wantErr)
			}
			if after := fingerprint(t, outer, e.dest); after != before {
				t.Fatalf("tree outside dest changed\nbefore:\n%s\nafter:\n%s", before, after)
			}
			if tc.check != nil {
				tc.check(t, e)
			}
		})
	}
}

// one makes an ents func for archives that do not need the sentinel path.
func one(ents ...ent) func(string) []ent {
	return func(string) []ent { return ents }
}

func wantContent(t *testing.T, p, want string) {
	t.Helper()
	fi, err := os.Lstat(p)
	if err != nil {
		t.Fatalf("want %s: %v", p, err)
	}
	if !fi.Mode().IsRegular() {
		t.Fatalf("%s is %v, want a regular file", p, fi.Mode())
	}
	if got := readFile(t, p); got != want {
		t.Errorf("%s = %q, want %q", p, got, want)
	}
}

func wantDesc(t *testing.T, p, want string) {
	t.Helper()
	if _, err := os.Lstat(p); err != nil {
		t.Fatalf("want %s: %v", p, err)
	}
	if got := describeOne(t, p); got != want {
		t.Errorf("%s: got %q, want %q", p, got, want)
	}
}

func wantMtime(t *testing.T, p string, sec int64) {
	t.Helper()
	var st unix.Stat_t
	if err := unix.Lstat(p, &st); err != nil {
		t.Fatal(err)
	}
	if st.Mtim.Sec != sec {
		t.Errorf("%s mtime = %d, want %d", p, st.Mtim.Sec, sec)
	}
}

func sameInode(t *testing.T, a, b string) {
	t.Helper()
	var sa, sb unix.Stat_t
	if err := unix.Lstat(a, &sa); err != nil {
		t.Fatal(err)
	}
	if err := unix.Lstat(b, &sb); err != nil {
		t.Fatal(err)
	}
	if sa.Ino != sb.Ino || sa.Dev != sb.Dev {
		t.Errorf("%s and %s are not the same file", a, b)
	}
}
