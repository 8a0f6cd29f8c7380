package copier

import (
	"context"
	"strings"
	"testing"
)

type copyCase struct {
	name      string
	src       []node // the source root (build context unless fromStage)
	dst       []node // the destination root before the copy
	req       Request
	fromStage bool
	want      []string // dump of the destination root afterwards
	wantErr   string
}

// run builds both roots, copies and checks the destination dump.
func (tc copyCase) run(t *testing.T) {
	t.Helper()
	src, dst := t.TempDir(), t.TempDir()
	build(t, src, tc.src...)
	build(t, dst, tc.dst...)
	req := tc.req
	req.SrcRoot, req.DestRoot, req.FromContext = src, dst, !tc.fromStage
	err := Copy(context.Background(), req)
	if tc.wantErr != "" {
		if err == nil || !strings.Contains(err.Error(), tc.wantErr) {
			t.Fatalf("Copy error = %v, want one containing %q", err, tc.wantErr)
		}
		return
	}
	if err != nil {
		t.Fatalf("Copy: %v", err)
	}
	if d := diffLines(dump(t, dst), tc.want); d != "" {
		t.Fatalf("destination differs:\n%s", d)
	}
}

const foo = "foo-data"

func TestCopyFilesAndDirs(t *testing.T) {
	requireRoot(t)
	dirTree := []node{
		D("dir"), FM("dir/a", "A", 0o755), DM("dir/sub", 0o750), F("dir/sub/b", "B"),
	}
	dirWant := func(at string) []string {
		return []string{
			at + " d 0755 0:0", at + "/a f 0755 0:0 A", at + "/sub d 0750 0:0", at + "/sub/b f 0644 0:0 B",
		}
	}
	cases := []copyCase{
		{name: "file to file", src: []node{F("foo", foo)},
			req:  Request{Sources: []string{"foo"}, Dest: "/bar"},
			want: []string{"/bar f 0644 0:0 " + foo}},
		{name: "file into dir with slash", src: []node{F("foo", foo)},
			req:  Request{Sources: []string{"foo"}, Dest: "/d/"},
			want: []string{"/d d 0755 0:0", "/d/foo f 0644 0:0 " + foo}},
		{name: "file into existing dir keeps its owner and mode", src: []node{F("foo", foo)},
			dst:  []node{owned(DM("d", 0o700), 5, 6)},
			req:  Request{Sources: []string{"foo"}, Dest: "/d"},
			want: []string{"/d d 0700 5:6", "/d/foo f 0644 0:0 " + foo}},
		{name: "file replaces an existing file", src: []node{FM("foo", foo, 0o640)},
			dst:  []node{owned(FM("bar", "old", 0o777), 3, 3)},
			req:  Request{Sources: []string{"foo"}, Dest: "/bar"},
			want: []string{"/bar f 0640 0:0 " + foo}},
		{name: "directory contents", src: dirTree,
			req: Request{Sources: []string{"dir"}, Dest: "/out"}, want: dirWant("/out")},
		{name: "directory with trailing slash dot", src: dirTree,
			req: Request{Sources: []string{"dir/."}, Dest: "out5"}, want: dirWant("/out5")},
		{name: "directory with trailing slash", src: dirTree,
			req: Request{Sources: []string{"/dir/"}, Dest: "out4/"}, want: dirWant("/out4")},
		{name: "directory merged into an existing one", src: []node{DM("dir", 0o777), F("dir/new", "n"), DM("dir/sub", 0o750)},
			dst: []node{owned(DM("e", 0o700), 500, 600), owned(F("e/keep", "k"), 501, 601), owned(DM("e/sub", 0o700), 7, 7)},
			req: Request{Sources: []string{"dir"}, Dest: "/e"},
			// The top directory keeps its metadata, nested ones take the source's (BuildKit).
			want: []string{"/e d 0700 500:600", "/e/keep f 0644 501:601 k", "/e/new f 0644 0:0 n", "/e/sub d 0750 0:0"}},
		{name: "context root", src: []node{F("a", "1"), D("s"), F("s/b", "2")},
			req:  Request{Sources: []string{"."}, Dest: "newdir"},
			want: []string{"/newdir d 0755 0:0", "/newdir/a f 0644 0:0 1", "/newdir/s d 0755 0:0", "/newdir/s/b f 0644 0:0 2"}},
		{name: "empty directory", src: []node{D("empty")},
			req: Request{Sources: []string{"empty"}, Dest: "/empty"}, want: []string{"/empty d 0755 0:0"}},
		{name: "spaces in names", src: []node{F("my file.txt", "x")},
			req:  Request{Sources: []string{"my file.txt"}, Dest: "/dst dir/"},
			want: []string{"/dst dir d 0755 0:0", "/dst dir/my file.txt f 0644 0:0 x"}},
		{name: "dir onto an existing file fails", src: dirTree, dst: []node{F("out", "x")},
			req: Request{Sources: []string{"dir"}, Dest: "/out"}, wantErr: "non-directory"},
		{name: "file onto an existing dir entry fails", src: []node{D("d"), F("d/x", "1")}, dst: []node{D("o/x")},
			req: Request{Sources: []string{"d"}, Dest: "/o"}, wantErr: "cannot replace directory /o/x"},
		{name: "missing source", src: []node{F("other", "")},
			req: Request{Sources: []string{"foo"}, Dest: "bar"}, wantErr: `"/foo": not found`},
	}
	for _, tc := range cases {
		t.Run(tc.name, tc.run)
	}
}

