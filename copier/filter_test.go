package copier

import "testing"

func TestCopyDockerignore(t *testing.T) {
	requireRoot(t)
	// Corpus case 037.
	patternsCtx := []node{
		F(".dockerignore", "x"), F("src/main_test.go", "t"), F("src/main.go", "package main\n"),
		F("src/pkg/util_test.go", "u"), F("README.md", "readme\n"), F("CHANGES.md", "c"),
		F("sub/notes.md", "notes\n"), F("sub/tmp.log", "log\n"), F("tmp.log", "l"),
		F("docs/img/x.png", "png"), F("docs/keep.md", "keep\n"), F("docs/a.md", "a"),
	}
	patterns := []string{"*.md", "!README.md", "**/*_test.go", "docs", "!docs/keep.md", "/tmp.log"}
	basic := []node{F(".dockerignore", "i"), F("bar", "bar"), F("foo", "foo"), F("bay", "bay"), F("baz", "baz")}
	cases := []copyCase{
		{name: "basic exceptions", src: basic,
			req:  Request{Sources: []string{"."}, Dest: ".", Ignore: []string{"ba*", "Dockerfile", "!bay", ".dockerignore"}},
			want: []string{"/bay f 0644 0:0 bay", "/foo f 0644 0:0 foo"}},
		{name: "patterns", src: patternsCtx,
			req: Request{Sources: []string{"."}, Dest: "/ctx/", Ignore: patterns},
			want: []string{"/ctx d 0755 0:0", "/ctx/.dockerignore f 0644 0:0 x", "/ctx/README.md f 0644 0:0 readme\n",
				"/ctx/docs d 0755 0:0", "/ctx/docs/keep.md f 0644 0:0 keep\n",
				"/ctx/src d 0755 0:0", "/ctx/src/main.go f 0644 0:0 package main\n", "/ctx/src/pkg d 0755 0:0",
				"/ctx/sub d 0755 0:0", "/ctx/sub/notes.md f 0644 0:0 notes\n", "/ctx/sub/tmp.log f 0644 0:0 log\n"}},
		{name: "ignored dir named, exception inside", src: patternsCtx,
			req:  Request{Sources: []string{"docs"}, Dest: "/d", Ignore: patterns},
			want: []string{"/d d 0755 0:0", "/d/keep.md f 0644 0:0 keep\n"}},
		{name: "file re-included inside an ignored dir", src: patternsCtx,
			req:  Request{Sources: []string{"docs/keep.md"}, Dest: "/k", Ignore: patterns},
			want: []string{"/k f 0644 0:0 keep\n"}},
		{name: "ignored file named", src: patternsCtx,
			req: Request{Sources: []string{"CHANGES.md"}, Dest: "/c", Ignore: patterns}, wantErr: `"/CHANGES.md": not found`},
		{name: "file in an ignored dir named", src: patternsCtx,
			req: Request{Sources: []string{"docs/img/x.png"}, Dest: "/c", Ignore: patterns}, wantErr: "not found"},
		{name: "ignored dir without exceptions named", src: patternsCtx,
			req: Request{Sources: []string{"docs/img"}, Dest: "/c", Ignore: patterns}, wantErr: "not found"},
		{name: "glob leaves one visible match", src: []node{F("ignore/bar", "b"), F("ignore/foo", "kept\n"), F("ignore/baz", "z")},
			req:  Request{Sources: []string{"ignore/*"}, Dest: "/foo", Ignore: []string{"ignore/**", "!ignore/foo"}},
			want: []string{"/foo f 0644 0:0 kept\n"}},
		{name: "glob skips ignored matches", src: basic,
			req:  Request{Sources: []string{"ba*"}, Dest: "/g/", Ignore: []string{"bar", "baz"}},
			want: []string{"/g d 0755 0:0", "/g/bay f 0644 0:0 bay"}},
		{name: "symlink to an ignored file", src: []node{F("secret", "s"), L("link", "secret")},
			req: Request{Sources: []string{"link"}, Dest: "/x", Ignore: []string{"secret"}}, wantErr: "not found"},
		{name: "ignored symlink", src: []node{F("data", "d"), L("link", "data")},
			req: Request{Sources: []string{"link"}, Dest: "/x", Ignore: []string{"link"}}, wantErr: "not found"},
		{name: "ignored dir link on the way", src: []node{F("real/f", "d"), L("link", "real")},
			req: Request{Sources: []string{"link/f"}, Dest: "/x", Ignore: []string{"link"}}, wantErr: "not found"},
	}
	for _, tc := range cases {
		t.Run(tc.name, tc.run)
	}
}

func TestCopyExcludes(t *testing.T) {
	requireRoot(t)
	src := []node{F("dir/a.txt", "a"), F("dir/b.go", "b"), F("dir/sub/c.txt", "c"), F("top.txt", "t"), F("top.go", "g")}
	cases := []copyCase{
		{name: "relative to the copied dir", req: Request{Sources: []string{"dir"}, Dest: "/o", Excludes: []string{"*.txt"}},
			want: []string{"/o d 0755 0:0", "/o/b.go f 0644 0:0 b", "/o/sub d 0755 0:0", "/o/sub/c.txt f 0644 0:0 c"}},
		{name: "any depth", req: Request{Sources: []string{"dir"}, Dest: "/o", Excludes: []string{"**/*.txt"}},
			want: []string{"/o d 0755 0:0", "/o/b.go f 0644 0:0 b", "/o/sub d 0755 0:0"}},
		{name: "directory excluded", req: Request{Sources: []string{"dir"}, Dest: "/o", Excludes: []string{"sub"}},
			want: []string{"/o d 0755 0:0", "/o/a.txt f 0644 0:0 a", "/o/b.go f 0644 0:0 b"}},
		{name: "top-level glob matches", req: Request{Sources: []string{"top*"}, Dest: "/o/", Excludes: []string{"*.txt"}},
			want: []string{"/o d 0755 0:0", "/o/top.go f 0644 0:0 g"}},
		{name: "excluded dir with an exception", req: Request{Sources: []string{"dir"}, Dest: "/o", Excludes: []string{"sub", "!sub/c.txt", "*.go"}},
			want: []string{"/o d 0755 0:0", "/o/a.txt f 0644 0:0 a", "/o/sub d 0755 0:0", "/o/sub/c.txt f 0644 0:0 c"}},
	}
	for _, tc := range cases {
		tc.src = src
		t.Run(tc.name, tc.run)
	}
}