func TestCopyDestinations(t *testing.T) {
	requireRoot(t)
	src := []node{F("foo", foo)}
	cases := []copyCase{
		{name: "relative to workdir", req: Request{Sources: []string{"foo"}, Dest: "sub/", Workdir: "/w/x"},
			want: []string{"/w d 0755 0:0", "/w/x d 0755 0:0", "/w/x/sub d 0755 0:0", "/w/x/sub/foo f 0644 0:0 " + foo}},
		{name: "relative file dest", req: Request{Sources: []string{"foo"}, Dest: "./bar/baz", Workdir: "/t"},
			want: []string{"/t d 0755 0:0", "/t/bar d 0755 0:0", "/t/bar/baz f 0644 0:0 " + foo}},
		{name: "dotdot from workdir", dst: []node{D("test5/test6")},
			req:  Request{Sources: []string{"foo"}, Dest: "../", Workdir: "/test5/test6"},
			want: []string{"/test5 d 0755 0:0", "/test5/test6 d 0755 0:0", "/test5/foo f 0644 0:0 " + foo}},
		{name: "empty dest is the workdir", req: Request{Sources: []string{"foo"}, Dest: "", Workdir: "/w"},
			want: []string{"/w d 0755 0:0", "/w/foo f 0644 0:0 " + foo}},
		{name: "dot dest", req: Request{Sources: []string{"foo"}, Dest: ".", Workdir: "/"},
			want: []string{"/foo f 0644 0:0 " + foo}},
		{name: "no workdir", req: Request{Sources: []string{"foo"}, Dest: "x"},
			want: []string{"/x f 0644 0:0 " + foo}},
		{name: "into a symlinked dir", dst: []node{D("usr/lib"), L("lib", "usr/lib")},
			req: Request{Sources: []string{"foo"}, Dest: "/lib/copied/"},
			want: []string{"/lib l -> usr/lib", "/usr d 0755 0:0", "/usr/lib d 0755 0:0",
				"/usr/lib/copied d 0755 0:0", "/usr/lib/copied/foo f 0644 0:0 " + foo}},
		{name: "through a dangling dest symlink", dst: []node{L("symlink", "../tmp/symlink-target")},
			req: Request{Sources: []string{"foo"}, Dest: "/symlink/"},
			want: []string{"/symlink l -> ../tmp/symlink-target", "/tmp d 0755 0:0",
				"/tmp/symlink-target d 0755 0:0", "/tmp/symlink-target/foo f 0644 0:0 " + foo}},
		{name: "a symlink at the target is replaced, not followed",
			dst:  []node{F("real", "R"), D("dir"), L("dir/foo", "../real")},
			req:  Request{Sources: []string{"foo"}, Dest: "/dir/"},
			want: []string{"/real f 0644 0:0 R", "/dir d 0755 0:0", "/dir/foo f 0644 0:0 " + foo}},
		{name: "existing parent is a file", dst: []node{F("f", "x")},
			req: Request{Sources: []string{"foo"}, Dest: "/f/sub/"}, wantErr: "not a directory"},
	}
	for _, tc := range cases {
		tc.src = src
		t.Run(tc.name, tc.run)
	}
}

func TestCopyGlobs(t *testing.T) {
	requireRoot(t)
	src := []node{
		F("a.go", "A"), F("b.go", "B"), F("c.txt", "C"), F("arr[0].txt", "hello"),
		D("bar/bam"), F("bar/bam/bat", "bat"), F("bar/bat", "bat2"), F("bar/baz", "baz"),
		D("sub/dir1/dir2"), F("sub/dir1/dir2/foo", "foo"),
	}
	cases := []copyCase{
		{name: "files into a dir", req: Request{Sources: []string{"*.go"}, Dest: "/g/"},
			want: []string{"/g d 0755 0:0", "/g/a.go f 0644 0:0 A", "/g/b.go f 0644 0:0 B"}},
		{name: "one match to a file", req: Request{Sources: []string{"c*"}, Dest: "/single"},
			want: []string{"/single f 0644 0:0 C"}},
		{name: "question mark", req: Request{Sources: []string{"?.txt"}, Dest: "/q"},
			want: []string{"/q f 0644 0:0 C"}},
		{name: "matched dir contributes its contents", req: Request{Sources: []string{"bar/b*"}, Dest: "bar/"},
			// bam's bat comes first, then bar/bat replaces it.
			want: []string{"/bar d 0755 0:0", "/bar/bat f 0644 0:0 bat2", "/bar/baz f 0644 0:0 baz"}},
		{name: "glob in a middle component", req: Request{Sources: []string{"sub/*/dir2/foo"}, Dest: "/subdest3/bar"},
			want: []string{"/subdest3 d 0755 0:0", "/subdest3/bar f 0644 0:0 foo"}},
		{name: "bracket escape", req: Request{Sources: []string{"arr[[]0].txt"}, Dest: "/mydir/"},
			want: []string{"/mydir d 0755 0:0", "/mydir/arr[0].txt f 0644 0:0 hello"}},
		{name: "several sources need a directory", req: Request{Sources: []string{"a.go", "b.go"}, Dest: "/x"},
			wantErr: "When using COPY with more than one source file, the destination must be a directory and end with a /"},
		{name: "a glob with several matches needs a directory", req: Request{Sources: []string{"*.go"}, Dest: "/x"},
			wantErr: "more than one source file"},
		{name: "several sources into an existing dir", dst: []node{D("x")},
			req:  Request{Sources: []string{"a.go", "b.go"}, Dest: "/x"},
			want: []string{"/x d 0755 0:0", "/x/a.go f 0644 0:0 A", "/x/b.go f 0644 0:0 B"}},
		{name: "empty glob skipped", req: Request{Sources: []string{"nomatch*", "a.go"}, Dest: "hello"},
			want: []string{"/hello f 0644 0:0 A"}},
		{name: "only an empty glob does nothing", req: Request{Sources: []string{"nomatch*"}, Dest: "/never/"},
			want: nil},
		{name: "glob under a missing dir", req: Request{Sources: []string{"nodir/*.go"}, Dest: "/never/"},
			want: nil},
		{name: "bad pattern", req: Request{Sources: []string{"[a-"}, Dest: "/x/"}, wantErr: "syntax error in pattern"},
		{name: "ADD with several matches", req: Request{Sources: []string{"*.go"}, Dest: "/x", Add: true},
			wantErr: "When using ADD with more than one source file"},
	}
	for _, tc := range cases {
		tc.src = src
		t.Run(tc.name, tc.run)
	}
}