func TestCopyParents(t *testing.T) {
	requireRoot(t)
	src := []node{DM("a", 0o750), DM("a/b", 0o700), F("a/b/c.txt", "c"), F("a/b/d.txt", "d"), F("a/e/c.txt", "e"), F("x/y/z", "z")}
	cases := []copyCase{
		{name: "file keeps its parents", req: Request{Sources: []string{"a/b/c.txt"}, Dest: "/out/", Parents: true},
			want: []string{"/out d 0755 0:0", "/out/a d 0750 0:0", "/out/a/b d 0700 0:0", "/out/a/b/c.txt f 0644 0:0 c"}},
		{name: "pivot", req: Request{Sources: []string{"a/./b/c.txt"}, Dest: "/out", Parents: true},
			want: []string{"/out d 0755 0:0", "/out/b d 0700 0:0", "/out/b/c.txt f 0644 0:0 c"}},
		{name: "glob", req: Request{Sources: []string{"a/*/c.txt"}, Dest: "/out/", Parents: true},
			want: []string{"/out d 0755 0:0", "/out/a d 0750 0:0", "/out/a/b d 0700 0:0", "/out/a/b/c.txt f 0644 0:0 c",
				"/out/a/e d 0755 0:0", "/out/a/e/c.txt f 0644 0:0 e"}},
		{name: "directory", req: Request{Sources: []string{"x/y"}, Dest: "/out/", Parents: true},
			want: []string{"/out d 0755 0:0", "/out/x d 0755 0:0", "/out/x/y d 0755 0:0", "/out/x/y/z f 0644 0:0 z"}},
		{name: "dotdot clamped", req: Request{Sources: []string{"../../x/y/z"}, Dest: "/out/", Parents: true},
			want: []string{"/out d 0755 0:0", "/out/x d 0755 0:0", "/out/x/y d 0755 0:0", "/out/x/y/z f 0644 0:0 z"}},
	}
	for _, tc := range cases {
		tc.src = src
		t.Run(tc.name, tc.run)
	}
}

func TestCopyInline(t *testing.T) {
	requireRoot(t)
	etc := []node{F("etc/passwd", "user:x:1000:1000::/home/user:/bin/sh\n"), F("etc/group", "user:x:1000:\n")}
	etcWant := []string{"/etc d 0755 0:0", "/etc/passwd f 0644 0:0 user:x:1000:1000::/home/user:/bin/sh\n", "/etc/group f 0644 0:0 user:x:1000:\n"}
	with := func(lines ...string) []string { return append(append([]string{}, etcWant...), lines...) }
	single := []Inline{{Name: "EOF", Data: []byte("single file\n")}}
	cases := []copyCase{
		{name: "single to a file", req: Request{Inline: single, Dest: "single", Workdir: "/dest"},
			want: with("/dest d 0755 0:0", "/dest/single f 0644 0:0 single file\n")},
		{name: "two into a dir", req: Request{Inline: []Inline{{Name: "EOF", Data: []byte("first\n")}, {Name: "EOF2", Data: []byte("second\n")}},
			Dest: "double/", Workdir: "/dest"},
			want: with("/dest d 0755 0:0", "/dest/double d 0755 0:0", "/dest/double/EOF f 0644 0:0 first\n", "/dest/double/EOF2 f 0644 0:0 second\n")},
		{name: "chmod", req: Request{Inline: single, Dest: "/permfiles/all", Chmod: "777"},
			want: with("/permfiles d 0755 0:0", "/permfiles/all f 0777 0:0 single file\n")},
		{name: "chown", req: Request{Inline: single, Dest: "/owned", Chown: "user:user"},
			want: with("/owned f 0644 1000:1000 single file\n")},
		{name: "own mode", req: Request{Inline: []Inline{{Name: "x", Data: []byte("#!/bin/sh\n"), Mode: 0o755}}, Dest: "/run.sh"},
			want: with("/run.sh f 0755 0:0 #!/bin/sh\n")},
		{name: "name cannot climb", req: Request{Inline: []Inline{{Name: "../../evil", Data: []byte("e")}}, Dest: "/in/"},
			want: with("/in d 0755 0:0", "/in/evil f 0644 0:0 e")},
		{name: "with a file needs a dir", src: []node{F("foo", foo)},
			req: Request{Sources: []string{"foo"}, Inline: single, Dest: "/x"}, wantErr: "more than one source file"},
		{name: "with a file into a dir", src: []node{F("foo", foo)},
			req:  Request{Sources: []string{"foo"}, Inline: single, Dest: "/x/"},
			want: with("/x d 0755 0:0", "/x/foo f 0644 0:0 "+foo, "/x/EOF f 0644 0:0 single file\n")},
	}
	for _, tc := range cases {
		tc.dst = etc
		t.Run(tc.name, tc.run)
	}
}