func TestCopySymlinks(t *testing.T) {
	requireRoot(t)
	src := []node{
		F("bar", "bar-contents"), L("foo", "bar"),
		D("temp"), F("temp/target", "hello"), L("temp/link", "target"),
		D("sub"), F("sub/subfile", "S"), L("sub/l0", "subfile"), L("sub/l1", "second"),
		L("sub/second", "baz"), F("sub/baz", "Z"), F("sub/lfile", "LF"),
		L("dirlink", "temp"), L("abs", "/bar"), L("dangling", "nowhere"),
	}
	cases := []copyCase{
		{name: "named symlink followed", req: Request{Sources: []string{"foo"}, Dest: "/"},
			want: []string{"/foo f 0644 0:0 bar-contents"}},
		{name: "absolute symlink resolved in the source root", req: Request{Sources: []string{"abs"}, Dest: "/x"},
			want: []string{"/x f 0644 0:0 bar-contents"}},
		{name: "symlinks inside a directory kept", req: Request{Sources: []string{"temp/"}, Dest: "dest/"},
			want: []string{"/dest d 0755 0:0", "/dest/link l -> target", "/dest/target f 0644 0:0 hello"}},
		{name: "glob matches followed", req: Request{Sources: []string{"sub/l*"}, Dest: "alllinks/"},
			want: []string{"/alllinks d 0755 0:0", "/alllinks/l0 f 0644 0:0 S",
				"/alllinks/l1 f 0644 0:0 Z", "/alllinks/lfile f 0644 0:0 LF"}},
		{name: "through a directory symlink", req: Request{Sources: []string{"dirlink/target"}, Dest: "."},
			want: []string{"/target f 0644 0:0 hello"}},
		{name: "directory symlink copies the target contents", req: Request{Sources: []string{"dirlink"}, Dest: "/d"},
			want: []string{"/d d 0755 0:0", "/d/link l -> target", "/d/target f 0644 0:0 hello"}},
		{name: "dangling named symlink", req: Request{Sources: []string{"dangling"}, Dest: "/d"},
			wantErr: `"/dangling": not found`},
		{name: "dangling symlink matched by a glob", req: Request{Sources: []string{"dang*"}, Dest: "/d/"},
			wantErr: "not found"},
	}
	for _, tc := range cases {
		tc.src = src
		t.Run(tc.name, tc.run)
	}
}

func TestCopyOwnershipAndModes(t *testing.T) {
	requireRoot(t)
	etc := []node{
		F("etc/passwd", "root:x:0:0::/root:/bin/sh\ndaemon:x:1:1::/:/sbin/nologin\nuser:x:1000:1000::/home/user:/bin/sh\n"),
		F("etc/group", "root:x:0:\nnogroup:x:65534:\nuser:x:1000:\n"),
	}
	etcWant := []string{"/etc d 0755 0:0",
		"/etc/passwd f 0644 0:0 root:x:0:0::/root:/bin/sh\ndaemon:x:1:1::/:/sbin/nologin\nuser:x:1000:1000::/home/user:/bin/sh\n",
		"/etc/group f 0644 0:0 root:x:0:\nnogroup:x:65534:\nuser:x:1000:\n"}
	with := func(lines ...string) []string { return append(append([]string{}, etcWant...), lines...) }
	src := []node{
		owned(F("foo", foo), 42, 43), D("qux"), owned(F("qux/quz", "z"), 7, 8), DM("qux/quw", 0o750), F("qux/quw/que", "e"),
		D("myapp/somedir"), owned(D("myapp/somedir"), 123, 123), owned(F("myapp/somedir/somefile", "s"), 321, 321),
		FM("suid", "s", 0o4755),
	}
	cases := []copyCase{
		{name: "context owners become root", req: Request{Sources: []string{"foo"}, Dest: "/foo"},
			want: with("/foo f 0644 0:0 " + foo)},
		{name: "stage owners kept", fromStage: true, req: Request{Sources: []string{"/myapp"}, Dest: "/myapp"},
			want: with("/myapp d 0755 0:0", "/myapp/somedir d 0755 123:123", "/myapp/somedir/somefile f 0644 321:321 s")},
		{name: "chown name", req: Request{Sources: []string{"foo"}, Dest: "/", Chown: "daemon"},
			want: with("/foo f 0644 1:1 " + foo)},
		{name: "chown uid and group name", req: Request{Sources: []string{"qux"}, Dest: "/baz", Chown: "1000:nogroup"},
			want: with("/baz d 0755 1000:65534", "/baz/quz f 0644 1000:65534 z", "/baz/quw d 0750 1000:65534",
				"/baz/quw/que f 0644 1000:65534 e")},
		{name: "chown numeric uid alone means uid:uid", req: Request{Sources: []string{"foo"}, Dest: "/a/b", Chown: "5000"},
			want: with("/a d 0755 5000:5000", "/a/b f 0644 5000:5000 "+foo)},
		{name: "chown user:user", req: Request{Sources: []string{"foo"}, Dest: "/f", Chown: "user:user"},
			want: with("/f f 0644 1000:1000 " + foo)},
		{name: "chown root needs no passwd", dst: []node{}, req: Request{Sources: []string{"foo"}, Dest: "/f", Chown: "root:root"},
			want: []string{"/f f 0644 0:0 " + foo}},
		{name: "chown unknown user", req: Request{Sources: []string{"foo"}, Dest: "/f", Chown: "nobodyhere"},
			wantErr: "unable to find user nobodyhere"},
		{name: "chown unknown group", req: Request{Sources: []string{"foo"}, Dest: "/f", Chown: "1:nogrouphere"},
			wantErr: "unable to find group nogrouphere"},
		{name: "existing dirs keep owners with chown", dst: append([]node{owned(DM("existingdir", 0o750), 500, 600)}, etc...),
			req:  Request{Sources: []string{"qux"}, Dest: "/existingdir", Chown: "300:400"},
			want: with("/existingdir d 0750 500:600", "/existingdir/quz f 0644 300:400 z", "/existingdir/quw d 0750 300:400", "/existingdir/quw/que f 0644 300:400 e")},
		{name: "chmod applies to files and dirs", req: Request{Sources: []string{"qux"}, Dest: "/c", Chmod: "700"},
			want: with("/c d 0755 0:0", "/c/quz f 0700 0:0 z", "/c/quw d 0700 0:0", "/c/quw/que f 0700 0:0 e")},
		{name: "symbolic chmod applies to each source mode", req: Request{Sources: []string{"qux"}, Dest: "/c", Chmod: "u+x,g-w,o="},
			want: with("/c d 0755 0:0", "/c/quz f 0740 0:0 z", "/c/quw d 0750 0:0", "/c/quw/que f 0740 0:0 e")},
		{name: "symbolic chmod keeps setuid", req: Request{Sources: []string{"suid"}, Dest: "/s", Chmod: "go-rx"},
			want: with("/s f 4700 0:0 s")},
		{name: "invalid symbolic chmod", req: Request{Sources: []string{"foo"}, Dest: "/", Chmod: "u+q"},
			wantErr: "invalid chmod parameter: 'u+q'"},
		{name: "chmod zero", req: Request{Sources: []string{"foo"}, Dest: "/foobis", Chmod: "0"},
			want: with("/foobis f 0000 0:0 " + foo)},
		{name: "chmod with chown keeps setuid", req: Request{Sources: []string{"foo"}, Dest: "/s", Chmod: "4750", Chown: "1"},
			want: with("/s f 4750 1:1 " + foo)},
		{name: "setuid kept from the source", req: Request{Sources: []string{"suid"}, Dest: "/s"},
			want: with("/s f 4755 0:0 s")},
		{name: "invalid chmod", req: Request{Sources: []string{"foo"}, Dest: "/", Chmod: "64a"},
			wantErr: "invalid chmod parameter: '64a'"},
		{name: "chmod out of range", req: Request{Sources: []string{"foo"}, Dest: "/", Chmod: "10000"},
			wantErr: "invalid chmod parameter"},
	}
	for _, tc := range cases {
		tc.src = src
		if tc.dst == nil {
			tc.dst = etc
		}
		t.Run(tc.name, tc.run)
	}
}
